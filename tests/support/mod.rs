//! Shared integration-test harness: runs a private `moto_server` (S3/KMS emulator)
//! per test and hands out CLI environment and SDK clients pointed at it.
//!
//! A missing or broken moto is a test FAILURE, never a skip: run `scripts/test`,
//! which provisions `.venv` with the pinned `moto[server]==5.2.5`.
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

/// A running moto server on a free localhost port; killed on drop.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    log_path: PathBuf,
}

fn moto_binary() -> PathBuf {
    let path = match std::env::var_os("REKEY_MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
    };
    if !path.is_file() {
        panic!(
            "moto_server not found at {} (set REKEY_MOTO_SERVER or run `scripts/test`, \
             which installs moto[server]==5.2.5 into .venv). A missing emulator is a \
             test failure, not a skip.",
            path.display()
        );
    }
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
    // listener dropped here, freeing the port for moto
}

/// True once the server answers an HTTP request on `/moto-api/`.
fn http_ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /moto-api/ HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 5 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got >= 5 && &buf[..5] == b"HTTP/"
}

impl Moto {
    /// Starts moto_server and blocks (up to 30 s) until it answers HTTP.
    pub fn start() -> Moto {
        let bin = moto_binary();
        let port = free_port();
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("rekey-moto-{}-{seq}-{port}.log", std::process::id()));
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("create moto log {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone log file handle");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e} (run `scripts/test`)", bin.display()));
        let mut moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child, log_path };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if http_ready(addr) {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early with {status}; log {}:\n{}", moto.log_path.display(), moto.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "moto_server did not answer on {} within {:?}; log {}:\n{}",
                    moto.endpoint,
                    STARTUP_TIMEOUT,
                    moto.log_path.display(),
                    moto.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
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

/// Path of the compiled `rekey` binary (only valid inside integration tests).
pub fn rekey_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rekey"))
}
