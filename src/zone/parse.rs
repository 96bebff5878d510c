//! Zone file parser: RFC 1035 section 5 master files into [`Record`]s.
//!
//! The parser is built for two things: large zones load fast, and an operator who made
//! mistakes sees all of them at once with `file:line:col`.
//!
//! * The file is read into memory once; the lexer hands out `&str` slices of that buffer and
//!   only unescapes when a token holds a backslash, so a plain record costs no per-token
//!   allocation (only the owner name and the rdata box that the [`Record`] keeps).
//! * After an error the parser skips to the next entry (the next line, or past the closing
//!   parenthesis) and keeps going; it stops after [`MAX_ERRORS`] errors with a final
//!   [`ZoneErrorKind::TooMany`].
//! * Rdata is encoded to uncompressed wire format. The common types are encoded here, with
//!   messages that say what was expected; other types known to hickory-proto go through its
//!   text parser; anything can be written in the RFC 3597 `\# length hex` form.
//!
//! Columns are 1-based byte offsets in the line (a tab counts as one column).
//!
//! TTL rules, in order: the TTL field of the record; else `$TTL`; else the TTL of the
//! previous record (RFC 1035 section 5.1); else, for an SOA record only, its MINIMUM field
//! (what BIND does for a zone whose first record is an SOA without TTL); else
//! [`ZoneErrorKind::MissingTtl`].
//!
//! `$INCLUDE` scoping: the included file starts with the parent's origin (or the origin given
//! on the `$INCLUDE` line), the parent's `$TTL` and previous-record TTL, and *no* current
//! owner. Nothing set inside the included file (`$ORIGIN`, `$TTL`, the owner, the last TTL)
//! leaks back: after the include the parent carries on exactly as before it (RFC 1035
//! section 5.1 asks this for the origin and owner; we do the same for `$TTL`, as BIND does,
//! so that an included file can never silently change the TTL of the records after it).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Record, SourcePos, ZoneError, ZoneErrorKind};
use crate::name::{Name, NameError};
use crate::rtype;

/// Errors reported before giving up (the last entry is then `TooMany`).
pub const MAX_ERRORS: usize = 100;
/// Deepest `$INCLUDE` nesting accepted: deeper is surely a mistake, and it bounds recursion.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Largest TTL (RFC 2181 section 8).
const MAX_TTL: u64 = 2_147_483_647;

/// Parses the zone file at `path` for the zone `origin`. `$INCLUDE` paths are relative to
/// `root` and must stay inside it. Returns every record, or every error found.
///
/// A file that cannot be read (or is not UTF-8) gives a single `Unreadable` error whose
/// position is line 0, column 0: there is no place in the file to point at.
pub fn parse_file(path: &Path, origin: &Name, root: &Path) -> Result<Vec<Record>, Vec<ZoneError>> {
    let file = Arc::new(path.to_path_buf());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Err(vec![ZoneError {
                pos: SourcePos { file, line: 0, col: 0 },
                kind: ZoneErrorKind::Unreadable(e),
            }]);
        }
    };
    run(&text, file, path, origin, root)
}

/// Parses zone text held in memory (`file` only names it in errors).
pub fn parse_str(text: &str, file: &Path, origin: &Name, root: &Path) -> Result<Vec<Record>, Vec<ZoneError>> {
    run(text, Arc::new(file.to_path_buf()), file, origin, root)
}

fn run(text: &str, file: Arc<PathBuf>, path: &Path, origin: &Name, root: &Path) -> Result<Vec<Record>, Vec<ZoneError>> {
    let mut p = Parser {
        zone: origin.clone(),
        root: root.to_path_buf(),
        canonical_root: None,
        records: Vec::new(),
        errors: Vec::new(),
        stopped: false,
        // The top file joins the loop check when it exists on disk (parse_str may name a
        // file that does not).
        open_files: std::fs::canonicalize(path).into_iter().collect(),
        rdata: Vec::with_capacity(512),
    };
    let mut state =
        FileState { file, origin: origin.clone(), default_ttl: None, last_ttl: None, owner: CurrentOwner::None };
    p.parse_text(text, &mut state, 0);
    if p.errors.is_empty() { Ok(p.records) } else { Err(p.errors) }
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// One field of an entry, borrowed from the file buffer.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    /// The text as written, without the surrounding quotes; escapes are still in it.
    text: &'a str,
    line: u32,
    col: u32,
    quoted: bool,
    /// The text holds a backslash, so it needs unescaping before use as bytes.
    escaped: bool,
}

/// One logical entry (a line, or several joined by parentheses); tokens are in the caller's
/// buffer.
struct Entry {
    /// The entry's first line starts with a blank: it inherits the previous owner.
    blank_start: bool,
    /// First lexical error in the entry, if any: (line, col, message).
    syntax: Option<(u32, u32, &'static str)>,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    line_start: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, line: 1, line_start: 0 }
    }

    fn col(&self, at: usize) -> u32 {
        (at - self.line_start + 1) as u32
    }

    /// Reads the next non-empty entry into `toks` (cleared first); `None` at end of input.
    fn next_entry(&mut self, toks: &mut Vec<Token<'a>>) -> Option<Entry> {
        toks.clear();
        let bytes = self.src.as_bytes();
        let mut entry = Entry { blank_start: false, syntax: None };
        // Position of an open parenthesis, for the "unbalanced" message.
        let mut open_paren: Option<(u32, u32)> = None;
        let mut at_line_start = true;
        loop {
            if self.pos >= bytes.len() {
                if let Some((line, col)) = open_paren
                    && entry.syntax.is_none()
                {
                    entry.syntax = Some((line, col, "'(' is never closed"));
                }
                return (!toks.is_empty() || entry.syntax.is_some()).then_some(entry);
            }
            let c = bytes[self.pos];
            if at_line_start && toks.is_empty() && open_paren.is_none() {
                entry.blank_start = c == b' ' || c == b'\t';
            }
            at_line_start = false;
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                    at_line_start = true;
                    if open_paren.is_none() && (!toks.is_empty() || entry.syntax.is_some()) {
                        return Some(entry);
                    }
                }
                b';' => {
                    while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    if open_paren.is_some() {
                        self.error(&mut entry, self.pos, "nested '('");
                    } else {
                        open_paren = Some((self.line, self.col(self.pos)));
                    }
                    self.pos += 1;
                }
                b')' => {
                    if open_paren.is_none() {
                        self.error(&mut entry, self.pos, "')' without a matching '('");
                    }
                    open_paren = None;
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos;
                    let mut j = start + 1;
                    let mut escaped = false;
                    let mut closed = false;
                    while j < bytes.len() {
                        match bytes[j] {
                            b'\\' => {
                                escaped = true;
                                j += if bytes.get(j + 1).is_some_and(|&n| n != b'\n') { 2 } else { 1 };
                            }
                            b'"' => {
                                closed = true;
                                break;
                            }
                            b'\n' => break,
                            _ => j += 1,
                        }
                    }
                    if closed {
                        toks.push(Token {
                            text: &self.src[start + 1..j],
                            line: self.line,
                            col: self.col(start),
                            quoted: true,
                            escaped,
                        });
                        self.pos = j + 1;
                    } else {
                        // The string ends at the end of the line; the entry is dropped.
                        self.error(&mut entry, start, "unterminated quoted string");
                        self.pos = j;
                    }
                }
                _ => {
                    let start = self.pos;
                    let mut j = start;
                    let mut escaped = false;
                    while j < bytes.len() {
                        match bytes[j] {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' => {
                                escaped = true;
                                j += if bytes.get(j + 1).is_some_and(|&n| n != b'\n') { 2 } else { 1 };
                            }
                            _ => j += 1,
                        }
                    }
                    // Delimiters are ASCII and an escape skips one byte that can only be the
                    // first byte of a character, so `j` is always on a char boundary; `get`
                    // keeps that from ever being a panic.
                    let text = self.src.get(start..j).unwrap_or_default();
                    toks.push(Token { text, line: self.line, col: self.col(start), quoted: false, escaped });
                    self.pos = j;
                }
            }
        }
    }

    fn error(&self, entry: &mut Entry, at: usize, msg: &'static str) {
        if entry.syntax.is_none() {
            entry.syntax = Some((self.line, self.col(at), msg));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

/// The current owner, for lines that start with a blank.
#[derive(Clone)]
enum CurrentOwner {
    /// No owner yet (start of a file).
    None,
    /// The last owner was rejected (already reported): skip the lines that inherit it
    /// instead of reporting the same problem again.
    Bad,
    Good(Name),
}

/// Per-file state; an `$INCLUDE` gets its own copy, so nothing leaks back to the parent.
struct FileState {
    file: Arc<PathBuf>,
    origin: Name,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    owner: CurrentOwner,
}

impl FileState {
    fn pos(&self, tok: &Token<'_>) -> SourcePos {
        SourcePos { file: self.file.clone(), line: tok.line, col: tok.col }
    }
}

struct Parser {
    /// The zone apex: every owner must be at or below it.
    zone: Name,
    root: PathBuf,
    /// `root` canonicalized, computed at the first `$INCLUDE`.
    canonical_root: Option<PathBuf>,
    records: Vec<Record>,
    errors: Vec<ZoneError>,
    stopped: bool,
    /// Canonical paths of the files being read, outermost first: the `$INCLUDE` loop check.
    open_files: Vec<PathBuf>,
    /// Scratch buffer for rdata, reused across records.
    rdata: Vec<u8>,
}

impl Parser {
    fn error(&mut self, pos: SourcePos, kind: ZoneErrorKind) {
        if self.stopped {
            return;
        }
        if self.errors.len() >= MAX_ERRORS {
            self.errors.push(ZoneError { pos, kind: ZoneErrorKind::TooMany(MAX_ERRORS) });
            self.stopped = true;
            return;
        }
        self.errors.push(ZoneError { pos, kind });
    }

    fn parse_text(&mut self, text: &str, st: &mut FileState, depth: usize) {
        let mut lexer = Lexer::new(text);
        let mut toks: Vec<Token<'_>> = Vec::with_capacity(16);
        while !self.stopped {
            let Some(entry) = lexer.next_entry(&mut toks) else {
                break;
            };
            if let Some((line, col, msg)) = entry.syntax {
                let pos = SourcePos { file: st.file.clone(), line, col };
                self.error(pos, ZoneErrorKind::Syntax(msg));
                continue;
            }
            let Some(first) = toks.first() else {
                continue;
            };
            if !entry.blank_start && !first.quoted && first.text.starts_with('$') {
                self.directive(&toks, st, depth);
            } else {
                self.record(&toks, entry.blank_start, st);
            }
        }
    }

    fn directive(&mut self, toks: &[Token<'_>], st: &mut FileState, depth: usize) {
        let head = &toks[0];
        let args = &toks[1..];
        let name = head.text;
        if name.eq_ignore_ascii_case("$ORIGIN") {
            let [arg] = args else {
                let at = args.get(1).unwrap_or(head);
                self.error(st.pos(at), ZoneErrorKind::Syntax("$ORIGIN takes exactly one name"));
                return;
            };
            match Name::parse(arg.text, Some(&st.origin)) {
                Ok(origin) => st.origin = origin,
                Err(e) => self.error(st.pos(arg), ZoneErrorKind::BadName(e)),
            }
        } else if name.eq_ignore_ascii_case("$TTL") {
            let [arg] = args else {
                let at = args.get(1).unwrap_or(head);
                self.error(st.pos(at), ZoneErrorKind::Syntax("$TTL takes exactly one TTL"));
                return;
            };
            match parse_ttl(arg.text) {
                Some(ttl) => st.default_ttl = Some(ttl),
                None => self.error(st.pos(arg), ZoneErrorKind::BadTtl(arg.text.into())),
            }
        } else if name.eq_ignore_ascii_case("$INCLUDE") {
            if args.is_empty() || args.len() > 2 {
                let at = args.get(2).unwrap_or(head);
                self.error(st.pos(at), ZoneErrorKind::Syntax("$INCLUDE takes a file name and an optional origin"));
                return;
            }
            let origin = match args.get(1) {
                None => st.origin.clone(),
                Some(arg) => match Name::parse(arg.text, Some(&st.origin)) {
                    Ok(origin) => origin,
                    Err(e) => {
                        self.error(st.pos(arg), ZoneErrorKind::BadName(e));
                        return;
                    }
                },
            };
            self.include(&args[0], origin, st, depth);
        } else {
            self.error(st.pos(head), ZoneErrorKind::UnknownDirective(name.into()));
        }
    }

    fn include(&mut self, arg: &Token<'_>, origin: Name, parent: &FileState, depth: usize) {
        let pos = parent.pos(arg);
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.error(pos, ZoneErrorKind::Syntax("$INCLUDE nested more than 16 levels deep"));
            return;
        }
        let given = if arg.escaped {
            let mut bytes = Vec::new();
            if unescape_into(arg.text, &mut bytes).is_err() {
                self.error(pos, ZoneErrorKind::Syntax("bad escape in $INCLUDE file name"));
                return;
            }
            PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            PathBuf::from(arg.text)
        };
        let path = if given.is_absolute() { given.clone() } else { self.root.join(&given) };
        let canonical_root = match &self.canonical_root {
            Some(r) => r.clone(),
            None => match std::fs::canonicalize(&self.root) {
                Ok(r) => {
                    self.canonical_root = Some(r.clone());
                    r
                }
                Err(e) => {
                    self.error(pos, ZoneErrorKind::Unreadable(with_path(e, &self.root)));
                    return;
                }
            },
        };
        let canonical = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) => {
                self.error(pos, ZoneErrorKind::Unreadable(with_path(e, &path)));
                return;
            }
        };
        if !canonical.starts_with(&canonical_root) {
            self.error(pos, ZoneErrorKind::IncludeOutsideRoot(given));
            return;
        }
        if self.open_files.contains(&canonical) {
            self.error(pos, ZoneErrorKind::IncludeLoop(given));
            return;
        }
        let text = match std::fs::read_to_string(&canonical) {
            Ok(t) => t,
            Err(e) => {
                self.error(pos, ZoneErrorKind::Unreadable(with_path(e, &path)));
                return;
            }
        };
        let mut st = FileState {
            file: Arc::new(path),
            origin,
            default_ttl: parent.default_ttl,
            last_ttl: parent.last_ttl,
            owner: CurrentOwner::None,
        };
        self.open_files.push(canonical);
        self.parse_text(&text, &mut st, depth + 1);
        self.open_files.pop();
    }

    fn record(&mut self, toks: &[Token<'_>], blank_start: bool, st: &mut FileState) {
        let mut i = 0;
        let owner = if blank_start {
            match &st.owner {
                CurrentOwner::Good(name) => name.clone(),
                CurrentOwner::Bad => return,
                CurrentOwner::None => {
                    self.error(
                        st.pos(&toks[0]),
                        ZoneErrorKind::Syntax("line starts with a blank but there is no previous owner"),
                    );
                    return;
                }
            }
        } else {
            let tok = &toks[0];
            i = 1;
            match Name::parse(tok.text, Some(&st.origin)) {
                Ok(name) if name.is_subdomain_of(&self.zone) => {
                    st.owner = CurrentOwner::Good(name.clone());
                    name
                }
                Ok(name) => {
                    st.owner = CurrentOwner::Bad;
                    let kind = ZoneErrorKind::OutOfZone { owner: name, origin: self.zone.clone() };
                    self.error(st.pos(tok), kind);
                    return;
                }
                Err(e) => {
                    st.owner = CurrentOwner::Bad;
                    self.error(st.pos(tok), ZoneErrorKind::BadName(e));
                    return;
                }
            }
        };

        // [TTL] [class] or [class] [TTL]
        let mut ttl = None;
        let mut class_seen = false;
        while let Some(tok) = toks.get(i) {
            if ttl.is_none() && !tok.quoted && tok.text.starts_with(|c: char| c.is_ascii_digit()) {
                match parse_ttl(tok.text) {
                    Some(t) => ttl = Some(t),
                    None => {
                        self.error(st.pos(tok), ZoneErrorKind::BadTtl(tok.text.into()));
                        return;
                    }
                }
            } else if !class_seen && !tok.quoted && is_class(tok.text) {
                if !is_class_in(tok.text) {
                    self.error(st.pos(tok), ZoneErrorKind::UnsupportedClass(tok.text.into()));
                    return;
                }
                class_seen = true;
            } else {
                break;
            }
            i += 1;
        }

        let Some(type_tok) = toks.get(i) else {
            let last = &toks[toks.len() - 1];
            self.error(st.pos(last), ZoneErrorKind::Syntax("missing record type"));
            return;
        };
        let Some(rtype) = parse_type(type_tok.text) else {
            self.error(st.pos(type_tok), ZoneErrorKind::UnknownType(type_tok.text.into()));
            return;
        };
        if rtype::is_meta(rtype) {
            let kind = ZoneErrorKind::MetaType { owner, rtype: rtype::name(rtype) };
            self.error(st.pos(type_tok), kind);
            return;
        }

        let rdata_toks = &toks[i + 1..];
        self.rdata.clear();
        if let Err(e) = encode_rdata(rtype, rdata_toks, &st.origin, &mut self.rdata) {
            let at = e.at.and_then(|k| rdata_toks.get(k)).unwrap_or(type_tok);
            let kind = match e.kind {
                RdErrKind::Name(n) => ZoneErrorKind::BadName(n),
                RdErrKind::Reason(reason) => ZoneErrorKind::BadRdata { rtype: rtype::name(rtype), reason },
            };
            self.error(st.pos(at), kind);
            return;
        }
        if self.rdata.len() > usize::from(u16::MAX) {
            let kind = ZoneErrorKind::BadRdata {
                rtype: rtype::name(rtype),
                reason: format!("{} octets of data, at most 65535", self.rdata.len()),
            };
            self.error(st.pos(type_tok), kind);
            return;
        }

        let ttl = match ttl.or(st.default_ttl).or(st.last_ttl) {
            Some(t) => t,
            // A zone starting with an SOA without TTL: BIND takes the MINIMUM field.
            None if rtype == rtype::SOA => soa_minimum(&self.rdata),
            None => {
                self.error(st.pos(type_tok), ZoneErrorKind::MissingTtl);
                return;
            }
        };
        st.last_ttl = Some(ttl);
        self.records.push(Record { owner, rtype, ttl, rdata: self.rdata.as_slice().into(), pos: st.pos(&toks[0]) });
    }
}

/// Puts the file name in an I/O error, whose own message does not say which file.
fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The MINIMUM field of encoded SOA rdata (its last four octets), capped like a TTL.
fn soa_minimum(rdata: &[u8]) -> u32 {
    let n = rdata.len();
    let min = match rdata.get(n.saturating_sub(4)..) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    };
    min.min(MAX_TTL as u32)
}

/// Parses a TTL: seconds, or BIND units (`1w2d3h4m5s`, any case, a bare trailing number
/// counting as seconds). `None` when malformed or above 2^31 - 1 (RFC 2181 section 8).
fn parse_ttl(s: &str) -> Option<u32> {
    let mut total: u64 = 0;
    let mut cur: u64 = 0;
    let mut digits = false;
    for &c in s.as_bytes() {
        if c.is_ascii_digit() {
            cur = cur * 10 + u64::from(c - b'0');
            if cur > MAX_TTL {
                return None;
            }
            digits = true;
        } else {
            let unit = match c.to_ascii_lowercase() {
                b's' => 1,
                b'm' => 60,
                b'h' => 3600,
                b'd' => 86_400,
                b'w' => 604_800,
                _ => return None,
            };
            if !digits {
                return None;
            }
            total += cur * unit;
            if total > MAX_TTL {
                return None;
            }
            cur = 0;
            digits = false;
        }
    }
    if digits {
        total += cur;
    } else if s.is_empty() {
        return None;
    }
    (total <= MAX_TTL).then_some(total as u32)
}

/// True for anything written as a class, served or not.
fn is_class(s: &str) -> bool {
    ["IN", "CH", "HS", "CS", "NONE"].iter().any(|c| s.eq_ignore_ascii_case(c)) || numbered(s, "CLASS").is_some()
}

fn is_class_in(s: &str) -> bool {
    s.eq_ignore_ascii_case("IN") || numbered(s, "CLASS") == Some(rtype::CLASS_IN)
}

/// `CLASSnnn` / `TYPEnnn` (RFC 3597 section 5): the number after `prefix`.
fn numbered(s: &str, prefix: &str) -> Option<u16> {
    let head = s.get(..prefix.len())?;
    let digits = &s[prefix.len()..];
    if !head.eq_ignore_ascii_case(prefix) || digits.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Type mnemonic (any case) or `TYPEnnn` to the type number; `None` when unknown.
fn parse_type(s: &str) -> Option<u16> {
    // The types written in nearly every zone, without going through hickory's enum.
    const COMMON: [(&str, u16); 19] = [
        ("A", rtype::A),
        ("AAAA", rtype::AAAA),
        ("NS", rtype::NS),
        ("CNAME", rtype::CNAME),
        ("SOA", rtype::SOA),
        ("MX", rtype::MX),
        ("TXT", rtype::TXT),
        ("PTR", rtype::PTR),
        ("SRV", rtype::SRV),
        ("CAA", rtype::CAA),
        ("DNAME", rtype::DNAME),
        ("HINFO", rtype::HINFO),
        ("DS", rtype::DS),
        // Meta types hickory has no mnemonic for: named so the error says "meta type".
        ("OPT", rtype::OPT),
        ("IXFR", rtype::IXFR),
        ("AXFR", rtype::AXFR),
        ("MAILA", rtype::MAILA),
        ("MAILB", rtype::MAILB),
        ("ANY", rtype::ANY),
    ];
    if let Some(&(_, t)) = COMMON.iter().find(|(m, _)| s.eq_ignore_ascii_case(m)) {
        return Some(t);
    }
    if let Some(t) = numbered(s, "TYPE") {
        return Some(t);
    }
    let upper = s.to_ascii_uppercase();
    upper.parse::<hickory_proto::rr::RecordType>().ok().map(u16::from)
}

// ---------------------------------------------------------------------------------------------
// Rdata

/// Type number of CDS (RFC 7344), same format as DS.
const CDS: u16 = 59;
/// SVCB and HTTPS (RFC 9460).
const SVCB: u16 = 64;
const HTTPS: u16 = 65;

enum RdErrKind {
    Reason(String),
    Name(NameError),
}

/// An rdata problem; `at` indexes the rdata token at fault (`None`: a field is missing).
struct RdErr {
    at: Option<usize>,
    kind: RdErrKind,
}

fn bad(at: usize, reason: String) -> RdErr {
    RdErr { at: Some(at), kind: RdErrKind::Reason(reason) }
}

/// Walks the rdata fields and reports missing and surplus ones.
struct Fields<'t, 'a> {
    toks: &'t [Token<'a>],
    i: usize,
}

impl<'t, 'a> Fields<'t, 'a> {
    fn next(&mut self, what: &str) -> Result<(usize, &'t Token<'a>), RdErr> {
        let i = self.i;
        let tok =
            self.toks.get(i).ok_or_else(|| RdErr { at: None, kind: RdErrKind::Reason(format!("missing {what}")) })?;
        self.i += 1;
        Ok((i, tok))
    }

    fn rest(&mut self) -> &'t [Token<'a>] {
        let rest = self.toks.get(self.i..).unwrap_or_default();
        self.i = self.toks.len();
        rest
    }

    fn finish(&self) -> Result<(), RdErr> {
        match self.toks.get(self.i) {
            None => Ok(()),
            Some(tok) => Err(bad(self.i, format!("unexpected extra field {:?}", tok.text))),
        }
    }

    fn name(&mut self, what: &str, origin: &Name, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        let name = Name::parse(tok.text, Some(origin)).map_err(|e| RdErr { at: Some(i), kind: RdErrKind::Name(e) })?;
        out.extend_from_slice(name.as_wire());
        Ok(())
    }

    fn u8(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        let v = tok.text.parse::<u8>().map_err(|_| bad(i, format!("expected {what} (0-255), got {:?}", tok.text)))?;
        out.push(v);
        Ok(())
    }

    fn u16(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        let v =
            tok.text.parse::<u16>().map_err(|_| bad(i, format!("expected {what} (0-65535), got {:?}", tok.text)))?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn u32(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        let v = tok
            .text
            .parse::<u32>()
            .map_err(|_| bad(i, format!("expected {what} (0-4294967295), got {:?}", tok.text)))?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// An SOA timer: seconds or TTL units.
    fn duration(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        let v = parse_ttl(tok.text)
            .ok_or_else(|| bad(i, format!("expected {what} (seconds or units like 1h30m), got {:?}", tok.text)))?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn char_string(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdErr> {
        let (i, tok) = self.next(what)?;
        push_char_string(tok, out).map_err(|r| bad(i, r))
    }
}

/// Appends `<character-string>`: a length octet and at most 255 octets.
fn push_char_string(tok: &Token<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.push(0);
    if tok.escaped {
        unescape_into(tok.text, out)?;
    } else {
        out.extend_from_slice(tok.text.as_bytes());
    }
    let len = out.len() - start - 1;
    if len > 255 {
        return Err(format!("character-string of {len} octets, at most 255"));
    }
    out[start] = len as u8;
    Ok(())
}

/// Appends the bytes of `text` with `\X` and `\DDD` escapes resolved (RFC 1035 section 5.1).
fn unescape_into(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            None => return Err(format!("backslash at the end of {text:?}")),
            Some(d) if d.is_ascii_digit() => {
                let digits = b.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
                let Some(&[x, y, z]) = digits else {
                    return Err(format!("\\DDD escape needs three digits in {text:?}"));
                };
                let v = u32::from(x - b'0') * 100 + u32::from(y - b'0') * 10 + u32::from(z - b'0');
                let v = u8::try_from(v).map_err(|_| format!("escape \\{v} above 255 in {text:?}"))?;
                out.push(v);
                i += 4;
            }
            Some(&c) => {
                out.push(c);
                i += 2;
            }
        }
    }
    Ok(())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Appends hex split over any number of fields (at least one); returns the octet count.
fn push_hex(toks: &[Token<'_>], first: usize, out: &mut Vec<u8>) -> Result<usize, RdErr> {
    let start = out.len();
    let mut half: Option<u8> = None;
    for (k, tok) in toks.iter().enumerate() {
        for &c in tok.text.as_bytes() {
            let v = hex_value(c).ok_or_else(|| bad(first + k, format!("expected hex digits, got {:?}", tok.text)))?;
            match half.take() {
                None => half = Some(v),
                Some(h) => out.push(h << 4 | v),
            }
        }
    }
    if half.is_some() {
        let last = first + toks.len().saturating_sub(1);
        return Err(bad(last, "odd number of hex digits".into()));
    }
    Ok(out.len() - start)
}

/// Encodes the rdata fields of a `rtype` record into `out` (uncompressed wire format).
fn encode_rdata(rtype: u16, toks: &[Token<'_>], origin: &Name, out: &mut Vec<u8>) -> Result<(), RdErr> {
    if let Some(first) = toks.first()
        && !first.quoted
        && first.text == "\\#"
    {
        return encode_generic(toks, out);
    }
    let mut f = Fields { toks, i: 0 };
    match rtype {
        rtype::A => {
            let (i, tok) = f.next("IPv4 address")?;
            let addr = tok
                .text
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(i, format!("expected an IPv4 address, got {:?}", tok.text)))?;
            out.extend_from_slice(&addr.octets());
        }
        rtype::AAAA => {
            let (i, tok) = f.next("IPv6 address")?;
            let addr = tok
                .text
                .parse::<Ipv6Addr>()
                .map_err(|_| bad(i, format!("expected an IPv6 address, got {:?}", tok.text)))?;
            out.extend_from_slice(&addr.octets());
        }
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => {
            f.name("target name", origin, out)?;
        }
        rtype::SOA => {
            f.name("primary server name (MNAME)", origin, out)?;
            f.name("mailbox name (RNAME)", origin, out)?;
            f.u32("serial", out)?;
            f.duration("refresh", out)?;
            f.duration("retry", out)?;
            f.duration("expire", out)?;
            f.duration("minimum", out)?;
        }
        rtype::MX => {
            f.u16("preference", out)?;
            f.name("exchange name", origin, out)?;
        }
        rtype::TXT => {
            f.char_string("text string", out)?;
            while f.i < toks.len() {
                f.char_string("text string", out)?;
            }
        }
        rtype::HINFO => {
            f.char_string("CPU string", out)?;
            f.char_string("OS string", out)?;
        }
        rtype::SRV => {
            f.u16("priority", out)?;
            f.u16("weight", out)?;
            f.u16("port", out)?;
            f.name("target name", origin, out)?;
        }
        rtype::CAA => {
            f.u8("flags", out)?;
            let (i, tag) = f.next("tag")?;
            let ok =
                !tag.text.is_empty() && tag.text.len() <= 255 && tag.text.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(i, format!("expected an alphanumeric tag, got {:?}", tag.text)));
            }
            out.push(tag.text.len() as u8);
            out.extend_from_slice(tag.text.as_bytes());
            let (i, value) = f.next("value")?;
            if value.escaped {
                unescape_into(value.text, out).map_err(|r| bad(i, r))?;
            } else {
                out.extend_from_slice(value.text.as_bytes());
            }
        }
        rtype::DS | CDS => {
            f.u16("key tag", out)?;
            f.u8("algorithm", out)?;
            f.u8("digest type", out)?;
            let first = f.i;
            f.next("digest")?;
            f.i = first;
            push_hex(f.rest(), first, out)?;
        }
        _ => {
            let rest = f.rest();
            return encode_with_hickory(rtype, rest, origin, out)
                .map_err(|reason| RdErr { at: None, kind: RdErrKind::Reason(reason) });
        }
    }
    f.finish()
}

/// RFC 3597 section 5: `\# length hex...`.
fn encode_generic(toks: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdErr> {
    let Some(len_tok) = toks.get(1) else {
        return Err(RdErr { at: Some(0), kind: RdErrKind::Reason("missing length after \\#".into()) });
    };
    let len: u16 = len_tok
        .text
        .parse()
        .map_err(|_| bad(1, format!("expected the rdata length (0-65535), got {:?}", len_tok.text)))?;
    let hex = &toks[2..];
    if len == 0 {
        return match hex.first() {
            None => Ok(()),
            Some(t) => Err(bad(2, format!("length 0 but data follows: {:?}", t.text))),
        };
    }
    if hex.is_empty() {
        return Err(bad(1, format!("length {len} but no hex data follows")));
    }
    let got = push_hex(hex, 2, out)?;
    if got != usize::from(len) {
        return Err(bad(1, format!("length {len} but the hex data holds {got} octets")));
    }
    Ok(())
}

/// Rdata of the less common types through hickory-proto's text parser, emitted with names
/// uncompressed and in the case written.
///
/// hickory's zone `Parser` is used on a one-record zone rather than `RData::try_from_str`,
/// because only the former completes relative names in the rdata with the origin: the
/// latter would turn `target` into the absolute `target.`.
fn encode_with_hickory(rtype: u16, toks: &[Token<'_>], origin: &Name, out: &mut Vec<u8>) -> Result<(), String> {
    use hickory_proto::rr::{Name as HName, RecordType};
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding};
    use hickory_proto::serialize::txt::Parser as HParser;

    let rt = RecordType::from(rtype);
    if let RecordType::Unknown(_) = rt {
        return Err("no text format is known for this type; use the RFC 3597 form \
                    \\# <length> <hex>"
            .into());
    }
    // hickory reads the SVCB/HTTPS TargetName without the origin and lowercased: hand it
    // the name already completed, and put back the name as written after encoding.
    let svcb_target = match rtype {
        SVCB | HTTPS => match toks.get(1) {
            Some(tok) => Some(Name::parse(tok.text, Some(origin)).map_err(|e| e.to_string())?),
            None => None,
        },
        _ => None,
    };
    let mut text = format!("@ 0 IN {rt}");
    for (k, tok) in toks.iter().enumerate() {
        text.push(' ');
        if k == 1
            && let Some(target) = &svcb_target
        {
            text.push_str(&target.to_string());
        } else if tok.quoted {
            text.push('"');
            text.push_str(tok.text);
            text.push('"');
        } else {
            text.push_str(tok.text);
        }
    }
    text.push('\n');
    let horigin = HName::read(&mut BinDecoder::new(origin.as_wire())).map_err(|e| e.to_string())?;
    let (_, sets) = HParser::new(text, None, Some(horigin)).parse().map_err(|e| e.to_string())?;
    let record = sets
        .values()
        .find_map(|set| set.records_without_rrsigs().next())
        .ok_or_else(|| "no record data".to_string())?;
    let start = out.len();
    let mut enc = BinEncoder::new(out);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    record.data.emit(&mut enc).map_err(|e| e.to_string())?;
    if let Some(target) = svcb_target {
        // SvcPriority (2 octets), then TargetName, which differs from ours only in case.
        let name_at = start + 2;
        let len = target.as_wire().len();
        match out.get_mut(name_at..name_at + len) {
            Some(emitted) if emitted.eq_ignore_ascii_case(target.as_wire()) => {
                emitted.copy_from_slice(target.as_wire());
            }
            _ => return Err("hickory-proto encoded an unexpected SVCB target name".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn parse(text: &str) -> Result<Vec<Record>, Vec<ZoneError>> {
        parse_str(text, Path::new("t.zone"), &n("example.com."), Path::new("/nonexistent"))
    }

    fn ok(text: &str) -> Vec<Record> {
        match parse(text) {
            Ok(r) => r,
            Err(errs) => panic!("unexpected errors: {}", show(&errs)),
        }
    }

    fn errs(text: &str) -> Vec<ZoneError> {
        match parse(text) {
            Ok(r) => panic!("expected errors, got {r:?}"),
            Err(e) => e,
        }
    }

    fn show(errs: &[ZoneError]) -> String {
        errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }

    fn wire(name: &str) -> Vec<u8> {
        n(name).as_wire().to_vec()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn encodes_every_type() {
        let cases: Vec<(&str, u16, Vec<u8>)> = vec![
            ("A 192.0.2.1", rtype::A, vec![192, 0, 2, 1]),
            ("AAAA 2001:db8::1", rtype::AAAA, cat(&[&[0x20, 0x01, 0x0d, 0xb8], &[0; 11], &[1]])),
            ("NS ns1", rtype::NS, wire("ns1.example.com.")),
            ("CNAME Other.Example.NET.", rtype::CNAME, wire("Other.Example.NET.")),
            ("PTR host.example.org.", rtype::PTR, wire("host.example.org.")),
            ("DNAME @", rtype::DNAME, wire("example.com.")),
            (
                "SOA ns1 hostmaster 2025031701 1h 15m 1w 5M",
                rtype::SOA,
                cat(&[
                    &wire("ns1.example.com."),
                    &wire("hostmaster.example.com."),
                    &2025031701u32.to_be_bytes(),
                    &3600u32.to_be_bytes(),
                    &900u32.to_be_bytes(),
                    &604800u32.to_be_bytes(),
                    &300u32.to_be_bytes(),
                ]),
            ),
            ("MX 10 mail", rtype::MX, cat(&[&[0, 10], &wire("mail.example.com.")])),
            ("TXT \"hello world\"", rtype::TXT, b"\x0bhello world".to_vec()),
            ("TXT bare words \"\"", rtype::TXT, b"\x04bare\x05words\x00".to_vec()),
            ("TXT \"a\\065\\;b\"", rtype::TXT, b"\x04aA;b".to_vec()),
            ("HINFO \"Intel x86\" Linux", rtype::HINFO, b"\x09Intel x86\x05Linux".to_vec()),
            ("SRV 5 10 5222 chat", rtype::SRV, cat(&[&[0, 5, 0, 10, 0x14, 0x66], &wire("chat.example.com.")])),
            (
                "CAA 0 issue \"ca.example.net; account=42\"",
                rtype::CAA,
                cat(&[b"\x00\x05issue", b"ca.example.net; account=42"]),
            ),
            ("CAA 128 tbs ok", rtype::CAA, b"\x80\x03tbsok".to_vec()),
            (
                "DS 60485 5 1 2BB183AF5F22588179A53B0A 98631FAD1A292118",
                rtype::DS,
                cat(&[
                    &[0xec, 0x45, 5, 1],
                    &[0x2b, 0xb1, 0x83, 0xaf, 0x5f, 0x22, 0x58, 0x81, 0x79, 0xa5, 0x3b, 0x0a],
                    &[0x98, 0x63, 0x1f, 0xad, 0x1a, 0x29, 0x21, 0x18],
                ]),
            ),
            ("TYPE65280 \\# 4 0a000001", 65280, vec![10, 0, 0, 1]),
            ("A \\# 4 c000 0201", rtype::A, vec![192, 0, 2, 1]),
            ("TYPE1 192.0.2.9", rtype::A, vec![192, 0, 2, 9]),
            ("type65281 \\# 0", 65281, vec![]),
            ("mx 1 .", rtype::MX, vec![0, 1, 0]),
            // Through hickory-proto.
            ("SSHFP 1 1 DEADBEEF", 44, vec![1, 1, 0xde, 0xad, 0xbe, 0xef]),
            ("TLSA 3 1 1 0A0B", 52, vec![3, 1, 1, 0x0a, 0x0b]),
            (
                "NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp",
                35,
                cat(&[&[0, 100, 0, 10], b"\x01S\x07SIP+D2U\x00", &wire("_sip._udp.example.com.")]),
            ),
            ("HTTPS 1 Svc alpn=h2", 65, cat(&[&[0, 1], &wire("Svc.example.com."), &[0, 1, 0, 3, 2], b"h2"])),
        ];
        for (rr, want_type, want) in cases {
            let recs = ok(&format!("www 300 IN {rr}\n"));
            assert_eq!(recs.len(), 1, "{rr}");
            assert_eq!(recs[0].rtype, want_type, "{rr}");
            assert_eq!(&*recs[0].rdata, &want[..], "{rr}");
            assert_eq!(recs[0].owner.as_wire(), wire("www.example.com.").as_slice());
        }
    }

    #[test]
    fn rejects_bad_rdata_with_precise_messages() {
        let cases = [
            ("A 1.2.3", "bad A record data: expected an IPv4 address, got \"1.2.3\"", 11),
            ("A", "bad A record data: missing IPv4 address", 9),
            ("A 1.2.3.4 5.6.7.8", "bad A record data: unexpected extra field \"5.6.7.8\"", 19),
            ("AAAA 1.2.3.4", "bad AAAA record data: expected an IPv6 address, got \"1.2.3.4\"", 14),
            ("MX ten mail", "bad MX record data: expected preference (0-65535), got \"ten\"", 12),
            ("SRV 1 2 70000 t", "bad SRV record data: expected port (0-65535), got \"70000\"", 17),
            ("SOA a b 1 2 3 4", "bad SOA record data: missing minimum", 9),
            ("HINFO one", "bad HINFO record data: missing OS string", 9),
            ("CAA 0 is-sue x", "bad CAA record data: expected an alphanumeric tag, got \"is-sue\"", 15),
            ("TYPE65280 \\# 3 0a0000 01", "bad TYPE65280 record data: length 3 but the hex data holds 4 octets", 22),
            ("TYPE65280 \\# 2 0g00", "bad TYPE65280 record data: expected hex digits, got \"0g00\"", 24),
            (
                "TYPE65280 0a",
                "bad TYPE65280 record data: no text format is known for this type; use the RFC 3597 form \\# <length> <hex>",
                9,
            ),
        ];
        for (rr, msg, col) in cases {
            let e = errs(&format!("www 300 {rr}\n"));
            assert_eq!(e.len(), 1, "{rr}: {}", show(&e));
            assert_eq!(e[0].to_string(), format!("t.zone:1:{col}: error: {msg}"), "{rr}");
        }
        let long = format!("www 300 TXT {}\n", "x".repeat(256));
        let e = errs(&long);
        assert!(e[0].to_string().contains("character-string of 256 octets"), "{}", show(&e));
        ok(&format!("www 300 TXT {} {}\n", "x".repeat(255), "y".repeat(255)));
    }

    #[test]
    fn txt_quotes_escapes_and_comments() {
        let recs = ok(r#"notes 1800 IN TXT "alpha" "beta; with \"quotes\"" "gamma \\ backslash" ; c
"#);
        assert_eq!(&*recs[0].rdata, b"\x05alpha\x13beta; with \"quotes\"\x11gamma \\ backslash");
    }

    #[test]
    fn multiline_soa_with_comments() {
        let recs = ok("$TTL 1h\n\
            @ IN SOA ns1.example.com. hostmaster.example.com. ( ; start\n\
            \t2025031701 ; serial\n\
            \t3h ; refresh ( a paren in a comment\n\
            \t15m 1w\n\
            \t300 )\n\
            \tNS ns1\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].rtype, rtype::SOA);
        assert_eq!(recs[0].ttl, 3600);
        assert_eq!(
            &recs[0].rdata[recs[0].rdata.len() - 20..],
            &[0x78, 0xb3, 0x88, 0x15, 0, 0, 0x2a, 0x30, 0, 0, 3, 0x84, 0, 9, 0x3a, 0x80, 0, 0, 1, 0x2c]
        );
        // The NS line after the parenthesis inherits the owner.
        assert_eq!(recs[1].owner, n("example.com."));
        assert_eq!(recs[1].pos.line, 7);
    }

    #[test]
    fn owner_inheritance_origin_and_ttl_rules() {
        let recs = ok("$ORIGIN example.com.\n\
            www 60 A 192.0.2.1\n\
            \x20   A 192.0.2.2\n\
            \tIN 90 AAAA ::1\n\
            $ORIGIN sub\n\
            x A 192.0.2.3\n\
            $TTL 2d\n\
            @ A 192.0.2.4\n");
        let got: Vec<(String, u32)> = recs.iter().map(|r| (r.owner.to_string(), r.ttl)).collect();
        assert_eq!(
            got,
            [
                ("www.example.com.".to_string(), 60),
                ("www.example.com.".to_string(), 60),
                ("www.example.com.".to_string(), 90),
                ("x.sub.example.com.".to_string(), 90),
                ("sub.example.com.".to_string(), 172800),
            ]
        );
    }

    #[test]
    fn out_of_zone_owner_is_reported_once() {
        let e = errs("www 60 A 192.0.2.1\nMixed.Case. A 192.0.2.5\n  A 192.0.2.6\n");
        assert_eq!(e.len(), 1, "{}", show(&e));
        assert_eq!(e[0].to_string(), "t.zone:2:1: error: owner Mixed.Case. is outside origin example.com.");
        let recs = ok("WWW.Example.COM. 60 A 192.0.2.1\n");
        assert_eq!(recs[0].owner.to_string(), "WWW.Example.COM.");
    }

    #[test]
    fn ttl_units_and_limits() {
        for (ttl, want) in
            [("0", 0), ("1h30m", 5400), ("2D", 172800), ("1w", 604800), ("1h5", 3605), ("2147483647", 2147483647)]
        {
            assert_eq!(parse_ttl(ttl), Some(want), "{ttl}");
        }
        for ttl in ["", "2147483648", "h", "1x", "1hh", "99999999999999999999", "4294967296s"] {
            assert_eq!(parse_ttl(ttl), None, "{ttl}");
        }
        let e = errs("a 2147483648 A 192.0.2.1\n");
        assert!(matches!(&e[0].kind, ZoneErrorKind::BadTtl(t) if t == "2147483648"));
        assert_eq!(e[0].pos.col, 3);
    }

    #[test]
    fn missing_ttl_and_soa_minimum() {
        let e = errs("a A 192.0.2.1\n");
        assert!(matches!(e[0].kind, ZoneErrorKind::MissingTtl));
        assert_eq!((e[0].pos.line, e[0].pos.col), (1, 3));
        let recs = ok("@ SOA ns hm 1 2 3 4 600\n  NS ns\nb 5 A 192.0.2.1\nc A 192.0.2.2\n");
        let ttls: Vec<u32> = recs.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [600, 600, 5, 5]);
    }

    #[test]
    fn classes() {
        ok("a 1 IN A 192.0.2.1\na IN 1 A 192.0.2.1\na CLASS1 1 A 192.0.2.1\n");
        for (line, class) in [("a 1 CH A 1.2.3.4", "CH"), ("a hs 1 A 1.2.3.4", "hs"), ("a CLASS3 A 1.2.3.4", "CLASS3")]
        {
            let e = errs(line);
            assert!(matches!(&e[0].kind, ZoneErrorKind::UnsupportedClass(c) if c == class), "{line}");
        }
    }

    #[test]
    fn meta_and_unknown_types() {
        let e = errs("a 1 ANY \\# 0\na 1 AXFR \\# 0\na 1 OPT \\# 0\na 1 BOGUS x\n");
        assert_eq!(e.len(), 4, "{}", show(&e));
        assert!(matches!(&e[0].kind, ZoneErrorKind::MetaType { rtype, .. } if rtype == "ANY"));
        assert!(matches!(&e[1].kind, ZoneErrorKind::MetaType { rtype, .. } if rtype == "AXFR"));
        assert!(matches!(&e[2].kind, ZoneErrorKind::MetaType { rtype, .. } if rtype == "OPT"));
        assert!(matches!(&e[3].kind, ZoneErrorKind::UnknownType(t) if t == "BOGUS"));
        assert_eq!(e[3].pos.col, 5);
    }

    #[test]
    fn reports_every_error_with_its_position() {
        let text = "$TTL 300\r\n\
            ok A 192.0.2.1\r\n\
            bad1 A 192.0.2.256\r\n\
            \r\n\
            bad2 MX 10\r\n\
            bad3 TXT \"open\r\n\
            ok2 ( A\r\n\
            \t192.0.2.9 ) ; fine\r\n\
            bad4 A ( 192.0.2.1\r\n\
            \t 192.0.2.2 )\r\n\
            $GENERATE 1-2 x A 1.2.3.$\r\n\
            ) A 1.2.3.4\r\n\
            x..y A 1.2.3.4\r\n\
            out.example.org. A 1.2.3.4\r\n\
            last A 1.2.3.4";
        let e = errs(text);
        let got: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "t.zone:3:8: error: bad A record data: expected an IPv4 address, got \"192.0.2.256\"",
                "t.zone:5:6: error: bad MX record data: missing exchange name",
                "t.zone:6:10: error: unterminated quoted string",
                "t.zone:10:3: error: bad A record data: unexpected extra field \"192.0.2.2\"",
                "t.zone:11:1: error: unknown directive $GENERATE",
                "t.zone:12:1: error: ')' without a matching '('",
                "t.zone:13:1: error: empty label in name \"x..y\"",
                "t.zone:14:1: error: owner out.example.org. is outside origin example.com.",
            ]
        );
    }

    #[test]
    fn unbalanced_paren_at_end() {
        let e = errs("a 1 A ( 192.0.2.1\n");
        assert_eq!(e[0].to_string(), "t.zone:1:7: error: '(' is never closed");
    }

    #[test]
    fn stops_after_too_many_errors() {
        let text = "a 1 A x\n".repeat(150);
        let e = errs(&text);
        assert_eq!(e.len(), MAX_ERRORS + 1);
        assert!(matches!(e[MAX_ERRORS].kind, ZoneErrorKind::TooMany(100)));
        assert_eq!(e[MAX_ERRORS].pos.line, 101);
    }

    #[test]
    fn blank_first_line_has_no_owner() {
        let e = errs("  1 A 192.0.2.1\n");
        assert_eq!(e[0].to_string(), "t.zone:1:3: error: line starts with a blank but there is no previous owner");
    }

    #[test]
    fn no_trailing_newline_and_empty_input() {
        assert_eq!(ok("a 1 A 192.0.2.1").len(), 1);
        assert!(ok("").is_empty());
        assert!(ok("; only a comment\n\n   \n").is_empty());
    }

    #[test]
    fn conformance_zone_lines() {
        let text = r#"; pub.test. -- zone for the differential conformance check
$ORIGIN pub.test.
$TTL 1800
@               1800  IN SOA   dns1.pub.test. admin.pub.test. 2025031701 10800 1800 604800 240
@               1800  IN NS    dns1.pub.test.
@               1800  IN AAAA  2001:db8:7::1
@               1800  IN MX    15 mx.example.org.
hop2            2300  IN CNAME hop3
notes           1800  IN TXT   "alpha" "beta; with \"quotes\"" "gamma \\ backslash"
_xmpp._tcp      1800  IN SRV   5 10 5222 chat.pub.test.
certs           1800  IN CAA   0 issue "pki.example.org; account=42"
20.rev          1800  IN PTR   host.pub.test.
*.star          600   IN A     203.0.113.80
LOUD.Owners     1800  IN TXT   "upper-case owner"
partner         43200 IN NS    ns.partner.pub.test.
"#;
        let recs = parse_str(text, Path::new("pub.test.zone"), &n("pub.test."), Path::new("."))
            .unwrap_or_else(|e| panic!("{}", show(&e)));
        assert_eq!(recs.len(), 12);
        let find = |owner: &str, t: u16| {
            recs.iter().find(|r| r.owner == n(owner) && r.rtype == t).unwrap_or_else(|| panic!("{owner} {t}"))
        };
        assert_eq!(&*find("hop2.pub.test.", rtype::CNAME).rdata, wire("hop3.pub.test.").as_slice());
        assert_eq!(
            &*find("notes.pub.test.", rtype::TXT).rdata,
            b"\x05alpha\x13beta; with \"quotes\"\x11gamma \\ backslash"
        );
        assert_eq!(&*find("certs.pub.test.", rtype::CAA).rdata, b"\x00\x05issuepki.example.org; account=42");
        assert_eq!(find("*.star.pub.test.", rtype::A).ttl, 600);
        assert_eq!(find("LOUD.Owners.pub.test.", rtype::TXT).owner.to_string(), "LOUD.Owners.pub.test.");
        let soa = find("pub.test.", rtype::SOA);
        assert_eq!(soa_minimum(&soa.rdata), 240);
        assert_eq!(soa.pos.line, 4);
    }

    use crate::testutil::TempDir;

    #[test]
    fn include_scopes_origin_owner_and_ttl() {
        let dir = TempDir::new("inc");
        dir.write("inc/hosts.inc", "$ORIGIN deep\n$TTL 77\nh A 192.0.2.1\n  AAAA ::1\nbad A x\n");
        dir.write("inc/plain.inc", "p A 192.0.2.2\n");
        let main = dir.write(
            "example.com.zone",
            "$TTL 100\n\
             top A 192.0.2.9\n\
             $INCLUDE inc/hosts.inc sub\n\
             \x20 A 192.0.2.10\n\
             after A 192.0.2.3\n\
             $INCLUDE \"inc/plain.inc\"\n",
        );
        let e = parse_file(&main, &n("example.com."), dir.path()).unwrap_err();
        // The error inside the included file names that file.
        assert_eq!(e.len(), 1, "{}", show(&e));
        assert_eq!(e[0].pos.file.as_path(), dir.path().join("inc/hosts.inc"));
        assert_eq!((e[0].pos.line, e[0].pos.col), (5, 7));

        dir.write("inc/hosts.inc", "$ORIGIN deep\n$TTL 77\nh A 192.0.2.1\n  AAAA ::1\n");
        let recs = parse_file(&main, &n("example.com."), dir.path()).unwrap_or_else(|e| panic!("{}", show(&e)));
        let got: Vec<(String, u32)> = recs.iter().map(|r| (r.owner.to_string(), r.ttl)).collect();
        assert_eq!(
            got,
            [
                ("top.example.com.".to_string(), 100),
                ("h.deep.sub.example.com.".to_string(), 77),
                ("h.deep.sub.example.com.".to_string(), 77),
                // Owner, origin and $TTL are the parent's again after the include.
                ("top.example.com.".to_string(), 100),
                ("after.example.com.".to_string(), 100),
                ("p.example.com.".to_string(), 100),
            ]
        );
        assert_eq!(recs[1].pos.file.as_path(), dir.path().join("inc/hosts.inc"));
        assert_eq!(recs[4].pos.file.as_path(), main);
    }

    #[test]
    fn include_outside_root_loop_and_missing() {
        let dir = TempDir::new("bad");
        let outside = TempDir::new("outside");
        let out_file = outside.write("x.inc", "x A 192.0.2.1\n");
        dir.write("a.inc", "$INCLUDE b.inc\n");
        dir.write("b.inc", "$INCLUDE a.inc\n");
        dir.write("self.inc", "$INCLUDE self.inc\n");
        let main = dir.write(
            "z.zone",
            &format!(
                "$INCLUDE {}\n$INCLUDE ../{}/x.inc\n$INCLUDE a.inc\n$INCLUDE self.inc\n$INCLUDE nope.inc\n",
                out_file.display(),
                outside.path().file_name().unwrap().to_string_lossy()
            ),
        );
        let e = parse_file(&main, &n("example.com."), dir.path()).unwrap_err();
        assert_eq!(e.len(), 5, "{}", show(&e));
        assert!(matches!(&e[0].kind, ZoneErrorKind::IncludeOutsideRoot(p) if *p == out_file));
        assert!(matches!(&e[1].kind, ZoneErrorKind::IncludeOutsideRoot(_)));
        assert!(matches!(&e[2].kind, ZoneErrorKind::IncludeLoop(p) if p == Path::new("a.inc")));
        assert_eq!(e[2].pos.file.as_path(), dir.path().join("b.inc"));
        assert!(matches!(&e[3].kind, ZoneErrorKind::IncludeLoop(p) if p == Path::new("self.inc")));
        assert!(matches!(&e[4].kind, ZoneErrorKind::Unreadable(_)));
        assert!(e[4].to_string().contains("nope.inc"), "{}", e[4]);
        assert_eq!((e[4].pos.line, e[4].pos.col), (5, 10));
    }

    #[test]
    fn include_depth_is_capped() {
        let dir = TempDir::new("depth");
        for i in 0..20 {
            dir.write(&format!("d{i}.inc"), &format!("$INCLUDE d{}.inc\n", i + 1));
        }
        dir.write("d20.inc", "x 1 A 192.0.2.1\n");
        let main = dir.write("z.zone", "$INCLUDE d0.inc\n");
        let e = parse_file(&main, &n("example.com."), dir.path()).unwrap_err();
        assert_eq!(e.len(), 1, "{}", show(&e));
        assert!(matches!(e[0].kind, ZoneErrorKind::Syntax(m) if m.contains("16 levels")));
        assert_eq!(e[0].pos.file.as_path(), dir.path().join("d15.inc"));
    }

    #[test]
    fn hickory_errors_become_bad_rdata() {
        let e = errs("www 300 SSHFP x 1 ab\n");
        assert!(matches!(&e[0].kind, ZoneErrorKind::BadRdata { rtype, .. } if rtype == "SSHFP"), "{}", show(&e));
        assert_eq!(e[0].pos.col, 9);
    }

    #[test]
    fn unreadable_main_file() {
        let e = parse_file(Path::new("/nonexistent/z.zone"), &n("example.com."), Path::new("/")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(matches!(e[0].kind, ZoneErrorKind::Unreadable(_)));
        assert_eq!(e[0].pos.file.as_path(), Path::new("/nonexistent/z.zone"));
    }
}
