#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mmdb_writer::Writer;
use serde::Serialize;

use super::*;
use crate::load_error::LoadError;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-city.mmdb")
}

/// `bytes` in a file of a temp dir of its own, removed with the dir.
fn temp_file(tag: &str, bytes: &[u8]) -> (crate::testutil::TempDir, PathBuf) {
    let dir = crate::testutil::TempDir::new(tag);
    let path = dir.path().join("db.mmdb");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Address, continent, country, subdivision, coordinates, prefix_len.
type Case = (&'static str, &'static str, &'static str, Option<&'static str>, Option<(f64, f64)>, u8);

#[test]
fn city_fixture_locates_each_test_network() {
    let geo = MmdbGeo::open(&fixture()).unwrap();
    assert_eq!(geo.database_type(), "GeoLite2-City");
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // address,           continent, country, subdivision, coordinates, prefix_len
        ("81.2.69.10",        "EU", "GB", Some("ENG"), Some((51.5, -0.13)), 24),
        ("216.160.83.56",     "NA", "US", Some("WA"),  Some((47.6, -122.3)), 24),
        ("175.16.199.1",      "AS", "CN", Some("22"),  Some((43.88, 125.32)), 24),
        ("202.196.224.200",   "AS", "PH", None,        Some((14.6, 121.0)), 24),
        ("200.160.0.8",       "SA", "BR", Some("SP"),  Some((-23.5, -46.6)), 24),
        ("41.0.200.1",        "AF", "ZA", None,        Some((-26.2, 28.0)), 16),
        ("1.128.0.1",         "OC", "AU", None,        Some((-33.9, 151.2)), 16),
        ("2001:218::1",       "AS", "JP", None,        Some((35.69, 139.69)), 32),
        ("2a02:cf47:ffff::1", "EU", "NO", None,        Some((59.9, 10.75)), 29),
        // Our own ranges.
        ("127.0.0.1",         "NA", "US", Some("DC"),  Some((38.9, -77.0)), 8),
        ("127.255.255.254",   "NA", "US", Some("DC"),  Some((38.9, -77.0)), 8),
        // The nested /48 splits the /32 in the tree: an address of the /32 matches the largest
        // piece around it that holds only DE, which is the scope an ECS answer may claim.
        ("2001:db8::1",       "EU", "DE", Some("HE"),  Some((50.1, 8.7)), 41),
        ("2001:db8:ab::53",   "NA", "US", Some("CA"),  Some((37.4, -122.1)), 48),
        ("2001:db8:ac::53",   "EU", "DE", Some("HE"),  Some((50.1, 8.7)), 46),
        ("2001:db8:8000::1",  "EU", "DE", Some("HE"),  Some((50.1, 8.7)), 33),
        ("192.0.2.1",         "EU", "NL", None,        None, 24),
        ("198.51.100.7",      "AS", "SG", None,        Some((1.29, 103.85)), 24),
        ("203.0.113.5",       "OC", "AU", Some("NSW"), Some((-33.87, 151.21)), 24),
        // IPv4-mapped is looked up as IPv4: an IPv4 prefix length.
        ("::ffff:81.2.69.10", "EU", "GB", Some("ENG"), Some((51.5, -0.13)), 24),
        ("::ffff:127.0.0.1",  "NA", "US", Some("DC"),  Some((38.9, -77.0)), 8),
        // Other IPv6 forms of IPv4 stay IPv6 queries: IPv6 prefix lengths.
        ("::81.2.69.10",      "EU", "GB", Some("ENG"), Some((51.5, -0.13)), 96 + 24),
        ("2002:5102:450a::1", "EU", "GB", Some("ENG"), Some((51.5, -0.13)), 16 + 24), // 6to4
        ("2001:0:5102:450a::1", "EU", "GB", Some("ENG"), Some((51.5, -0.13)), 32 + 24), // Teredo
    ];
    for &(addr, continent, country, subdivision, coordinates, prefix_len) in cases {
        let loc = geo.locate(ip(addr)).unwrap_or_else(|| panic!("{addr}: not found"));
        assert_eq!(loc.continent, continent, "{addr}");
        assert_eq!(loc.country, country, "{addr}");
        assert_eq!(loc.subdivision.map(|s| s.to_string()).as_deref(), subdivision, "{addr}");
        assert_eq!(loc.coordinates, coordinates, "{addr}");
        assert_eq!(loc.prefix_len, prefix_len, "{addr}");
    }
}

#[test]
fn addresses_outside_every_network_are_not_found() {
    let geo = MmdbGeo::open(&fixture()).unwrap();
    for addr in
        ["8.8.8.8", "10.0.0.1", "81.2.70.1", "::ffff:8.8.8.8", "2001:db9::1", "::1", "fe80::1", "2002:808:808::1"]
    {
        assert_eq!(geo.locate(ip(addr)), None, "{addr}");
    }
}

#[derive(Serialize)]
struct Iso<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Continent<'a> {
    code: &'a str,
}

/// The GeoLite2-Country record shape: no location, no subdivisions.
#[derive(Serialize)]
struct CountryRecord<'a> {
    continent: Continent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<Iso<'a>>,
    registered_country: Iso<'a>,
}

#[test]
fn country_database_has_no_coordinates() {
    let mut w = Writer::new("GeoLite2-Country");
    let record = CountryRecord {
        continent: Continent { code: "EU" },
        country: Some(Iso { iso_code: "FR" }),
        registered_country: Iso { iso_code: "FR" },
    };
    w.insert("192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(), &record).unwrap();
    // An anonymous proxy: no `country`, only where the block is registered.
    let proxy = CountryRecord {
        continent: Continent { code: "NA" },
        country: None,
        registered_country: Iso { iso_code: "CA" },
    };
    w.insert("198.51.100.0/25".parse::<ipnet::IpNet>().unwrap(), &proxy).unwrap();
    let (_dir, file) = temp_file("country", &w.to_bytes().unwrap());
    let geo = MmdbGeo::open(&file).unwrap();

    let fr = geo.locate(ip("192.0.2.99")).unwrap();
    assert_eq!(
        fr,
        Location {
            continent: Code::new("EU").unwrap(),
            country: Code::new("FR").unwrap(),
            subdivision: None,
            coordinates: None,
            prefix_len: 24,
        }
    );
    let proxy = geo.locate(ip("::ffff:198.51.100.1")).unwrap();
    assert_eq!((proxy.country, proxy.prefix_len), (Code::new("CA").unwrap(), 25));
}

#[test]
fn database_without_country_data_is_refused_by_name() {
    #[derive(Serialize)]
    struct Asn {
        autonomous_system_number: u32,
    }
    let mut w = Writer::new("GeoLite2-ASN");
    w.insert("192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(), &Asn { autonomous_system_number: 64_512 }).unwrap();
    let (_dir, file) = temp_file("asn", &w.to_bytes().unwrap());
    let e = MmdbGeo::open(&file).unwrap_err();
    assert!(matches!(e, GeoError::NoGeoData { .. }), "{e:?}");
    let e = LoadError::from(e);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: error: database type \"GeoLite2-ASN\" has no country or location data\n  hint: use a GeoIP2 or GeoLite2 City or Country database",
            file.display()
        )
    );
}

#[test]
fn missing_file_error_names_the_path() {
    let path = Path::new("/nonexistent/dir/GeoLite2-City.mmdb");
    let e = MmdbGeo::open(path).unwrap_err();
    assert!(matches!(e, GeoError::Missing { .. }), "{e:?}");
    let e = LoadError::from(e);
    assert!(
        e.to_string().starts_with("/nonexistent/dir/GeoLite2-City.mmdb: error: GeoIP database not found\n  hint: "),
        "{e}"
    );
}

#[test]
fn garbage_file_error_names_the_path() {
    let (_dir, file) = temp_file("garbage", b"this is not a MaxMind database\n");
    let e = MmdbGeo::open(&file).unwrap_err();
    assert!(matches!(e, GeoError::Corrupt { .. }), "{e:?}");
    let e = LoadError::from(e);
    let want = format!("{}: error: not a MaxMind DB (.mmdb) file, or corrupt: ", file.display());
    assert!(e.to_string().starts_with(&want), "{e}");
}

#[test]
fn directory_is_unreadable_and_named() {
    let dir = std::env::temp_dir();
    let e = MmdbGeo::open(&dir).unwrap_err();
    assert!(matches!(e, GeoError::Unreadable { .. }), "{e:?}");
    let e = LoadError::from(e);
    let want = format!("{}: error: cannot read GeoIP database: ", dir.display());
    assert!(e.to_string().starts_with(&want), "{e}");
}

#[test]
fn fixture_is_what_the_builder_makes_of_the_csv() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let csv = std::fs::read_to_string(root.join("geoip/networks.csv")).unwrap();
    let built = build::build(&csv, Path::new("geoip/networks.csv")).unwrap();
    assert!(
        built.bytes == std::fs::read(fixture()).unwrap(),
        "geoip/test-city.mmdb is stale; rebuild it: \
         cargo run --release -- geoip build geoip/networks.csv geoip/test-city.mmdb"
    );
}

#[test]
fn code_is_inline_uppercase_ascii() {
    assert_eq!(std::mem::size_of::<Code<2>>(), 2);
    assert_eq!(std::mem::size_of::<Option<Code<3>>>(), 4);
    let us = Code::<2>::new("us").unwrap();
    assert_eq!(us.as_str(), "US");
    assert_eq!(us, "US");
    assert_eq!(us, "us");
    assert_eq!(us.to_string(), "US");
    assert_eq!(format!("{us:?}"), "\"US\"");
    let ca: Code<3> = "ca".parse().unwrap();
    assert_eq!((ca.as_str(), ca.to_string()), ("CA", "CA".to_string()));
    assert_ne!(ca, "CAL");
    assert_eq!(Code::<3>::new("eng").unwrap(), Code::<3>::new("ENG").unwrap());
    for bad in ["", "USA", "U-", "é", " U"] {
        assert_eq!(Code::<2>::new(bad), None, "{bad:?}");
    }
    assert_eq!(
        Code::<2>::try_from("USA").unwrap_err().to_string(),
        "\"USA\" is not a code of 1 to 2 ASCII letters or digits"
    );
}

#[test]
fn cached_lookups_agree_and_never_cross_databases() {
    let a = MmdbGeo::open(&fixture()).unwrap();
    let b = MmdbGeo::open(&fixture()).unwrap();
    assert_ne!(a.id(), b.id(), "each opened database has its own id");
    for ip in ["81.2.69.10", "216.160.83.1", "8.8.8.8", "2001:218::1", "::ffff:81.2.69.10"] {
        let ip: IpAddr = ip.parse().unwrap();
        for _ in 0..3 {
            assert_eq!(locate_cached(&a, ip), a.locate(ip), "{ip}");
            assert_eq!(locate_cached(&b, ip), b.locate(ip), "{ip}");
        }
    }
    // A database that places the same address elsewhere (as a reloaded one may): lookups
    // through the cache, interleaved, each get their own database's answer.
    let mut w = Writer::new("GeoLite2-Country");
    let fr = CountryRecord {
        continent: Continent { code: "EU" },
        country: Some(Iso { iso_code: "FR" }),
        registered_country: Iso { iso_code: "FR" },
    };
    w.insert("81.2.69.0/24".parse::<ipnet::IpNet>().unwrap(), &fr).unwrap();
    let (_dir, file) = temp_file("other", &w.to_bytes().unwrap());
    let other = MmdbGeo::open(&file).unwrap();
    let london = ip("81.2.69.10");
    for _ in 0..3 {
        assert_eq!(locate_cached(&a, london).map(|l| l.country), Some(Code::new("GB").unwrap()));
        assert_eq!(locate_cached(&other, london).map(|l| l.country), Some(Code::new("FR").unwrap()));
    }
    // A lookup that does not cache (id 0) goes straight through.
    struct Fixed;
    impl GeoLookup for Fixed {
        fn locate(&self, _: IpAddr) -> Option<Location> {
            None
        }
    }
    assert_eq!(locate_cached(&Fixed, "81.2.69.10".parse().unwrap()), None);
}
