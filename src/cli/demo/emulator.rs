//! Starting the local S3/KMS emulator (`scripts/s3emu.py` around moto) for `rekey demo`.
//!
//! The script is compiled into the binary, so the demo works from any directory. It runs
//! on a Python virtualenv with the pinned `moto[server]`: `$REKEY_VENV`, else the
//! repository's `.venv` (the one `scripts/test` provisions). When neither has moto, the
//! demo creates the venv and installs it, as `scripts/test` does.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOTO_VERSION: &str = "5.2.5";
const SCRIPT: &str = include_str!("../../../scripts/s3emu.py");

/// A running emulator on a free 127.0.0.1 port; stopped on drop.
pub struct Emulator {
    pub endpoint: String,
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn venv_dir() -> PathBuf {
    match std::env::var_os("REKEY_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"),
    }
}

fn has_moto(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import moto, werkzeug; print(moto.__version__)"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == MOTO_VERSION)
}

/// The venv's python, installing `moto[server]` into it when missing.
pub fn python() -> Result<PathBuf> {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if python.is_file() && has_moto(&python) {
        return Ok(python);
    }
    eprintln!("rekey demo: installing the S3 emulator (moto[server]=={MOTO_VERSION}) into {}", venv.display());
    if !python.is_file() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success());
        if !ok {
            bail!("could not create a Python venv at {} (needs python3 with the venv module)", venv.display());
        }
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", &format!("moto[server]=={MOTO_VERSION}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !has_moto(&python) {
        bail!(
            "could not install moto[server]=={MOTO_VERSION} into {}; try: {} -m pip install 'moto[server]=={MOTO_VERSION}'",
            venv.display(),
            python.display()
        );
    }
    Ok(python)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Emulator {
    /// Start with extra `s3emu.py` flags (e.g. `["--kms-rps", "200"]`) and wait until it answers.
    pub fn start(flags: &[&str]) -> Result<Emulator> {
        let python = python()?;
        let dir = tempfile::tempdir().context("temporary directory for the emulator")?;
        let script = dir.path().join("s3emu.py");
        std::fs::write(&script, SCRIPT)?;
        let log = dir.path().join("s3emu.log");
        let out = std::fs::File::create(&log)?;
        let port = free_port()?;
        let child = Command::new(&python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--quiet"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut emu = Emulator { endpoint: format!("http://127.0.0.1:{port}"), addr, child, _dir: dir, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while emu.control("GET", "/__stats", "").is_err() {
            if let Ok(Some(status)) = emu.child.try_wait() {
                bail!("the emulator exited ({status}): {}", std::fs::read_to_string(&emu.log).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("the emulator did not answer on {} within 30 s", emu.endpoint);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(emu)
    }

    /// A request to the emulator's control API (`/__stats`, `/__config`); returns the body.
    pub fn control(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        if head.split_whitespace().nth(1) != Some("200") {
            bail!("{method} {path}: {head}");
        }
        Ok(payload.to_string())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
