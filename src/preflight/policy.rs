//! IAM policy documents (a bucket policy, a KMS key policy) read as far as the access checks
//! need: whom each statement names, which actions it allows or denies, under which
//! conditions. Pure functions over the JSON, so the analysis is tested without AWS.
//!
//! What is left out, on purpose: condition values are shown, never evaluated (rekey cannot
//! know a caller's VPC endpoint or organization), and a Deny with conditions is not taken as
//! denying (it may or may not apply), so the checks err toward "allowed, under conditions".

use serde_json::Value;
use std::fmt;

/// Whom a policy statement names, as the access checks tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"` or `{"AWS": "*"}`: anyone, anonymous callers included.
    Anyone,
    /// A whole account: a bare 12-digit ID or `arn:aws:iam::ACCOUNT:root`.
    Account(String),
    /// An IAM role, user or session of an account.
    Arn { account: String, arn: String },
    /// An AWS service principal (`cloudfront.amazonaws.com`).
    Service(String),
    /// A CloudFront origin access identity (OAI), by its IAM ARN.
    OriginAccessIdentity(String),
    /// A canonical user ID, a federated principal, or an AWS value rekey cannot place in an
    /// account (a unique ID such as `AROA…`, left when its role was deleted).
    Other(String),
}

impl Principal {
    /// How a policy names it: `AWS`, `Service`, `CanonicalUser`, `Federated`.
    fn parse(kind: &str, value: &str) -> Principal {
        match kind {
            "AWS" => aws_principal(value),
            "Service" => Principal::Service(value.to_string()),
            _ => Principal::Other(format!("{kind} {value}")),
        }
    }

    /// A KMS grantee principal: an ARN, or a service principal.
    pub fn grantee(value: &str) -> Principal {
        if value.ends_with(".amazonaws.com") && !value.starts_with("arn:") {
            Principal::Service(value.to_string())
        } else {
            aws_principal(value)
        }
    }

    /// The account it belongs to, when it names one.
    pub fn account(&self) -> Option<&str> {
        match self {
            Principal::Account(a) | Principal::Arn { account: a, .. } => Some(a),
            _ => None,
        }
    }

    /// The JSON a key-policy statement names it by (`{"AWS": "…"}`), when it has one.
    pub fn policy_json(&self) -> Option<Value> {
        Some(match self {
            Principal::Account(a) => serde_json::json!({ "AWS": format!("arn:aws:iam::{a}:root") }),
            Principal::Arn { arn, .. } => serde_json::json!({ "AWS": arn }),
            Principal::Service(s) => serde_json::json!({ "Service": s }),
            Principal::Anyone => serde_json::json!({ "AWS": "*" }),
            Principal::OriginAccessIdentity(_) | Principal::Other(_) => return None,
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anyone => f.write_str("anyone (Principal \"*\")"),
            Principal::Account(a) => write!(f, "account {a}"),
            Principal::Arn { arn, .. } => f.write_str(arn),
            Principal::Service(s) => write!(f, "the service {s}"),
            Principal::OriginAccessIdentity(arn) => write!(f, "the CloudFront origin access identity {arn}"),
            Principal::Other(s) => f.write_str(s),
        }
    }
}

fn aws_principal(value: &str) -> Principal {
    if value == "*" {
        return Principal::Anyone;
    }
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        return Principal::Account(value.to_string());
    }
    if value.starts_with("arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity") {
        return Principal::OriginAccessIdentity(value.to_string());
    }
    // arn:PARTITION:iam::ACCOUNT:root | role/… | user/…, arn:PARTITION:sts::ACCOUNT:assumed-role/…
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && (parts[2] == "iam" || parts[2] == "sts") {
        let account = parts[4];
        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
            return if parts[5] == "root" {
                Principal::Account(account.to_string())
            } else {
                Principal::Arn { account: account.to_string(), arn: value.to_string() }
            };
        }
    }
    Principal::Other(format!("AWS {value}"))
}

/// One statement, as far as the checks read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub allow: bool,
    /// `NotPrincipal`: everyone but `principals`.
    pub not_principal: bool,
    pub principals: Vec<Principal>,
    /// `NotAction`: every action but `actions`.
    pub not_action: bool,
    pub actions: Vec<String>,
    /// The `Condition` block as written (None: unconditional).
    pub condition: Option<Value>,
}

impl Statement {
    /// Whether it covers `action` (`s3:GetObject`, `kms:Decrypt`), wildcards included.
    pub fn covers(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action)) != self.not_action
    }

    /// Whether it names `who`, directly, by `who`'s account, or as anyone. NotPrincipal
    /// names everyone not listed.
    pub fn names(&self, who: &Principal) -> bool {
        let listed = self.principals.iter().any(|p| names(p, who));
        listed != self.not_principal
    }

    /// The statement, for a message: `statement "Sid"` or `statement 3`.
    pub fn label(&self, index: usize) -> String {
        match &self.sid {
            Some(s) if !s.is_empty() => format!("statement \"{s}\""),
            _ => format!("statement {}", index + 1),
        }
    }

    /// Its condition in one line (`StringEquals {"aws:SourceArn":"…"}`), if it has one.
    pub fn condition_text(&self) -> Option<String> {
        let c = self.condition.as_ref()?.as_object()?;
        Some(c.iter().map(|(op, v)| format!("{op} {v}")).collect::<Vec<_>>().join(", "))
    }
}

/// Whether a policy principal `p` covers the caller `who`: anyone covers all, an account
/// covers its roles and users, and an ARN or a service only itself.
fn names(p: &Principal, who: &Principal) -> bool {
    match (p, who) {
        (Principal::Anyone, _) => true,
        (Principal::Account(a), w) => w.account() == Some(a.as_str()),
        (Principal::Arn { arn: a, .. }, Principal::Arn { arn: b, .. }) => a.eq_ignore_ascii_case(b),
        (Principal::Service(a), Principal::Service(b)) => a.eq_ignore_ascii_case(b),
        (Principal::OriginAccessIdentity(a), Principal::OriginAccessIdentity(b)) => a == b,
        (Principal::Other(a), Principal::Other(b)) => a == b,
        _ => false,
    }
}

/// An IAM action pattern (`s3:Get*`, `kms:*`, `*`) against an action, case-insensitively.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

/// A policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Why a policy document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no Statement")]
    NoStatement,
    #[error("statement {0}: {1}")]
    Statement(usize, &'static str),
}

impl Policy {
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let doc: Value = serde_json::from_str(json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(s @ Value::Object(_)) => vec![s],
            _ => return Err(PolicyError::NoStatement),
        };
        let statements = statements.into_iter().enumerate().map(|(i, s)| statement(i, s)).collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// The principals an Allow statement names for any of `actions`, each with the statement
    /// that allows it (the first unconditional one, else the first).
    pub fn allowed(&self, actions: &[&str]) -> Vec<(Principal, usize)> {
        let mut out: Vec<(Principal, usize)> = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            if !s.allow || !actions.iter().any(|a| s.covers(a)) {
                continue;
            }
            // NotPrincipal in an Allow names nearly everyone: as good as anyone.
            let named = if s.not_principal { vec![Principal::Anyone] } else { s.principals.clone() };
            for p in named {
                match out.iter_mut().find(|(q, _)| *q == p) {
                    Some(seen) if self.statements[seen.1].condition.is_some() && s.condition.is_none() => seen.1 = i,
                    Some(_) => {}
                    None => out.push((p, i)),
                }
            }
        }
        out
    }

    /// Whether this key policy lets `who` call `action` on the key.
    pub fn access(&self, who: &Principal, action: &str) -> KeyAccess {
        let applies = |s: &Statement| s.covers(action) && s.names(who);
        if let Some(i) = self.statements.iter().position(|s| !s.allow && s.condition.is_none() && applies(s)) {
            return KeyAccess::Denied { statement: i };
        }
        let allows: Vec<usize> =
            (0..self.statements.len()).filter(|&i| self.statements[i].allow && applies(&self.statements[i])).collect();
        if let Some(&i) = allows.iter().find(|&&i| self.statements[i].condition.is_none()).or(allows.first()) {
            // An account principal delegates to that account's IAM policies.
            let s = &self.statements[i];
            let direct =
                s.not_principal || s.principals.iter().any(|p| !matches!(p, Principal::Account(_)) && names(p, who));
            let by_account = !direct && who.account().is_some();
            return KeyAccess::Allowed { statement: i, by_account };
        }
        // An account named as a whole, but the key allows only some of its roles.
        if let Principal::Account(a) = who {
            let some: Vec<String> = self
                .statements
                .iter()
                .filter(|s| s.allow && s.covers(action) && !s.not_principal)
                .flat_map(|s| s.principals.iter())
                .filter_map(|p| match p {
                    Principal::Arn { account, arn } if account == a => Some(arn.clone()),
                    _ => None,
                })
                .collect();
            if !some.is_empty() {
                return KeyAccess::Partly { arns: some };
            }
        }
        KeyAccess::NotAllowed
    }
}

/// What a key policy says of one principal and one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    /// Allowed by statement `statement`; `by_account`: through an account principal, so the
    /// caller's own IAM policy must allow it too.
    Allowed {
        statement: usize,
        by_account: bool,
    },
    /// Only these roles or users of the account the bucket policy names as a whole.
    Partly {
        arns: Vec<String>,
    },
    /// An unconditional Deny names it.
    Denied {
        statement: usize,
    },
    NotAllowed,
}

fn statement(i: usize, s: &Value) -> Result<Statement, PolicyError> {
    let allow = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(PolicyError::Statement(i + 1, "Effect is neither Allow nor Deny")),
    };
    let (not_principal, principal) = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), _) => (false, p),
        (None, Some(p)) => (true, p),
        (None, None) => (false, &Value::Null), // an identity policy statement names no one
    };
    let principals = match principal {
        Value::Null => Vec::new(),
        Value::String(s) if s == "*" => vec![Principal::Anyone],
        Value::String(_) => return Err(PolicyError::Statement(i + 1, "a Principal string other than \"*\"")),
        Value::Object(m) => {
            m.iter().flat_map(|(kind, v)| strings(v).into_iter().map(move |x| Principal::parse(kind, &x))).collect()
        }
        _ => return Err(PolicyError::Statement(i + 1, "Principal is neither \"*\" nor an object")),
    };
    let (not_action, actions) = match (s.get("Action"), s.get("NotAction")) {
        (Some(a), _) => (false, strings(a)),
        (None, Some(a)) => (true, strings(a)),
        (None, None) => return Err(PolicyError::Statement(i + 1, "no Action")),
    };
    Ok(Statement {
        sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
        allow,
        not_principal,
        principals,
        not_action,
        actions,
        condition: s.get("Condition").filter(|c| c.as_object().is_some_and(|m| !m.is_empty())).cloned(),
    })
}

/// A policy value that is one string or a list of them.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &[&str] = &["s3:GetObject", "s3:GetObjectVersion"];

    #[test]
    fn actions_match_with_wildcards_and_without_case() {
        assert!(action_matches("s3:GetObject", "s3:GetObject"));
        assert!(action_matches("s3:get*", "s3:GetObject"));
        assert!(action_matches("*", "kms:Decrypt"));
        assert!(action_matches("kms:*", "kms:Decrypt"));
        assert!(action_matches("s3:GetObjec?", "s3:GetObject"));
        assert!(!action_matches("s3:GetObjectAcl", "s3:GetObject"));
        assert!(!action_matches("s3:Put*", "s3:GetObject"));
        assert!(!action_matches("kms:Encrypt", "kms:Decrypt"));
    }

    #[test]
    fn principals_are_told_apart() {
        assert_eq!(aws_principal("*"), Principal::Anyone);
        assert_eq!(aws_principal("444455556666"), Principal::Account("444455556666".into()));
        assert_eq!(aws_principal("arn:aws:iam::444455556666:root"), Principal::Account("444455556666".into()));
        assert_eq!(
            aws_principal("arn:aws:iam::444455556666:role/reader"),
            Principal::Arn { account: "444455556666".into(), arn: "arn:aws:iam::444455556666:role/reader".into() }
        );
        assert_eq!(aws_principal("arn:aws:sts::444455556666:assumed-role/r/s").account(), Some("444455556666"));
        let oai = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2QWRUHAPOMQZL";
        assert_eq!(aws_principal(oai), Principal::OriginAccessIdentity(oai.into()));
        assert_eq!(aws_principal("AROAEXAMPLEID"), Principal::Other("AWS AROAEXAMPLEID".into()));
        assert_eq!(
            Principal::grantee("cloudfront.amazonaws.com"),
            Principal::Service("cloudfront.amazonaws.com".into())
        );
    }

    #[test]
    fn readers_are_the_principals_allowed_to_get_objects() {
        let p = Policy::parse(
            r#"{"Statement":[
                {"Sid":"Partner","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::444455556666:role/reader","777788889999"]},"Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*"},
                {"Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"AWS:SourceArn":"arn:aws:cloudfront::111122223333:distribution/E1"}}},
                {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::555566667777:root"},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::b"},
                {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}
            ]}"#,
        )
        .unwrap();
        let readers = p.allowed(READ);
        let who: Vec<String> = readers.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            who,
            ["arn:aws:iam::444455556666:role/reader", "account 777788889999", "the service cloudfront.amazonaws.com"]
        );
        assert_eq!(p.statements[readers[0].1].label(readers[0].1), "statement \"Partner\"");
        assert_eq!(
            p.statements[readers[2].1].condition_text().unwrap(),
            r#"StringEquals {"AWS:SourceArn":"arn:aws:cloudfront::111122223333:distribution/E1"}"#
        );
        // A single statement object, "*" and NotAction are read too.
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","NotAction":"s3:Delete*","Resource":"*"}}"#,
        )
        .unwrap();
        assert_eq!(p.allowed(READ), [(Principal::Anyone, 0)]);
        let p =
            Policy::parse(r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"s3:Get*","Resource":"*"}]}"#)
                .unwrap();
        assert!(p.allowed(READ).is_empty());
    }

    #[test]
    fn a_conditional_and_an_unconditional_grant_keep_the_unconditional_one() {
        let p = Policy::parse(
            r#"{"Statement":[
                {"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
                {"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"s3:*","Resource":"*"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(p.allowed(READ), [(Principal::Account("444455556666".into()), 1)]);
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        assert!(matches!(Policy::parse("nope"), Err(PolicyError::NotJson(_))));
        assert_eq!(Policy::parse("{}"), Err(PolicyError::NoStatement));
        assert_eq!(
            Policy::parse(r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#),
            Err(PolicyError::Statement(1, "Effect is neither Allow nor Deny"))
        );
        assert_eq!(
            Policy::parse(r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"}}]}"#),
            Err(PolicyError::Statement(1, "no Action"))
        );
    }

    const KEY_POLICY: &str = r#"{"Statement":[
        {"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"Partner role","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:role/reader"},"Action":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"},
        {"Sid":"CloudFront","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"AWS:SourceArn":"arn:aws:cloudfront::111122223333:distribution/E1"}}},
        {"Sid":"No auditors","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::999900001111:root"},"Action":"kms:*","Resource":"*"}
    ]}"#;

    fn access(who: Principal) -> KeyAccess {
        Policy::parse(KEY_POLICY).unwrap().access(&who, "kms:Decrypt")
    }

    #[test]
    fn the_key_policy_says_who_may_decrypt() {
        let role = aws_principal("arn:aws:iam::444455556666:role/reader");
        assert_eq!(access(role), KeyAccess::Allowed { statement: 1, by_account: false });
        // The key's own account, through its IAM policies.
        let own = aws_principal("arn:aws:iam::111122223333:role/app");
        assert_eq!(access(own), KeyAccess::Allowed { statement: 0, by_account: true });
        assert_eq!(
            access(Principal::Service("cloudfront.amazonaws.com".into())),
            KeyAccess::Allowed { statement: 2, by_account: false }
        );
        // Another role of the partner account, and an account the key never names.
        assert_eq!(access(aws_principal("arn:aws:iam::444455556666:role/other")), KeyAccess::NotAllowed);
        assert_eq!(access(Principal::Account("777788889999".into())), KeyAccess::NotAllowed);
        assert_eq!(access(Principal::Anyone), KeyAccess::NotAllowed);
        // The partner account as a whole: only one of its roles may.
        assert_eq!(
            access(Principal::Account("444455556666".into())),
            KeyAccess::Partly { arns: vec!["arn:aws:iam::444455556666:role/reader".into()] }
        );
        assert_eq!(access(Principal::Account("999900001111".into())), KeyAccess::Denied { statement: 3 });
    }

    #[test]
    fn a_key_policy_open_to_anyone_allows_every_reader() {
        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}]}"#,
        )
        .unwrap();
        assert_eq!(p.access(&Principal::Anyone, "kms:Decrypt"), KeyAccess::Allowed { statement: 0, by_account: false });
        assert_eq!(
            p.access(&Principal::Account("444455556666".into()), "kms:Decrypt"),
            KeyAccess::Allowed { statement: 0, by_account: false }
        );
        assert_eq!(p.access(&Principal::Account("444455556666".into()), "kms:Encrypt"), KeyAccess::NotAllowed);
    }
}
