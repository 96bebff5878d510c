//! The gslbd binary: command line, start-up, signals. Errors become messages for a human
//! here and nowhere else.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};

use gslbd::admin;
use gslbd::config::{Config, UdpSteering};
use gslbd::control::Control;
use gslbd::frontend::{self, tcp, udp};
use gslbd::geoip;
use gslbd::snapshot::{self, SharedState, Snapshot};

/// Exit status for a configuration or zone data error (and for a listener that cannot bind).
const EXIT_INVALID: u8 = 2;
/// How long shutdown waits for TCP connections to finish the answer they are writing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(name = "gslbd", version, about = "Authoritative DNS server that steers clients to healthy regions")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    source: Source,
    /// DNS address to listen on, UDP and TCP (repeatable; replaces dns.listen of the config).
    /// Port 0 picks a free port, shown in the ready line.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration and every zone file; print each error, or `ok`.
    Check(Source),
    /// GeoIP databases (.mmdb): build one from a CSV of networks.
    #[command(subcommand)]
    Geoip(GeoipCommand),
}

#[derive(Subcommand, Debug)]
enum GeoipCommand {
    /// Build a GeoLite2-City-shaped .mmdb from a CSV of networks.
    ///
    /// Turns your own prefix lists (offices, data centres, a partner's ranges) into a
    /// database that gslbd and any MaxMind DB reader (e.g. mmdblookup) can use.
    ///
    /// CSV columns, one network a line, after an optional header line starting with
    /// `network`; lines starting with # are comments:
    ///
    ///   network,continent,country,lat,lon[,subdivision[,country_name]]
    ///
    ///   network       CIDR (192.0.2.0/24, 2001:db8::/32) or a single address
    ///   continent     AF AN AS EU NA OC SA
    ///   country       ISO 3166-1 alpha-2 code (US, GB)
    ///   lat, lon      degrees; leave both empty for a country-only record
    ///   subdivision   ISO 3166-2 code or the part after its dash (US-CA or CA)
    ///   country_name  English name; the rest of the line, commas allowed
    ///
    /// Example:
    ///
    ///   network,continent,country,lat,lon,subdivision
    ///   81.2.69.0/24,EU,GB,51.5,-0.13,ENG
    ///   2001:db8::/32,EU,DE,50.1,8.7,HE
    ///   192.0.2.0/24,EU,NL,,
    ///
    /// Networks may nest: the more specific one wins, whatever the order of the lines.
    /// IPv4 networks are also found as ::ffff:a.b.c.d, 6to4 and Teredo addresses. The
    /// output is the same bytes for the same CSV (fixed build time), and replaces OUT
    /// atomically. Every bad line is reported as CSV:line: and the exit status is 2.
    #[command(verbatim_doc_comment)]
    Build {
        /// The CSV of networks.
        csv: PathBuf,
        /// The .mmdb file to write.
        out: PathBuf,
    },
}

/// Where configuration and zones come from.
#[derive(Args, Debug, Clone)]
struct Source {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of zone files (`ORIGIN.zone`); replaces zones.directory of the config.
    #[arg(long, value_name = "DIR")]
    zones: Option<PathBuf>,
    /// Admin API address (replaces admin.listen; port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    admin_listen: Option<SocketAddr>,
    /// Directory for overrides and the audit log (replaces admin.state_dir).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl Source {
    fn with_listen(&self, listen: &[SocketAddr]) -> snapshot::Source {
        snapshot::Source {
            config: self.config.clone(),
            zones: self.zones.clone(),
            listen: listen.to_vec(),
            admin_listen: self.admin_listen,
            state_dir: self.state_dir.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GSLBD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Some(Command::Check(source)) => match snapshot::load(&source.with_listen(&[])) {
            Ok((_, snap)) => {
                let records: usize = snap.zones.iter().map(|z| z.record_count()).sum();
                println!(
                    "ok: {} zones, {} records, {} services, {} regions",
                    snap.zones.len(),
                    records,
                    snap.gslb.services.len(),
                    snap.gslb.regions.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{} error(s)", errors.len());
                ExitCode::from(EXIT_INVALID)
            }
        },
        Some(Command::Geoip(GeoipCommand::Build { csv, out })) => geoip_build(&csv, &out),
        None => match snapshot::load(&cli.source.with_listen(&cli.listen)) {
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("gslbd: not started: {} error(s)", errors.len());
                ExitCode::from(EXIT_INVALID)
            }
            Ok((cfg, snap)) => match serve(cli, cfg, snap) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gslbd: error: {e:#}");
                    ExitCode::from(EXIT_INVALID)
                }
            },
        },
    }
}

/// `gslbd geoip build CSV OUT`: exit 2 for a CSV that cannot be read or has errors, 1 when
/// OUT cannot be written.
fn geoip_build(csv: &Path, out: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(csv) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: error: cannot read CSV: {e}", csv.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let built = match geoip::build::build(&text, csv) {
        Ok(built) => built,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} error(s); {} not written", errors.len(), out.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match geoip::build::write(out, &built.bytes) {
        Ok(()) => {
            println!("ok: wrote {} ({} networks, {} bytes)", out.display(), built.networks, built.bytes.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: error: cannot write: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Binds UDP then TCP on the same port for each address. With port 0 the kernel picks the UDP
/// port and TCP takes the same number; if that TCP port is taken, try another.
fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Vec<(UdpSocket, std::net::TcpListener)>> {
    let mut bound = Vec::new();
    for &addr in addrs {
        let mut attempt = 0;
        loop {
            let udp_socket = udp::bind(addr).with_context(|| format!("cannot listen on {addr}/udp"))?;
            let real = udp_socket.local_addr()?;
            match tcp::bind(real) {
                Ok(l) => {
                    bound.push((udp_socket, l));
                    break;
                }
                Err(e) if addr.port() == 0 && attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "tcp port taken; trying another");
                }
                Err(e) => return Err(e).with_context(|| format!("cannot listen on {real}/tcp")),
            }
        }
    }
    Ok(bound)
}

fn serve(cli: Cli, cfg: Config, snap: Snapshot) -> anyhow::Result<()> {
    let bound = bind_all(&cfg.dns.listen)?;
    let state: SharedState = snapshot::shared(snap);
    let shutdown_flag = Arc::new(AtomicBool::new(false));
    let workers = match cfg.dns.udp_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gslbd-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let limits = tcp::Limits { idle_timeout: cfg.dns.tcp_idle_timeout, max_connections: cfg.dns.tcp_max_connections };
    let permits = Arc::new(Semaphore::new(limits.max_connections));

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
    let mut threads = Vec::new();
    let mut ready = Vec::new();
    let mut tcp_tasks = Vec::new();
    for (udp_socket, listener) in bound {
        let addr = udp_socket.local_addr()?;
        ready.push(frontend::describe(addr, "udp"));
        ready.push(frontend::describe(listener.local_addr()?, "tcp"));
        threads.extend(
            udp::spawn_workers(udp_socket, workers, cfg.dns.udp_steering, state.clone(), shutdown_flag.clone())
                .with_context(|| format!("cannot start UDP workers on {addr}"))?,
        );
        let _guard = runtime.enter();
        tcp_tasks.push(runtime.spawn(tcp::serve(
            listener,
            state.clone(),
            limits,
            permits.clone(),
            shutdown_rx.clone(),
        )));
    }

    // The control plane: saved overrides restored, probes started, the first status already
    // saying what `unknown` means. The snapshot moves into it.
    let source = cli.source.with_listen(&cli.listen);
    let control = {
        let _guard = runtime.enter();
        Control::start(cfg.clone(), state.clone(), source, shutdown_rx.clone())
            .context("cannot restore operator overrides")?
    };

    // The admin API: bound before the ready line, like the DNS sockets.
    let mut admin_task = None;
    if let Some(addr) = cfg.admin.listen {
        let tokens = admin::load_tokens(&cfg.admin, addr)?;
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}/tcp (admin API)"))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        ready.push(format!("admin={bound}"));
        let router = admin::router(control.clone(), tokens, &cfg.admin);
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        admin_task =
            Some(runtime.spawn(admin::serve(listener, router, cfg.admin.request_timeout, shutdown_rx.clone())));
    }
    {
        let control = control.clone();
        let mut shutdown = shutdown_rx.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => control.expire_forces().await,
                    r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
                }
            }
        });
    }

    // Signal handlers go in before the ready line: a SIGHUP sent as soon as a supervisor sees
    // `ready` must reload, not kill the process with the default action.
    let (mut hup, mut term, mut int) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
            signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        ))
    })?;
    let zones_count = state.load().zones.len();
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
    // The machine-readable line scripts and tests wait for: every socket is bound.
    let mut stdout = std::io::stdout().lock();
    let mut line = format!("ready dns={}", dns_ready.join(","));
    for a in &admin_ready {
        line.push(' ');
        line.push_str(a);
    }
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    drop(stdout);
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
        shutdown_flag.store(true, Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
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
        anyhow::Ok(())
    })?;
    for t in threads {
        let _ = t.join();
    }
    tracing::info!("stopped");
    Ok(())
}
