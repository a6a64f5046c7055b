//! Proves `scripts/s3emu.py` makes moto behave like S3 where moto 5.2 does not
//! (UpdateObjectEncryption, KMS key checks, copy-source preconditions, opaque SSE-KMS ETags,
//! website-redirect not copied) and that its quota gates, faults and `/__stats` work —
//! all observed through aws-sdk-s3 (path-style), as `rekey` sees them.
use crate::support::Moto;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ObjectEncryption, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ServerSideEncryption,
    SsekmsEncryption,
};
use md5::{Digest, Md5};
use std::fmt::Debug;
use std::io::{Read, Write};
use std::time::Duration;

const KMS_SLOWDOWN: &str = "Please reduce your request rate for operations involving AWS KMS.";

/// (HTTP status, error code, message) of a call expected to fail; status 0 = no response.
fn failure<T: Debug, E: ProvideErrorMetadata + Debug>(
    res: Result<T, SdkError<E, HttpResponse>>,
) -> (u16, String, String) {
    let err = res.expect_err("call should have failed");
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (status, err.code().unwrap_or_default().to_string(), err.message().unwrap_or_default().to_string())
}

/// An S3 client that surfaces every error (no SDK retries), for fault/throttle assertions.
async fn no_retry_client(moto: &Moto) -> aws_sdk_s3::Client {
    let shared = moto.sdk_config().await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn new_kms_key(moto: &Moto) -> (String, String) {
    let kms = moto.kms_client().await;
    let meta = kms.create_key().send().await.expect("kms create_key").key_metadata.expect("key metadata");
    (meta.key_id, meta.arn.expect("key arn"))
}

fn to_kms(arn: &str) -> ObjectEncryption {
    ObjectEncryption::Ssekms(SsekmsEncryption::builder().kms_key_arn(arn).bucket_key_enabled(true).build().unwrap())
}

async fn put_sse_s3(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn count(stats: &serde_json::Value, op: &str) -> u64 {
    stats["requests"][op].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn update_object_encryption_is_in_place_and_follows_s3_rules() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let (key_id, arn) = new_kms_key(&moto).await;
    let b = "uoe";
    s3.create_bucket().bucket(b).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(b)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    put_sse_s3(&s3, b, "obj key+1", b"payload one").await;
    let before = s3.head_object().bucket(b).key("obj key+1").send().await.unwrap();
    assert_eq!(before.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    // Last-Modified has 1 s resolution: make a rewrite detectable.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    s3.update_object_encryption()
        .bucket(b)
        .key("obj key+1")
        .object_encryption(to_kms(&arn))
        .send()
        .await
        .expect("UpdateObjectEncryption on an SSE-S3 object");
    let after = s3.head_object().bucket(b).key("obj key+1").send().await.unwrap();
    assert_eq!(after.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(after.ssekms_key_id(), Some(arn.as_str()));
    assert_eq!(after.bucket_key_enabled(), Some(true));
    assert_eq!(after.e_tag(), before.e_tag(), "ETag must be preserved");
    assert_eq!(after.version_id(), before.version_id(), "no new version");
    assert_eq!(after.last_modified(), before.last_modified(), "last-modified preserved");
    let versions = s3.list_object_versions().bucket(b).prefix("obj key+1").send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "UpdateObjectEncryption must not create a version");
    let got = s3.get_object().bucket(b).key("obj key+1").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"payload one");

    // versionId targets exactly that version
    put_sse_s3(&s3, b, "two", b"v1").await;
    let v1 = s3.head_object().bucket(b).key("two").send().await.unwrap().version_id.unwrap();
    put_sse_s3(&s3, b, "two", b"v2").await;
    s3.update_object_encryption()
        .bucket(b)
        .key("two")
        .version_id(&v1)
        .object_encryption(to_kms(&arn))
        .send()
        .await
        .expect("UpdateObjectEncryption with versionId");
    let h1 = s3.head_object().bucket(b).key("two").version_id(&v1).send().await.unwrap();
    let h2 = s3.head_object().bucket(b).key("two").send().await.unwrap();
    assert_eq!(h1.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(h2.server_side_encryption(), Some(&ServerSideEncryption::Aes256));

    // refusals
    let by_id = s3.update_object_encryption().bucket(b).key("two").object_encryption(to_kms(&key_id)).send().await;
    assert_eq!(failure(by_id).0, 400, "a bare key id is not a key ARN");
    let by_id = s3.update_object_encryption().bucket(b).key("two").object_encryption(to_kms(&key_id)).send().await;
    assert_eq!(failure(by_id).1, "InvalidArgument");
    let missing = s3.update_object_encryption().bucket(b).key("nope").object_encryption(to_kms(&arn)).send().await;
    let (status, code, _) = failure(missing);
    assert_eq!((status, code.as_str()), (404, "NoSuchKey"));
    s3.put_object().bucket(b).key("plain").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let plain = s3.head_object().bucket(b).key("plain").send().await.unwrap();
    assert_eq!(plain.server_side_encryption(), None, "moto stores header-less puts as NOT-SSE");
    let not_sse = s3.update_object_encryption().bucket(b).key("plain").object_encryption(to_kms(&arn)).send().await;
    let (status, code, _) = failure(not_sse);
    assert_eq!((status, code.as_str()), (400, "InvalidRequest"));
    assert_eq!(s3.head_object().bucket(b).key("plain").send().await.unwrap().server_side_encryption(), None);

    let stats = moto.stats();
    assert_eq!(count(&stats, "UpdateObjectEncryption"), 6, "{stats}");
    assert_eq!(stats["kms_calls"].as_u64(), Some(2), "only the two successes used KMS: {stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_object_encryption_refuses_legal_hold() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let (_, arn) = new_kms_key(&moto).await;
    let b = "locked";
    s3.create_bucket().bucket(b).object_lock_enabled_for_bucket(true).send().await.unwrap();
    s3.put_object()
        .bucket(b)
        .key("held")
        .body(ByteStream::from_static(b"held bytes"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("put with legal hold");
    let res = s3.update_object_encryption().bucket(b).key("held").object_encryption(to_kms(&arn)).send().await;
    let (status, code, msg) = failure(res);
    assert_eq!((status, code.as_str()), (400, "InvalidRequest"), "{msg}");
    assert!(msg.contains("legal hold"), "{msg}");
    let head = s3.head_object().bucket(b).key("held").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256), "refused update changed nothing");

    // lifting the hold makes the same request succeed: the hold was the reason
    s3.put_object_legal_hold()
        .bucket(b)
        .key("held")
        .legal_hold(ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::Off).build())
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("lift legal hold");
    s3.update_object_encryption()
        .bucket(b)
        .key("held")
        .object_encryption(to_kms(&arn))
        .send()
        .await
        .expect("update after lifting the hold");
    let head = s3.head_object().bucket(b).key("held").send().await.unwrap();
    assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_preconditions_opaque_etag_and_redirect_follow_s3() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let (key_id, arn) = new_kms_key(&moto).await;
    let b = "copies";
    s3.create_bucket().bucket(b).send().await.unwrap();
    let body = b"copy me in place";
    s3.put_object()
        .bucket(b)
        .key("o")
        .body(ByteStream::from_static(body))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .website_redirect_location("/elsewhere.html")
        .send()
        .await
        .unwrap();
    let before = s3.head_object().bucket(b).key("o").send().await.unwrap();
    assert_eq!(before.e_tag().unwrap(), format!("\"{}\"", md5_hex(body)));
    assert_eq!(before.website_redirect_location(), Some("/elsewhere.html"));

    // If-Match mismatch: 412, nothing copied
    let res = s3
        .copy_object()
        .bucket(b)
        .key("o")
        .copy_source(format!("{b}/o"))
        .copy_source_if_match("\"00000000000000000000000000000000\"")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .send()
        .await;
    let (status, code, _) = failure(res);
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"));
    let unchanged = s3.head_object().bucket(b).key("o").send().await.unwrap();
    assert_eq!(unchanged.e_tag(), before.e_tag());
    assert_eq!(unchanged.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    // If-None-Match on the current ETag: 412 too
    let res = s3
        .copy_object()
        .bucket(b)
        .key("o")
        .copy_source(format!("{b}/o"))
        .copy_source_if_none_match(before.e_tag().unwrap())
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await;
    assert_eq!(failure(res).0, 412);

    // matching If-Match with a key *id*: succeeds, reports the ARN, opaque ETag, redirect dropped
    let out = s3
        .copy_object()
        .bucket(b)
        .key("o")
        .copy_source(format!("{b}/o"))
        .copy_source_if_match(before.e_tag().unwrap())
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .send()
        .await
        .expect("in-place SSE-KMS copy");
    assert_eq!(out.ssekms_key_id(), Some(arn.as_str()), "S3 reports the full key ARN");
    let new_etag = out.copy_object_result().and_then(|r| r.e_tag()).unwrap().to_string();
    assert_ne!(new_etag.trim_matches('"'), md5_hex(body), "SSE-KMS ETag is not the MD5");
    assert_eq!(new_etag.trim_matches('"').len(), 32);
    let after = s3.head_object().bucket(b).key("o").send().await.unwrap();
    assert_eq!(after.e_tag(), Some(new_etag.as_str()), "stored ETag = returned ETag");
    assert_eq!(after.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(after.ssekms_key_id(), Some(arn.as_str()));
    assert_eq!(after.website_redirect_location(), None, "S3 does not copy the redirect");
    let got = s3.get_object().bucket(b).key("o").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), body);

    // the redirect survives when the copy request re-sends it
    put_sse_s3(&s3, b, "r", b"r").await;
    s3.put_object()
        .bucket(b)
        .key("r")
        .body(ByteStream::from_static(b"r"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .website_redirect_location("/keep")
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket(b)
        .key("r")
        .copy_source(format!("{b}/r"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&arn)
        .website_redirect_location("/keep")
        .send()
        .await
        .unwrap();
    let r = s3.head_object().bucket(b).key("r").send().await.unwrap();
    assert_eq!(r.website_redirect_location(), Some("/keep"));

    // UploadPartCopy honours x-amz-copy-source-if-match as well
    let upload = s3
        .create_multipart_upload()
        .bucket(b)
        .key("mp")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&arn)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let res = s3
        .upload_part_copy()
        .bucket(b)
        .key("mp")
        .upload_id(upload_id)
        .part_number(1)
        .copy_source(format!("{b}/r"))
        .copy_source_if_match("\"ffffffffffffffffffffffffffffffff\"")
        .send()
        .await;
    assert_eq!(failure(res).0, 412);
    let part = s3
        .upload_part_copy()
        .bucket(b)
        .key("mp")
        .upload_id(upload_id)
        .part_number(1)
        .copy_source(format!("{b}/r"))
        .copy_source_if_match(r.e_tag().unwrap())
        .send()
        .await
        .expect("UploadPartCopy with matching If-Match");
    let part_etag = part.copy_part_result().and_then(|p| p.e_tag()).unwrap().to_string();
    let done = s3
        .complete_multipart_upload()
        .bucket(b)
        .key("mp")
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(1).e_tag(part_etag).build())
                .build(),
        )
        .send()
        .await
        .expect("complete SSE-KMS multipart");
    let mp_head = s3.head_object().bucket(b).key("mp").send().await.unwrap();
    assert_eq!(mp_head.e_tag(), done.e_tag());
    assert!(done.e_tag().unwrap().ends_with("-1\""), "multipart ETag keeps -N: {:?}", done.e_tag());
    assert_eq!(mp_head.ssekms_key_id(), Some(arn.as_str()));

    let stats = moto.stats();
    assert_eq!(count(&stats, "CopyObject"), 4, "{stats}");
    assert_eq!(count(&stats, "UploadPartCopy"), 2, "{stats}");
    assert_eq!(count(&stats, "CompleteMultipartUpload"), 1, "{stats}");
    assert_eq!(stats["precondition_failed"].as_u64(), Some(3), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_key_state_is_checked_on_s3_writes() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let b = "kmsstate";
    s3.create_bucket().bucket(b).send().await.unwrap();
    put_sse_s3(&s3, b, "o", b"data").await;
    let (good_id, good_arn) = new_kms_key(&moto).await;
    kms.create_alias().alias_name("alias/rekey-test").target_key_id(&good_id).send().await.unwrap();
    let (disabled_id, disabled_arn) = new_kms_key(&moto).await;
    kms.disable_key().key_id(&disabled_id).send().await.unwrap();
    let (doomed_id, doomed_arn) = new_kms_key(&moto).await;
    kms.schedule_key_deletion().key_id(&doomed_id).pending_window_in_days(7).send().await.unwrap();

    // alias accepted, reported as the key ARN
    let put = s3
        .put_object()
        .bucket(b)
        .key("via-alias")
        .body(ByteStream::from_static(b"a"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/rekey-test")
        .send()
        .await
        .expect("put with alias");
    assert_eq!(put.ssekms_key_id(), Some(good_arn.as_str()));

    let copy = |key_ref: String| {
        s3.copy_object()
            .bucket(b)
            .key("o")
            .copy_source(format!("{b}/o"))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_ref)
            .send()
    };
    let (status, code, _) = failure(copy(disabled_id.clone()).await);
    assert_eq!((status, code.as_str()), (400, "KMS.DisabledException"));
    let (status, code, _) = failure(copy(doomed_arn.clone()).await);
    assert_eq!((status, code.as_str()), (400, "KMS.KMSInvalidStateException"));
    let missing = good_arn.replace(&good_id, "11111111-2222-3333-4444-555555555555");
    let (status, code, _) = failure(copy(missing.clone()).await);
    assert_eq!((status, code.as_str()), (400, "KMS.NotFoundException"));
    let res = s3.update_object_encryption().bucket(b).key("o").object_encryption(to_kms(&disabled_arn)).send().await;
    let (status, code, _) = failure(res);
    assert_eq!((status, code.as_str()), (400, "KMS.DisabledException"));
    let res = s3.update_object_encryption().bucket(b).key("o").object_encryption(to_kms(&missing)).send().await;
    assert_eq!(failure(res).1, "KMS.NotFoundException");
    let head = s3.head_object().bucket(b).key("o").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256), "refused writes changed nothing");
    let res = s3
        .create_multipart_upload()
        .bucket(b)
        .key("mp")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(disabled_arn)
        .send()
        .await;
    assert_eq!(failure(res).1, "KMS.DisabledException");
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_gates_throttle_without_side_effects_and_stats_count() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let fast = no_retry_client(&moto).await;
    let (_, arn) = new_kms_key(&moto).await;
    let b = "quota";
    s3.create_bucket().bucket(b).send().await.unwrap();
    for i in 0..10 {
        put_sse_s3(&s3, b, &format!("k{i}"), b"q").await;
    }
    moto.reset_stats();
    let cfg = moto.configure(r#"{"kms_rps": 1}"#);
    assert_eq!(cfg["kms_rps"].as_f64(), Some(1.0));

    let mut ok = Vec::new();
    let mut throttled = Vec::new();
    for i in 0..10 {
        let key = format!("k{i}");
        match fast.update_object_encryption().bucket(b).key(&key).object_encryption(to_kms(&arn)).send().await {
            Ok(_) => ok.push(key),
            Err(e) => {
                let (status, code, msg) = failure::<(), _>(Err(e));
                assert_eq!((status, code.as_str(), msg.as_str()), (503, "SlowDown", KMS_SLOWDOWN));
                throttled.push(key);
            }
        }
    }
    assert!(!ok.is_empty() && throttled.len() >= 5, "ok {ok:?} throttled {throttled:?}");
    for key in &throttled {
        let h = s3.head_object().bucket(b).key(key).send().await.unwrap();
        assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::Aes256), "{key} was throttled: untouched");
    }
    for key in &ok {
        let h = s3.head_object().bucket(b).key(key).send().await.unwrap();
        assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    }
    // non-KMS requests are not gated by kms_rps
    for _ in 0..5 {
        fast.head_object().bucket(b).key("k0").send().await.expect("HEAD is not a KMS operation");
    }

    let stats = moto.stats();
    assert_eq!(count(&stats, "UpdateObjectEncryption"), 10, "{stats}");
    assert_eq!(stats["throttled_kms"].as_u64(), Some(throttled.len() as u64), "{stats}");
    assert_eq!(stats["kms_calls"].as_u64(), Some(ok.len() as u64), "{stats}");
    assert_eq!(count(&stats, "HeadObject"), 15, "{stats}");

    // the S3 gate: plain message, counts separately
    moto.configure(r#"{"kms_rps": 0, "s3_rps": 1}"#);
    let mut s3_throttled = 0;
    for _ in 0..5 {
        if let Err(e) = fast.get_object().bucket(b).key("k0").send().await {
            let (status, code, msg) = failure::<(), _>(Err(e));
            assert_eq!((status, code.as_str(), msg.as_str()), (503, "SlowDown", "Please reduce your request rate."));
            s3_throttled += 1;
        }
    }
    assert!(s3_throttled >= 3, "{s3_throttled}");
    let stats = moto.stats();
    assert_eq!(stats["throttled_s3"].as_u64(), Some(s3_throttled), "{stats}");
    assert!(stats["uptime_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_injected_on_object_requests_only() {
    let moto = Moto::start_with(&[("--seed", "7")]);
    let s3 = moto.s3_client().await;
    let fast = no_retry_client(&moto).await;
    let b = "faults";
    s3.create_bucket().bucket(b).send().await.unwrap();
    put_sse_s3(&s3, b, "src", b"source").await;

    moto.configure(r#"{"fail_rate": 1}"#);
    let (status, code, _) = failure(fast.get_object().bucket(b).key("src").send().await);
    assert_eq!((status, code.as_str()), (500, "InternalError"));
    fast.list_objects_v2().bucket(b).send().await.expect("bucket-level requests are not faulted");

    moto.configure(r#"{"fail_rate": 0, "embedded_error_rate": 1}"#);
    let res = fast.copy_object().bucket(b).key("dst").copy_source(format!("{b}/src")).send().await;
    let (status, code, _) = failure(res);
    assert_eq!((status, code.as_str()), (200, "InternalError"), "200 with an embedded <Error>");
    fast.head_object().bucket(b).key("src").send().await.expect("embedded errors only hit CopyObject");

    moto.configure(r#"{"embedded_error_rate": 0, "drop_rate": 1}"#);
    let (status, _, _) = failure(fast.head_object().bucket(b).key("src").send().await);
    assert_eq!(status, 0, "dropped connection: no HTTP response");
    // a raw client sees EOF/reset without a single byte of response
    let mut tcp = std::net::TcpStream::connect(moto.endpoint.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(format!("GET /{b}/src HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let got = tcp.read_to_end(&mut buf);
    assert!(got.is_err() || buf.is_empty(), "expected no response bytes, got {:?}", String::from_utf8_lossy(&buf));

    // control endpoints are never faulted, and they count everything
    let stats = moto.stats();
    moto.configure(r#"{"drop_rate": 0}"#);
    assert_eq!(stats["faults"]["500"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["faults"]["embedded"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["faults"]["dropped"].as_u64(), Some(2), "{stats}");
    let dst = s3.head_object().bucket(b).key("dst").send().await;
    assert_eq!(failure(dst).0, 404, "the embedded-error copy did not happen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_multipart_upload_honours_if_match_and_if_none_match() {
    let moto = Moto::start();
    let s3 = no_retry_client(&moto).await;
    s3.create_bucket().bucket("cmu").send().await.unwrap();
    put_sse_s3(&s3, "cmu", "obj", b"original").await;
    let current = s3.head_object().bucket("cmu").key("obj").send().await.unwrap().e_tag().unwrap().to_string();
    // One single-part upload per attempt: CreateMultipartUpload, UploadPart, then Complete
    // under the given condition.
    let complete = |key: &'static str, if_match: Option<String>, if_none: Option<&'static str>| {
        let s3 = s3.clone();
        async move {
            let up = s3.create_multipart_upload().bucket("cmu").key(key).send().await.unwrap();
            let id = up.upload_id().unwrap().to_string();
            let part = s3
                .upload_part()
                .bucket("cmu")
                .key(key)
                .upload_id(&id)
                .part_number(1)
                .body(ByteStream::from_static(b"replacement"))
                .send()
                .await
                .unwrap();
            let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
                .build();
            let mut req = s3.complete_multipart_upload().bucket("cmu").key(key).upload_id(&id).multipart_upload(parts);
            if let Some(m) = if_match {
                req = req.if_match(m);
            }
            if let Some(n) = if_none {
                req = req.if_none_match(n);
            }
            let res = req.send().await;
            if res.is_err() {
                s3.abort_multipart_upload().bucket("cmu").key(key).upload_id(&id).send().await.unwrap();
            }
            res
        }
    };
    let body = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            let o = s3.get_object().bucket("cmu").key(key).send().await.unwrap();
            o.body.collect().await.unwrap().into_bytes().to_vec()
        }
    };

    let (status, code, _) = failure(complete("obj", Some("\"0123456789abcdef0123456789abcdef\"".into()), None).await);
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"), "a stale If-Match is refused");
    assert_eq!(body("obj").await, b"original", "and nothing was written");
    let (status, code, _) = failure(complete("obj", None, Some("*")).await);
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"), "If-None-Match: * on an existing key");
    let (status, code, _) = failure(complete("absent", Some(current.clone()), None).await);
    assert_eq!((status, code.as_str()), (404, "NoSuchKey"), "If-Match on a key that does not exist");
    complete("obj", Some(current), None).await.expect("the current ETag matches");
    assert_eq!(body("obj").await, b"replacement");
    complete("fresh", None, Some("*")).await.expect("If-None-Match: * on a new key");
}
