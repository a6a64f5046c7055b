//! The S3 operations, path-style (or `bucket.localhost` virtual-host): routing a request to
//! its operation, and each operation's effect on the store and its answer, shaped like S3's
//! so that the AWS CLI, s5cmd, rclone and aws-sdk-s3 parse them. Signatures are not checked.

use crate::http::{decode_aws_chunked, Request, Response};
use crate::store::{now, Bucket, Object, Store, DEFAULT_KMS_KEY};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use std::fmt::Write;

/// Every operation the server tells apart, for the per-operation counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjectsV2,
    ListObjects,
    ListMultipartUploads,
    HeadObject,
    GetObject,
    PutObject,
    CopyObject,
    UpdateObjectEncryption,
    GetObjectTagging,
    PutObjectTagging,
    GetObjectAcl,
    DeleteObject,
    Unsupported,
}

impl Op {
    pub const ALL: [Op; 18] = [
        Op::ListBuckets,
        Op::CreateBucket,
        Op::HeadBucket,
        Op::GetBucketLocation,
        Op::GetBucketVersioning,
        Op::ListObjectsV2,
        Op::ListObjects,
        Op::ListMultipartUploads,
        Op::HeadObject,
        Op::GetObject,
        Op::PutObject,
        Op::CopyObject,
        Op::UpdateObjectEncryption,
        Op::GetObjectTagging,
        Op::PutObjectTagging,
        Op::GetObjectAcl,
        Op::DeleteObject,
        Op::Unsupported,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::HeadBucket => "HeadBucket",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListObjects => "ListObjects",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::UpdateObjectEncryption => "UpdateObjectEncryption",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::GetObjectAcl => "GetObjectAcl",
            Op::DeleteObject => "DeleteObject",
            Op::Unsupported => "Unsupported",
        }
    }
}

/// Percent-decoding (`+` is left alone: S3 clients encode a space as `%20`).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding for `encoding-type=url` listings: everything but unreserved and `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~/".contains(&c) {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

pub fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn iso(t: i64) -> String {
    DateTime::from_secs(t).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

fn http_date(t: i64) -> String {
    DateTime::from_secs(t).fmt(DateTimeFormat::HttpDate).unwrap_or_default()
}

fn xml(status: u16, body: String) -> Response {
    let mut b = Vec::with_capacity(body.len() + 40);
    b.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    b.extend_from_slice(body.as_bytes());
    Response::with_body(status, "application/xml", b)
}

pub fn error(status: u16, code: &str, message: &str) -> Response {
    xml(status, format!("<Error><Code>{code}</Code><Message>{}</Message></Error>", xml_escape(message)))
}

fn no_such_bucket() -> Response {
    error(404, "NoSuchBucket", "The specified bucket does not exist")
}

fn no_such_key() -> Response {
    error(404, "NoSuchKey", "The specified key does not exist.")
}

/// The bucket and key a request addresses: path-style, or `{bucket}.localhost` in Host.
fn target(req: &Request) -> (Option<String>, Option<String>) {
    let path = req.path.strip_prefix('/').unwrap_or(&req.path);
    let host = req.header("host").unwrap_or("").split(':').next().unwrap_or("");
    if let Some(bucket) = host.strip_suffix(".localhost").filter(|b| !b.is_empty()) {
        let key = (!path.is_empty()).then(|| decode(path));
        return (Some(bucket.to_string()), key);
    }
    match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (Some(decode(b)), Some(decode(k))),
        Some((b, _)) => (Some(decode(b)), None),
        None if path.is_empty() => (None, None),
        None => (Some(decode(path)), None),
    }
}

/// Route one request, apply it, and answer.
pub fn handle(store: &mut Store, req: &Request) -> (Op, Response) {
    // The Rust SDK names some operations in the query (`?x-id=CopyObject`); the method,
    // path and other parameters already say which.
    let q: Vec<_> = query(&req.query).into_iter().filter(|(k, _)| k != "x-id").collect();
    let has = |n: &str| q.iter().any(|(k, _)| k == n);
    let (bucket, key) = target(req);
    let m = req.method.as_str();
    let Some(bucket) = bucket else {
        return match m {
            "GET" => (Op::ListBuckets, list_buckets(store)),
            _ => (Op::Unsupported, error(405, "MethodNotAllowed", "not supported by the bench server")),
        };
    };
    let Some(key) = key else {
        let op = match m {
            "PUT" => Op::CreateBucket,
            "HEAD" => Op::HeadBucket,
            "GET" if has("location") => Op::GetBucketLocation,
            "GET" if has("versioning") => Op::GetBucketVersioning,
            "GET" if has("uploads") => Op::ListMultipartUploads,
            "GET" if param(&q, "list-type") == Some("2") => Op::ListObjectsV2,
            "GET" if q.iter().all(|(k, _)| LIST_PARAMS.contains(&k.as_str())) => Op::ListObjects,
            _ => Op::Unsupported,
        };
        if op == Op::CreateBucket {
            store.buckets.entry(bucket).or_insert_with(|| Bucket { created: now(), ..Bucket::default() });
            return (op, Response::new(200));
        }
        let Some(b) = store.buckets.get(&bucket) else { return (op, no_such_bucket()) };
        let resp = match op {
            Op::HeadBucket => Response::new(200).header("x-amz-bucket-region", "us-east-1"),
            Op::GetBucketLocation => {
                xml(200, "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>".into())
            }
            Op::GetBucketVersioning => {
                xml(200, "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>".into())
            }
            Op::ListMultipartUploads => xml(
                200,
                format!("<ListMultipartUploadsResult><Bucket>{bucket}</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"),
            ),
            Op::ListObjectsV2 | Op::ListObjects => list_objects(&bucket, b, &q, op == Op::ListObjectsV2),
            _ => error(501, "NotImplemented", "not supported by the bench server"),
        };
        return (op, resp);
    };
    let op = match m {
        "HEAD" => Op::HeadObject,
        "GET" if has("tagging") => Op::GetObjectTagging,
        "GET" if has("acl") => Op::GetObjectAcl,
        "GET" if q.iter().all(|(k, _)| k.starts_with("response-") || k == "versionId" || k == "partNumber") => {
            Op::GetObject
        }
        "PUT" if has("encryption") => Op::UpdateObjectEncryption,
        "PUT" if has("tagging") => Op::PutObjectTagging,
        "PUT" if req.header("x-amz-copy-source").is_some() && q.is_empty() => Op::CopyObject,
        "PUT" if q.is_empty() => Op::PutObject,
        "DELETE" if q.iter().all(|(k, _)| k == "versionId") => Op::DeleteObject,
        _ => Op::Unsupported,
    };
    let Some(b) = store.buckets.get(&bucket) else { return (op, no_such_bucket()) };
    let resp = match op {
        Op::HeadObject | Op::GetObject => match b.objects.get(&key) {
            Some(o) => get_object(o, op == Op::HeadObject),
            None => no_such_key(),
        },
        Op::GetObjectTagging => match b.objects.get(&key) {
            Some(_) => xml(
                200,
                "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet></TagSet></Tagging>".into(),
            ),
            None => no_such_key(),
        },
        Op::PutObjectTagging => match b.objects.get(&key) {
            Some(_) => Response::new(200),
            None => no_such_key(),
        },
        Op::GetObjectAcl => match b.objects.get(&key) {
            Some(_) => xml(200, OWNER_ACL.into()),
            None => no_such_key(),
        },
        Op::PutObject => put_object(store, &bucket, key, req),
        Op::CopyObject => copy_object(store, &bucket, key, req),
        Op::UpdateObjectEncryption => update_encryption(store, &bucket, &key, &req.body),
        Op::DeleteObject => {
            if let Some(b) = store.buckets.get_mut(&bucket) {
                b.objects.remove(&key);
            }
            Response::new(204)
        }
        _ => error(501, "NotImplemented", "not supported by the bench server"),
    };
    (op, resp)
}

const LIST_PARAMS: [&str; 5] = ["prefix", "delimiter", "marker", "max-keys", "encoding-type"];

const OWNER_ACL: &str = "<AccessControlPolicy><Owner><ID>bench</ID></Owner><AccessControlList><Grant>\
<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>bench</ID></Grantee>\
<Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>";

fn list_buckets(store: &Store) -> Response {
    let mut s = String::from("<ListAllMyBucketsResult><Owner><ID>bench</ID></Owner><Buckets>");
    let mut names: Vec<_> = store.buckets.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, b) in names {
        let _ = write!(
            s,
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            xml_escape(name),
            iso(b.created)
        );
    }
    s.push_str("</Buckets></ListAllMyBucketsResult>");
    xml(200, s)
}

fn list_objects(bucket: &str, b: &Bucket, q: &[(String, String)], v2: bool) -> Response {
    let prefix = param(q, "prefix").unwrap_or("");
    let delimiter = param(q, "delimiter").filter(|d| !d.is_empty());
    let max = param(q, "max-keys").and_then(|m| m.parse().ok()).unwrap_or(1000usize).min(1000);
    let url = param(q, "encoding-type") == Some("url");
    let enc = |s: &str| if url { encode(s) } else { xml_escape(s) };
    let token = param(q, "continuation-token").map(|t| {
        // Tokens are hex of the last key, so they need no escaping anywhere.
        let bytes: Vec<u8> =
            (0..t.len() / 2).filter_map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let after = if v2 { token.as_deref().or(param(q, "start-after")) } else { param(q, "marker") };
    let page = b.list(prefix, after, delimiter, max);
    let root = if v2 { "ListObjectsV2Result" } else { "ListBucketResult" };
    let mut s = String::with_capacity(256 + page.objects.len() * 260);
    let _ = write!(
        s,
        "<{root} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max}</MaxKeys><IsTruncated>{}</IsTruncated>",
        xml_escape(bucket),
        enc(prefix),
        page.next.is_some()
    );
    if let Some(d) = delimiter {
        let _ = write!(s, "<Delimiter>{}</Delimiter>", enc(d));
    }
    if url {
        s.push_str("<EncodingType>url</EncodingType>");
    }
    if v2 {
        let _ = write!(s, "<KeyCount>{}</KeyCount>", page.objects.len() + page.common_prefixes.len());
        if let Some(t) = param(q, "continuation-token") {
            let _ = write!(s, "<ContinuationToken>{t}</ContinuationToken>");
        }
        if let Some(n) = &page.next {
            let _ = write!(s, "<NextContinuationToken>{}</NextContinuationToken>", crate::store::hex(n.as_bytes()));
        }
    } else {
        if let Some(m) = param(q, "marker") {
            let _ = write!(s, "<Marker>{}</Marker>", enc(m));
        }
        if let Some(n) = &page.next {
            let _ = write!(s, "<NextMarker>{}</NextMarker>", enc(n));
        }
    }
    for (k, o) in &page.objects {
        let _ = write!(
            s,
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>{}</StorageClass></Contents>",
            enc(k),
            iso(o.last_modified),
            o.etag,
            o.body.len(),
            o.storage_class
        );
    }
    for cp in &page.common_prefixes {
        let _ = write!(s, "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", enc(cp));
    }
    let _ = write!(s, "</{root}>");
    xml(200, s)
}

/// The headers that describe an object's encryption, as HEAD, GET, PUT and copies answer.
fn sse_headers(mut r: Response, o: &Object) -> Response {
    if let Some(sse) = &o.sse {
        r = r.header("x-amz-server-side-encryption", sse.clone());
    }
    if let Some(k) = &o.kms_key {
        r = r.header("x-amz-server-side-encryption-aws-kms-key-id", k.clone());
    }
    if o.bucket_key {
        r = r.header("x-amz-server-side-encryption-bucket-key-enabled", "true");
    }
    r
}

fn get_object(o: &Object, head: bool) -> Response {
    let mut r = Response::new(200)
        .header("ETag", format!("\"{}\"", o.etag))
        .header("Last-Modified", http_date(o.last_modified))
        .header("Content-Type", o.content_type.clone())
        .header("Accept-Ranges", "bytes");
    if o.storage_class != "STANDARD" {
        r = r.header("x-amz-storage-class", o.storage_class.clone());
    }
    for (k, v) in &o.metadata {
        r = r.header(format!("x-amz-meta-{k}"), v.clone());
    }
    r = sse_headers(r, o);
    if head {
        r.head_length = Some(o.body.len() as u64);
    } else {
        r.body = o.body.clone();
    }
    r
}

/// Metadata and content type from a write request's headers.
fn request_metadata(req: &Request) -> (Vec<(String, String)>, Option<String>) {
    let meta = req
        .headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("x-amz-meta-").map(|k| (k.to_string(), v.clone())))
        .collect();
    (meta, req.header("content-type").map(str::to_string))
}

/// The encryption a write asks for: SSE-KMS with its key and Bucket Key, or SSE-S3 (the
/// default encryption every bucket has had since 2023).
fn requested_sse(req: &Request) -> Result<(String, Option<String>, bool), Response> {
    let bucket_key =
        req.header("x-amz-server-side-encryption-bucket-key-enabled").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match req.header("x-amz-server-side-encryption") {
        Some("aws:kms") => {
            let key = req.header("x-amz-server-side-encryption-aws-kms-key-id").unwrap_or(DEFAULT_KMS_KEY);
            Ok(("aws:kms".into(), Some(key.to_string()), bucket_key))
        }
        Some("AES256") | None => Ok(("AES256".into(), None, false)),
        Some(other) => Err(error(400, "InvalidArgument", &format!("unsupported x-amz-server-side-encryption {other}"))),
    }
}

fn write_answer(o: &Object) -> Response {
    sse_headers(Response::new(200).header("ETag", format!("\"{}\"", o.etag)), o)
}

fn put_object(store: &mut Store, bucket: &str, key: String, req: &Request) -> Response {
    let (sse, kms_key, bucket_key) = match requested_sse(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let aws_chunked = req.header("content-encoding").is_some_and(|e| e.contains("aws-chunked"))
        || req.header("x-amz-content-sha256").is_some_and(|s| s.starts_with("STREAMING-"));
    let body = if aws_chunked { decode_aws_chunked(&req.body).unwrap_or_default() } else { req.body.clone() };
    let mut o = Object::new(body);
    let (metadata, content_type) = request_metadata(req);
    o.metadata = metadata;
    if let Some(ct) = content_type {
        o.content_type = ct;
    }
    if let Some(sc) = req.header("x-amz-storage-class") {
        o.storage_class = sc.to_string();
    }
    if sse == "aws:kms" {
        o.etag = store.opaque_etag();
    }
    o.sse = Some(sse);
    o.kms_key = kms_key;
    o.bucket_key = bucket_key;
    let resp = write_answer(&o);
    if let Some(b) = store.buckets.get_mut(bucket) {
        b.objects.insert(key, o);
    }
    resp
}

fn copy_object(store: &mut Store, bucket: &str, key: String, req: &Request) -> Response {
    let raw = req.header("x-amz-copy-source").unwrap_or("");
    let raw = raw.split_once("?versionId=").map_or(raw, |(s, _)| s);
    let src = decode(raw.trim_start_matches('/'));
    let Some((src_bucket, src_key)) = src.split_once('/') else {
        return error(
            400,
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        );
    };
    let Some(source) = store.buckets.get(src_bucket).and_then(|b| b.objects.get(src_key)) else {
        return if store.buckets.contains_key(src_bucket) { no_such_key() } else { no_such_bucket() };
    };
    if let Some(m) = req.header("x-amz-copy-source-if-match") {
        if m.trim_matches('"') != source.etag {
            return error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
        }
    }
    let (sse, kms_key, bucket_key) = match requested_sse(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let replace = req.header("x-amz-metadata-directive").is_some_and(|d| d.eq_ignore_ascii_case("REPLACE"));
    let same = src_bucket == bucket && src_key == key;
    if same
        && !replace
        && req.header("x-amz-server-side-encryption").is_none()
        && req.header("x-amz-storage-class").is_none()
    {
        return error(
            400,
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        );
    }
    let mut o = source.clone();
    if replace {
        let (metadata, content_type) = request_metadata(req);
        o.metadata = metadata;
        o.content_type = content_type.unwrap_or_else(|| "binary/octet-stream".into());
    }
    o.storage_class = req.header("x-amz-storage-class").unwrap_or("STANDARD").to_string();
    o.etag = if sse == "aws:kms" { store.opaque_etag() } else { crate::store::hex(&md5_of(&o.body)) };
    o.sse = Some(sse);
    o.kms_key = kms_key;
    o.bucket_key = bucket_key;
    o.last_modified = now();
    let body = format!(
        "<CopyObjectResult><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag></CopyObjectResult>",
        iso(o.last_modified),
        o.etag
    );
    let mut resp = sse_headers(xml(200, body), &o);
    if !store.buckets.contains_key(bucket) {
        resp = no_such_bucket();
    } else if let Some(b) = store.buckets.get_mut(bucket) {
        b.objects.insert(key, o);
    }
    resp
}

fn md5_of(b: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    Md5::digest(b).to_vec()
}

/// The text of `<tag>…</tag>` in a small XML body.
fn element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim())
}

/// UpdateObjectEncryption, as aws-sdk-s3 sends it (`PUT /{bucket}/{key}?encryption`):
/// `<ObjectEncryption><SSE-KMS><KMSKeyArn>…</KMSKeyArn><BucketKeyEnabled>…</BucketKeyEnabled>
/// </SSE-KMS></ObjectEncryption>`. In place: ETag, dates and metadata are kept. Like S3 it
/// takes only a full key ARN and refuses unencrypted objects.
fn update_encryption(store: &mut Store, bucket: &str, key: &str, body: &[u8]) -> Response {
    let body = String::from_utf8_lossy(body);
    let Some(arn) = element(&body, "SSE-KMS").and_then(|s| element(s, "KMSKeyArn")).filter(|a| !a.is_empty()) else {
        return error(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
        );
    };
    if !(arn.starts_with("arn:") && arn.contains(":key/")) {
        return error(
            400,
            "InvalidArgument",
            "The KMSKeyArn must be a full KMS key ARN (key ID and alias are not accepted).",
        );
    }
    let bucket_key = element(&body, "BucketKeyEnabled").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let Some(o) = store.buckets.get_mut(bucket).and_then(|b| b.objects.get_mut(key)) else { return no_such_key() };
    if o.sse.is_none() {
        return error(
            400,
            "InvalidRequest",
            "UpdateObjectEncryption is not supported for unencrypted (NOT-SSE) objects.",
        );
    }
    o.sse = Some("aws:kms".into());
    o.kms_key = Some(arn.to_string());
    o.bucket_key = bucket_key;
    Response::new(200)
}
