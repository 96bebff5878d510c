//! Probes: one HTTP, HTTPS or TCP attempt against a region's health endpoint, bounded by the
//! check's timeout. A failure is a value ([`FailReason`]) that says what a human needs to
//! know (refused? timed out? which status?), never an error to bubble up or ignore.
//!
//! HTTP probes open a fresh connection each time (no keep-alive pool): a health check must
//! see a listener that stopped accepting, not a pooled socket that happens to live on. They
//! never follow redirects (a 3xx is judged by `expect_status`) and never use a proxy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::time::Instant;

use crate::config::health::{BODY_LIMIT, CheckConfig, CheckKind, HttpCheck, HttpMethod};

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Healthy; `rtt` from the start of the attempt to the verdict (connect, request,
    /// status line, and the body when `body_contains` is set).
    Ok {
        rtt: Duration,
    },
    Fail(FailReason),
}

impl ProbeOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeOutcome::Ok { .. })
    }

    /// How long a passing probe took; None for a failure.
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            ProbeOutcome::Ok { rtt } => Some(*rtt),
            ProbeOutcome::Fail(_) => None,
        }
    }
}

/// Why a probe failed, typed so logs, the admin API and tests agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// No verdict within the check's timeout (including an endpoint that accepts and never
    /// answers).
    Timeout(Duration),
    ConnectionRefused,
    /// Any other failure to connect (unreachable, reset during connect ...).
    Connect(String),
    /// The probe target's name did not resolve.
    Resolve(String),
    /// The TLS handshake failed: bad certificate, wrong name, not TLS at all ...
    Tls(String),
    /// An answer whose status is not in `expect_status`.
    Status(u16),
    /// The first [`BODY_LIMIT`] bytes of the body lack `body_contains`.
    BodyMismatch,
    /// The connection broke or the answer was not HTTP.
    Http(String),
    /// The probe could not be set up (e.g. no system root certificates); it fails until
    /// the configuration changes.
    Setup(String),
}

impl FailReason {
    /// A short label for metrics (`gslbd_probe_results_total{result=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Timeout(_) => "timeout",
            FailReason::ConnectionRefused => "refused",
            FailReason::Connect(_) => "connect",
            FailReason::Resolve(_) => "resolve",
            FailReason::Tls(_) => "tls",
            FailReason::Status(_) => "status",
            FailReason::BodyMismatch => "body",
            FailReason::Http(_) => "http",
            FailReason::Setup(_) => "setup",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            FailReason::ConnectionRefused => f.write_str("connection refused"),
            FailReason::Connect(e) => write!(f, "cannot connect: {e}"),
            FailReason::Resolve(e) => write!(f, "cannot resolve: {e}"),
            FailReason::Tls(e) => write!(f, "tls error: {e}"),
            FailReason::Status(s) => write!(f, "status {s}"),
            FailReason::BodyMismatch => f.write_str("body mismatch"),
            FailReason::Http(e) => write!(f, "http error: {e}"),
            FailReason::Setup(e) => write!(f, "probe setup failed: {e}"),
        }
    }
}

/// A hand-made probe attempt, for tests of everything around probes (and for embedding).
pub type Attempt = Pin<Box<dyn Future<Output = Result<(), FailReason>> + Send>>;
pub type ScriptFn = Arc<dyn Fn() -> Attempt + Send + Sync>;

/// A ready-to-run probe built from one check: HTTP clients and TLS settings are built once
/// and reused for every attempt.
#[derive(Clone)]
pub struct Probe {
    timeout: Duration,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Http(Box<HttpProbe>),
    Tcp(String),
    Broken(FailReason),
    Script(ScriptFn),
}

#[derive(Clone)]
struct HttpProbe {
    check: HttpCheck,
    client: reqwest::Client,
    /// The URL requested: the configured one, with the host replaced by `tls_server_name`
    /// (which the client resolves to the configured host).
    url: reqwest::Url,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Http(h) => h.url.as_str().to_string(),
            Kind::Tcp(a) => format!("tcp {a}"),
            Kind::Broken(r) => format!("broken: {r}"),
            Kind::Script(_) => "script".to_string(),
        };
        f.debug_struct("Probe").field("kind", &kind).field("timeout", &self.timeout).finish()
    }
}

/// `gslbd/<version>`: lets balancer logs tell our probes from clients.
pub const USER_AGENT: &str = concat!("gslbd/", env!("CARGO_PKG_VERSION"));

impl Probe {
    /// Builds the probe for a check. A probe that cannot be built (no system roots, a
    /// client that does not build) fails every attempt with [`FailReason::Setup`].
    pub fn build(check: &CheckConfig) -> Probe {
        let kind = match &check.kind {
            CheckKind::Tcp { address } => Kind::Tcp(address.clone()),
            CheckKind::Http(h) => match HttpProbe::build(h) {
                Ok(p) => Kind::Http(Box::new(p)),
                Err(e) => Kind::Broken(FailReason::Setup(e)),
            },
        };
        Probe { timeout: check.timeout, kind }
    }

    /// A probe whose attempts are made by `script`, still bounded by `timeout`.
    pub fn scripted(timeout: Duration, script: ScriptFn) -> Probe {
        Probe { timeout, kind: Kind::Script(script) }
    }

    /// One attempt, never longer than the timeout (a hung endpoint is a timeout).
    pub async fn run(&self) -> ProbeOutcome {
        let start = Instant::now();
        let attempt = async {
            match &self.kind {
                Kind::Http(h) => h.attempt().await,
                Kind::Tcp(a) => tcp(a).await,
                Kind::Broken(r) => Err(r.clone()),
                Kind::Script(s) => s().await,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(())) => ProbeOutcome::Ok { rtt: start.elapsed() },
            Ok(Err(r)) => ProbeOutcome::Fail(r),
            Err(_) => ProbeOutcome::Fail(FailReason::Timeout(self.timeout)),
        }
    }
}

async fn tcp(address: &str) -> Result<(), FailReason> {
    let addrs: Vec<_> =
        tokio::net::lookup_host(address).await.map_err(|e| FailReason::Resolve(e.to_string()))?.collect();
    let mut last = FailReason::Resolve(format!("{address}: no addresses"));
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = FailReason::ConnectionRefused,
            Err(e) => last = FailReason::Connect(e.to_string()),
        }
    }
    Err(last)
}

impl HttpProbe {
    /// Builds the client so the request is what an operator checking by hand with curl would
    /// send (see the README's table "option -> request"):
    /// - the TLS server name (SNI and certificate name) is `tls_server_name`, else the host
    ///   part of `host_header` when it is a DNS name (what operators mean by "probe this
    ///   site on that address"; plain `curl -H Host:` would keep the url's host), else the
    ///   url's host (no SNI for an address, as curl);
    /// - the request goes to the url's host and port whatever the server name (as
    ///   `curl --connect-to NAME:PORT:HOST:PORT https://NAME:PORT/...`);
    /// - Host is `host_header` when set, else the server name (or url host) with the port
    ///   appended only when it is not the scheme's default;
    /// - the request line carries the url's path and query; the fragment is never sent.
    fn build(check: &HttpCheck) -> Result<HttpProbe, String> {
        let mut url = check.url.clone();
        url.set_fragment(None);
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .http1_only()
            .tls_backend_preconfigured(tls_config(check)?);
        if let (Some(sni), Some(host)) = (server_name(check), check.url.host_str())
            && !sni.eq_ignore_ascii_case(host)
        {
            // The client sends SNI, checks the certificate and derives Host from the URL's
            // host, so the URL names the server name and a resolver sends it to the
            // configured host.
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            url.set_host(Some(&sni)).map_err(|e| format!("tls server name {sni:?}: {e}"))?;
            builder = builder.dns_resolver(Arc::new(Pinned { name: sni.to_ascii_lowercase(), host }));
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(HttpProbe { check: check.clone(), client, url })
    }

    async fn attempt(&self) -> Result<(), FailReason> {
        let method = match self.check.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
        };
        let mut req = self.client.request(method, self.url.clone());
        if let Some(h) = &self.check.host_header {
            req = req.header(reqwest::header::HOST, h);
        }
        for (k, v) in &self.check.headers {
            req = req.header(k, v);
        }
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        if !self.check.is_expected(status) {
            return Err(FailReason::Status(status));
        }
        if let Some(needle) = &self.check.body_contains {
            let mut body = Vec::new();
            while body.len() < BODY_LIMIT {
                match resp.chunk().await.map_err(classify)? {
                    Some(c) => body.extend_from_slice(&c),
                    None => break,
                }
            }
            body.truncate(BODY_LIMIT);
            if !body.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Err(FailReason::BodyMismatch);
            }
        }
        Ok(())
    }
}

/// The TLS server name of an HTTPS check when it is not simply the url's host:
/// `tls_server_name`, else the host part of `host_header` if that is a DNS name. None for
/// plain HTTP.
pub fn server_name(check: &HttpCheck) -> Option<String> {
    if !check.is_https() {
        return None;
    }
    if let Some(n) = &check.tls_server_name {
        return Some(n.clone());
    }
    let host = crate::config::health::host_part(check.host_header.as_deref()?);
    matches!(ServerName::try_from(host), Ok(ServerName::DnsName(_))).then(|| host.to_string())
}

/// Resolves the TLS server name to the configured probe host; other names as usual.
struct Pinned {
    name: String,
    host: String,
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target =
            if name.as_str().eq_ignore_ascii_case(&self.name) { self.host.clone() } else { name.as_str().into() };
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((target.as_str(), 0)).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

/// Sorts a reqwest error into a reason a human reads: refused, TLS, timeout, or the
/// innermost message.
fn classify(e: reqwest::Error) -> FailReason {
    let mut innermost = e.to_string();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = next {
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            return FailReason::Tls(t.to_string());
        }
        innermost = s.to_string();
        next = s.source();
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return FailReason::ConnectionRefused;
            }
            // io::Error::source() skips the error it wraps (often another io::Error, then
            // the TLS error), so step into it instead.
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
            }
        }
    }
    if e.is_connect() {
        if innermost.contains("dns error") || innermost.contains("failed to lookup address") {
            return FailReason::Resolve(innermost);
        }
        return FailReason::Connect(innermost);
    }
    FailReason::Http(innermost)
}

/// TLS settings of one check, with the ring provider (no process-wide default needed):
/// `tls_insecure` accepts anything, `tls_ca_file` trusts only its certificates, otherwise
/// the system's roots. A plain HTTP check gets an empty root store (it never uses it).
fn tls_config(check: &HttpCheck) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if !check.is_https() {
        builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
    } else if check.tls_insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth()
    } else if !check.tls_ca.is_empty() {
        let mut roots = rustls::RootCertStore::empty();
        for c in &check.tls_ca {
            roots.add(c.clone()).map_err(|e| format!("tls_ca_file: {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| format!("system roots: {e}"))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `tls_insecure = true`: any certificate, any name. Handshake signatures are still checked
/// so the connection is TLS, just not authenticated.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Mutex;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A one-response-per-connection HTTP server on loopback; keeps every request it read.
    fn server(response: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for mut s in l.incoming().map_while(Result::ok) {
                // A client that never ends its request (a TLS hello) still gets the answer.
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                seen2.lock().unwrap().push(String::from_utf8_lossy(&req).to_lowercase());
                let _ = s.write_all(response.as_bytes());
            }
        });
        (addr, seen)
    }

    fn http(url: &str) -> HttpCheck {
        HttpCheck {
            url: url.parse().unwrap(),
            method: HttpMethod::Get,
            expect_status: vec![200..=399],
            body_contains: None,
            host_header: None,
            headers: Vec::new(),
            tls_server_name: None,
            tls_ca: Vec::new(),
            tls_ca_file: None,
            tls_insecure: false,
        }
    }

    async fn run(kind: CheckKind) -> ProbeOutcome {
        let check =
            CheckConfig { kind, interval: Duration::from_secs(1), timeout: TIMEOUT, rise: 1, fall: 1, window: None };
        Probe::build(&check).run().await
    }

    async fn run_http(check: HttpCheck) -> ProbeOutcome {
        run(CheckKind::Http(Box::new(check))).await
    }

    const OK_BODY: &str = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nall good\n";

    #[tokio::test]
    async fn expected_status_and_body_pass() {
        let (addr, seen) = server(OK_BODY);
        let mut c = http(&format!("http://{addr}/healthz"));
        assert!(run_http(c.clone()).await.is_ok());
        c.body_contains = Some("good".into());
        assert!(run_http(c.clone()).await.is_ok());
        c.body_contains = Some("bad".into());
        assert_eq!(run_http(c).await, ProbeOutcome::Fail(FailReason::BodyMismatch));
        let first = seen.lock().unwrap()[0].clone();
        assert!(first.starts_with("get /healthz http/1.1\r\n"), "{first}");
        assert!(first.contains(&format!("user-agent: gslbd/{}\r\n", env!("CARGO_PKG_VERSION"))), "{first}");
    }

    #[tokio::test]
    async fn a_status_outside_the_set_fails_with_it() {
        let (addr, _) = server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(run_http(http(&format!("http://{addr}/"))).await, ProbeOutcome::Fail(FailReason::Status(503)));
        let (addr, _) = server(OK_BODY);
        let mut c = http(&format!("http://{addr}/"));
        c.expect_status = vec![204..=204];
        assert_eq!(run_http(c).await, ProbeOutcome::Fail(FailReason::Status(200)));
        assert_eq!(FailReason::Status(503).to_string(), "status 503");
    }

    #[tokio::test]
    async fn host_header_and_extra_headers_are_sent() {
        let (addr, seen) = server(OK_BODY);
        let mut c = http(&format!("http://{addr}/"));
        c.method = HttpMethod::Head;
        c.host_header = Some("www.example.com".into());
        c.headers = vec![("X-Probe".into(), "1".into())];
        assert!(run_http(c).await.is_ok());
        let req = seen.lock().unwrap()[0].clone();
        assert!(req.starts_with("head / http/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nhost: www.example.com\r\n") && req.contains("\r\nx-probe: 1\r\n"), "{req}");
    }

    #[test]
    fn the_server_name_follows_tls_server_name_then_the_host_header() {
        // (url, tls_server_name, host_header, SNI other than the url's host)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            ("https://127.0.14.1:8443/", Some("www.example.test"), None, Some("www.example.test")),
            ("https://127.0.14.1:8443/", None, Some("www.example.test"), Some("www.example.test")),
            ("https://127.0.14.1:8443/", None, Some("www.example.test:8443"), Some("www.example.test")),
            ("https://127.0.14.1:8443/", Some("a.test"), Some("b.test"), Some("a.test")),
            ("https://lb.example.net/", None, Some("www.example.test"), Some("www.example.test")),
            // An address has no SNI: the url's host (an address too) is verified.
            ("https://127.0.14.1:8443/", None, Some("10.0.0.1:8443"), None),
            ("https://127.0.14.1/", None, None, None),
            // Plain HTTP has no TLS server name at all.
            ("http://127.0.14.1/", None, Some("www.example.test"), None),
        ];
        for &(url, sni, host, want) in cases {
            let mut c = http(url);
            c.tls_server_name = sni.map(String::from);
            c.host_header = host.map(String::from);
            assert_eq!(server_name(&c).as_deref(), want, "{url} sni {sni:?} host {host:?}");
        }
        let parts =
            [("a.test", "a.test"), ("a.test:8443", "a.test"), ("[::1]:443", "::1"), ("[::1]", "::1"), ("a:b", "a:b")];
        for (host, want) in parts {
            assert_eq!(crate::config::health::host_part(host), want);
        }
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_times_out_on_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let held = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let start = std::time::Instant::now();
        let outcome = run_http(http(&format!("http://{addr}/"))).await;
        assert_eq!(outcome, ProbeOutcome::Fail(FailReason::Timeout(TIMEOUT)));
        let took = start.elapsed();
        assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_millis(200), "{took:?}");
        assert_eq!(FailReason::Timeout(TIMEOUT).to_string(), "timeout after 300ms");
        drop(held);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_fast() {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let start = std::time::Instant::now();
        assert_eq!(
            run(CheckKind::Tcp { address: addr.to_string() }).await,
            ProbeOutcome::Fail(FailReason::ConnectionRefused)
        );
        assert_eq!(run_http(http(&format!("http://{addr}/"))).await, ProbeOutcome::Fail(FailReason::ConnectionRefused));
        assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
        assert_eq!(FailReason::ConnectionRefused.to_string(), "connection refused");
    }

    #[tokio::test]
    async fn tcp_connect_passes_with_rtt() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let outcome = run(CheckKind::Tcp { address: l.local_addr().unwrap().to_string() }).await;
        let ProbeOutcome::Ok { rtt } = outcome else { panic!("{outcome:?}") };
        assert!(rtt < TIMEOUT);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_error() {
        let (addr, _) = server(OK_BODY);
        let mut c = http(&format!("https://{addr}/"));
        c.tls_insecure = true;
        let outcome = run_http(c).await;
        assert!(matches!(&outcome, ProbeOutcome::Fail(FailReason::Tls(_))), "{outcome:?}");
        let mut c = http(&format!("https://127.0.0.1:{}/", addr.port()));
        c.tls_server_name = Some("www.example.com".into());
        c.tls_insecure = true;
        let outcome = run_http(c).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Fail(FailReason::Tls(_))),
            "SNI name resolves to the url's host: {outcome:?}"
        );
    }
}
