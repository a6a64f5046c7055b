//! The S3 side of the Batch Operations hand-off, end to end with the real binary:
//!
//! * `export batch-ops --submit`: manifests uploaded to the S3/KMS emulator (moto), and
//!   CreateJob sent to a stub S3 Control endpoint in this test: a tokio TcpListener that
//!   records each request and answers with S3 Control's CreateJob response (a
//!   `CreateJobResult` holding a JobId). moto's S3 Control support is partial, so the
//!   request is checked here, field by field, instead.
//! * `import batch-ops s3://…`: a completion report read from the emulator.

use crate::support::{plan_args, rekey_bin, Moto};
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use md5::{Digest, Md5};
use rekey::inventory::synthetic::{write_inventory, FullRow, InventorySpec, FULL_SCHEMA};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CREATED: i64 = 1_764_000_000_000;
const DAY: i64 = 86_400_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const ROLE: &str = "arn:aws:iam::111122223333:role/batch-rekey";
const ACCOUNT: &str = "111122223333";
const REPORTS: &str = "reports-bucket";
/// The JobIds the stub hands out, in order (the shape of AWS's documentation examples).
const JOB_IDS: [&str; 3] = [
    "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    "a1b2c3d4-5678-90ab-cdef-EXAMPLE22222",
    "a1b2c3d4-5678-90ab-cdef-EXAMPLE33333",
];

/// A FULL_SCHEMA row: (key, version, size, class, encryption).
fn row(key: &str, v: &str, size: u64, class: &str, enc: &str) -> Vec<String> {
    FullRow::new(key, v, size, class, enc, CREATED - 200 * DAY).fields()
}

/// A plan (Bucket Key on) of three update objects, one STANDARD copy and one STANDARD_IA
/// copy: three jobs.
async fn planned(dir: &Path) -> PathBuf {
    let spec = InventorySpec {
        dest_prefix: "inv-prefix".into(),
        data_files: 1,
        file_schema: FULL_SCHEMA.into(),
        ..InventorySpec::new(&dir.join("dest-bucket"), "src-bucket", CREATED)
    };
    let rows = vec![
        row("plain/a.txt", "v1", 100, "STANDARD", "SSE-S3"),
        row("x y+z,é/ü.txt", "v2", 100, "STANDARD", "SSE-S3"),
        row("nulls/x.txt", "", 100, "STANDARD", "SSE-S3"),
        row("copy/b.txt", "v4", 100, "STANDARD", "NOT-SSE"),
        row("copy/ia.txt", "v5", 200 * 1024, "STANDARD_IA", "NOT-SSE"),
    ];
    let manifest = write_inventory(&spec, rows).unwrap();
    let state = dir.join("job.rekey");
    ok(rekey(&[], &plan_args(&manifest, KEY, &state, &["--bucket-key"])).await);
    state
}

async fn rekey(env: &[(String, String)], args: &[&str]) -> Output {
    tokio::process::Command::new(rekey_bin())
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "rekey failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

/// One request the stub received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The stub S3 Control endpoint: answers up to `JOB_IDS.len()` requests, one per
/// connection, with a CreateJob response, recording each request.
async fn stub_s3control() -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        for job_id in JOB_IDS {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            let (head_len, body_len) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request: {}", String::from_utf8_lossy(&buf));
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().unwrap())
                        })
                        .expect("CreateJob is sent with a Content-Length");
                    break (end + 4, len);
                }
            };
            while buf.len() < head_len + body_len {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_len - 4]).to_string();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap().split_whitespace();
            let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
            let headers = lines
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
                .collect();
            let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).to_string();
            seen.lock().unwrap().push(Recorded { method, path, headers, body });
            // S3 Control's CreateJob response, as its API reference documents it.
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <CreateJobResult xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"><JobId>{job_id}</JobId></CreateJobResult>"
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\nx-amz-request-id: 4E3B0A7C1F2D5E6A\r\nx-amz-id-2: stub\r\n\
                 Content-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            sock.write_all(response.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    (url, log)
}

/// The text inside the first `<tag>…</tag>` (or `<tag xmlns…>`) of `xml`.
fn el<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = xml
        .find(&format!("<{tag}>"))
        .or_else(|| xml.find(&format!("<{tag} ")))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap_or_else(|| panic!("no </{tag}> in {xml}"));
    &xml[start..end]
}

/// `el` along a path of nested tags.
fn at<'a>(xml: &'a str, path: &[&str]) -> &'a str {
    path.iter().fold(xml, |x, t| el(x, t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_uploads_the_manifests_and_creates_the_jobs() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    s3.create_bucket().bucket(REPORTS).send().await.expect("CreateBucket");
    // Default encryption SSE-KMS on the report bucket: an uploaded manifest's ETag is then
    // not its MD5, and the job must name the ETag S3 gave it.
    let kms = moto.kms_client().await;
    let report_key = kms.create_key().send().await.expect("CreateKey").key_metadata.unwrap().arn.unwrap();
    s3.put_bucket_encryption()
        .bucket(REPORTS)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id(&report_key)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("PutBucketEncryption");
    let (control, requests) = stub_s3control().await;
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path()).await;
    let out = dir.path().join("export");
    let o = ok(rekey(
        &moto.env_for_cli(),
        &[
            "export",
            "batch-ops",
            "--state",
            state.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--role-arn",
            ROLE,
            "--account-id",
            ACCOUNT,
            "--report-bucket",
            REPORTS,
            "--priority",
            "42",
            "--submit",
            "--s3control-endpoint-url",
            &control,
        ],
    )
    .await);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("created 3 jobs"), "{text}");
    for (id, name) in
        JOB_IDS.iter().zip(["copy-src-bucket-STANDARD", "copy-src-bucket-STANDARD_IA", "update-src-bucket"])
    {
        assert!(text.contains(&format!("JobId {id}  {name}")), "{text}");
    }

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "one CreateJob per job: {requests:#?}");
    for (r, name) in
        requests.iter().zip(["copy-src-bucket-STANDARD", "copy-src-bucket-STANDARD_IA", "update-src-bucket"])
    {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v20180820/jobs"));
        assert_eq!(r.header("x-amz-account-id"), Some(ACCOUNT));
        assert!(r.header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")), "{r:?}");
        let body = el(&r.body, "CreateJobRequest");

        // The manifest: uploaded byte for byte, and named with the ETag S3 gave it.
        let local = std::fs::read(out.join(format!("{name}.csv"))).unwrap();
        let key = format!("rekey-batch-ops/job/{name}.csv");
        let got = s3.get_object().bucket(REPORTS).key(&key).send().await.expect("the manifest is uploaded");
        let etag = got.e_tag().unwrap().trim_matches('"').to_string();
        assert_eq!(got.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), local.as_slice());
        assert_eq!(at(body, &["Manifest", "Location", "ETag"]), etag);
        assert_ne!(etag, format!("{:x}", Md5::digest(&local)), "an SSE-KMS upload's ETag is not the MD5");
        assert_eq!(at(body, &["Manifest", "Location", "ObjectArn"]), format!("arn:aws:s3:::{REPORTS}/{key}"));
        assert_eq!(at(body, &["Manifest", "Spec", "Format"]), "S3BatchOperations_CSV_20180820");
        assert_eq!(
            at(body, &["Manifest", "Spec", "Fields"]),
            "<member>Bucket</member><member>Key</member><member>VersionId</member>"
        );
        // The completion report, priority, confirmation, role and idempotency token.
        let report = el(body, "Report");
        assert_eq!(el(report, "Bucket"), format!("arn:aws:s3:::{REPORTS}"));
        assert_eq!(el(report, "Format"), "Report_CSV_20180820");
        assert_eq!(el(report, "Enabled"), "true");
        assert_eq!(el(report, "Prefix"), format!("rekey-batch-ops/job/reports/{name}"));
        assert_eq!(el(report, "ReportScope"), "AllTasks");
        assert_eq!(el(body, "Priority"), "42");
        assert_eq!(el(body, "ConfirmationRequired"), "true");
        assert_eq!(el(body, "RoleArn"), ROLE);
        assert_eq!(el(body, "ClientRequestToken"), format!("rekey-{:x}", Md5::digest(&local)));
        // The job file on disk is what was submitted, the uploaded ETag included.
        let job: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(format!("{name}.job.json"))).unwrap()).unwrap();
        assert_eq!(job["Manifest"]["Location"]["ETag"], etag);
        assert_eq!(job["Priority"], 42);
    }
    // The operations: the key ARN and Bucket Key in each.
    let update = el(&requests[2].body, "Operation");
    assert_eq!(at(update, &["S3UpdateObjectEncryption", "ObjectEncryption", "SSE-KMS", "KMSKeyArn"]), KEY);
    assert_eq!(at(update, &["S3UpdateObjectEncryption", "ObjectEncryption", "SSE-KMS", "BucketKeyEnabled"]), "true");
    let copy = el(el(&requests[1].body, "Operation"), "S3PutObjectCopy");
    assert_eq!(el(copy, "TargetResource"), "arn:aws:s3:::src-bucket");
    assert_eq!(el(copy, "SSEAwsKmsKeyId"), KEY);
    assert_eq!(el(copy, "BucketKeyEnabled"), "true");
    assert_eq!(el(copy, "StorageClass"), "STANDARD_IA");
    assert_eq!(el(copy, "MetadataDirective"), "COPY");
    assert_eq!(at(copy, &["NewObjectMetadata", "SSEAlgorithm"]), "KMS");
    assert_eq!(el(el(el(&requests[0].body, "Operation"), "S3PutObjectCopy"), "StorageClass"), "STANDARD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_completion_reports_from_s3() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    s3.create_bucket().bucket(REPORTS).send().await.expect("CreateBucket");
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path()).await;
    // A job's report as Batch Operations writes it: results/<hash>.csv under the prefix.
    let key = "rekey-batch-ops/job/reports/update-src-bucket/job-a1b2c3d4/results/5f2b.csv";
    let report = "src-bucket,plain/a.txt,v1,succeeded,200,,Successful\n\
                  src-bucket,x+y%2Bz%2C%C3%A9/%C3%BC.txt,v2,succeeded,200,,Successful\n\
                  src-bucket,nulls/x.txt,,failed,403,AccessDenied,Access Denied\n\
                  src-bucket,copy/b.txt,v4,failed,500,InternalError,We encountered an internal error\n\
                  src-bucket,not/planned.txt,v9,succeeded,200,,Successful\n";
    s3.put_object().bucket(REPORTS).key(key).body(report.as_bytes().to_vec().into()).send().await.expect("PutObject");
    let url = format!("s3://{REPORTS}/{key}");
    let o = ok(rekey(&moto.env_for_cli(), &["import", "batch-ops", "--state", state.to_str().unwrap(), &url]).await);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains(&format!("{url}: 5 rows")), "{text}");
    assert!(text.contains("marked done                                       2"), "{text}");
    assert!(text.contains("marked failed                                     2"), "{text}");
    assert!(text.contains("unknown (not in the plan)                         1"), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("s3://src-bucket/not/planned.txt (version v9)"));

    let status = ok(rekey(&[], &["status", "--state", state.to_str().unwrap(), "--format", "json"]).await);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["by_status"], serde_json::json!({"done": 2, "failed": 2, "pending": 1}));
    let db = rusqlite::Connection::open(&state).unwrap();
    let (code, retryable): (String, bool) = db
        .query_row("SELECT error_code, retryable FROM objects WHERE key = 'copy/b.txt'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((code.as_str(), retryable), ("InternalError", true));
    let note: String = db.query_row("SELECT note FROM objects WHERE key = 'x y+z,é/ü.txt'", [], |r| r.get(0)).unwrap();
    assert_eq!(note, "batch_ops");

    // A report that is not there: the URL in a one-line error, and nothing changed.
    let missing = rekey(
        &moto.env_for_cli(),
        &["import", "batch-ops", "--state", state.to_str().unwrap(), &format!("s3://{REPORTS}/no/such.csv")],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr).to_string();
    assert!(err.contains(&format!("s3://{REPORTS}/no/such.csv")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
