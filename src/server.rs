//! The server: everything `gslbd` runs, started in order and stopped on one signal. The
//! binary parses the command line, loads the first snapshot and calls [`run`].

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;

use crate::admin;
use crate::config::{Config, UdpSteering};
use crate::control::Control;
use crate::frontend::{self, tcp, udp};
use crate::shutdown::Shutdown;
use crate::snapshot::{self, SharedState, Snapshot, Source};

/// How long open TCP connections may take to finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start. Each names what it was starting; main prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A DNS or admin socket could not be bound (or its address read).
    /// `addr` is the address asked for (or bound, for the second protocol), `proto` `udp` or
    /// `tcp`, `source` the socket error.
    #[error("cannot listen on {addr}/{proto}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Listen { addr: SocketAddr, proto: &'static str, source: std::io::Error },
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The UDP worker threads for `addr` could not be started; `source` is the error.
    #[error("cannot start UDP workers on {addr}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Workers { addr: SocketAddr, source: std::io::Error },
    /// The saved overrides in the state directory could not be read or are invalid.
    #[error("cannot restore operator overrides")]
    Overrides(#[source] crate::overrides::StoreError),
    /// The admin API's token file.
    #[error(transparent)]
    Tokens(#[from] admin::TokenError),
    /// A signal handler could not be installed; `name` is the signal (`SIGHUP`, `SIGTERM`,
    /// `SIGINT`), `source` the error.
    #[error("cannot watch {name}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Signal { name: &'static str, source: std::io::Error },
    /// Cluster mode could not start (bad TLS material, or this instance's name is taken).
    #[error("cannot join the cluster")]
    Cluster(#[source] crate::cluster::JoinError),
    /// The ready line could not be written to stdout.
    #[error("cannot write the ready line")]
    Ready(#[source] std::io::Error),
    /// Another gslbd runs on this state directory (its `lock` file is held), or the lock
    /// file cannot be made; `path` is the lock file.
    #[error(
        "state directory in use: {}: {message}\n  hint: each gslbd needs its own --state-dir (the overrides, health verdicts and cluster lease in it are one instance's)",
        path.display()
    )]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    StateDir { path: std::path::PathBuf, message: String },
}

/// Takes `state_dir/lock` for as long as the returned file is open: two processes on one
/// state directory would overwrite each other's overrides, verdicts and cluster lease
/// (and a second one with the same cluster instance name would pass for the first).
fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File, Error> {
    let path = state_dir.join("lock");
    let failed = |message: String| Error::StateDir { path: path.clone(), message };
    std::fs::create_dir_all(state_dir).map_err(|e| failed(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| failed(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(failed("another gslbd holds it".into())),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e.to_string())),
    }
}

/// Binds UDP then TCP on the same port for each address. With port 0 the kernel picks the UDP
/// port and TCP takes the same number; if that TCP port is taken, try another.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<(UdpSocket, std::net::TcpListener, SocketAddr, SocketAddr)>, Error> {
    let mut bound = Vec::new();
    for &addr in addrs {
        let mut attempt = 0;
        loop {
            let udp_socket = udp::bind(addr).map_err(|source| Error::Listen { addr, proto: "udp", source })?;
            let real = udp_socket.local_addr().map_err(|source| Error::Listen { addr, proto: "udp", source })?;
            match tcp::bind(real) {
                Ok(l) => {
                    let tcp_real =
                        l.local_addr().map_err(|source| Error::Listen { addr: real, proto: "tcp", source })?;
                    bound.push((udp_socket, l, real, tcp_real));
                    break;
                }
                Err(e) if addr.port() == 0 && attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "tcp port taken; trying another");
                }
                Err(source) => return Err(Error::Listen { addr: real, proto: "tcp", source }),
            }
        }
    }
    Ok(bound)
}

/// Serves `snap` as configured by `cfg` until SIGTERM or SIGINT: binds every socket, starts
/// the UDP workers, the TCP server, the control plane (prober, overrides, reloads from
/// `source` on SIGHUP), the admin API and the force-expiry ticker, prints the ready line,
/// and on the signal stops them all through one [`Shutdown`], in order: stop accepting, let
/// open TCP connections finish (at most [`SHUTDOWN_GRACE`]), save health verdicts, join the
/// UDP workers.
pub fn run(cfg: Config, snap: Snapshot, source: Source) -> Result<(), Error> {
    let _state_lock = lock_state_dir(&cfg.admin.state_dir)?;
    let bound = bind_all(&cfg.dns.listen)?;
    let state: SharedState = snapshot::shared(snap);
    let workers = match cfg.dns.udp_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gslbd-rt")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let (trigger, shutdown) = Shutdown::new();
    let limits = tcp::Limits { idle_timeout: cfg.dns.tcp_idle_timeout, max_connections: cfg.dns.tcp_max_connections };
    let permits = Arc::new(Semaphore::new(limits.max_connections));

    warn_unspread_interfaces(&cfg, workers);
    let mut threads = Vec::new();
    let mut ready = Vec::new();
    let mut tcp_tasks = Vec::new();
    for (udp_socket, listener, addr, tcp_addr) in bound {
        ready.push(frontend::describe(addr, "udp"));
        ready.push(frontend::describe(tcp_addr, "tcp"));
        threads.extend(
            udp::spawn_workers(udp_socket, workers, cfg.dns.udp_steering, state.clone(), shutdown.clone())
                .map_err(|source| Error::Workers { addr, source })?,
        );
        let _guard = runtime.enter();
        tcp_tasks.push(runtime.spawn(tcp::serve(listener, state.clone(), limits, permits.clone(), shutdown.clone())));
    }

    // The control plane: saved overrides restored, probes started, the first status already
    // saying what `unknown` means. The snapshot moves into it.
    let cluster = match &cfg.cluster {
        None => None,
        Some(c) => Some(runtime.block_on(join_cluster(&cfg, c, &ready, shutdown.clone()))?),
    };
    let control = {
        let _guard = runtime.enter();
        Control::start(cfg.clone(), state.clone(), source, cluster, shutdown.clone()).map_err(Error::Overrides)?
    };

    // The admin API: bound before the ready line, like the DNS sockets.
    let mut admin_task = None;
    if let Some(addr) = cfg.admin.listen {
        let tokens = admin::load_tokens(&cfg.admin, addr)?;
        let admin_err = |source| Error::Listen { addr, proto: "tcp (admin API)", source };
        let listener = std::net::TcpListener::bind(addr).map_err(admin_err)?;
        listener.set_nonblocking(true).map_err(admin_err)?;
        let bound = listener.local_addr().map_err(admin_err)?;
        ready.push(format!("admin={bound}"));
        let router = admin::router(control.clone(), tokens, &cfg.admin);
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).map_err(admin_err)?;
        admin_task = Some(runtime.spawn(admin::serve(listener, router, cfg.admin.request_timeout, shutdown.clone())));
    }
    runtime.spawn(expire_forces(control.clone(), shutdown.clone()));
    // Webhooks: one task per [[notify]] target, fed by the change feed (never blocking it).
    if !cfg.notify.is_empty() {
        let _guard = runtime.enter();
        let counters = crate::notify::start(&cfg.notify, &crate::config::cluster::host_name(), &shutdown);
        crate::metrics::set_notify_counters(cfg.notify.iter().map(|t| t.url.clone()).zip(counters).collect());
        tracing::info!(targets = cfg.notify.len(), "webhooks on");
    }

    // Signal handlers go in before the ready line: a SIGHUP sent as soon as a supervisor sees
    // `ready` must reload, not kill the process with the default action.
    let (mut hup, mut term, mut int) = runtime.block_on(async {
        let watch = |kind, name| signal(kind).map_err(|source| Error::Signal { name, source });
        Ok::<_, Error>((
            watch(SignalKind::hangup(), "SIGHUP")?,
            watch(SignalKind::terminate(), "SIGTERM")?,
            watch(SignalKind::interrupt(), "SIGINT")?,
        ))
    })?;
    log_serving(&cfg, &ready, state.load().zones.len(), workers);
    print_ready(&ready)?;
    control.set_ready();

    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = control.reload().await; }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        trigger.fire();
        control.stop().await;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        for t in tcp_tasks {
            let _ = t.await;
        }
        // Every connection holds a permit until it has written its last answer.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all)).await.is_err() {
            tracing::warn!("tcp connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    });
    for t in threads {
        let _ = t.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Warns about interfaces that would send every datagram to one UDP worker under
/// `udp_steering = "cpu"`.
fn warn_unspread_interfaces(cfg: &Config, workers: usize) {
    if cfg.dns.udp_steering == UdpSteering::Cpu && workers > 1 {
        for iface in udp::unspread_interfaces(Path::new("/sys/class/net")) {
            tracing::warn!(
                interface = %iface,
                "dns.udp_steering = \"cpu\": {iface} has one receive queue and no RPS, so every datagram it \
                 brings goes to one UDP worker; use \"hash\", or turn on RPS \
                 (/sys/class/net/{iface}/queues/rx-0/rps_cpus)"
            );
        }
    }
}

/// Cluster mode: connects to etcd and takes this instance's member key, then keeps its
/// lease alive in the background. A live member with the same name is an error; etcd
/// unreachable is not (gslbd serves from the overrides mirrored in its state directory and
/// joins when etcd answers).
async fn join_cluster(
    cfg: &Config,
    c: &crate::config::cluster::ClusterConfig,
    ready: &[String],
    shutdown: Shutdown,
) -> Result<Arc<crate::cluster::Cluster>, Error> {
    use crate::cluster::{Cluster, JoinError, Member};
    let address = match cfg.admin.listen {
        Some(a) => a.to_string(),
        None => ready.first().cloned().unwrap_or_default(),
    };
    let me = Member {
        instance: c.instance.clone(),
        site: c.site.clone(),
        address,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_hash: crate::cluster::config_hash(&format!("{:?}", cfg.gslb), &cfg.zones_dir, cfg.gslb.geoip.as_deref()),
        ready: false,
    };
    let cluster = Cluster::new(c.clone(), me).map_err(|e| Error::Cluster(e.into()))?;
    match tokio::time::timeout(Duration::from_secs(5), cluster.join(&cfg.admin.state_dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e @ JoinError::Duplicate { .. })) => return Err(Error::Cluster(e)),
        Ok(Err(JoinError::Etcd(e))) => {
            tracing::warn!(error = %e, "cluster: etcd unreachable at start; serving the overrides saved in the state directory, joining when etcd answers");
        }
        Err(_) => tracing::warn!("cluster: etcd did not answer within 5 s; serving the saved overrides, joining later"),
    }
    tokio::spawn(cluster.clone().run_membership(cfg.admin.state_dir.clone(), shutdown));
    Ok(cluster)
}

/// Lifts expired operator forces once a second, until shutdown.
async fn expire_forces(control: Arc<Control>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => control.expire_forces().await,
            _ = shutdown.recv() => return,
        }
    }
}

/// The log lines saying what is served and how (RRL included).
fn log_serving(cfg: &Config, ready: &[String], zones_count: usize, workers: usize) {
    let (dns_ready, admin_ready): (Vec<_>, Vec<_>) = ready.iter().cloned().partition(|r| !r.starts_with("admin="));
    let admin_addrs: Vec<&str> = admin_ready.iter().filter_map(|a| a.strip_prefix("admin=")).collect();
    tracing::info!(listen = %dns_ready.join(","), admin = %admin_addrs.join(","), zones = zones_count, udp_workers = workers, udp_steering = ?cfg.dns.udp_steering, "serving");
    if let Some(r) = &cfg.dns.rrl {
        tracing::info!(
            responses_per_second = r.responses_per_second,
            errors_per_second = r.errors_per_second,
            window_s = r.window.as_secs(),
            slip = r.slip,
            ipv4_prefix_length = r.ipv4_prefix_length,
            ipv6_prefix_length = r.ipv6_prefix_length,
            exempt = r.exempt.len(),
            log_only = r.log_only,
            table_size = r.table_size,
            "rrl: rate limiting UDP responses per client prefix"
        );
        if workers > 1 {
            tracing::info!(
                "rrl: each of the {workers} UDP workers per address limits on its own: a prefix whose queries \
                 reach several may get up to {workers} x the rate (docs/operations.md)"
            );
        }
    }
}

/// The machine-readable line scripts and tests wait for: every socket is bound.
fn print_ready(ready: &[String]) -> Result<(), Error> {
    let (dns_ready, admin_ready): (Vec<_>, Vec<_>) = ready.iter().cloned().partition(|r| !r.starts_with("admin="));
    let mut stdout = std::io::stdout().lock();
    let mut line = format!("ready dns={}", dns_ready.join(","));
    for a in &admin_ready {
        line.push(' ');
        line.push_str(a);
    }
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).map_err(Error::Ready)?;
    Ok(())
}
