//! The direct path sends what the SDK sends: for the same CopyObject or
//! UpdateObjectEncryption, `DirectStore` and `SdkStore` are pointed at one recording
//! listener and their requests compared header by header (all but the date, the signature
//! and the SDK's own invocation and user-agent headers), along with method, path, query and
//! body; then both read the same canned answers (a result, an error inside a 200, a KMS
//! throttle, a 412, a dropped connection, a 301 redirect) and must report the same.

use rekey::s3::object_store::{CopyRequest, Grants, LockSettings, ObjectStore, UpdateRequest};
use rekey::s3::{connect, DirectStore, S3Settings, SdkStore};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
}

/// What the listener answers with: a raw HTTP response, or None to drop the connection.
type Answer = Arc<Mutex<Option<Vec<u8>>>>;

async fn listener(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else { return };
            let log = log.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 8192];
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let mut headers = [httparse::EMPTY_HEADER; 64];
                        let mut req = httparse::Request::new(&mut headers);
                        req.parse(&buf).unwrap();
                        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for h in req.headers.iter() {
                            map.entry(h.name.to_ascii_lowercase())
                                .or_default()
                                .push(String::from_utf8_lossy(h.value).into_owned());
                        }
                        let len: usize = map.get("content-length").and_then(|v| v[0].parse().ok()).unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let seen = Seen {
                                method: req.method.unwrap().to_string(),
                                target: req.path.unwrap().to_string(),
                                headers: map,
                                body: buf[end + 4..end + 4 + len].to_vec(),
                            };
                            buf.drain(..end + 4 + len);
                            log.lock().unwrap().push(seen);
                            let reply = answer.lock().unwrap().clone();
                            match reply {
                                Some(r) => sock.write_all(&r).await.unwrap(),
                                None => return,
                            }
                            continue;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, seen)
}

fn http_answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// Headers that differ between any two requests, or between the SDK and rekey by design.
const EXCLUDED: [&str; 6] =
    ["authorization", "x-amz-date", "amz-sdk-invocation-id", "amz-sdk-request", "user-agent", "x-amz-user-agent"];

fn comparable(s: &Seen) -> Seen {
    let mut s = s.clone();
    s.headers.retain(|k, _| !EXCLUDED.contains(&k.as_str()));
    s
}

/// The SDK's request, and one that went the direct path (no SDK user agent), so that the
/// comparison is never of the SDK against itself.
fn assert_sdk_then_direct(seen: &[Seen]) {
    assert_eq!(seen.len(), 2, "one attempt each: {seen:#?}");
    assert!(seen[0].headers.contains_key("x-amz-user-agent"), "first request from the SDK: {:?}", seen[0]);
    assert!(!seen[1].headers.contains_key("x-amz-user-agent"), "second request went direct: {:?}", seen[1]);
}

/// The names of the headers the signature covers (but the excluded ones).
fn signed_headers(s: &Seen) -> Vec<String> {
    let auth = &s.headers["authorization"][0];
    let names = auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
    names.split(';').filter(|n| !EXCLUDED.contains(n)).map(str::to_string).collect()
}

fn copy_requests() -> Vec<CopyRequest> {
    let plain = CopyRequest {
        bucket: "wire-bucket".into(),
        key: "data/plain.txt".into(),
        if_match: Some("9b2cf535f27731c974343645a3985328".into()),
        storage_class: None,
        kms_key_arn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        bucket_key: false,
        checksum_algorithm: None,
        website_redirect: None,
        lock: None,
        grants: None,
    };
    let everything = CopyRequest {
        key: "weird keys/ü n+i=c&o?d#e%20~*'(x).txt".into(),
        if_match: Some("\"already-quoted\"".into()),
        storage_class: Some("STANDARD_IA".into()),
        bucket_key: true,
        checksum_algorithm: Some("SHA256".into()),
        website_redirect: Some("/elsewhere.html".into()),
        lock: Some(LockSettings {
            mode: Some("GOVERNANCE".into()),
            retain_until: Some("2030-01-02T03:04:05Z".into()),
            legal_hold: true,
        }),
        grants: Some(Grants {
            full_control: Some("id=\"abc\"".into()),
            read: Some("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\", id=\"def\"".into()),
            read_acp: None,
            write_acp: Some("id=\"ghi\"".into()),
        }),
        ..plain.clone()
    };
    let unlocked_empty_lock = CopyRequest { lock: Some(LockSettings::default()), if_match: None, ..plain.clone() };
    vec![plain, everything, unlocked_empty_lock]
}

fn update_requests() -> Vec<UpdateRequest> {
    let plain = UpdateRequest {
        bucket: "wire-bucket".into(),
        key: "data/plain.txt".into(),
        version_id: None,
        kms_key_arn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        bucket_key: false,
    };
    let versioned = UpdateRequest {
        key: "weird keys/ü n+i=c&o?d#e.txt".into(),
        version_id: Some("3/L4kqtJl40Nr8X8gdRQBpUMLUo+a=".into()),
        kms_key_arn: "alias/<odd>&'key\"".into(),
        bucket_key: true,
        ..plain.clone()
    };
    vec![plain, versioned]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_requests_and_answers_match_the_sdk() {
    // Static credentials with a session token, so the token header is compared as well.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDWIRETEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "wire/secret");
    std::env::set_var("AWS_SESSION_TOKEN", "wire-session-token");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_ENDPOINT_URL");
    std::env::remove_var("AWS_ENDPOINT_URL_S3");
    // With a proxy configured the direct path hands everything to the SDK.
    for v in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        std::env::remove_var(v);
    }
    let answer: Answer = Arc::new(Mutex::new(None));
    let (url, seen) = listener(answer.clone()).await;
    let settings = S3Settings { region: Some("us-east-1".into()), endpoint_url: Some(url), ..Default::default() };
    let sdk = SdkStore::new(connect(&settings).await.unwrap().client);
    let direct = DirectStore::new(connect(&settings).await.unwrap()).unwrap();

    let copy_ok = http_answer(
        "200 OK",
        &[("x-amz-version-id", "v-123"), ("x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:us-east-1:111122223333:key/k")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;0123abc&quot;</ETag><ChecksumSHA256>c2hhMjU2</ChecksumSHA256></CopyObjectResult>",
    );
    let embedded = http_answer(
        "200 OK",
        &[],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>",
    );
    let kms_throttle = http_answer(
        "503 Slow Down",
        &[("content-type", "application/xml")],
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate for operations involving AWS KMS.</Message></Error>",
    );
    let changed = http_answer(
        "412 Precondition Failed",
        &[],
        "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>x-amz-copy-source-If-Match</Condition></Error>",
    );
    let bare_500 = http_answer("500 Internal Server Error", &[], "");
    let update_ok = http_answer("200 OK", &[("x-amz-version-id", "ignored")], "");
    // A bucket in another region: not followed, an error like the SDK's.
    let redirect = http_answer(
        "301 Moved Permanently",
        &[("x-amz-bucket-region", "eu-west-1")],
        "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>wire-bucket.s3.eu-west-1.amazonaws.com</Endpoint></Error>",
    );
    let answers =
        [Some(copy_ok), Some(embedded), Some(kms_throttle), Some(changed), Some(bare_500), None, Some(redirect)];

    let mut compared = 0;
    for req in copy_requests() {
        for a in &answers {
            *answer.lock().unwrap() = a.clone();
            seen.lock().unwrap().clear();
            let from_sdk = sdk.copy_in_place(req.clone()).await;
            let from_direct = direct.copy_in_place(req.clone()).await;
            let seen = seen.lock().unwrap().clone();
            assert_sdk_then_direct(&seen);
            assert_eq!(
                comparable(&seen[1]),
                comparable(&seen[0]),
                "CopyObject {req:?}: rekey's request (left) against the SDK's (right)"
            );
            assert_eq!(signed_headers(&seen[1]), signed_headers(&seen[0]), "signed headers of {req:?}");
            match (&from_sdk, &from_direct) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) if a.status.is_none() => {
                    // A dropped connection: the same kind, code and (no) status; the
                    // messages are each client's own words.
                    assert_eq!((a.kind, &a.code, a.status), (b.kind, &b.code, b.status), "{a} / {b}")
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("the SDK said {from_sdk:?}, the direct path {from_direct:?}"),
            }
            compared += 1;
        }
    }
    // The listener's first answer was the result, parsed alike by both.
    let ok = {
        *answer.lock().unwrap() = answers[0].clone();
        direct.copy_in_place(copy_requests()[0].clone()).await.unwrap()
    };
    assert_eq!(ok.etag.as_deref(), Some("0123abc"));
    assert_eq!(ok.checksum.as_deref(), Some("SHA256:c2hhMjU2"));
    assert_eq!(ok.version_id.as_deref(), Some("v-123"));

    for req in update_requests() {
        for a in [Some(update_ok.clone()), answers[2].clone(), answers[4].clone(), None] {
            *answer.lock().unwrap() = a;
            seen.lock().unwrap().clear();
            let from_sdk = sdk.update_encryption(req.clone()).await;
            let from_direct = direct.update_encryption(req.clone()).await;
            let seen = seen.lock().unwrap().clone();
            assert_sdk_then_direct(&seen);
            assert_eq!(
                comparable(&seen[1]),
                comparable(&seen[0]),
                "UpdateObjectEncryption {req:?}: rekey's (left), the SDK's (right)"
            );
            assert_eq!(signed_headers(&seen[1]), signed_headers(&seen[0]));
            match (&from_sdk, &from_direct) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) if a.status.is_none() => assert_eq!((a.kind, &a.code), (b.kind, &b.code), "{a} / {b}"),
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("the SDK said {from_sdk:?}, the direct path {from_direct:?}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 3 * 7 + 2 * 4);
}
