//! Completion reports: the line rekey writes for an object (`rekey report --format
//! batch-ops`), and the parse of a line Batch Operations (or rekey) wrote. Column order:
//! see the module doc of [`crate::batch_ops`].

use crate::inventory::keys::{decode_form_key, encode_path};
use crate::store::{ImportedOutcome, ReportRow};
use crate::vocab::ObjectStatus;

/// One object as a completion-report line: Bucket, Key (percent-encoded), VersionId,
/// TaskStatus, HTTP status, error code, ResultMessage.
pub fn completion_record(r: &ReportRow) -> [String; 7] {
    // Already under the target key is the outcome a task would have reached.
    let done = matches!(r.status, ObjectStatus::Done | ObjectStatus::AlreadyTargetKey);
    let code = match (&r.error_code, r.status) {
        (_, ObjectStatus::Done | ObjectStatus::AlreadyTargetKey) => String::new(),
        (Some(c), _) => c.clone(),
        (None, ObjectStatus::Changed) => "PreconditionFailed".into(),
        (None, ObjectStatus::Gone) => "NoSuchKey".into(),
        (None, ObjectStatus::NeedsRestore) => "InvalidObjectState".into(),
        (None, _) => String::new(),
    };
    let http = if done { Some(200) } else { http_status(&code) };
    let message = if done {
        "Successful".to_string()
    } else {
        r.last_error.clone().unwrap_or_else(|| format!("rekey: {}", r.status))
    };
    [
        r.bucket.clone(),
        encode_path(&r.key),
        r.version_id.clone().unwrap_or_default(),
        if done { "succeeded" } else { "failed" }.to_string(),
        http.map(|h| h.to_string()).unwrap_or_default(),
        code,
        message,
    ]
}

/// The HTTP status S3 answers with an error code, for the codes a re-encryption meets.
fn http_status(code: &str) -> Option<u16> {
    Some(match code {
        "AccessDenied" | "InvalidObjectState" | "AllAccessDisabled" => 403,
        "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion" => 404,
        "PreconditionFailed" => 412,
        "InvalidRequest" | "InvalidArgument" | "RequestTimeout" | "EntityTooLarge" => 400,
        c if c.starts_with("KMS.") => 400,
        "InternalError" => 500,
        "SlowDown" | "ServiceUnavailable" => 503,
        _ => return None,
    })
}

/// A failure worth a later `rekey run`: throttling and server errors, not rejections.
pub fn retryable(code: &str, http: Option<u16>) -> bool {
    http.is_some_and(|h| h >= 500)
        || matches!(code, "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "TemporaryFailure")
}

/// One parsed completion-report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionLine {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub outcome: ImportedOutcome,
}

/// Why a completion-report line does not parse; names the field (the caller adds the
/// file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    #[error(
        "expected 7 fields (Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage), found {0}"
    )]
    FieldCount(usize),
    #[error("field Bucket: empty")]
    EmptyBucket,
    #[error("field Key: '{raw}': {reason}")]
    Key { raw: String, reason: String },
    #[error("field TaskStatus: '{0}' is neither succeeded nor failed")]
    TaskStatus(String),
}

/// Parse one completion-report record.
pub fn parse_completion(rec: &csv::StringRecord) -> Result<CompletionLine, CompletionError> {
    if rec.len() < 7 {
        return Err(CompletionError::FieldCount(rec.len()));
    }
    let bucket = rec[0].trim();
    if bucket.is_empty() {
        return Err(CompletionError::EmptyBucket);
    }
    let key = decode_form_key(rec[1].as_bytes())
        .map_err(|e| CompletionError::Key { raw: rec[1].to_string(), reason: e.to_string() })?;
    let version_id = match rec[2].trim() {
        "" | "null" => None,
        v => Some(v.to_string()),
    };
    let (http, code) = status_columns(rec[4].trim(), rec[5].trim());
    let outcome = match rec[3].trim().to_ascii_lowercase().as_str() {
        "succeeded" => ImportedOutcome::Succeeded,
        "failed" => {
            let code = if code.is_empty() { http.map(|h| format!("HTTP{h}")).unwrap_or_default() } else { code.into() };
            ImportedOutcome::Failed {
                retryable: retryable(&code, http),
                message: rec[6].to_string(),
                error_code: if code.is_empty() { "Unknown".into() } else { code },
            }
        }
        other => return Err(CompletionError::TaskStatus(other.to_string())),
    };
    Ok(CompletionLine { bucket: bucket.to_string(), key, version_id, outcome })
}

/// The HTTP status and error code from the fifth and sixth columns, in either order: the
/// one that is a three-digit number is the HTTP status.
fn status_columns<'a>(a: &'a str, b: &'a str) -> (Option<u16>, &'a str) {
    let is_http = |s: &str| s.len() == 3 && s.bytes().all(|c| c.is_ascii_digit());
    let (http, code) = if is_http(a) && !is_http(b) {
        (a, b)
    } else if is_http(b) {
        (b, a)
    } else {
        ("", a)
    };
    (http.parse().ok(), code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Method;

    fn report_row(key: &str, version: Option<&str>, status: &str, error_code: Option<&str>) -> ReportRow {
        ReportRow {
            id: 1,
            bucket: "src-bucket".into(),
            key: key.into(),
            version_id: version.map(str::to_string),
            size: Some(1),
            storage_class: Some("STANDARD".into()),
            encryption: Some("SSE-S3".into()),
            method: Some(Method::Update),
            skip_reason: None,
            status: ObjectStatus::parse(status).unwrap(),
            etag: None,
            new_etag: None,
            new_version_id: None,
            kms_key_id: None,
            attempts: 1,
            error_code: error_code.map(str::to_string),
            last_error: None,
            retryable: false,
            note: None,
            new_checksum: None,
            verify_verdict: None,
            verify_detail: None,
            verified_at: None,
            finished_at: None,
            replaced_version_id: None,
            replaced_deleted_at: None,
            replaced_delete_detail: None,
        }
    }

    fn record(fields: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(fields.to_vec())
    }

    /// Write the record as CSV, read it back as a report line.
    fn round_trip(r: &ReportRow) -> CompletionLine {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(completion_record(r)).unwrap();
        let text = w.into_inner().unwrap();
        let mut rd = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_slice());
        let rec = rd.records().next().unwrap().unwrap();
        parse_completion(&rec).unwrap()
    }

    #[test]
    fn records_round_trip_any_key_and_the_null_version() {
        let keys = ["a b", "a+b", "100%", "a,b", "line\nbreak", "ünï/cødé ✓.txt", "+ %2B%20"];
        for key in keys {
            for version in [Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"), None] {
                let line = round_trip(&report_row(key, version, "done", None));
                assert_eq!(line.key, key);
                assert_eq!(line.version_id.as_deref(), version);
                assert_eq!(line.bucket, "src-bucket");
                assert_eq!(line.outcome, ImportedOutcome::Succeeded);
            }
        }
    }

    #[test]
    fn failures_round_trip_with_a_code_and_status() {
        let line = round_trip(&report_row("k", None, "changed", None));
        assert_eq!(
            line.outcome,
            ImportedOutcome::Failed {
                error_code: "PreconditionFailed".into(),
                message: "rekey: changed".into(),
                retryable: false
            }
        );
        let rec = completion_record(&report_row("k", Some("v"), "failed", Some("SlowDown")));
        assert_eq!(rec[3..6], ["failed".to_string(), "503".to_string(), "SlowDown".to_string()]);
        let done = completion_record(&report_row("k", None, "done", Some("SlowDown")));
        assert_eq!(done[2..7], ["", "succeeded", "200", "", "Successful"].map(String::from));
    }

    #[test]
    fn the_http_status_may_be_fifth_or_sixth() {
        let fifth = parse_completion(&record(&["b", "k", "v1", "failed", "403", "AccessDenied", "denied"])).unwrap();
        let sixth = parse_completion(&record(&["b", "k", "v1", "failed", "AccessDenied", "403", "denied"])).unwrap();
        assert_eq!(fifth, sixth);
        let expected =
            ImportedOutcome::Failed { error_code: "AccessDenied".into(), message: "denied".into(), retryable: false };
        assert_eq!(fifth.outcome, expected);
        let no_code = parse_completion(&record(&["b", "k", "", "failed", "", "500", "oops"])).unwrap();
        assert_eq!(
            no_code.outcome,
            ImportedOutcome::Failed { error_code: "HTTP500".into(), message: "oops".into(), retryable: true }
        );
        let nothing = parse_completion(&record(&["b", "k", "null", "FAILED", "", "", ""])).unwrap();
        assert_eq!(
            nothing.outcome,
            ImportedOutcome::Failed { error_code: "Unknown".into(), message: "".into(), retryable: false }
        );
        assert_eq!(nothing.version_id, None);
    }

    #[test]
    fn keys_in_reports_decode_as_form_data() {
        let line = parse_completion(&record(&["b", "a+b%20c%2B", "v", "succeeded", "200", "", ""])).unwrap();
        assert_eq!(line.key, "a b c+");
    }

    #[test]
    fn server_errors_and_throttling_are_retryable_rejections_are_not() {
        for code in ["SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "TemporaryFailure"] {
            assert!(retryable(code, None), "{code}");
        }
        assert!(retryable("Whatever", Some(500)));
        assert!(retryable("", Some(503)));
        for (code, http) in
            [("AccessDenied", Some(403)), ("PreconditionFailed", Some(412)), ("KMS.Disabled", Some(400))]
        {
            assert!(!retryable(code, http), "{code}");
        }
        assert!(!retryable("", None));
    }

    #[test]
    fn malformed_lines_name_the_field() {
        let short = parse_completion(&record(&["b", "k", "v", "failed"])).unwrap_err();
        assert_eq!(short, CompletionError::FieldCount(4));
        assert!(short.to_string().ends_with("found 4"), "{short}");
        let empty = parse_completion(&record(&[" ", "k", "v", "failed", "", "", ""])).unwrap_err();
        assert_eq!(empty, CompletionError::EmptyBucket);
        let status = parse_completion(&record(&["b", "k", "v", "Pending", "", "", ""])).unwrap_err();
        assert_eq!(status.to_string(), "field TaskStatus: 'pending' is neither succeeded nor failed");
        let key = parse_completion(&record(&["b", "%zz", "v", "failed", "", "", ""])).unwrap_err();
        assert!(matches!(&key, CompletionError::Key { raw, .. } if raw == "%zz"), "{key}");
    }
}
