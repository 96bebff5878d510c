//! A real etcd cluster on loopback for the cluster-mode tests: N members on free ports,
//! each with its own data directory under one temp dir. Members are stopped by PID (never
//! by name) and the data directories removed when the cluster is dropped; each member's
//! log is printed if the test failed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// A free loopback port for a child to listen on: bound then released, so it is taken
/// from 20000-32767, below Linux's ephemeral range (32768-60999). A port the kernel hands
/// out for port 0 (every gslbd in the tests binds its sockets that way) can then never be
/// the one we just released before etcd binds it, which once made an etcd peer port answer
/// 404 to the other members.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    for _ in 0..1000 {
        let n = seed.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed));
        let port = 20000 + (n % 12768) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32767");
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics` (etcd's `--listen-metrics-urls`), also when the
    /// client port speaks TLS.
    pub metrics_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Server TLS for the client port: etcd's certificate and key, and the CA whose client
/// certificates it accepts (`--client-cert-auth`).
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub struct EtcdCluster {
    pub members: Vec<Member>,
    initial_cluster: String,
    /// Some: the client ports speak TLS and ask for a client certificate.
    tls: Option<ServerTls>,
    /// Holds every data directory and log; removed on drop.
    dir: TempDir,
}

/// Whether etcd is installed (tests/run.sh installs it).
pub fn available() -> bool {
    Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Whether etcd is installed; reports it missing (see [`super::missing_tool`]) when not.
pub fn need_etcd() -> bool {
    if available() {
        true
    } else {
        super::missing_tool("etcd (Debian etcd-server)");
        false
    }
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one reports healthy (a leader elected).
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, TempDir::new("etcd"), None)
    }

    /// As [`EtcdCluster::start`], in `dir`, with the client ports on TLS when `tls` is given.
    pub fn start_with(n: usize, dir: TempDir, tls: Option<ServerTls>) -> EtcdCluster {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, tls, dir };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(&(0..n).collect::<Vec<_>>());
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.cert).arg("--key-file").arg(&tls.key);
            cmd.arg("--trusted-ca-file").arg(&tls.ca).arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", &format!("gslbd-test-{}", std::process::id())])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client URLs, as `[cluster] etcd` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port)).collect()
    }

    /// Stops every member (SIGKILL) and starts them again on their data directories with
    /// the client ports on `tls` (None: plain HTTP); waits until they are healthy.
    pub fn restart_all_with(&mut self, tls: Option<ServerTls>) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        self.tls = tls;
        for i in 0..self.members.len() {
            self.spawn(i, "existing");
        }
        self.wait_healthy(&(0..self.members.len()).collect::<Vec<_>>());
    }

    pub fn client(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port))
    }

    /// Waits until each of these members answers `/health` with a leader.
    pub fn wait_healthy(&self, which: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in which {
            loop {
                // The metrics port serves /health over plain HTTP whatever the client port speaks.
                let addr = SocketAddr::from(([127, 0, 0, 1], self.members[i].metrics_port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    let (code, body) = super::http(addr, "GET", "/health", None, None);
                    if code == 200 && body.contains("\"true\"") {
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "etcd member {i} not healthy within 30 s:\n{}", self.logs());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Stops member `i` with SIGKILL, by its PID.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed member again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i, "existing");
    }

    /// A raw call to the JSON gateway of member `i` (for tests that write as "someone else").
    pub fn post(&self, i: usize, path: &str, body: &str) -> (u16, String) {
        super::http(self.client(i), "POST", path, None, Some(body))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("----- etcd {} (last lines) -----\n", m.name);
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..self.members.len() {
            self.kill(i);
        }
        // The data directories go with self.dir (TempDir's drop).
    }
}

/// A config for gslbd instance `name`: tests/gslb/gslbd.toml with absolute paths and a
/// `[cluster]` table on `etcd` (site `site-NAME`, lease TTL 3 s) plus `extra` lines, written
/// into `dir`; its path.
pub fn gslb_config(dir: &TempDir, name: &str, etcd: &[String], prefix: &str, extra: &str) -> String {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb");
    let text = std::fs::read_to_string(base.join("gslbd.toml"))
        .unwrap()
        .replace("directory = \"zones\"", &format!("directory = {:?}", base.join("zones")))
        .replace("token_file = \"admin.token\"", &format!("token_file = {:?}", base.join("admin.token")))
        .replace("\"../../geoip/", &format!("\"{}/", base.join("../../geoip").display()));
    let endpoints: Vec<String> = etcd.iter().map(|e| format!("{e:?}")).collect();
    let cluster = format!(
        "\n[cluster]\netcd = [{}]\nprefix = {prefix:?}\ninstance = {name:?}\nsite = \"site-{name}\"\nlease_ttl = \"3s\"\n{extra}",
        endpoints.join(", ")
    );
    dir.write(&format!("{name}.toml"), &(text + &cluster)).display().to_string()
}
