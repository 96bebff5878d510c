//! UDP: one socket per worker thread, all bound to the same address with SO_REUSEPORT so the
//! kernel spreads datagrams over the workers without a shared queue. Each worker is a plain
//! blocking loop with its own buffers: receive a batch (recvmmsg), answer each datagram,
//! send the batch (sendmmsg). No task spawn, no channel hop, no allocation per datagram, and
//! under load one system call per batch rather than two per query.
//!
//! Which worker gets a datagram is the kernel's choice: by default a hash of the client's
//! address and port; with `dns.udp_steering = "cpu"` a small BPF program picks the worker
//! that belongs to the CPU that received the datagram (`steering_program`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::rrl::{self, Limiter};
use super::{Reply, respond_signed};
use crate::answer::Transport;
use crate::config::UdpSteering;
use crate::shutdown::Shutdown;
use crate::snapshot::SharedState;

/// How often an idle worker looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// What each socket asks for as receive and send buffer: room for a burst, or a short stall
/// of the worker, at a few hundred thousand queries per second.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// RRL start/stop events a worker may queue for the log between two reads of the queue
/// (every [`EVENT_POLL`]): at most 640 lines a second per worker; more are lost and counted.
const EVENT_QUEUE: usize = 64;
const EVENT_POLL: Duration = Duration::from_millis(100);

/// Binds one UDP socket for `addr` with SO_REUSEPORT set (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Let [::]:53 and 0.0.0.0:53 be configured side by side.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Room for bursts: a full receive buffer drops queries silently. SO_RCVBUF is capped at
    // net.core.rmem_max (often 208 KiB); SO_RCVBUFFORCE is not, but needs CAP_NET_ADMIN.
    if force_recv_buffer(&socket, SOCKET_BUFFER).is_err() {
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    }
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
    Ok(socket)
}

/// SO_RCVBUFFORCE: a receive buffer above net.core.rmem_max (root or CAP_NET_ADMIN).
fn force_recv_buffer(socket: &Socket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: passes a c_int by pointer with its size; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Says at start what receive buffer the kernel granted (read back: Linux reports twice the
/// payload it will queue, the rest being its bookkeeping), with the sysctl when it is short.
fn log_recv_buffer(socket: &UdpSocket, addr: SocketAddr) {
    let got = socket2::SockRef::from(socket).recv_buffer_size().unwrap_or(0);
    if got >= SOCKET_BUFFER {
        tracing::info!(listen = %addr, asked = SOCKET_BUFFER, got, "udp receive buffer");
    } else {
        tracing::warn!(
            listen = %addr,
            asked = SOCKET_BUFFER,
            got,
            "udp receive buffer smaller than asked: capped by net.core.rmem_max and no CAP_NET_ADMIN; \
             a short stall will drop queries (sysctl -w net.core.rmem_max={SOCKET_BUFFER}, see docs/operations.md)"
        );
    }
}

/// Starts `workers` threads answering on `first` and on `workers - 1` more sockets bound to the
/// same address.
pub fn spawn_workers(
    first: UdpSocket,
    workers: usize,
    steering: UdpSteering,
    state: SharedState,
    shutdown: Shutdown,
) -> io::Result<Vec<JoinHandle<()>>> {
    let addr = first.local_addr()?;
    log_recv_buffer(&first, addr);
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(addr)?);
    }
    if steering == UdpSteering::Cpu {
        // The program belongs to the socket group; every socket is bound, so the worker
        // indices it returns are the sockets' places in the group (the order of binding).
        let cpus = allowed_cpus()?;
        if sockets.len() > cpus.len() {
            tracing::warn!(
                workers = sockets.len(),
                cpus = cpus.len(),
                "dns.udp_steering = \"cpu\": more UDP workers than CPUs gslbd may run on; workers {} and up \
                 will get no datagrams (set dns.udp_workers = 0 for one per CPU)",
                cpus.len()
            );
        }
        attach_steering(&sockets[0], &steering_program(&cpus, sockets.len())).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("dns.udp_steering = \"cpu\": the kernel refused the steering program: {e}"),
            )
        })?;
    }
    crate::metrics::set_udp_workers(sockets.len());
    let mut handles = Vec::new();
    let mut receivers = Vec::new();
    let seed = rrl::random_seed();
    let epoch = Instant::now();
    for (i, socket) in sockets.into_iter().enumerate() {
        let state = state.clone();
        let shutdown = shutdown.clone();
        let (events, rx) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
        receivers.push(rx);
        let rrl = RrlSetup { seed, epoch, events };
        handles.push(
            std::thread::Builder::new()
                .name(format!("udp-{addr}-{i}"))
                .spawn(move || serve(socket, state, shutdown, crate::metrics::dns_shard(i), rrl))?,
        );
    }
    let shutdown = shutdown.clone();
    handles.push(
        std::thread::Builder::new().name(format!("rrl-log-{addr}")).spawn(move || log_events(&receivers, &shutdown))?,
    );
    Ok(handles)
}

/// What a worker needs to build its rate limiter when the configuration asks for one.
struct RrlSetup {
    seed: u64,
    epoch: Instant,
    events: SyncSender<rrl::Event>,
}

/// Writes the workers' RRL start/stop events to the log, off the query path: a worker only
/// queues an event (never blocking; a full queue loses it, counted in
/// `gslbd_rrl_log_events_lost_total`), and this thread does the writing.
fn log_events(receivers: &[Receiver<rrl::Event>], shutdown: &Shutdown) {
    while !shutdown.is_shutdown() {
        std::thread::sleep(EVENT_POLL);
        for e in receivers.iter().flat_map(Receiver::try_iter) {
            let account = if e.errors { "errors" } else { "responses" };
            match (e.started, e.log_only) {
                (true, false) => tracing::warn!(prefix = %e.prefix, account, "rrl: limiting client prefix"),
                (true, true) => {
                    tracing::warn!(prefix = %e.prefix, account, "rrl (log_only): would limit client prefix")
                }
                (false, false) => tracing::info!(prefix = %e.prefix, account, "rrl: no longer limiting client prefix"),
                (false, true) => {
                    tracing::info!(prefix = %e.prefix, account, "rrl (log_only): would no longer limit client prefix")
                }
            }
        }
    }
}

/// Network cards whose receive work is not spread over the CPUs: one receive queue and no
/// RPS. With `udp_steering = "cpu"` every datagram they bring goes to one worker. Reads
/// `net` (`/sys/class/net`); only devices (`<if>/device` exists) count: virtual interfaces
/// (veth, bridges, tunnels) deliver on the CPU that handled the real card.
pub fn unspread_interfaces(net: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(net) else { return Vec::new() };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| {
            let queues: Vec<_> = std::fs::read_dir(e.path().join("queues"))
                .ok()?
                .filter_map(Result::ok)
                .filter(|q| q.file_name().to_string_lossy().starts_with("rx-"))
                .collect();
            // A mask like "0", "00000000,00000003": any CPU set means RPS is on.
            let rps = queues.iter().any(|q| {
                std::fs::read_to_string(q.path().join("rps_cpus"))
                    .is_ok_and(|m| m.trim().chars().any(|c| c.is_ascii_hexdigit() && c != '0'))
            });
            (queues.len() == 1 && !rps).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    found.sort();
    found
}

/// The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), in order.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET only reads `set` within CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// setsockopt(2) option number of SO_ATTACH_REUSEPORT_CBPF (linux/asm-generic/socket.h; the
/// libc crate does not export it for every target).
#[cfg(not(target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(target_arch = "sparc64")]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x35;

/// A classic BPF program for SO_ATTACH_REUSEPORT_CBPF: the index of the socket (worker) that
/// owns the CPU running it, i.e. the CPU that received the datagram. The allowed CPUs are
/// dealt to the workers in turn (CPUs [0, 1, 2, 3] over 2 workers: 0→0, 1→1, 2→0, 3→1). A CPU
/// not in the list gets an index past the last socket, and the kernel falls back to its hash.
fn steering_program(cpus: &[usize], workers: usize) -> Vec<libc::sock_filter> {
    const fn insn(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code: code as u16, jt, jf, k }
    }
    // A program has at most 4096 instructions (BPF_MAXINSNS): two per CPU, two more.
    const MAX_CPUS: usize = 2000;
    let mut prog =
        vec![insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32)];
    for (i, &cpu) in cpus.iter().take(MAX_CPUS).enumerate() {
        // if A == cpu, return its worker; else skip the return
        prog.push(insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, cpu as u32));
        prog.push(insn(libc::BPF_RET | libc::BPF_K, 0, 0, (i % workers.max(1)) as u32));
    }
    prog.push(insn(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX));
    prog
}

fn attach_steering(socket: &UdpSocket, program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: `fprog` points at `program`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn serve(
    socket: UdpSocket,
    state: SharedState,
    shutdown: Shutdown,
    counters: &'static crate::metrics::DnsShard,
    setup: RrlSetup,
) {
    let mut batch = Batch::new();
    // Built when the configuration first asks for it, kept (and reconfigured) after.
    let mut limiter: Option<Limiter> = None;
    let mut published = [0u64; 8];
    while !shutdown.is_shutdown() {
        let received = match batch.receive(&socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                // Idle: go on with an empty batch, so the rate limiter's clock still moves
                // and prefixes that stopped flooding are logged as no longer limited.
                0
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on some kernels; keep serving.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        if received > 0 {
            counters.received(received);
        }
        // One snapshot load per batch: queries of one batch see the same data.
        let snap = state.load();
        let mut active = match (snap.settings.rrl.as_ref(), limiter.as_mut()) {
            (None, _) => None,
            (Some(cfg), Some(l)) => {
                if !Arc::ptr_eq(cfg, l.config()) {
                    l.reconfigure(cfg.clone());
                }
                Some(l)
            }
            (Some(cfg), None) => {
                let events = Some(setup.events.clone());
                Some(limiter.insert(Limiter::new(cfg.clone(), setup.seed, setup.epoch, events)))
            }
        };
        if let Some(l) = &mut active {
            l.tick(Instant::now()); // the clock, once per batch
        }
        let is_active = active.is_some();
        batch.answer(received, &snap, counters, active);
        // Publish what changed; with RRL turned off by a reload, its gauges read 0.
        let now = match (&limiter, is_active) {
            (Some(l), true) => l.stats.as_array(),
            _ => {
                let mut counts = published;
                counts[5..].fill(0);
                counts
            }
        };
        if now != published {
            counters.rrl_changed(&published, &now);
            published = now;
        }
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
    /// This worker's DNSSEC signature cache: its own, so a hit takes no lock.
    signer: crate::dnssec::Signer,
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
            signer: crate::dnssec::Signer::default(),
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

    fn answer(
        &mut self,
        received: usize,
        snap: &crate::snapshot::Snapshot,
        counters: &crate::metrics::DnsShard,
        mut limiter: Option<&mut Limiter>,
    ) {
        self.to_send.clear();
        for i in 0..received {
            let Some(peer) = peer_ip(&self.peers[i], self.recv_msgs[i].msg_hdr.msg_namelen) else {
                continue;
            };
            let query = &self.queries[i][..self.query_lens[i]];
            let reply = respond_signed(
                query,
                peer,
                Transport::Udp,
                snap,
                &mut self.answers[i],
                counters,
                limiter.as_deref_mut(),
                Some(&mut self.signer),
            );
            if reply == Reply::Message {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a steering program the way the kernel would for a datagram on `cpu`.
    fn run(prog: &[libc::sock_filter], cpu: u32) -> u32 {
        let mut a = 0;
        let mut pc = 0;
        loop {
            let i = prog[pc];
            match u32::from(i.code) {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    assert_eq!(i.k, (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32);
                    a = cpu;
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn steering_deals_the_allowed_cpus_to_the_workers_in_turn() {
        let prog = steering_program(&[0, 1, 2, 3], 2);
        assert_eq!([0, 1, 2, 3].map(|c| run(&prog, c)), [0, 1, 0, 1]);
        // A cpuset with gaps: its CPUs, in order, not the CPU numbers, pick the worker.
        let prog = steering_program(&[4, 6, 9], 3);
        assert_eq!([4, 6, 9].map(|c| run(&prog, c)), [0, 1, 2]);
        // A CPU outside the set: an index past the sockets, so the kernel hashes instead.
        assert_eq!(run(&prog, 5), u32::MAX);
        // More workers than CPUs: the extra workers get only hashed traffic (none here).
        assert_eq!(run(&steering_program(&[0], 4), 0), 0);
    }

    #[test]
    fn single_queue_cards_without_rps_are_found() {
        let net = crate::testutil::TempDir::new("net");
        // one queue, no RPS: found
        net.write("eth0/device/vendor", "0x1af4\n");
        net.write("eth0/queues/rx-0/rps_cpus", "00000000,00000000\n");
        net.write("eth0/queues/tx-0/xps_cpus", "1\n");
        // two queues
        net.write("eth1/device/vendor", "0x8086\n");
        net.write("eth1/queues/rx-0/rps_cpus", "0\n");
        net.write("eth1/queues/rx-1/rps_cpus", "0\n");
        // one queue with RPS on
        net.write("eth2/device/vendor", "0x1af4\n");
        net.write("eth2/queues/rx-0/rps_cpus", "00000000,00000003\n");
        // virtual: no device
        net.write("veth9/queues/rx-0/rps_cpus", "0\n");
        net.write("lo/queues/rx-0/rps_cpus", "0\n");
        assert_eq!(unspread_interfaces(net.path()), ["eth0"]);
        assert!(unspread_interfaces(&net.path().join("missing")).is_empty());
    }

    #[test]
    fn steering_program_fits_the_kernel_limit_on_huge_machines() {
        let cpus: Vec<usize> = (0..4096).collect();
        let prog = steering_program(&cpus, 64);
        assert!(prog.len() <= 4096, "{}", prog.len());
        assert_eq!(run(&prog, 1999), 1999 % 64);
        assert_eq!(run(&prog, 3000), u32::MAX);
    }
}
