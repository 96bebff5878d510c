//! The module graph points one way. Reads every `src/**/*.rs`, collects which top-level
//! modules each top-level module names (`use crate::x`, grouped `use crate::{a, b::c}`,
//! `crate::x::` in expressions, `super::x` from a file directly under the crate root), and
//! fails on any cycle between them, printing it, and on any import of a module above the
//! importer in [`LAYERS`].
//!
//! Only shipped code counts: unit-test files (`tests.rs`, `testutil.rs`) and inline
//! `#[cfg(test)] mod ... { }` blocks may build their fixtures from any layer. Comments
//! (doc links included) do not count either.
//!
//! `GSLBD_ARCH_SRC=/some/other/src cargo test --test architecture` checks another tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import modules in its own layer's row only if
/// the graph stays acyclic, and modules of any lower layer; never one of a higher layer.
/// Why each boundary is where it is: docs/design.md.
const LAYERS: &[(&str, &[&str])] = &[
    // Vocabulary: record types, names, addresses, config error reporting, the shutdown
    // signal, the feed of changes. Imports nothing of ours.
    ("vocabulary", &["rtype", "name", "addr", "diag", "shutdown", "events"]),
    // Data read by everything above: zone data, GeoIP, the region model, the answer value,
    // and what can be wrong with them at load.
    ("data", &["zone", "geoip", "region", "answer", "load_error", "dnssec"]),
    // Counters: plain labels in (names, rcodes, transports), Prometheus text out; every
    // layer above may count.
    ("metrics", &["metrics"]),
    // Steering: one file per policy, each parsing its own settings table.
    ("policy", &["policy"]),
    // Health checks (one file per probe kind, each parsing its own table; rise/fall; the
    // prober) and the operator's overrides on disk: below config, which calls the probe
    // registry for `[regions.NAME.check]` as it calls the policy registry.
    ("checks", &["overrides", "health", "load"]),
    // Configuration: TOML -> validated Config, calling the policy and probe registries.
    ("config", &["config"]),
    // Services and what each may answer now.
    ("model", &["gslb"]),
    // The snapshot every query reads, and loading it.
    ("snapshot", &["snapshot"]),
    // The codec, then the pure answer algorithm and its explanation: resolve reads the
    // decoded query, wire writes the answer value; wire never imports resolve.
    ("codec", &["wire"]),
    ("answer logic", &["resolve", "explain"]),
    // Cluster mode: the etcd client, shared overrides and membership. Reads config and the
    // override values; the control loop above drives it.
    ("cluster", &["cluster"]),
    // Sockets, the control loop that builds snapshots, the admin API and its status page,
    // webhooks.
    ("io", &["frontend", "control", "admin", "page", "notify"]),
    // The server: starts everything and stops it on one signal; `gslbd ctl`, the admin
    // API's client.
    ("server", &["server", "ctl"]),
];

fn src_dir() -> PathBuf {
    std::env::var_os("GSLBD_ARCH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without inline `#[cfg(test)] mod` blocks.
fn shipped_code(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            // A `//` inside a string literal ("http://...") is rare in imports; cutting the
            // rest of such a line loses no `crate::` path.
            Some(i) => &line[..i],
            None => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    // Drop `#[cfg(test)] mod name { ... }` by brace matching.
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if trimmed.starts_with("mod ") && trimmed.find(['{', ';']).is_some_and(|i| trimmed.as_bytes()[i] == b'{') {
            let open = trimmed.find('{').expect("brace");
            let mut depth = 0usize;
            let mut end = trimmed.len();
            for (i, c) in trimmed[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &trimmed[end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{a, b::c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => {
                depth += 1;
                at_item_start = depth == 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start && depth == 1 => {
                heads.push(ident_at(&group[i..]).to_string());
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Top-level module names a piece of code refers to through `prefix` (`crate::`, or
/// `super::` from a file at the top level).
fn references(code: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let mut from = 0;
    while let Some(i) = code[from..].find(prefix) {
        let at = from + i;
        from = at + prefix.len();
        // `crate::` must not be the tail of another path (`$crate::`, `foo_crate::`).
        if at > 0 && code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        let rest = code[from..].trim_start();
        if rest.starts_with('{') {
            out.extend(group_heads(rest));
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
    }
}

/// Module -> the other top-level modules it refers to.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |p: &Path| -> Option<(String, bool)> {
        let rel = p.strip_prefix(src).ok()?;
        let mut parts = rel.iter().map(|s| s.to_string_lossy().into_owned());
        let first = parts.next()?;
        let depth = rel.iter().count();
        let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        // `super::` means the crate root in `src/x.rs` and `src/x/mod.rs` only.
        let top = depth == 1 || (depth == 2 && rel.ends_with("mod.rs"));
        Some((name, top))
    };
    let mut modules: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        if let Some((m, _)) = module_of(f) {
            modules.insert(m);
        }
    }
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some((m, top)) = module_of(f) else { continue };
        let file = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(m.as_str(), "lib" | "main" | "testutil")
            || file == "tests.rs"
            || f.components().any(|c| c.as_os_str() == "tests")
        {
            continue;
        }
        let code = shipped_code(&std::fs::read_to_string(f).expect("read source"));
        let mut refs = BTreeSet::new();
        references(&code, "crate::", &mut refs);
        if top {
            references(&code, "super::", &mut refs);
        }
        let entry = g.entry(m.clone()).or_default();
        for r in refs {
            if r != m && modules.contains(&r) && !matches!(r.as_str(), "lib" | "main" | "testutil") {
                entry.insert(r);
            }
        }
    }
    g
}

/// Every elementary cycle's strongly connected component, as a printable path.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components; each component of more than one module holds
    // a cycle, which we print by walking inside the component.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        n: usize,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.n);
        t.low.insert(v, t.n);
        t.n += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t =
        T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), n: 0, sccs: vec![] };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs.iter().filter(|s| s.len() > 1) {
        let inside: BTreeSet<&str> = scc.iter().copied().collect();
        // A shortest cycle through the component's smallest module, by breadth-first search.
        let start = *inside.iter().next().expect("non-empty");
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        while let Some(v) = queue.pop_front() {
            for w in g[v].iter().map(String::as_str).filter(|w| inside.contains(w)) {
                if w == start {
                    closing = Some(v);
                    break;
                }
                if !prev.contains_key(w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let mut path = vec![start.to_string()];
        let mut v = closing.expect("a component has a cycle");
        let mut back = vec![];
        while v != start {
            back.push(v.to_string());
            v = prev[v];
        }
        back.reverse();
        path.extend(back);
        path.push(start.to_string());
        let mut members: Vec<&str> = scc.clone();
        members.sort();
        out.push(path.into_iter().chain(std::iter::once(format!("(component: {})", members.join(", ")))).collect());
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

#[test]
fn modules_form_no_cycle() {
    let g = graph(&src_dir());
    for (m, deps) in &g {
        println!("{m} -> {}", deps.iter().map(String::as_str).collect::<Vec<_>>().join(", "));
    }
    let found = cycles(&g);
    let text: Vec<String> = found.iter().map(|c| c.join(" -> ")).collect();
    assert!(text.is_empty(), "module cycles:\n  {}", text.join("\n  "));
}

#[test]
fn no_module_imports_a_higher_layer() {
    let g = graph(&src_dir());
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(lm) = layer_of(m) else {
            wrong.push(format!("{m}: not in LAYERS; add it to the layer it belongs to"));
            continue;
        };
        for d in deps {
            match layer_of(d) {
                Some(ld) if ld > lm => {
                    wrong.push(format!("{m} ({}) imports {d} ({}), a higher layer", LAYERS[lm].0, LAYERS[ld].0))
                }
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "layer order broken:\n  {}", wrong.join("\n  "));
}

/// Cluster mode costs nothing per query (issue 12): the modules a query passes through
/// never name `cluster`, directly or through another module they import, so the query path
/// reads the same snapshot with or without `[cluster]`; etcd is only ever behind `control`.
#[test]
fn the_query_path_never_reaches_cluster_mode() {
    let g = graph(&src_dir());
    // The graph does see cluster where it is used.
    assert!(g.get("control").is_some_and(|d| d.contains("cluster")), "control should use cluster");
    for start in ["frontend", "wire", "resolve", "snapshot", "answer"] {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_string()];
        while let Some(m) = todo.pop() {
            if !seen.insert(m.clone()) {
                continue;
            }
            todo.extend(g.get(&m).into_iter().flatten().cloned());
        }
        assert!(!seen.contains("cluster"), "{start} reaches cluster through {seen:?}");
    }
}
