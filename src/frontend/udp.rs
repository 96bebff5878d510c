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

/// Buffers and headers for batched receive and send, allocated once per worker. The
/// `mmsghdr`/`iovec` arrays are built once and point into the heap buffers beside them (which
/// never move), so a call only resets the few fields the kernel writes. Rebuilding all 32
/// headers is a fixed cost per call, and below saturation a batch is only a datagram or
/// two, so every query paid most of it.
struct Batch {
    queries: Box<[[u8; QUERY_BUF]]>,
    answers: Vec<Vec<u8>>,
    /// The sender of each received query, and the destination of each answer.
    peers: Box<[libc::sockaddr_storage]>,
    recv_iovs: Box<[libc::iovec]>,
    recv_msgs: Box<[libc::mmsghdr]>,
    send_iovs: Box<[libc::iovec]>,
    send_msgs: Box<[libc::mmsghdr]>,
    query_lens: [usize; BATCH],
    /// Indices of the received queries that got an answer, in order.
    to_send: Vec<usize>,
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

const STORAGE_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

impl Batch {
    fn new() -> Batch {
        let mut b = Batch {
            queries: vec![[0u8; QUERY_BUF]; BATCH].into_boxed_slice(),
            answers: (0..BATCH).map(|_| Vec::with_capacity(4096)).collect(),
            peers: vec![zeroed_storage(); BATCH].into_boxed_slice(),
            recv_iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH].into_boxed_slice(),
            recv_msgs: (0..BATCH).map(|_| zeroed_mmsghdr()).collect(),
            send_iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH].into_boxed_slice(),
            send_msgs: (0..BATCH).map(|_| zeroed_mmsghdr()).collect(),
            query_lens: [0; BATCH],
            to_send: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            b.recv_iovs[i] = libc::iovec { iov_base: b.queries[i].as_mut_ptr().cast(), iov_len: QUERY_BUF };
            let h = &mut b.recv_msgs[i].msg_hdr;
            h.msg_name = (&mut b.peers[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = STORAGE_LEN;
            h.msg_iov = &mut b.recv_iovs[i];
            h.msg_iovlen = 1;
        }
        b
    }

    /// Blocks until at least one datagram arrives (or the read timeout passes), then takes
    /// what is already queued, up to BATCH.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for m in self.recv_msgs.iter_mut() {
            m.msg_hdr.msg_namelen = STORAGE_LEN;
        }
        // SAFETY: every header points into `self`'s heap buffers (queries, peers, recv_iovs),
        // which live as long as `self` and never move; the kernel writes within the lengths.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.recv_msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (len, m) in self.query_lens.iter_mut().zip(self.recv_msgs.iter()).take(n) {
            *len = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 { 0 } else { m.msg_len as usize };
        }
        Ok(n)
    }

    fn answer(&mut self, received: usize, snap: &crate::state::Snapshot, counters: &crate::metrics::DnsShard) {
        self.to_send.clear();
        for i in 0..received {
            let Some(peer) = peer_ip(&self.peers[i], self.recv_msgs[i].msg_hdr.msg_namelen) else {
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
        for (slot, &i) in self.to_send.iter().enumerate() {
            self.send_iovs[slot] =
                libc::iovec { iov_base: self.answers[i].as_mut_ptr().cast(), iov_len: self.answers[i].len() };
            let h = &mut self.send_msgs[slot].msg_hdr;
            h.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.recv_msgs[i].msg_hdr.msg_namelen;
            h.msg_iov = &mut self.send_iovs[slot];
            h.msg_iovlen = 1;
        }
        let total = self.to_send.len();
        let mut sent = 0;
        while sent < total {
            // SAFETY: the headers point at answer buffers and peer addresses owned by `self`
            // and at `send_iovs`, all alive for the call; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.send_msgs[sent..].as_mut_ptr(),
                    (total - sent) as libc::c_uint,
                    0,
                )
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
