//! TCP (RFC 7766): two-octet length framing, pipelined queries answered in order, an idle
//! timeout that also bounds a stalled half-sent message, and a cap on open connections.
//! Connections over the cap are closed at once rather than left in the backlog.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::{Reply, respond_signed};
use crate::answer::Transport;
use crate::dnssec::Signer;
use crate::shutdown::Shutdown;
use crate::snapshot::SharedState;
use crate::wire;

thread_local! {
    /// The signature cache of DNSSEC answers over TCP, one per runtime thread: no lock
    /// (a connection's task borrows it only during a synchronous `respond_signed`, never
    /// across an await), and DO=0 queries never touch it.
    static TCP_SIGNER: std::cell::RefCell<Signer> = std::cell::RefCell::new(Signer::default());
}

/// TCP limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection with no complete query for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once, over all TCP listeners.
    pub max_connections: usize,
}

/// Binds a TCP listener for `addr` (a std listener, so it can be bound before the runtime
/// starts and reported in the ready line).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts connections until `shutdown` turns true; then waits for the open connections to
/// finish the query they are answering.
pub async fn serve(
    listener: std::net::TcpListener,
    state: SharedState,
    limits: Limits,
    permits: Arc<Semaphore>,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "tcp connection limit reached; closing");
            drop(stream);
            continue;
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, state, limits, shutdown).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended");
            }
            drop(permit);
        });
    }
    Ok(())
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: SharedState,
    limits: Limits,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4098);
    loop {
        let mut len = [0u8; 2];
        // Waiting for the next query is where a connection may be idle and where shutdown
        // may close it. `biased`: a query the client has already sent is read (and answered)
        // before shutdown is honoured, so SIGTERM never drops one that arrived; shutdown's
        // grace period bounds how long that can go on.
        tokio::select! {
            biased;
            r = timeout(limits.idle_timeout, stream.read_exact(&mut len)) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            },
            _ = shutdown.recv() => return Ok(()),
        }
        let len = u16::from_be_bytes(len) as usize;
        let body = &mut buf[..len];
        match timeout(limits.idle_timeout, stream.read_exact(body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let snap = state.load_full();
        // respond_signed signs only DO=1 queries to a server with keys.
        let shard = crate::metrics::tcp_shard();
        let reply = TCP_SIGNER.with_borrow_mut(|signer| {
            respond_signed(body, peer.ip(), Transport::Tcp, &snap, &mut out, shard, None, Some(signer))
        });
        match reply {
            Reply::Drop => continue,
            Reply::Message => {
                framed.clear();
                framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
                framed.extend_from_slice(&out);
                write(&mut stream, &framed, limits).await?;
            }
            Reply::Transfer => {
                let messages = match wire::decode(body) {
                    wire::Decoded::Query(q) => snap
                        .zones
                        .get(q.qname_lower.as_wire())
                        .map(|zone| wire::encode_transfer(&q, &crate::resolve::transfer(zone)))
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                tracing::info!(%peer, messages = messages.len(), "zone transfer");
                for m in messages {
                    framed.clear();
                    framed.extend_from_slice(&(m.len() as u16).to_be_bytes());
                    framed.extend_from_slice(&m);
                    write(&mut stream, &framed, limits).await?;
                }
            }
        }
    }
}

async fn write(stream: &mut TcpStream, data: &[u8], limits: Limits) -> io::Result<()> {
    match timeout(limits.idle_timeout, stream.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client not reading")),
    }
}
