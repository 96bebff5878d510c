//! UDP: one socket per worker thread, all bound to the same address with SO_REUSEPORT so the
//! kernel spreads datagrams over the workers without a shared queue. Each worker is a plain
//! blocking loop (receive, answer, send) with its own buffers: no task spawn, no channel hop
//! and no allocation per datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Reply, respond};
use crate::resolve::Transport;
use crate::state::SharedState;

/// How often an idle worker looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Binds one UDP socket for `addr` with SO_REUSEPORT set (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Let [::]:53 and 0.0.0.0:53 be configured side by side.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Room for bursts: a full receive buffer drops queries silently.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
    Ok(socket)
}

/// Starts `workers` threads answering on `first` and on `workers - 1` more sockets bound to the
/// same address.
pub fn spawn_workers(
    first: UdpSocket,
    workers: usize,
    state: SharedState,
    shutdown: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(addr)?);
    }
    let mut handles = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let state = state.clone();
        let shutdown = shutdown.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("udp-{addr}-{i}"))
                .spawn(move || serve(socket, state, shutdown))?,
        );
    }
    Ok(handles)
}

fn serve(socket: UdpSocket, state: SharedState, shutdown: Arc<AtomicBool>) {
    let mut buf = [0u8; 65535];
    let mut out = Vec::with_capacity(65535);
    while !shutdown.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on some kernels; keep serving.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let snap = state.load();
        if respond(&buf[..len], peer.ip(), Transport::Udp, &snap, &mut out) == Reply::Message
            && let Err(e) = socket.send_to(&out, peer)
        {
            tracing::debug!(error = %e, %peer, "udp send failed");
        }
    }
}
