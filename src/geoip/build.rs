//! CSV of networks -> GeoLite2-City-shaped `.mmdb`, for `gslbd geoip build`.
//!
//! Operators turn their own prefix lists (offices, data centres, a peering partner's ranges)
//! into a database any MaxMind reader understands; our fixture `geoip/test-city.mmdb` is
//! built the same way, so the writer and the reader are tested against each other.
//!
//! ```text
//! # comment
//! network,continent,country,lat,lon,subdivision,country_name
//! 81.2.69.0/24,EU,GB,51.5,-0.13,ENG
//! 2001:218::/32,AS,JP,35.69,139.69
//! 192.0.2.0/24,EU,NL,,            <- no location: a country-only record
//! ```
//!
//! The output is a pure function of the CSV: the build epoch is fixed, so a rebuilt file is
//! byte-identical and can be committed and compared.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use ipnet::IpNet;
use mmdb_writer::{ReservedNetworks, Writer};
use serde::Serialize;

/// `database_type` of what [`build`] writes: readers that key on the type (ours included)
/// treat it as a City database.
pub const DATABASE_TYPE: &str = "GeoLite2-City";

/// The metadata `build_epoch` of every database [`build`] writes (2023-11-14): a fixed
/// value keeps the output reproducible.
pub const BUILD_EPOCH: u64 = 1_700_000_000;

/// `accuracy_radius` (km) written with every location; the CSV has no column for it.
const ACCURACY_RADIUS_KM: u16 = 100;

/// The continent codes GeoIP uses, with the English name and GeoNames id MaxMind writes.
const CONTINENTS: [(&str, &str, u32); 7] = [
    ("AF", "Africa", 6_255_146),
    ("AN", "Antarctica", 6_255_152),
    ("AS", "Asia", 6_255_147),
    ("EU", "Europe", 6_255_148),
    ("NA", "North America", 6_255_149),
    ("OC", "Oceania", 6_255_151),
    ("SA", "South America", 6_255_150),
];

/// IPv6 networks the database answers from the IPv4 data (IPv4-mapped, Teredo, 6to4):
/// a record there would be unreachable.
const IPV4_ALIASES: [&str; 3] = ["::ffff:0:0/96", "2001::/32", "2002::/16"];

/// A database built from a CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The `.mmdb` file contents.
    pub bytes: Vec<u8>,
    /// How many networks the CSV listed.
    pub networks: usize,
}

/// One problem in the CSV: `file:line: error: what`, then a hint. Line 0 is the whole file.
#[derive(Debug, thiserror::Error)]
pub struct CsvError {
    /// The CSV file being read.
    pub file: PathBuf,
    /// Line number, 1-based; 0 when the error is about the whole file.
    pub line: usize,
    /// What is wrong.
    pub kind: CsvErrorKind,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: error: {}", self.file.display(), self.kind)?,
            n => write!(f, "{}:{n}: error: {}", self.file.display(), self.kind)?,
        }
        if let Some(hint) = self.kind.hint() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// What can be wrong in a `gslbd geoip build` CSV line
/// (`network,continent,country,lat,lon[,subdivision[,country_name]]`); each variant carries
/// the text it is about, and some have a hint.
#[derive(Debug, thiserror::Error)]
pub enum CsvErrorKind {
    /// A line with fewer than the five required columns; `found` is how many it has.
    #[error("expected network,continent,country,lat,lon[,subdivision[,country_name]]; found {found} column(s)")]
    #[allow(missing_docs, reason = "field named in the variant's doc")]
    MissingColumns { found: usize },
    /// `text` is not a network in CIDR form; `reason` is what the parser said.
    #[error("bad network {text:?}: {reason}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    BadNetwork { text: String, reason: String },
    /// `text` has bits set below its prefix length; `network` is the network it truncates to.
    #[error("network {text} has host bits set")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    HostBits { text: String, network: IpNet },
    /// An IPv6 `network` inside `alias` (an IPv4-mapped or IPv4-embedding range) that the
    /// written database resolves through its IPv4 tree, so the line could never match.
    #[error("network {network} is inside {alias}, which the database answers from the IPv4 data")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    AliasedNetwork { network: IpNet, alias: &'static str },
    /// A continent code other than the seven two-letter codes (AF, AN, AS, EU, NA, OC, SA).
    #[error("unknown continent code {0:?}")]
    UnknownContinent(String),
    /// A country code that is not two ASCII letters (ISO 3166-1 alpha-2).
    #[error("country {0:?} is not two letters")]
    BadCountry(String),
    /// A subdivision that is not 1 to 3 ASCII letters or digits (the ISO 3166-2 code, or the
    /// part after its dash).
    #[error("subdivision {0:?} is not 1 to 3 letters or digits")]
    BadSubdivision(String),
    /// The `which` coordinate (`latitude` or `longitude`) `text` is not a number.
    #[error("{which} {text:?} is not a number")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    BadCoordinate { which: &'static str, text: String },
    /// The `which` coordinate `value` is outside `-limit..=limit` (degrees: 90 for latitude,
    /// 180 for longitude).
    #[error("{which} {value} is out of range -{limit}..={limit}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    CoordinateOutOfRange { which: &'static str, value: f64, limit: f64 },
    /// Only one of latitude and longitude is given.
    #[error("latitude and longitude: give both or neither")]
    HalfLocation,
    /// `network` appears again; `first_line` is where it was first listed.
    #[error("network {network} is listed twice (first on line {first_line})")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Duplicate { network: IpNet, first_line: usize },
    /// The CSV holds no network lines.
    #[error("no networks")]
    Empty,
    /// The MaxMind DB writer refused the data or could not write the file.
    #[error("cannot build the database: {0}")]
    Writer(mmdb_writer::Error),
}

impl CsvErrorKind {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CsvErrorKind::MissingColumns { .. } => {
                "e.g. 192.0.2.0/24,EU,NL,52.37,4.89 (lat and lon may be empty)".to_string()
            }
            CsvErrorKind::BadNetwork { .. } => "write a CIDR such as 192.0.2.0/24 or 2001:db8::/32".to_string(),
            CsvErrorKind::HostBits { network, .. } => format!("did you mean {network}?"),
            CsvErrorKind::AliasedNetwork { .. } => "write the IPv4 network instead".to_string(),
            CsvErrorKind::UnknownContinent(_) => "use one of AF AN AS EU NA OC SA".to_string(),
            CsvErrorKind::BadCountry(_) => "use an ISO 3166-1 alpha-2 code such as US or GB".to_string(),
            CsvErrorKind::BadSubdivision(_) => {
                "use the ISO 3166-2 code or the part after its dash: CA or US-CA".to_string()
            }
            CsvErrorKind::Duplicate { .. } => "keep one of the two lines".to_string(),
            CsvErrorKind::Empty => "add lines like 192.0.2.0/24,EU,NL,52.37,4.89 after the header".to_string(),
            _ => return None,
        })
    }
}

#[derive(Serialize)]
struct Names<'a> {
    en: &'a str,
}

#[derive(Serialize)]
struct ContinentRecord<'a> {
    code: &'a str,
    geoname_id: u32,
    names: Names<'a>,
}

#[derive(Serialize)]
struct CountryRecord<'a> {
    iso_code: &'a str,
    names: Names<'a>,
}

#[derive(Serialize)]
struct LocationRecord {
    accuracy_radius: u16,
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
struct SubdivisionRecord<'a> {
    iso_code: &'a str,
}

/// The record shape of GeoLite2-City, with the fields a CSV line can fill.
#[derive(Serialize)]
struct CityRecord<'a> {
    continent: ContinentRecord<'a>,
    country: CountryRecord<'a>,
    registered_country: CountryRecord<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<LocationRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subdivisions: Vec<SubdivisionRecord<'a>>,
}

/// One valid CSV line.
struct Row {
    line: usize,
    network: IpNet,
    continent: (&'static str, &'static str, u32),
    country: String,
    country_name: String,
    location: Option<(f64, f64)>,
    subdivision: Option<String>,
}

/// Builds the database from CSV text; `file` names it in errors. Reports every bad line,
/// not only the first.
///
/// Networks may nest: the more specific one wins, whatever the order of the lines (a
/// writer that let the later line win would make a /8 after a /24 silently erase it).
pub fn build(csv: &str, file: &Path) -> Result<Built, Vec<CsvError>> {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut seen: HashMap<(u128, u8), usize> = HashMap::new();
    for (index, raw) in csv.lines().enumerate() {
        let line = index + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let mut fail = |kind| errors.push(CsvError { file: file.to_path_buf(), line, kind });
        if text.split(',').next().is_some_and(|f| f.trim().eq_ignore_ascii_case("network")) {
            continue;
        }
        match parse_row(text, line) {
            Ok(row) => {
                let key = tree_key(row.network);
                if let Some(&first_line) = seen.get(&key) {
                    fail(CsvErrorKind::Duplicate { network: row.network, first_line });
                } else {
                    seen.insert(key, line);
                    rows.push(row);
                }
            }
            Err(kinds) => kinds.into_iter().for_each(fail),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if rows.is_empty() {
        return Err(vec![CsvError { file: file.to_path_buf(), line: 0, kind: CsvErrorKind::Empty }]);
    }
    // Less specific first, so a more specific network is painted over it (stable: equal
    // lengths keep file order, though equal lengths cannot overlap after the duplicate check).
    rows.sort_by_key(|r| tree_key(r.network).1);
    let mut writer = Writer::builder(DATABASE_TYPE)
        .description(&[("en", "gslbd geoip build: networks from a CSV")])
        // Operators map private and documentation ranges (10/8, 2001:db8::/32) too.
        .reserved_networks(ReservedNetworks::Included)
        .build_epoch(UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build();
    for row in &rows {
        let country = CountryRecord { iso_code: &row.country, names: Names { en: &row.country_name } };
        let record = CityRecord {
            continent: ContinentRecord {
                code: row.continent.0,
                geoname_id: row.continent.2,
                names: Names { en: row.continent.1 },
            },
            registered_country: CountryRecord { iso_code: &row.country, names: Names { en: &row.country_name } },
            country,
            location: row.location.map(|(latitude, longitude)| LocationRecord {
                accuracy_radius: ACCURACY_RADIUS_KM,
                latitude,
                longitude,
            }),
            subdivisions: row.subdivision.iter().map(|s| SubdivisionRecord { iso_code: s }).collect(),
        };
        if let Err(e) = writer.insert(row.network, &record) {
            errors.push(CsvError { file: file.to_path_buf(), line: row.line, kind: CsvErrorKind::Writer(e) });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    let bytes = writer
        .to_bytes()
        .map_err(|e| vec![CsvError { file: file.to_path_buf(), line: 0, kind: CsvErrorKind::Writer(e) }])?;
    Ok(Built { bytes, networks: rows.len() })
}

/// Writes `bytes` to `out` through a temporary file in the same directory and a rename, so
/// a server reloading `out` never reads half a database.
pub fn write(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name =
        out.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, out));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a network sits in the IPv6 tree: IPv4 a.b.c.d/n is ::a.b.c.d/(96+n). Two lines with
/// the same key are the same network.
fn tree_key(network: IpNet) -> (u128, u8) {
    match network {
        IpNet::V4(v4) => (u128::from(u32::from(v4.network())), 96 + v4.prefix_len()),
        IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len()),
    }
}

/// Parses one data line; every problem on it, not only the first.
fn parse_row(text: &str, line: usize) -> Result<Row, Vec<CsvErrorKind>> {
    // The country name is the rest of the line, so "Korea, Republic of" needs no quoting.
    let fields: Vec<&str> = text.splitn(7, ',').map(str::trim).collect();
    if fields.len() < 5 {
        return Err(vec![CsvErrorKind::MissingColumns { found: fields.len() }]);
    }
    let mut errors = Vec::new();
    let network = parse_network(fields[0]).map_err(|e| errors.push(e)).ok();
    let continent_code = fields[1].to_ascii_uppercase();
    let continent = CONTINENTS.iter().find(|(code, _, _)| *code == continent_code).copied();
    if continent.is_none() {
        errors.push(CsvErrorKind::UnknownContinent(fields[1].to_string()));
    }
    let country = fields[2].to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(CsvErrorKind::BadCountry(fields[2].to_string()));
    }
    let location = parse_location(fields[3], fields[4]).map_err(|e| errors.extend(e));
    let subdivision = fields
        .get(5)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let upper = s.to_ascii_uppercase();
            // US-CA -> CA when the prefix is the line's country.
            let code = match upper.split_once('-') {
                Some((cc, code)) if cc == country => code.to_string(),
                _ => upper,
            };
            if (1..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Ok(code)
            } else {
                Err(CsvErrorKind::BadSubdivision(s.to_string()))
            }
        })
        .transpose()
        .map_err(|e| errors.push(e));
    let country_name =
        fields.get(6).filter(|s| !s.is_empty()).map_or_else(|| country_name(&country).to_string(), |s| s.to_string());
    match (network, continent, location, subdivision) {
        (Some(network), Some(continent), Ok(location), Ok(subdivision)) if errors.is_empty() => {
            Ok(Row { line, network, continent, country, country_name, location, subdivision })
        }
        _ => Err(errors),
    }
}

fn parse_network(text: &str) -> Result<IpNet, CsvErrorKind> {
    let network: IpNet = match text.parse() {
        Ok(n) => n,
        // A bare address is a host network: /32 or /128.
        Err(e) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(CsvErrorKind::BadNetwork { text: text.to_string(), reason: e.to_string() });
            }
        },
    };
    if network.trunc() != network {
        return Err(CsvErrorKind::HostBits { text: text.to_string(), network: network.trunc() });
    }
    if let IpNet::V6(_) = network {
        for alias in IPV4_ALIASES {
            let outer: IpNet = match alias.parse() {
                Ok(n) => n,
                Err(_) => continue,
            };
            if outer.contains(&network) {
                return Err(CsvErrorKind::AliasedNetwork { network, alias });
            }
        }
    }
    Ok(network)
}

fn parse_location(lat: &str, lon: &str) -> Result<Option<(f64, f64)>, Vec<CsvErrorKind>> {
    if lat.is_empty() && lon.is_empty() {
        return Ok(None);
    }
    if lat.is_empty() || lon.is_empty() {
        return Err(vec![CsvErrorKind::HalfLocation]);
    }
    let mut errors = Vec::new();
    let mut coordinate = |which: &'static str, text: &str, limit: f64| match text.parse::<f64>() {
        // `contains` is false for NaN and infinities too.
        Ok(value) if (-limit..=limit).contains(&value) => Some(value),
        Ok(value) => {
            errors.push(CsvErrorKind::CoordinateOutOfRange { which, value, limit });
            None
        }
        Err(_) => {
            errors.push(CsvErrorKind::BadCoordinate { which, text: text.to_string() });
            None
        }
    };
    let lat = coordinate("latitude", lat, 90.0);
    let lon = coordinate("longitude", lon, 180.0);
    match (lat, lon) {
        (Some(lat), Some(lon)) => Ok(Some((lat, lon))),
        _ => Err(errors),
    }
}

/// English names for the countries people are likely to list; others get their code as
/// their name unless the CSV gives one.
fn country_name(iso: &str) -> &str {
    match iso {
        "AE" => "United Arab Emirates",
        "AR" => "Argentina",
        "AT" => "Austria",
        "AU" => "Australia",
        "BE" => "Belgium",
        "BR" => "Brazil",
        "BT" => "Bhutan",
        "CA" => "Canada",
        "CH" => "Switzerland",
        "CL" => "Chile",
        "CN" => "China",
        "CZ" => "Czechia",
        "DE" => "Germany",
        "DK" => "Denmark",
        "ES" => "Spain",
        "FI" => "Finland",
        "FR" => "France",
        "GB" => "United Kingdom",
        "HK" => "Hong Kong",
        "ID" => "Indonesia",
        "IE" => "Ireland",
        "IL" => "Israel",
        "IN" => "India",
        "IT" => "Italy",
        "JP" => "Japan",
        "KR" => "South Korea",
        "MX" => "Mexico",
        "MY" => "Malaysia",
        "NL" => "Netherlands",
        "NO" => "Norway",
        "NZ" => "New Zealand",
        "PH" => "Philippines",
        "PL" => "Poland",
        "PT" => "Portugal",
        "SA" => "Saudi Arabia",
        "SE" => "Sweden",
        "SG" => "Singapore",
        "TH" => "Thailand",
        "TW" => "Taiwan",
        "US" => "United States",
        "VN" => "Vietnam",
        "ZA" => "South Africa",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn errors(csv: &str) -> Vec<String> {
        build(csv, Path::new("nets.csv")).unwrap_err().iter().map(ToString::to_string).collect()
    }

    const HEADER: &str = "network,continent,country,lat,lon,subdivision\n";

    #[test]
    fn each_bad_line_is_reported_with_its_line_number() {
        let csv = format!(
            "{HEADER}# a comment\n\
             10.0.0.0/33,EU,DE,50,8\n\
             10.1.0.0/16,XX,DE,50,8\n\
             10.2.0.0/16,EU,DEU,50,8\n\
             10.3.0.0/16,EU,DE,91,8\n\
             10.4.0.0/16,EU,DE,50,181\n\
             10.5.0.0/16,EU,DE,north,8\n\
             10.6.0.0/16,EU,DE,50,\n\
             10.7.0.0/16,EU,DE\n\
             10.8.0.0/16,EU,DE,50,8,TOOLONG\n\
             10.9.0.1/16,EU,DE,50,8\n\
             ::ffff:10.0.0.0/104,EU,DE,50,8\n\
             10.10.0.0/16,EU,DE,NaN,8\n"
        );
        let e = errors(&csv);
        let want = [
            "nets.csv:3: error: bad network \"10.0.0.0/33\": invalid IP address syntax",
            "nets.csv:4: error: unknown continent code \"XX\"\n  hint: use one of AF AN AS EU NA OC SA",
            "nets.csv:5: error: country \"DEU\" is not two letters\n  hint: use an ISO 3166-1 alpha-2 code such as US or GB",
            "nets.csv:6: error: latitude 91 is out of range -90..=90",
            "nets.csv:7: error: longitude 181 is out of range -180..=180",
            "nets.csv:8: error: latitude \"north\" is not a number",
            "nets.csv:9: error: latitude and longitude: give both or neither",
            "nets.csv:10: error: expected network,continent,country,lat,lon[,subdivision[,country_name]]; found 3 column(s)",
            "nets.csv:11: error: subdivision \"TOOLONG\" is not 1 to 3 letters or digits",
            "nets.csv:12: error: network 10.9.0.1/16 has host bits set\n  hint: did you mean 10.9.0.0/16?",
            "nets.csv:13: error: network ::ffff:10.0.0.0/104 is inside ::ffff:0:0/96, which the database answers from the IPv4 data\n  hint: write the IPv4 network instead",
            "nets.csv:14: error: latitude NaN is out of range -90..=90",
        ];
        for (got, want) in e.iter().zip(want) {
            assert!(got.starts_with(want), "got:\n{got}\nwant:\n{want}");
        }
        assert_eq!(e.len(), want.len(), "{e:#?}");
    }

    #[test]
    fn every_problem_on_one_line_is_reported() {
        let e = errors(&format!("{HEADER}10.0.0.0/8,XX,D,100,8\n"));
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(e.iter().all(|m| m.starts_with("nets.csv:2: error: ")));
    }

    #[test]
    fn duplicate_network_names_the_first_line() {
        // 1.2.3.0/24 and ::1.2.3.0/120 are the same place in the tree.
        let e = errors(&format!("{HEADER}1.2.3.0/24,EU,DE,50,8\n10.0.0.0/8,EU,DE,50,8\n::102:300/120,AS,JP,35,139\n"));
        assert_eq!(
            e,
            [
                "nets.csv:4: error: network ::102:300/120 is listed twice (first on line 2)\n  hint: keep one of the two lines"
            ]
        );
    }

    #[test]
    fn empty_csv_is_an_error() {
        assert_eq!(
            errors(&format!("{HEADER}# nothing yet\n")),
            ["nets.csv: error: no networks\n  hint: add lines like 192.0.2.0/24,EU,NL,52.37,4.89 after the header"]
        );
    }

    #[test]
    fn lowercase_codes_and_iso_subdivisions_are_accepted() {
        let built = build(
            "10.0.0.0/8,na,us,37.4,-122.1,US-CA,United States of America\n2001:db8::1,eu,de,,\n",
            Path::new("nets.csv"),
        )
        .unwrap();
        assert_eq!(built.networks, 2);
        assert!(built.bytes.windows(2).any(|w| w == b"CA"));
    }

    #[test]
    fn output_is_reproducible() {
        let csv = format!("{HEADER}10.0.0.0/8,EU,DE,50,8,HE\n2001:db8::/32,AS,JP,,\n");
        let a = build(&csv, Path::new("a.csv")).unwrap();
        let b = build(&csv, Path::new("b.csv")).unwrap();
        assert_eq!(a, b);
    }
}
