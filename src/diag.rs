//! Reporting configuration errors at their place in the file: the shared helpers every part
//! that reads a config table uses (`config` for its own tables, each policy for its
//! `[services."NAME".<policy>]` table), and an error's text with its causes. At the
//! bottom, so every layer can import it.

use std::fmt;
use std::ops::Range;

use toml::Spanned;

/// `e` and each of its sources, joined by ": " (HTTP clients put the cause that matters,
/// a refused connection or a TLS error, in the sources, not in their top message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Collects errors as (span in the file, message, hint).
pub type Report<'a> = dyn FnMut(Range<usize>, String, Option<&str>) + 'a;

/// A number setting checked against `range`: the value, or None after reporting
/// "`field`: VALUE is out of range" at the value, with `hint`.
pub fn in_range<T>(
    v: &Spanned<T>,
    range: std::ops::RangeInclusive<T>,
    field: &str,
    hint: &str,
    report: &mut Report<'_>,
) -> Option<T>
where
    T: PartialOrd + Copy + fmt::Display,
{
    let value = *v.get_ref();
    if range.contains(&value) {
        Some(value)
    } else {
        report(v.span(), format!("{field}: {value} is out of range"), Some(hint));
        None
    }
}

/// Indices of the regions named in `items` (among `names`), reporting unknown names and
/// names listed twice at the name.
pub fn region_list(items: &[Spanned<String>], names: &[&str], field: &str, report: &mut Report<'_>) -> Vec<usize> {
    let mut out = Vec::new();
    for item in items {
        match names.iter().position(|n| n == item.get_ref()) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => report(item.span(), format!("{field}: region {:?} is listed twice", item.get_ref()), None),
            None => report(
                item.span(),
                format!("{field} names unknown region {:?}", item.get_ref()),
                Some("define it as [regions.NAME] or remove it from the list"),
            ),
        }
    }
    out
}
