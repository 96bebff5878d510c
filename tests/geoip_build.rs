//! `gslbd geoip build CSV OUT`, run as an operator runs it.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use common::{TempDir, bin};
use gslbd::geoip::{GeoLookup, MmdbGeo};

fn geoip_build(csv: &Path, out: &Path) -> Output {
    Command::new(bin()).args(["geoip", "build"]).arg(csv).arg(out).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_csv_exits_2_naming_file_and_line_and_writes_nothing() {
    let dir = TempDir::new("geoip-bad");
    let csv = dir.write(
        "nets.csv",
        "network,continent,country,lat,lon\n\
         10.0.0.0/8,EU,DE,50.1,8.7\n\
         10.1.0.0/16,XX,DE,50.1,8.7\n\
         # fine\n\
         10.2.0.0/16,EU,DE,95,8.7\n",
    );
    let out = dir.path().join("out.mmdb");
    let run = geoip_build(&csv, &out);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    let csv_name = csv.display();
    assert!(
        stderr.contains(&format!(
            "{csv_name}:3: error: unknown continent code \"XX\"\n  hint: use one of AF AN AS EU NA OC SA\n"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{csv_name}:5: error: latitude 95 is out of range -90..=90\n")), "{stderr}");
    assert!(stderr.contains("2 error(s);"), "{stderr}");
    assert!(!out.exists());
    // Nothing left behind either: no temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn missing_csv_exits_2_naming_it() {
    let dir = TempDir::new("geoip-missing");
    let csv = dir.path().join("nope.csv");
    let run = geoip_build(&csv, &dir.path().join("out.mmdb"));
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with(&format!("{}: error: cannot read CSV: ", csv.display())), "{stderr}");
}

#[test]
fn good_csv_builds_a_database_gslbd_can_read() {
    let dir = TempDir::new("geoip-good");
    let csv = dir.write(
        "offices.csv",
        "# our offices\n\
         network,continent,country,lat,lon,subdivision,country_name\n\
         10.0.0.0/8,EU,DE,50.1,8.7,HE\n\
         10.20.0.0/16,NA,US,40.7,-74.0,US-NY,United States of America\n\
         fd00::/8,AS,JP,,\n",
    );
    let out = dir.path().join("offices.mmdb");
    let run = geoip_build(&csv, &out);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(text(&run.stdout), format!("ok: wrote {} (3 networks, {size} bytes)\n", out.display()));

    let geo = MmdbGeo::open(&out).unwrap();
    let at = |s: &str| geo.locate(s.parse::<IpAddr>().unwrap()).unwrap();
    let de = at("10.1.2.3");
    assert_eq!((de.continent.as_str(), de.country.as_str()), ("EU", "DE"));
    let ny = at("10.20.30.40");
    assert_eq!(ny.country, "US");
    assert_eq!(ny.subdivision.unwrap(), "NY");
    assert_eq!((ny.coordinates, ny.prefix_len), (Some((40.7, -74.0)), 16));
    let jp = at("fd12::1");
    assert_eq!(jp.country, "JP");
    assert_eq!((jp.coordinates, jp.prefix_len), (None, 8));
    assert_eq!(geo.locate("11.0.0.1".parse().unwrap()), None);
}

#[test]
fn committed_fixture_is_rebuilt_byte_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("geoip-fixture");
    let out = dir.path().join("test-city.mmdb");
    let run = geoip_build(&root.join("geoip/networks.csv"), &out);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(root.join("geoip/test-city.mmdb")).unwrap(),
        "geoip/test-city.mmdb differs from a rebuild; run: \
         cargo run --release -- geoip build geoip/networks.csv geoip/test-city.mmdb"
    );
}
