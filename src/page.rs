//! The status page (`GET /` on the admin address): what an SRE paged at 3 a.m. wants to
//! see at a glance. Regions (health, up, override, RTT, recent probes), services (mode,
//! answer set, the share of answers each region got recently), the regions on a world map
//! by their coordinates, and the recent health, mode and override changes.
//!
//! Plain HTML and CSS, no JavaScript, nothing fetched from elsewhere: the page refreshes
//! itself (`<meta http-equiv="refresh">`) and the map is an SVG drawn from the data
//! (equirectangular: x = longitude, y = latitude, with a graticule; no tiles). The page is
//! rendered from the same JSON as `GET /v1/status`, so the two never disagree.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often the page reloads itself, seconds.
pub const REFRESH_SECONDS: u32 = 5;
/// The span over which answer shares are computed ("recently").
pub const SHARE_WINDOW: Duration = Duration::from_secs(300);

/// One counter of answers naming a region: (service, region, total since start).
pub type AnswerTotal = (String, String, u64);

/// The answer counters at one moment, by (service, region).
type Sample = BTreeMap<(String, String), u64>;

/// Samples of the answer counters, so the page can show each region's share of a service's
/// answers over the last [`SHARE_WINDOW`] rather than since start. Fed by the admin API
/// (at most one sample per `min_gap`); not on the query path.
#[derive(Debug)]
pub struct ShareWindow {
    samples: VecDeque<(Instant, Sample)>,
    window: Duration,
    min_gap: Duration,
}

impl ShareWindow {
    /// Shares computed over `window`, from samples taken at least `min_gap` apart.
    pub fn new(window: Duration, min_gap: Duration) -> ShareWindow {
        ShareWindow { samples: VecDeque::new(), window, min_gap }
    }

    /// Records the counters at `now` and returns, per service, each region's answers in the
    /// window (the newest sample less the oldest one still in the window; a counter that
    /// went backwards, after a reload renumbered it, counts from zero). Before there are two
    /// samples, the counts since start.
    pub fn update(&mut self, now: Instant, totals: &[AnswerTotal]) -> BTreeMap<String, Vec<(String, u64)>> {
        let current: Sample = totals.iter().map(|(s, r, n)| ((s.clone(), r.clone()), *n)).collect();
        if self.samples.back().is_none_or(|(at, _)| now.duration_since(*at) >= self.min_gap) {
            self.samples.push_back((now, current.clone()));
        }
        while self.samples.len() > 1
            && self.samples.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= self.window)
        {
            self.samples.pop_front();
        }
        // A first look has nothing to compare with: count from start.
        let oldest = self.samples.front().filter(|_| self.samples.len() > 1).map(|(_, m)| m);
        let mut out: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for ((service, region), n) in &current {
            let before = oldest.and_then(|m| m.get(&(service.clone(), region.clone()))).copied().unwrap_or(0);
            let recent = if *n >= before { n - before } else { *n };
            out.entry(service.clone()).or_default().push((region.clone(), recent));
        }
        out
    }
}

/// One change worth showing: when (seconds since the epoch), what kind (`health`, `mode`,
/// `override`), about what (a region or service) and what happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// When it happened, in seconds since the Unix epoch.
    pub at: u64,
    /// `health`, `mode` or `override`.
    pub kind: &'static str,
    /// The region or service it is about.
    pub subject: String,
    /// What happened, in one line (`healthy -> unhealthy (timeout)`).
    pub what: String,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A domain name as shown: in full, without the root's trailing dot (`www.demo.test`).
fn shown(name: &str) -> String {
    escape(name.strip_suffix('.').unwrap_or(name))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Seconds as a short age: `42s`, `7m`, `3h`, `2d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

const STYLE: &str = "
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2328}
header{padding:.6rem 1rem;background:#24292f;color:#fff}header h1{margin:0;font-size:1.2rem}header p{margin:.2rem 0 0;color:#d0d7de;font-size:.85rem}
main{padding:0 1rem 2rem;max-width:72rem;margin:auto}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;white-space:nowrap}td.wrap{white-space:normal;min-width:10rem}th{background:var(--bg);font-weight:600}
.pill{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff}
.ok{background:var(--ok)}.bad{background:var(--bad)}.warn{background:var(--warn)}.muted{background:var(--muted)}
.probes span{display:inline-block;width:.55rem;height:.9rem;margin-right:1px;border-radius:1px}.probes .p{background:var(--ok)}.probes .f{background:var(--bad)}
.share{display:flex;align-items:center;gap:.4rem;margin:.1rem 0}.bar{display:inline-block;height:.6rem;background:#0969da;border-radius:2px}
.note{color:var(--muted);font-size:.8rem}svg{width:100%;height:auto;background:#eaf2fb;border:1px solid var(--line);border-radius:4px}
ol.changes{padding-left:1.2rem;font-size:.9rem}ol.changes li{margin:.15rem 0}
@media (max-width:40rem){body{font-size:14px}main{padding:0 .5rem 1.5rem}th,td{padding:.3rem}}
";

/// The whole page, from the `/v1/status` JSON, the recent answer shares (per service: region
/// and answers in the window), the recent changes (newest first) and the time now (seconds
/// since the epoch).
pub fn render(status: &Value, shares: &BTreeMap<String, Vec<(String, u64)>>, changes: &[Change], now: u64) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>gslbd status</title><style>{STYLE}</style></head><body>\
         <header><h1>gslbd status</h1><p>version {} · up {} · {} zones · refreshes every {REFRESH_SECONDS} s</p></header><main>",
        escape(str_of(&status["version"])),
        age(status["uptime_seconds"].as_u64().unwrap_or(0)),
        status["zones"].as_array().map_or(0, Vec::len)
    );
    services(&mut h, status, shares);
    regions(&mut h, status, now);
    map(&mut h, status);
    recent_changes(&mut h, changes, now);
    h.push_str("<p class=\"note\">JSON: <a href=\"/v1/status\">/v1/status</a> · metrics: <a href=\"/metrics\">/metrics</a> · API: <a href=\"/v1/openapi.json\">/v1/openapi.json</a></p></main></body></html>\n");
    h
}

fn mode_class(mode: &str) -> &'static str {
    match mode {
        "normal" => "ok",
        "degraded" => "warn",
        _ => "bad",
    }
}

fn services(h: &mut String, status: &Value, shares: &BTreeMap<String, Vec<(String, u64)>>) {
    h.push_str("<section id=\"services\"><h2>Services</h2><div class=\"scroll\"><table><thead><tr><th>Service</th><th>Mode</th><th>Share of answers (last 5 min)</th><th>Answer set (A / AAAA)</th><th>Policy</th><th>TTL</th></tr></thead><tbody>");
    for s in status["services"].as_array().into_iter().flatten() {
        let name = str_of(&s["name"]);
        let mode = str_of(&s["mode"]);
        let list = |v: &Value| {
            let items: Vec<String> = v.as_array().into_iter().flatten().map(|x| escape(str_of(x))).collect();
            if items.is_empty() { "—".to_string() } else { items.join(", ") }
        };
        let _ = write!(
            h,
            "<tr id=\"service-{id}\" data-mode=\"{mode}\"><td>{shown}</td><td><span class=\"pill {class}\">{mode}</span></td><td>",
            id = escape(name),
            mode = escape(mode),
            shown = shown(name),
            class = mode_class(mode),
        );
        // Skew (last minute, actual over intended share, from /v1/status): a region taking
        // several times its share shows at a glance.
        if let Some(skew) = s["skew"].as_f64().filter(|k| *k >= 1.5) {
            let class = if skew >= 3.0 { "bad" } else { "warn" };
            let _ = write!(
                h,
                "<span class=\"pill {class}\" title=\"largest actual/intended share, last minute\">skew {skew:.1}x</span>"
            );
        }
        let intended = |region: &str| -> Option<f64> {
            s["shares"].as_array()?.iter().find(|x| x["region"] == region)?["intended"].as_f64()
        };
        let rows = shares.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let total: u64 = rows.iter().map(|(_, n)| n).sum();
        if total == 0 {
            h.push_str("<span class=\"note\">no answers lately</span>");
        }
        for (region, n) in rows.iter().filter(|_| total > 0) {
            let pct = *n as f64 * 100.0 / total as f64;
            let _ = write!(
                h,
                "<div class=\"share\" data-region=\"{r}\"><span class=\"bar\" style=\"width:{w:.1}px\"></span>{r} {pct:.0}%{planned}</div>",
                r = escape(region),
                w = pct * 1.2,
                planned = intended(region)
                    .map(|i| format!(" <span class=\"note\">of {:.0}% planned</span>", i * 100.0))
                    .unwrap_or_default(),
            );
        }
        let _ = write!(
            h,
            "</td><td class=\"wrap\">{a} / {aaaa}</td><td>{policy}</td><td>{ttl}",
            a = list(&s["answer_set"]["A"]),
            aaaa = list(&s["answer_set"]["AAAA"]),
            policy = list(&s["policy"]),
            ttl = s["ttl"].as_u64().unwrap_or(0),
        );
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table></div></section>");
}

fn regions(h: &mut String, status: &Value, now: u64) {
    h.push_str("<section id=\"regions\"><h2>Regions</h2><div class=\"scroll\"><table><thead><tr><th>Region</th><th>Answered</th><th>Health</th><th>Override</th><th>Weight</th><th>RTT</th><th>Load</th><th>Recent probes</th><th>Reason</th></tr></thead><tbody>");
    for r in status["regions"].as_array().into_iter().flatten() {
        let name = str_of(&r["name"]);
        let up = r["up"].as_bool() == Some(true);
        let health = str_of(&r["health"]);
        let health_class = match health {
            "healthy" => "ok",
            "unhealthy" => "bad",
            _ => "muted",
        };
        let since = r["since"]
            .as_u64()
            .map(|s| format!(" <span class=\"note\">for {}</span>", age(now.saturating_sub(s))))
            .unwrap_or_default();
        let o = &r["override"];
        let mut over = Vec::new();
        if o["drained"].as_bool() == Some(true) {
            over.push("drained".to_string());
        }
        if let Some(w) = o["weight"].as_u64() {
            over.push(format!("weight {w}"));
        }
        if o["force"].is_object() {
            let state = if o["force"]["up"].as_bool() == Some(true) { "up" } else { "down" };
            match o["force"]["until"].as_u64() {
                Some(until) => over.push(format!("forced {state}, {} left", age(until.saturating_sub(now)))),
                None => over.push(format!("forced {state}")),
            }
        }
        if !over.is_empty() && !str_of(&o["updated_by"]).is_empty() {
            over.push(format!("by {}", escape(str_of(&o["updated_by"]))));
        }
        let probes: String = r["recent_probes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let ok = p["ok"].as_bool() == Some(true);
                let title = if ok {
                    p["rtt_ms"].as_f64().map_or("ok".to_string(), |ms| format!("ok {ms:.1} ms"))
                } else {
                    escape(str_of(&p["reason"]))
                };
                format!("<span class=\"{}\" title=\"{title}\"></span>", if ok { "p" } else { "f" })
            })
            .collect();
        let load = match r.get("utilisation").and_then(Value::as_f64) {
            Some(u) => format!("{:.0}%", u * 100.0),
            None => "—".into(),
        };
        let _ = write!(
            h,
            "<tr id=\"region-{id}\" data-up=\"{up}\" data-health=\"{health}\"><td>{id}</td><td><span class=\"pill {upc}\">{upt}</span></td>\
             <td><span class=\"pill {health_class}\">{health}</span>{since}</td><td>{over}</td><td>{we}/{wc}</td><td>{rtt}</td><td>{load}</td>\
             <td class=\"probes\">{probes}</td><td>{reason}</td></tr>",
            id = escape(name),
            upc = if up { "ok" } else { "bad" },
            upt = if up { "yes" } else { "no" },
            health = escape(health),
            over = if over.is_empty() { "—".to_string() } else { over.join(", ") },
            we = r["weight"]["effective"].as_u64().unwrap_or(0),
            wc = r["weight"]["configured"].as_u64().unwrap_or(0),
            rtt = r["rtt_ewma_ms"].as_f64().map_or("—".to_string(), |ms| format!("{ms:.1} ms")),
            probes = if probes.is_empty() { "—".to_string() } else { probes },
            reason = escape(str_of(&r["reason"])),
        );
    }
    h.push_str("</tbody></table></div></section>");
}

/// The regions on an equirectangular world map (viewBox: 360 × 180, one unit a degree),
/// with a graticule every 30°; a region without coordinates is listed under the map.
fn map(h: &mut String, status: &Value) {
    h.push_str("<section id=\"map\"><h2>Map</h2><svg viewBox=\"0 0 360 180\" role=\"img\" aria-label=\"Regions on a world map\">");
    for lon in (30..360).step_by(30) {
        let _ =
            write!(h, "<line x1=\"{lon}\" y1=\"0\" x2=\"{lon}\" y2=\"180\" stroke=\"#c5d6ea\" stroke-width=\"0.3\"/>");
    }
    for lat in (30..180).step_by(30) {
        let width = if lat == 90 { 0.6 } else { 0.3 };
        let _ = write!(
            h,
            "<line x1=\"0\" y1=\"{lat}\" x2=\"360\" y2=\"{lat}\" stroke=\"#c5d6ea\" stroke-width=\"{width}\"/>"
        );
    }
    let mut unplaced = Vec::new();
    for r in status["regions"].as_array().into_iter().flatten() {
        let name = escape(str_of(&r["name"]));
        let coords = r["coordinates"].as_array().and_then(|c| Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?)));
        let Some((lat, lon)) = coords else {
            unplaced.push(name);
            continue;
        };
        let (x, y) = (lon.clamp(-180.0, 180.0) + 180.0, 90.0 - lat.clamp(-90.0, 90.0));
        let color = if r["up"].as_bool() == Some(true) { "#1a7f37" } else { "#cf222e" };
        let _ = write!(
            h,
            "<g class=\"region\" data-region=\"{name}\"><circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3\" fill=\"{color}\" stroke=\"#fff\" stroke-width=\"0.8\"><title>{name} ({lat}, {lon})</title></circle>\
             <text x=\"{tx:.2}\" y=\"{ty:.2}\" font-size=\"6\" fill=\"#1f2328\">{name}</text></g>",
            tx = (x + 4.0).min(330.0),
            ty = y + 2.0,
        );
    }
    h.push_str("</svg>");
    if !unplaced.is_empty() {
        let _ = write!(h, "<p class=\"note\">Without coordinates: {}</p>", unplaced.join(", "));
    }
    h.push_str("</section>");
}

fn recent_changes(h: &mut String, changes: &[Change], now: u64) {
    h.push_str("<section id=\"changes\"><h2>Recent changes</h2>");
    if changes.is_empty() {
        h.push_str("<p class=\"note\">No health, mode or override change since start.</p>");
    } else {
        h.push_str("<ol class=\"changes\">");
        for c in changes {
            let _ = write!(
                h,
                "<li data-kind=\"{kind}\"><span class=\"note\">{ago} ago</span> <b>{kind}</b> {subject}: {what}</li>",
                kind = c.kind,
                ago = age(now.saturating_sub(c.at)),
                subject = shown(&c.subject),
                what = escape(&c.what),
            );
        }
        h.push_str("</ol>");
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status() -> Value {
        json!({
            "version": "0.1.0", "uptime_seconds": 3700, "zones": [{"name": "demo.test."}],
            "services": [{"name": "www.demo.test.", "policy": ["geo", "nearest"], "mode": "degraded", "ttl": 10,
                          "answer_set": {"A": ["eu-west"], "AAAA": []}, "skew": 4.2,
                          "shares": [{"region": "eu-west", "intended": 0.2, "actual": 0.84}]}],
            "regions": [
                {"name": "eu-west", "up": true, "health": "healthy", "since": 1000, "coordinates": [51.5, -0.13],
                 "rtt_ewma_ms": 1.25, "recent_probes": [{"ok": true, "rtt_ms": 1.2}, {"ok": false, "reason": "status 503"}],
                 "weight": {"configured": 30, "effective": 30}, "override": null, "reason": null},
                {"name": "us-<east>", "up": false, "health": "unhealthy", "since": 1500, "coordinates": null,
                 "recent_probes": null, "weight": {"configured": 50, "effective": 0},
                 "override": {"drained": true, "force": {"up": false, "until": 2600}, "updated_by": "ops"}, "reason": "timeout"}
            ]
        })
    }

    #[test]
    fn the_page_shows_services_regions_map_and_changes() {
        let mut shares = BTreeMap::new();
        shares.insert("www.demo.test.".to_string(), vec![("eu-west".to_string(), 3), ("us-<east>".to_string(), 1)]);
        let changes = [Change {
            at: 1990,
            kind: "health",
            subject: "us-<east>".into(),
            what: "healthy -> unhealthy (timeout)".into(),
        }];
        let page = render(&status(), &shares, &changes, 2000);
        for want in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<tr id=\"service-www.demo.test.\" data-mode=\"degraded\"><td>www.demo.test</td>",
            "<span class=\"pill warn\">degraded</span>",
            "<td>geo, nearest</td><td>10</td>",
            "eu-west 75% <span class=\"note\">of 20% planned</span>",
            "<span class=\"pill bad\" title=\"largest actual/intended share, last minute\">skew 4.2x</span>",
            "us-&lt;east&gt; 25%",
            "<tr id=\"region-eu-west\" data-up=\"true\" data-health=\"healthy\">",
            "<tr id=\"region-us-&lt;east&gt;\" data-up=\"false\" data-health=\"unhealthy\">",
            "drained, forced down, 10m left, by ops",
            "<td>0/50</td>",
            "1.2 ms",
            "title=\"status 503\"",
            "<circle cx=\"179.87\" cy=\"38.50\"",
            "Without coordinates: us-&lt;east&gt;",
            "<li data-kind=\"health\"><span class=\"note\">10s ago</span> <b>health</b> us-&lt;east&gt;: healthy -&gt; unhealthy (timeout)</li>",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        assert!(!page.contains("<script"), "no JavaScript");
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing fetched from elsewhere");
    }

    #[test]
    fn shares_are_counted_over_the_window() {
        let t0 = Instant::now();
        let mut w = ShareWindow::new(Duration::from_secs(300), Duration::from_secs(10));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let totals =
            |a: u64, b: u64| vec![("s".to_string(), "a".to_string(), a), ("s".to_string(), "b".to_string(), b)];
        assert_eq!(w.update(at(0), &totals(100, 0))["s"], [("a".to_string(), 100), ("b".to_string(), 0)]);
        assert_eq!(w.update(at(60), &totals(160, 20))["s"], [("a".to_string(), 60), ("b".to_string(), 20)]);
        // Past the window, the first sample is dropped: only what came after it counts.
        let s = w.update(at(400), &totals(200, 100));
        assert_eq!(s["s"], [("a".to_string(), 40), ("b".to_string(), 80)]);
        // A counter that went back (a reload) counts from zero.
        assert_eq!(w.update(at(410), &totals(5, 100))["s"][0], ("a".to_string(), 5));
    }
}
