//! Domain names in uncompressed wire format.
//!
//! Every name gslbd keeps is stored as the RFC 1035 wire form (length-prefixed labels ending in
//! the root label). That makes the hot path cheap: an ancestor of a name is a suffix of its
//! bytes, so walking up the tree is slicing, and a lookup key is a byte slice with no
//! allocation. Index keys are lowercased; names inside rdata keep the case the operator wrote.

use std::fmt;

/// Longest name in wire form (RFC 1035 section 2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A fully qualified domain name in uncompressed wire format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

/// Why a name in presentation format was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty label: two dots in a row, or a leading dot (the root `.` alone is fine).
    #[error("empty label in name {0:?}")]
    EmptyLabel(String),
    /// A label longer than 63 octets (RFC 1035 section 2.3.4).
    #[error("label longer than 63 octets in name {0:?}")]
    LabelTooLong(String),
    /// A name longer than 255 octets in wire form (RFC 1035 section 2.3.4).
    #[error("name {0:?} is longer than 255 octets")]
    NameTooLong(String),
    /// A `\DDD` escape above 255, or a `\` at the end of the text (RFC 1035 section 5.1).
    #[error("bad escape sequence in name {0:?}")]
    BadEscape(String),
    /// A relative name (no trailing dot) where no origin is known to complete it.
    #[error("relative name {0:?} with no origin to complete it")]
    NoOrigin(String),
}

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(Box::new([0]))
    }

    /// Validates uncompressed wire bytes and wraps them.
    pub fn from_wire(wire: &[u8]) -> Option<Name> {
        is_valid_wire(wire).then(|| Name(wire.into()))
    }

    /// Parses a name in presentation format (RFC 1035 section 5.1): `\.` and `\DDD` escapes,
    /// `@` for the origin, and relative names completed with `origin`.
    pub fn parse(text: &str, origin: Option<&Name>) -> Result<Name, NameError> {
        if text == "@" {
            return origin.cloned().ok_or_else(|| NameError::NoOrigin(text.into()));
        }
        if text == "." {
            return Ok(Name::root());
        }
        let bytes = text.as_bytes();
        let mut wire = Vec::with_capacity(bytes.len() + 2);
        let mut label_start = 0usize;
        wire.push(0);
        let mut i = 0;
        let mut absolute = false;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'.' => {
                    let len = wire.len() - label_start - 1;
                    if len == 0 {
                        return Err(NameError::EmptyLabel(text.into()));
                    }
                    wire[label_start] = len as u8;
                    if i + 1 == bytes.len() {
                        absolute = true;
                    }
                    label_start = wire.len();
                    wire.push(0);
                    i += 1;
                    continue;
                }
                b'\\' => {
                    let rest = &bytes[i + 1..];
                    if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                        let v = (rest[0] - b'0') as u32 * 100 + (rest[1] - b'0') as u32 * 10 + (rest[2] - b'0') as u32;
                        if v > 255 {
                            return Err(NameError::BadEscape(text.into()));
                        }
                        wire.push(v as u8);
                        i += 4;
                    } else if let Some(&n) = rest.first() {
                        wire.push(n);
                        i += 2;
                    } else {
                        return Err(NameError::BadEscape(text.into()));
                    }
                }
                _ => {
                    wire.push(c);
                    i += 1;
                }
            }
            if wire.len() - label_start - 1 > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong(text.into()));
            }
        }
        if absolute {
            // `wire` ends with the placeholder byte pushed after the last dot: the root label.
        } else {
            let len = wire.len() - label_start - 1;
            if len == 0 {
                return Err(NameError::EmptyLabel(text.into()));
            }
            wire[label_start] = len as u8;
            let origin = origin.ok_or_else(|| NameError::NoOrigin(text.into()))?;
            wire.extend_from_slice(origin.as_wire());
        }
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(text.into()));
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// The uncompressed wire bytes, root label included.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    /// Lowercases ASCII letters in place.
    pub fn make_ascii_lowercase(&mut self) {
        self.0.make_ascii_lowercase();
    }

    /// The wire bytes, without a copy.
    pub fn into_wire(self) -> Box<[u8]> {
        self.0
    }

    /// A copy with ASCII letters lowercased: the form used as an index key.
    pub fn to_lowercase(&self) -> Name {
        Name(self.0.to_ascii_lowercase().into_boxed_slice())
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        label_count(&self.0)
    }

    /// True for the root name `.`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// True when `self` equals `ancestor` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, ancestor: &Name) -> bool {
        is_subdomain(&self.0, &ancestor.0)
    }
}

/// True when `wire` is one complete uncompressed name: labels of 1..=63 octets, the root
/// label last, 255 octets at most.
pub fn is_valid_wire(wire: &[u8]) -> bool {
    if wire.is_empty() || wire.len() > MAX_NAME_LEN {
        return false;
    }
    let mut i = 0;
    loop {
        let Some(&len) = wire.get(i) else {
            return false;
        };
        if len == 0 {
            return i + 1 == wire.len();
        }
        if len as usize > MAX_LABEL_LEN {
            return false;
        }
        i += 1 + len as usize;
    }
}

/// Labels in a valid wire name, not counting the root.
pub fn label_count(wire: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        n += 1;
        i += 1 + len as usize;
    }
    n
}

/// Length of the uncompressed wire name at the start of `b`, root label included; None if
/// it runs past the end.
pub fn wire_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let len = *b.get(i)? as usize;
        i += 1 + len;
        if len == 0 {
            return Some(i);
        }
    }
}

/// Case-insensitive "is `name` at or below `ancestor`", both valid wire names.
pub fn is_subdomain(name: &[u8], ancestor: &[u8]) -> bool {
    if ancestor.len() > name.len() {
        return false;
    }
    // The suffix must start on a label boundary of `name`.
    let target = name.len() - ancestor.len();
    let mut i = 0;
    while i < target {
        i += 1 + name[i] as usize;
    }
    i == target && name[i..].eq_ignore_ascii_case(ancestor)
}

/// Writes a wire name in presentation format, escaping as RFC 4343 asks.
pub fn write_presentation(wire: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    if wire.len() <= 1 {
        return f.write_char('.');
    }
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        for &b in wire.get(i + 1..i + 1 + len as usize).unwrap_or(&[]) {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    f.write_char('\\')?;
                    f.write_char(b as char)?;
                }
                0x21..=0x7e => f.write_char(b as char)?,
                _ => write!(f, "\\{b:03}")?,
            }
        }
        f.write_char('.')?;
        i += 1 + len as usize;
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_presentation(&self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s, None).expect("valid name")
    }

    #[test]
    fn parses_absolute_and_relative_names() {
        let origin = n("example.com.");
        assert_eq!(n("www.example.com.").as_wire(), b"\x03www\x07example\x03com\x00");
        assert_eq!(Name::parse("www", Some(&origin)), Ok(n("www.example.com.")));
        assert_eq!(Name::parse("@", Some(&origin)), Ok(origin.clone()));
        assert_eq!(n(".").as_wire(), b"\x00");
        assert!(matches!(Name::parse("www", None), Err(NameError::NoOrigin(_))));
    }

    #[test]
    fn handles_escapes_and_limits() {
        assert_eq!(n("a\\.b.c.").as_wire(), b"\x03a.b\x01c\x00");
        assert_eq!(n("\\065.c.").as_wire(), b"\x01A\x01c\x00");
        assert!(matches!(Name::parse("a..b.", None), Err(NameError::EmptyLabel(_))));
        assert!(matches!(Name::parse("\\999.", None), Err(NameError::BadEscape(_))));
        let long = format!("{}.", "a".repeat(64));
        assert!(matches!(Name::parse(&long, None), Err(NameError::LabelTooLong(_))));
        let too_long = "abcdefghi.".repeat(26);
        assert!(matches!(Name::parse(&too_long, None), Err(NameError::NameTooLong(_))));
    }

    #[test]
    fn subdomain_is_case_insensitive_and_label_aligned() {
        assert!(n("WWW.Example.COM.").is_subdomain_of(&n("example.com.")));
        assert!(n("example.com.").is_subdomain_of(&n("example.com.")));
        assert!(!n("xexample.com.").is_subdomain_of(&n("example.com.")));
        assert!(n("a.b.").is_subdomain_of(&Name::root()));
        assert!(!n("com.").is_subdomain_of(&n("example.com.")));
    }

    #[test]
    fn displays_with_escapes() {
        assert_eq!(n("a\\.b.c.").to_string(), "a\\.b.c.");
        assert_eq!(n("\\032x.").to_string(), "\\032x.");
        assert_eq!(Name::root().to_string(), ".");
        assert_eq!(n("*.Star.test.").to_string(), "*.Star.test.");
    }

    #[test]
    fn labels_and_wire_validity() {
        let w = n("*.star.test.");
        assert_eq!(w.label_count(), 3);
        assert!(is_valid_wire(w.as_wire()));
        assert!(!is_valid_wire(b"\x03ab"));
    }
}
