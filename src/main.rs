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
