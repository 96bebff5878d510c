//! The gslbd binary: the command line, the first load, then [`gslbd::server::run`]. Errors
//! become messages for a human here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use gslbd::geoip;
use gslbd::server;
use gslbd::snapshot;

const EXIT_INVALID: u8 = 2;
/// How long shutdown waits for TCP connections to finish the answer they are writing.

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
    /// Log format on stderr: `text` (default) or `json` (one object per line per event,
    /// with the same fields; also GSLBD_LOG_FORMAT=json).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"], global = true)]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration and every zone file; print each error, or `ok`.
    Check(Source),
    /// GeoIP databases (.mmdb): build one from a CSV of networks.
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// DNSSEC keys: make one, print the DS records for the parent.
    #[command(subcommand)]
    Dnssec(DnssecCommand),
    /// Control a running gslbd through its admin API (status, explain, drain, weight,
    /// force, reload). Finds the admin address and token in the config file.
    Ctl(CtlArgs),
}

/// `gslbd ctl`: where the admin API is, and what to ask it.
#[derive(Args, Debug)]
struct CtlArgs {
    /// Configuration file to read [admin] listen and token_file from.
    #[arg(long, short, value_name = "FILE", default_value = gslbd::ctl::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Admin API base URL (e.g. http://127.0.0.1:8053), instead of the config file's.
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// File with the bearer token (`id:secret` or `secret`; the first one is used).
    /// Default: $GSLBD_ADMIN_TOKEN, else the config's [admin] token_file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's own JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Regions (health, up, weight, RTT, recent probes, override) and services (policy,
    /// mode, TTL, answer set).
    Status,
    /// The answer a client would get now, and why.
    Explain {
        /// The name asked for.
        name: String,
        /// Record type (default A).
        #[arg(default_value = "A")]
        qtype: String,
        /// The client's network, as an EDNS Client Subnet (e.g. 81.2.69.0/24).
        #[arg(long, value_name = "NET")]
        ecs: Option<String>,
    },
    /// Drain a region: weight 0, no new answers while other regions can take them.
    Drain {
        region: String,
        /// Only show the utilisation each remaining region would reach; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Drain even if a remaining region would go over [admin] drain_max_utilisation
        /// (or, in cluster mode, a service below its min_healthy).
        #[arg(long)]
        force: bool,
    },
    /// End a drain.
    Undrain {
        region: String,
        /// Cluster mode: even if it leaves a service below its min_healthy.
        #[arg(long)]
        force: bool,
    },
    /// Replace a region's configured weight (0 to 1000000).
    Weight {
        region: String,
        weight: u32,
        /// Cluster mode: even if it leaves a service below its min_healthy.
        #[arg(long)]
        force: bool,
    },
    /// Force a region up or down over its health checks, or back to `auto`.
    Force {
        region: String,
        /// up, down or auto.
        #[arg(value_parser = ["up", "down", "auto"])]
        state: String,
        /// End the force by itself after this long (e.g. 15m, 1h).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_for)]
        for_seconds: Option<u64>,
        /// Cluster mode: even if it leaves a service below its min_healthy.
        #[arg(long)]
        force: bool,
    },
    /// Reload configuration and zones (like SIGHUP); prints every error if refused.
    Reload,
}

/// `--for`: whole seconds, as the API takes them. Under one second is refused, not rounded
/// up (a force that ends as it starts is not what anyone meant; `auto` ends one now).
fn parse_for(s: &str) -> Result<u64, String> {
    let d = gslbd::config::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 90s, 15m, 1h)"))?;
    match d.as_secs() {
        0 => Err(format!("{s:?} is under one second; give at least 1s (or state auto to end a force now)")),
        secs => Ok(secs),
    }
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

#[derive(Subcommand, Debug)]
enum DnssecCommand {
    /// Write a new signing key for ZONE into DIR (created, mode 0700, if missing; the
    /// private file is readable by its owner only) and print its DNSKEY. A zone with a key
    /// in `[dnssec] key_directory` is signed from the next start or reload.
    Keygen {
        #[arg(long, value_name = "DIR")]
        key_directory: PathBuf,
        /// 13 (ECDSA P-256 with SHA-256, the default) or 15 (Ed25519).
        #[arg(long, default_value_t = 13, value_parser = parse_algorithm)]
        algorithm: u8,
        zone: String,
    },
    /// Print the DS record (SHA-256, digest type 2) of each key of ZONE in DIR, one line
    /// each, in zone-file form: what the parent zone publishes.
    Ds {
        #[arg(long, value_name = "DIR")]
        key_directory: PathBuf,
        zone: String,
    },
}

fn parse_algorithm(s: &str) -> Result<u8, String> {
    match s {
        "13" => Ok(13),
        "15" => Ok(15),
        _ => Err(format!("{s:?}: use 13 (ECDSAP256SHA256) or 15 (ED25519)")),
    }
}

/// `gslbd dnssec keygen|ds`: exit 2 for a bad zone name or key file, 1 when writing fails.
fn dnssec(command: &DnssecCommand) -> ExitCode {
    use gslbd::dnssec;
    let zone = match command {
        DnssecCommand::Keygen { zone, .. } | DnssecCommand::Ds { zone, .. } => zone,
    };
    let text = if zone.ends_with('.') { zone.clone() } else { format!("{zone}.") };
    let apex = match gslbd::name::Name::parse(&text, None) {
        Ok(n) => n.to_lowercase(),
        Err(e) => {
            eprintln!("gslbd dnssec: error: {zone:?} is not a zone name: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match command {
        DnssecCommand::Keygen { key_directory, algorithm, .. } => {
            match dnssec::keygen(key_directory, &apex, *algorithm) {
                Ok(key) => {
                    println!("{}", dnssec::dnskey_line(&apex, &key));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gslbd dnssec keygen: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        DnssecCommand::Ds { key_directory, .. } => match dnssec::zone_keys_in(key_directory, &apex) {
            Ok(keys) if keys.is_empty() => {
                eprintln!("gslbd dnssec ds: error: no key for {apex} in {}", key_directory.display());
                ExitCode::from(EXIT_INVALID)
            }
            Ok(keys) => {
                for key in &keys {
                    println!("{}", dnssec::ds_line(&apex, key));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_INVALID)
            }
        },
    }
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
    if let Some(Command::Ctl(args)) = &cli.command {
        return ctl(args);
    }
    if let Some(Command::Dnssec(command)) = &cli.command {
        return dnssec(command);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("GSLBD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = cli.log_format.clone().or_else(|| std::env::var("GSLBD_LOG_FORMAT").ok());
    if let Some(f) = format.as_deref().filter(|f| !matches!(*f, "text" | "json")) {
        eprintln!("gslbd: error: GSLBD_LOG_FORMAT: {f:?} is not a log format\n  hint: use \"text\" or \"json\"");
        return ExitCode::from(EXIT_INVALID);
    }
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if format.as_deref() == Some("json") {
        // One JSON object per line: timestamp, level, target, message and the event's
        // fields at the top level, as a log pipeline (Loki, Elasticsearch, journald
        // forwarders) wants them.
        logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    match cli.command {
        Some(Command::Check(source)) => match snapshot::load(&source.with_listen(&[])) {
            Ok((_, snap)) => {
                let records: usize = snap.zones.iter().map(|z| z.record_count()).sum();
                let signed = snap.keys.apexes().count();
                println!(
                    "ok: {} zones, {} records, {} services, {} regions{}",
                    snap.zones.len(),
                    records,
                    snap.gslb.services.len(),
                    snap.gslb.regions.len(),
                    if signed > 0 { format!(", {signed} signed") } else { String::new() }
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
        Some(Command::Ctl(_) | Command::Dnssec(_)) => unreachable!("handled before logging starts"),
        None => match snapshot::load(&cli.source.with_listen(&cli.listen)) {
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("gslbd: not started: {} error(s)", errors.len());
                ExitCode::from(EXIT_INVALID)
            }
            Ok((cfg, snap)) => match server::run(cfg, snap, cli.source.with_listen(&cli.listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gslbd: error: {:#}", anyhow::Error::from(e));
                    ExitCode::from(EXIT_INVALID)
                }
            },
        },
    }
}

/// `gslbd ctl ...`: exit 0 on success; 1 with the API's message (or why it could not be
/// reached) on failure. With `--json`, the API's own body goes to stdout either way.
fn ctl(args: &CtlArgs) -> ExitCode {
    use gslbd::ctl::{self, Request};
    let request = match &args.command {
        CtlCommand::Status => Request::Status,
        CtlCommand::Explain { name, qtype, ecs } => {
            Request::Explain { name: name.clone(), qtype: qtype.to_ascii_uppercase(), ecs: ecs.clone() }
        }
        CtlCommand::Drain { region, dry_run, force } => {
            Request::Drain { region: region.clone(), dry_run: *dry_run, force: *force }
        }
        CtlCommand::Undrain { region, force } => Request::Undrain { region: region.clone(), force: *force },
        CtlCommand::Weight { region, weight, force } => {
            Request::Weight { region: region.clone(), weight: *weight, force: *force }
        }
        CtlCommand::Force { region, state, for_seconds, force } => {
            Request::Force { region: region.clone(), state: state.clone(), for_seconds: *for_seconds, force: *force }
        }
        CtlCommand::Reload => Request::Reload,
    };
    let result = ctl::target(args.admin.as_deref(), Some(&args.config), args.token_file.as_deref())
        .and_then(|target| ctl::send(&target, &request));
    match result {
        Ok(v) if args.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", ctl::render(&request, &v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            if args.json
                && let Some(body) = e.api_body()
            {
                println!("{}", body.trim_end());
            }
            eprintln!("gslbd ctl: {e}");
            if let gslbd::ctl::CtlError::Api { status: 409, .. } = e {
                eprintln!("  hint: add --force to make the change anyway");
            }
            ExitCode::FAILURE
        }
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
