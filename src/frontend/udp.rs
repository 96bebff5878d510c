//! UDP: one socket per worker thread, all bound to the same address with SO_REUSEPORT so the
//! kernel spreads datagrams over the workers without a shared queue. Each worker is a plain
//! blocking loop with its own buffers: receive a batch (recvmmsg), answer each datagram,
//! send the batch (sendmmsg). No task spawn, no channel hop, no allocation per datagram, and
//! under load one system call per batch rather than two per query.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
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
                .spawn(move || serve(socket, state, shutdown, crate::metrics::dns_shard(i)))?,
        );
    }
    Ok(handles)
}

fn serve(
    socket: UdpSocket,
    state: SharedState,
    shutdown: Arc<AtomicBool>,
    counters: &'static crate::metrics::DnsShard,
) {
    let mut batch = Batch::new();
    while !shutdown.load(Ordering::Relaxed) {
        let received = match batch.receive(&socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
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
        // One snapshot load per batch: queries of one batch see the same data.
        let snap = state.load();
        batch.answer(received, &snap, counters);
        if let Err(e) = batch.send(&socket) {
            tracing::debug!(error = %e, "udp send failed");
        }
    }
}

/// Datagrams per recvmmsg/sendmmsg call: one system call moves up to this many queries (or
/// answers), which is most of the cost of a query on a busy server.
const BATCH: usize = 32;
/// Receive buffer per datagram. A DNS query is far smaller; a longer datagram is truncated by
/// the kernel (MSG_TRUNC) and dropped.
const QUERY_BUF: usize = 4096;

/// Buffers and headers for batched receive and send, allocated once per worker.
struct Batch {
    queries: Box<[[u8; QUERY_BUF]]>,
    answers: Vec<Vec<u8>>,
    /// The sender of each received query, and the destination of each answer.
    peers: Box<[libc::sockaddr_storage]>,
    peer_lens: [libc::socklen_t; BATCH],
    query_lens: [usize; BATCH],
    /// Indices of the received queries that got an answer, in order.
    to_send: Vec<usize>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            queries: vec![[0u8; QUERY_BUF]; BATCH].into_boxed_slice(),
            answers: (0..BATCH).map(|_| Vec::with_capacity(4096)).collect(),
            peers: vec![zeroed_storage(); BATCH].into_boxed_slice(),
            peer_lens: [0; BATCH],
            query_lens: [0; BATCH],
            to_send: Vec::with_capacity(BATCH),
        }
    }

    /// Blocks until at least one datagram arrives (or the read timeout passes), then takes
    /// what is already queued, up to BATCH.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] =
            std::array::from_fn(|i| libc::iovec { iov_base: self.queries[i].as_mut_ptr().cast(), iov_len: QUERY_BUF });
        let mut msgs: [libc::mmsghdr; BATCH] = std::array::from_fn(|i| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m
        });
        // SAFETY: every msg_name and msg_iov points into buffers owned by `self` or `iovs`,
        // which outlive the call, with the lengths given; the kernel writes within them.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.peer_lens[i] = m.msg_hdr.msg_namelen;
            self.query_lens[i] = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 { 0 } else { m.msg_len as usize };
        }
        Ok(n)
    }

    fn answer(&mut self, received: usize, snap: &crate::state::Snapshot, counters: &crate::metrics::DnsShard) {
        self.to_send.clear();
        for i in 0..received {
            let Some(peer) = peer_ip(&self.peers[i], self.peer_lens[i]) else {
                continue;
            };
            let query = &self.queries[i][..self.query_lens[i]];
            if respond(query, peer, Transport::Udp, snap, &mut self.answers[i], counters) == Reply::Message {
                self.to_send.push(i);
            }
        }
    }

    fn send(&mut self, socket: &UdpSocket) -> io::Result<()> {
        if self.to_send.is_empty() {
            return Ok(());
        }
        let mut iovs: [libc::iovec; BATCH] =
            std::array::from_fn(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = std::array::from_fn(|_| unsafe { std::mem::zeroed() });
        for (slot, &i) in self.to_send.iter().enumerate() {
            iovs[slot] = libc::iovec { iov_base: self.answers[i].as_mut_ptr().cast(), iov_len: self.answers[i].len() };
            msgs[slot].msg_hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            msgs[slot].msg_hdr.msg_namelen = self.peer_lens[i];
            msgs[slot].msg_hdr.msg_iov = &mut iovs[slot];
            msgs[slot].msg_hdr.msg_iovlen = 1;
        }
        let total = self.to_send.len();
        let mut sent = 0;
        while sent < total {
            // SAFETY: the headers point at answer buffers and peer addresses owned by `self`
            // and at `iovs`, all alive for the call; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), msgs[sent..].as_mut_ptr(), (total - sent) as libc::c_uint, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram that failed (e.g. an unreachable peer) and go on.
                tracing::debug!(error = %e, "udp send failed");
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        Ok(())
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The IP address in a sockaddr the kernel filled in.
fn peer_ip(sa: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<IpAddr> {
    match sa.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let sin = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}
