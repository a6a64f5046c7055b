//! Reading S3's answers to the direct path's requests: the `<Error>` document of a
//! failure, and CopyObject's `<CopyObjectResult>`, with `xmlparser` (the tokenizer under
//! the SDK's own XML decoder) rather than the SDK's generated deserialisers.
//!
//! A CopyObject can fail after S3 has sent `200 OK`: the body is then an `<Error>`, and it
//! is an error (the SDK treats it so too); [`read_error`] is asked of every answer.

use super::http::Response;
use crate::s3::object_store::{classify, S3CallError};

/// Code and message of an `<Error>` document; None when the body is not one.
pub fn error_document(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let text = std::str::from_utf8(body).ok()?;
    let (mut code, mut message) = (None, None);
    let root = walk(text, |path, value| match path {
        ["Error", "Code"] => code = Some(value.to_string()),
        ["Error", "Message"] => message = Some(value.to_string()),
        _ => {}
    })
    .ok()??;
    (root == "Error").then_some((code, message))
}

/// The error an answer stands for: a non-2xx status, or a 2xx whose body is an `<Error>`;
/// classified exactly as `sdk_store::call_error` classifies the SDK's.
pub fn read_error(r: &Response) -> Option<S3CallError> {
    let ok = (200..300).contains(&r.status);
    let doc = error_document(&r.body);
    if ok && doc.is_none() {
        return None;
    }
    let (code, message) = doc.unwrap_or((None, None));
    let code = code.unwrap_or_else(|| format!("Http{}", r.status));
    let message = message.unwrap_or_default();
    let status = Some(r.status);
    Some(S3CallError { kind: classify(status, &code, &message), code, message, status })
}

/// What CopyObject's `<CopyObjectResult>` reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CopyResult {
    /// Unquoted.
    pub etag: Option<String>,
    /// `ALGORITHM:value`, the first of CRC32, CRC32C, CRC64NVME, SHA1, SHA256 present (the
    /// order `sdk_store` uses).
    pub checksum: Option<String>,
}

const CHECKSUMS: [(&str, &str); 5] = [
    ("ChecksumCRC32", "CRC32"),
    ("ChecksumCRC32C", "CRC32C"),
    ("ChecksumCRC64NVME", "CRC64NVME"),
    ("ChecksumSHA1", "SHA1"),
    ("ChecksumSHA256", "SHA256"),
];

/// Parse a CopyObject answer's body (an empty body reports nothing, as with the SDK).
pub fn copy_result(body: &[u8]) -> Result<CopyResult, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CopyResult::default());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("CopyObject answer is not UTF-8: {e}"))?;
    let mut etag = None;
    let mut sums: [Option<String>; 5] = Default::default();
    walk(text, |path, value| {
        if let ["CopyObjectResult", field] = path {
            if *field == "ETag" {
                etag = Some(value.trim_matches('"').to_string());
            } else if let Some(i) = CHECKSUMS.iter().position(|(el, _)| el == field) {
                sums[i] = Some(value.to_string());
            }
        }
    })
    .map_err(|e| format!("CopyObject answer is not XML: {e}"))?;
    let checksum = sums.iter().zip(CHECKSUMS).find_map(|(v, (_, alg))| v.as_ref().map(|v| format!("{alg}:{v}")));
    Ok(CopyResult { etag, checksum })
}

/// Call `leaf(path, text)` for every element's text, `path` the element names from the
/// root; returns the root element's name. Depth is capped, so a hostile body cannot grow
/// the path without bound.
fn walk<'a>(text: &'a str, mut leaf: impl FnMut(&[&'a str], &str)) -> Result<Option<&'a str>, String> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    const MAX_DEPTH: usize = 16;
    let mut path: Vec<&'a str> = Vec::with_capacity(4);
    let mut root = None;
    let mut buf = String::new();
    for token in Tokenizer::from(text) {
        match token.map_err(|e| e.to_string())? {
            Token::ElementStart { local, .. } => {
                if path.len() >= MAX_DEPTH {
                    return Err("elements nested too deep".into());
                }
                root.get_or_insert(local.as_str());
                path.push(local.as_str());
                buf.clear();
            }
            Token::Text { text } => buf.push_str(text.as_str()),
            Token::Cdata { text, .. } => buf.push_str(text.as_str()),
            Token::ElementEnd { end: ElementEnd::Close(_, local), .. } => {
                if path.last() != Some(&local.as_str()) {
                    return Err(format!("</{}> closes <{}>", local.as_str(), path.last().unwrap_or(&"")));
                }
                if !buf.is_empty() {
                    leaf(&path, &unescape(&buf));
                    buf.clear();
                }
                path.pop();
            }
            Token::ElementEnd { end: ElementEnd::Empty, .. } => {
                path.pop();
            }
            _ => {}
        }
    }
    if let Some(open) = path.last() {
        return Err(format!("<{open}> is never closed"));
    }
    Ok(root)
}

/// XML's five entities and character references.
fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3ErrorKind;

    fn response(status: u16, body: &str) -> Response {
        Response { status, headers: http::HeaderMap::new(), body: bytes::Bytes::from(body.to_string()) }
    }

    #[test]
    fn errors_are_read_and_classified() {
        let kms = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate for operations involving AWS KMS.</Message><RequestId>1</RequestId></Error>"#;
        let e = read_error(&response(503, kms)).unwrap();
        assert_eq!((e.kind, e.code.as_str(), e.status), (S3ErrorKind::ThrottledKms, "SlowDown", Some(503)));
        let e = read_error(&response(412, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>")).unwrap();
        assert_eq!(e.kind, S3ErrorKind::PreconditionFailed);
        // No body: the status decides, under the code the SDK gives such an error.
        let e = read_error(&response(500, "")).unwrap();
        assert_eq!((e.kind, e.code.as_str(), e.message.as_str()), (S3ErrorKind::Transient, "Http500", ""));
        let e = read_error(&response(403, "not xml <")).unwrap();
        assert_eq!(e.kind, S3ErrorKind::Fatal);
    }

    #[test]
    fn an_error_inside_a_200_is_an_error() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n   \n<Error><Code>InternalError</Code><Message>We encountered an internal error &amp; so on</Message></Error>";
        let e = read_error(&response(200, body)).unwrap();
        assert_eq!((e.kind, e.code.as_str(), e.status), (S3ErrorKind::Transient, "InternalError", Some(200)));
        assert_eq!(e.message, "We encountered an internal error & so on");
        assert!(read_error(&response(200, "")).is_none());
        assert!(read_error(&response(200, "<CopyObjectResult><ETag>x</ETag></CopyObjectResult>")).is_none());
    }

    #[test]
    fn copy_result_etag_and_checksum() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><ChecksumSHA256>abc=</ChecksumSHA256><ChecksumCRC32>q1w2==</ChecksumCRC32></CopyObjectResult>";
        assert_eq!(
            copy_result(body.as_bytes()).unwrap(),
            CopyResult { etag: Some("9b2cf535f27731c974343645a3985328".into()), checksum: Some("CRC32:q1w2==".into()) }
        );
        assert_eq!(copy_result(b"  \n ").unwrap(), CopyResult::default());
        assert!(copy_result(b"<CopyObjectResult><ETag>x</Other>").is_err(), "mismatched tags");
        assert!(copy_result(b"<CopyObjectResult <").is_err());
        assert!(copy_result(b"<CopyObjectResult><ETag>x</ETag>").is_err(), "truncated");
    }

    #[test]
    fn hostile_bodies_do_not_panic() {
        let deep = "<a>".repeat(10_000);
        assert!(copy_result(deep.as_bytes()).is_err());
        assert!(error_document(deep.as_bytes()).is_none());
        for body in ["&", "<Error><Code>&#xFFFFFFFF;&#;&bogus;&</Code></Error>", "\u{0}<", "<Error>"] {
            let _ = copy_result(body.as_bytes());
            let _ = read_error(&response(200, body));
        }
        assert_eq!(unescape("&#x41;&#66;&lt;&unknown;&"), "AB<&unknown;&");
    }
}
