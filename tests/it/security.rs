//! Security properties of the binary: credentials never leak into anything rekey writes,
//! the files it writes are owner-only, and a plain-http endpoint off loopback is refused.

use crate::support::{rekey_bin, Moto};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Credentials that appear nowhere else, so that any occurrence is a leak.
const ACCESS_KEY_ID: &str = "AKIAREKEYLEAKCHECK77";
const SECRET_KEY: &str = "rekeyLeakCheck/Secret+Key0123456789abcdXYZ";
const SESSION_TOKEN: &str = "rekeyLeakCheckSessionTokenFwoGZXIvYXdzEJr";

fn rekey_as_leak_checker(moto: &Moto, args: &[&str]) -> Output {
    let mut env: HashMap<String, String> = moto.env_for_cli().into_iter().collect();
    env.insert("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into());
    env.insert("AWS_SESSION_TOKEN".into(), SESSION_TOKEN.into());
    // As chatty as the logs get, the SDK's own traces asked for by name.
    env.insert(
        "REKEY_LOG".into(),
        "trace,aws_smithy_runtime=trace,aws_sigv4=trace,aws_config=trace,hyper=trace".into(),
    );
    Command::new(rekey_bin()).args(args).envs(env).output().expect("run rekey")
}

/// Every place `needle` shows up in `haystack`, as short excerpts.
fn occurrences(haystack: &[u8], needle: &str) -> Vec<String> {
    let n = needle.as_bytes();
    haystack
        .windows(n.len())
        .enumerate()
        .filter(|(_, w)| *w == n)
        .map(|(i, _)| {
            String::from_utf8_lossy(&haystack[i.saturating_sub(200)..(i + n.len() + 20).min(haystack.len())])
                .into_owned()
        })
        .take(3)
        .collect()
}

fn assert_no_credentials(what: &str, bytes: &[u8]) {
    for secret in [ACCESS_KEY_ID, SECRET_KEY, SESSION_TOKEN] {
        let found = occurrences(bytes, secret);
        assert!(found.is_empty(), "{what} contains the credential {secret:?}: {found:#?}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_logs_progress_checkpoint_or_reports_and_files_are_owner_only() {
    let moto = Moto::start_with(&[("--seed", "5")]);
    let s3 = moto.s3_client().await;
    let key = create_kms_key(&moto.kms_client().await, "rekey leak check").await.expect("CreateKey");
    let spec = BucketSpec { seed: 3, max_size: 2048, ..BucketSpec::new("leak-check", 40) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, "leak-check", &encrypted, &dir.path().join("inv")).await.unwrap();
    let state = dir.path().join("job.rekey");
    let state_arg = state.to_str().unwrap();
    let mut transcript: Vec<(String, Output)> = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let out = rekey_as_leak_checker(&moto, args);
        transcript.push((name.to_string(), out));
    };

    step("plan", &["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", &key, "--state", state_arg]);
    // A first run that fails: every copy is denied, so the breaker's message is printed.
    moto.configure(r#"{"deny_ops": ["CopyObject"]}"#);
    step("denied run", &["run", "--state", state_arg, "--json-progress"]);
    // Then a run through transient faults, with retries logged.
    moto.configure(r#"{"deny_ops": [], "fail_rate": 0.1, "drop_rate": 0.05}"#);
    step("faulty run", &["run", "--state", state_arg, "--json-progress"]);
    moto.configure(r#"{"fail_rate": 0, "drop_rate": 0}"#);
    step("status", &["status", "--state", state_arg, "--format", "json"]);
    step("verify", &["verify", "--state", state_arg]);
    let csv = dir.path().join("report.csv");
    let json = dir.path().join("report.json");
    step("report csv", &["report", "--state", state_arg, "--out", csv.to_str().unwrap(), "--format", "csv"]);
    step("report json", &["report", "--state", state_arg, "--out", json.to_str().unwrap(), "--format", "json"]);

    let (name, denied) = &transcript[1];
    assert!(!denied.status.success(), "{name}: the denied run must stop");
    let (name, faulty) = &transcript[2];
    assert!(faulty.status.success(), "{name}: {}", String::from_utf8_lossy(&faulty.stderr));
    let status: serde_json::Value = serde_json::from_slice(&transcript[3].1.stdout).unwrap();
    assert_eq!(status["by_status"]["done"], 40, "{status}");

    for (name, out) in &transcript {
        assert_no_credentials(&format!("{name}: stdout"), &out.stdout);
        assert_no_credentials(&format!("{name}: stderr"), &out.stderr);
    }
    // Everything rekey left on disk: the checkpoint (and any journal beside it) and reports.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_no_credentials(&path.display().to_string(), &std::fs::read(&path).unwrap());
            files += 1;
        }
    }
    assert!(files >= 3, "the checkpoint and both reports were checked");
    for path in [&state, &csv, &json] {
        assert_eq!(mode(path), 0o600, "{} is owner-only", path.display());
    }
}

#[test]
fn plain_http_to_a_remote_endpoint_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.csv");
    std::fs::write(&manifest, "bucket-a,a.txt\nbucket-a,b.txt\n").unwrap();
    let state = dir.path().join("job.rekey");
    let key = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let rekey = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(rekey_bin())
            .args(args)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let refused = |out: &Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: must fail");
        assert!(err.contains("plain http to a non-loopback host") && err.contains("--allow-http"), "{what}: {err}");
    };

    // `plan` reading an s3:// inventory through a plain-http endpoint: no plan is written.
    let args = ["plan", "--inventory", "s3://inv/manifest.json", "--kms-key", key, "--state", state.to_str().unwrap()];
    let out = rekey(&[&args[..], &["--endpoint-url", "http://203.0.113.9:9000"]].concat(), &[]);
    refused(&out, "plan --endpoint-url http://");
    let out = rekey(&args, &[("AWS_ENDPOINT_URL", "http://s3.internal.example:9000")]);
    refused(&out, "plan with AWS_ENDPOINT_URL=http://");
    assert!(!state.exists(), "no plan left behind");

    // `run` on a real plan: refused before pre-flight, the checkpoint untouched.
    let out = rekey(
        &[
            "plan",
            "--inventory",
            manifest.to_str().unwrap(),
            "--assume-encryption",
            "SSE-S3",
            "--kms-key",
            key,
            "--state",
        ]
        .iter()
        .copied()
        .chain([state.to_str().unwrap()])
        .collect::<Vec<_>>(),
        &[],
    );
    assert!(out.status.success(), "plan: {}", String::from_utf8_lossy(&out.stderr));
    let before = std::fs::read(&state).unwrap();
    for (endpoint, what) in
        [("http://10.1.2.3:9000", "an RFC 1918 host"), ("http://localhost.example.com", "a lookalike")]
    {
        let out = rekey(&["run", "--state", state.to_str().unwrap(), "--endpoint-url", endpoint], &[]);
        refused(&out, &format!("run against {what}"));
    }
    let out = rekey(&["verify", "--state", state.to_str().unwrap(), "--endpoint-url", "http://10.1.2.3:9000"], &[]);
    refused(&out, "verify");
    assert_eq!(std::fs::read(&state).unwrap(), before, "the checkpoint is untouched");
}
