//! Shared integration-test harness: runs a private S3/KMS emulator per test and hands out
//! CLI environment and SDK clients pointed at it.
//!
//! The emulator is `scripts/s3emu.py`: moto's own server app (one port serves S3 and KMS)
//! wrapped to behave like S3 where moto 5.2 does not (UpdateObjectEncryption, KMS key checks,
//! copy-source preconditions, opaque SSE-KMS ETags, ...) plus quota gates and fault injection,
//! controlled at runtime through `/__stats`, `/__config` and `/__reset_stats`.
//!
//! A missing or broken moto is a test FAILURE, never a skip: run `scripts/test`,
//! which provisions `.venv` with the pinned `moto[server]==5.2.5`. The Python used is the
//! one next to `REKEY_MOTO_SERVER` (else `.venv/bin/python`).
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running emulator (`scripts/s3emu.py` around moto) on a free localhost port; killed on drop.
pub struct Moto {
    pub endpoint: String,
    addr: SocketAddr,
    child: Child,
    log_path: PathBuf,
}

/// The venv python that has moto: next to `REKEY_MOTO_SERVER`, else `.venv/bin/python`.
fn emulator_python() -> PathBuf {
    let python = match std::env::var_os("REKEY_MOTO_SERVER") {
        Some(p) if !p.is_empty() => {
            PathBuf::from(p).parent().map(|d| d.join("python")).unwrap_or_else(|| PathBuf::from("python"))
        }
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    if !python.is_file() {
        panic!(
            "emulator python not found at {} (set REKEY_MOTO_SERVER to the venv's moto_server or \
             run `scripts/test`, which installs moto[server]==5.2.5 into .venv). A missing \
             emulator is a test failure, not a skip.",
            python.display()
        );
    }
    python
}

fn emulator_script() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/s3emu.py");
    assert!(script.is_file(), "emulator script missing: {}", script.display());
    script
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
    // listener dropped here, freeing the port for moto
}

/// One HTTP/1.0 request over a plain TcpStream; returns (status, body).
fn http_request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {head:?}")))?;
    Ok((status, payload.to_string()))
}

/// True once the emulator's control endpoint answers.
fn http_ready(addr: SocketAddr) -> bool {
    matches!(http_request(addr, "GET", "/__stats", None), Ok((200, _)))
}

impl Moto {
    /// Starts the emulator with default settings (no quotas, no faults) and blocks
    /// (up to 30 s) until its control endpoint answers.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts the emulator with extra `scripts/s3emu.py` flags, e.g.
    /// `&[("--kms-rps", "200"), ("--seed", "7")]`.
    pub fn start_with(flags: &[(&str, &str)]) -> Moto {
        let python = emulator_python();
        let script = emulator_script();
        let port = free_port();
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("rekey-moto-{}-{seq}-{port}.log", std::process::id()));
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("create emulator log {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone log file handle");
        let mut cmd = Command::new(&python);
        cmd.arg(&script).args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        for (flag, value) in flags {
            cmd.arg(flag).arg(value);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log_err)).spawn().unwrap_or_else(
                |e| panic!("spawn {} {}: {e} (run `scripts/test`)", python.display(), script.display()),
            );
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), addr, child, log_path };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if http_ready(addr) {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("emulator exited early with {status}; log {}:\n{}", moto.log_path.display(), moto.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "emulator did not answer on {} within {:?}; log {}:\n{}",
                    moto.endpoint,
                    STARTUP_TIMEOUT,
                    moto.log_path.display(),
                    moto.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `GET /__stats`: `{"requests": {op: n}, "throttled_kms", "throttled_s3",
    /// "faults": {"500", "embedded", "dropped"}, "kms_calls", "uptime_s", ...}`.
    pub fn stats(&self) -> serde_json::Value {
        self.control("GET", "/__stats", None)
    }

    /// `POST /__config` with a JSON object of any of `kms_rps, s3_rps, fail_rate,
    /// embedded_error_rate, drop_rate, drop_phase, latency_ms`; returns the resulting config.
    pub fn configure(&self, json: &str) -> serde_json::Value {
        self.control("POST", "/__config", Some(json))
    }

    /// `POST /__reset_stats`.
    pub fn reset_stats(&self) {
        self.control("POST", "/__reset_stats", None);
    }

    fn control(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let (status, payload) = http_request(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}; log:\n{}", self.endpoint, self.log()));
        assert_eq!(status, 200, "{method} {path} -> {status}: {payload}");
        serde_json::from_str(&payload).unwrap_or_else(|e| panic!("{method} {path}: bad JSON {payload:?}: {e}"))
    }

    /// Contents of the server log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Environment for running the `rekey` binary against this server.
    pub fn env_for_cli(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The shared SDK config (static creds, us-east-1, this endpoint).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"))
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// An S3 client (path-style) pointed at this server.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let shared = self.sdk_config().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A KMS client pointed at this server (the same port serves KMS).
    pub async fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the server log when a test fails, for post-mortems.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// The `rekey` binary with `args`, no emulator (us-east-1 for anything region-bound).
pub fn rekey_offline(args: &[&str]) -> std::process::Output {
    Command::new(rekey_bin()).args(args).env("AWS_REGION", "us-east-1").output().unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o`, after asserting that rekey succeeded (its output in the message if not).
pub fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "rekey failed: {}\n{}", stderr(&o), stdout(&o));
    o
}

/// stdout as one JSON document.
pub fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not one JSON document: {e}: {}", stdout(o)))
}

/// `rekey plan --inventory MANIFEST --kms-key KEY --state STATE`, then `extra`.
pub fn plan_args<'a>(
    manifest: &'a std::path::Path,
    key: &'a str,
    state: &'a std::path::Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args =
        vec!["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", key, "--state", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    args
}

/// Path of the compiled `rekey` binary (only valid inside integration tests).
pub fn rekey_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rekey"))
}

/// Versions per key in a bucket (ListObjectVersions has no paginator in the SDK: the
/// markers are followed by hand). Exactly-once checks count these.
pub async fn version_counts(s3: &aws_sdk_s3::Client, bucket: &str) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    let (mut km, mut vm) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(km.take())
            .set_version_id_marker(vm.take())
            .send()
            .await
            .expect("ListObjectVersions");
        for v in page.versions() {
            *counts.entry(v.key().unwrap_or_default().to_string()).or_default() += 1;
        }
        if page.is_truncated() != Some(true) {
            return counts;
        }
        km = page.next_key_marker().map(str::to_string);
        vm = page.next_version_id_marker().map(str::to_string);
    }
}
