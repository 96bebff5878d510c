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

/// The DNSSEC signature cache of TCP answers (see `connection`).
static TCP_SIGNER: std::sync::LazyLock<std::sync::Mutex<Signer>> = std::sync::LazyLock::new(Default::default);

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
        // TCP answers are few (truncated UDP answers, transfers): one signature cache for all
        // connections, behind a lock no UDP worker ever takes, and only DO=1 queries to a
        // server with keys take it.
        let wants_signatures = !snap.keys.is_empty()
            && matches!(wire::decode(body), wire::Decoded::Query(q) if q.edns.is_some_and(|e| e.dnssec_ok));
        let shard = crate::metrics::tcp_shard();
        let reply = if wants_signatures {
            let mut signer = TCP_SIGNER.lock().unwrap_or_else(|e| e.into_inner());
            respond_signed(body, peer.ip(), Transport::Tcp, &snap, &mut out, shard, None, Some(&mut signer))
        } else {
            respond_signed(body, peer.ip(), Transport::Tcp, &snap, &mut out, shard, None, None)
        };
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
