//! The enforcing bucket-policy statement and its merge into an existing policy.
//!
//! The statement denies `s3:PutObject` (which also authorizes CopyObject and
//! CreateMultipartUpload onto the bucket) whenever the request's
//! `s3:x-amz-server-side-encryption-aws-kms-key-id` is not the plan's key ARN, as AWS
//! documents for requiring one key (docs/s3-facts.md §9). `StringNotEquals` is also true
//! when the header is absent, so a writer that relies on the bucket's default encryption
//! and sends no header is denied too: that is what "deny PutObject without this key"
//! means, and why the statement is opt-in.

use serde_json::{json, Map, Value};

/// The statement's `Sid`: how a later `finish` finds it again.
pub const ENFORCE_SID: &str = "RekeyDenyPutObjectWithoutKmsKey";

/// The statement that denies PutObject without `key_arn` on `bucket`'s objects.
pub fn enforce_statement(bucket: &str, key_arn: &str) -> Value {
    json!({
        "Sid": ENFORCE_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*"),
        "Condition": {
            "StringNotEquals": {
                "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn
            }
        }
    })
}

/// A policy with the statement merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The whole document, pretty-printed (two-space indent, keys in their order).
    pub document: String,
    /// False when the statement was already there, exactly.
    pub changed: bool,
}

/// Merge `statement` into `existing` (None: a new policy). Every other statement and
/// top-level field stays as it was; a statement with the same `Sid` is replaced (the key
/// changed), and an identical one leaves the policy unchanged.
pub fn merge_policy(existing: Option<&str>, statement: Value) -> Result<Merged, String> {
    let mut doc: Map<String, Value> = match existing {
        None => {
            let mut m = Map::new();
            m.insert("Version".into(), json!("2012-10-17"));
            m
        }
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err("it is not a JSON object".into()),
            Err(e) => return Err(format!("it is not JSON ({e})")),
        },
    };
    let sid = statement.get("Sid").cloned();
    // A single statement may be an object rather than a list: keep it, as a list.
    let mut statements = match doc.remove("Statement") {
        None => Vec::new(),
        Some(Value::Array(v)) => v,
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err("its Statement is neither a list nor an object".into()),
    };
    let changed = match statements.iter().position(|s| s.get("Sid") == sid.as_ref()) {
        Some(i) if statements[i] == statement => false,
        Some(i) => {
            statements[i] = statement;
            true
        }
        None => {
            statements.push(statement);
            true
        }
    };
    doc.insert("Statement".into(), Value::Array(statements));
    let document = serde_json::to_string_pretty(&Value::Object(doc)).map_err(|e| e.to_string())?;
    Ok(Merged { document, changed })
}

/// A JSON document pretty-printed as [`merge_policy`] prints its result (None: not JSON).
pub fn pretty(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok())
}
