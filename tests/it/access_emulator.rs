//! The pre-flight's access section ("who will lose access") against the S3/KMS emulator
//! (moto wrapped by scripts/s3emu.py): one test per kind of warning, each set up with the
//! real APIs a bucket owner uses (PutBucketPolicy, PutKeyPolicy, PutBucketAcl,
//! PutBucketReplication, the AWS managed key aws/s3), read back by `rekey preflight` as a
//! table and as JSON; a warning does not stop the run, `--strict` does (exit 7, nothing
//! touched), and fixing the key policy as the warning says clears it.

use crate::support::{plan_args, rekey_bin, Moto};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec, SeededObject};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUCKET: &str = "rekey-access";
const ACCOUNT: &str = "123456789012"; // moto's
const PARTNER_ROLE: &str = "arn:aws:iam::444455556666:role/reader";
const DISTRIBUTION: &str = "arn:aws:cloudfront::123456789012:distribution/E1EXAMPLE";

struct Fixture {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    seeded: Vec<SeededObject>,
    manifest: PathBuf,
    dir: tempfile::TempDir,
}

/// A versioned bucket of `n` objects (SSE-S3 and unencrypted) and its inventory.
async fn fixture(n: usize, seed: u64) -> Fixture {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let spec = BucketSpec { seed, max_size: 1024, ..BucketSpec::new(BUCKET, n) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, BUCKET, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    Fixture { moto, s3, kms, seeded, manifest, dir }
}

impl Fixture {
    fn plan(&self, key: &str) -> PathBuf {
        let state = self.dir.path().join("job.rekey");
        let out = self.rekey(&plan_args(&self.manifest, key, &state, &[]));
        assert!(out.status.success(), "plan failed: {}", stderr(&out));
        state
    }

    fn rekey(&self, args: &[&str]) -> Output {
        Command::new(rekey_bin()).args(args).envs(self.moto.env_for_cli()).output().expect("run rekey")
    }

    fn preflight(&self, state: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["preflight", "--state", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.rekey(&args)
    }

    async fn put_bucket_policy(&self, statements: &str) {
        let doc = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
        self.s3.put_bucket_policy().bucket(BUCKET).policy(doc).send().await.expect("PutBucketPolicy");
    }

    async fn put_key_policy(&self, key: &str, statements: &str) {
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},{statements}]}}"#
        );
        self.kms.put_key_policy().key_id(key).policy_name("default").policy(doc).send().await.expect("PutKeyPolicy");
    }

    /// Every object still has the encryption it was written with.
    async fn assert_untouched(&self) {
        for o in &self.seeded {
            let head = self.s3.head_object().bucket(BUCKET).key(&o.key).send().await.expect("HEAD");
            let want = if o.encrypted { Some("AES256") } else { None };
            assert_eq!(head.server_side_encryption().map(|s| s.as_str()), want, "{} was touched", o.key);
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The checklist lines of `title` that start with `mark` (`!`, `✔`, `✘`).
fn lines<'a>(err: &'a str, mark: &str, title: &str) -> Vec<&'a str> {
    let head = format!("{mark} {title}: ");
    err.lines().map(str::trim_start).filter(|l| l.starts_with(&head)).collect()
}

/// The one warning line of `title`, which must carry each of `needles`.
fn warning<'a>(err: &'a str, title: &str, needles: &[&str]) -> &'a str {
    let found = lines(err, "!", title);
    assert_eq!(found.len(), 1, "one {title} warning in:\n{err}");
    for n in needles {
        assert!(found[0].contains(n), "the {title} warning says {n:?}: {}", found[0]);
    }
    found[0]
}

fn by_status(state: &Path, status: &str) -> i64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.query_row("SELECT COUNT(*) FROM objects WHERE status = ?1", [status], |r| r.get(0)).unwrap()
}

fn read_statement(principal: &str, condition: &str) -> String {
    let condition = if condition.is_empty() { String::new() } else { format!(r#","Condition":{condition}"#) };
    format!(
        r#"{{"Sid":"Readers","Effect":"Allow","Principal":{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{BUCKET}/*"{condition}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_account_reader_without_kms_decrypt_is_warned_and_strict_stops_the_run() {
    let f = fixture(20, 41).await;
    let key = create_kms_key(&f.kms, "rekey access").await.unwrap();
    let state = f.plan(&key);
    f.put_bucket_policy(&read_statement(&format!(r#"{{"AWS":"{PARTNER_ROLE}"}}"#), "")).await;

    // A warning, with the key-policy statement that fixes it; the pre-flight still passes.
    let out = f.preflight(&state, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    warning(
        &err,
        "readers",
        &[
            &format!("{PARTNER_ROLE} reads bucket {BUCKET} (statement \"Readers\" of its policy), but the key policy does not allow it kms:Decrypt: it will get AccessDenied for each migrated object"),
            &format!(r#"add to the key policy: {{"Action":"kms:Decrypt","Effect":"Allow","Principal":{{"AWS":"{PARTNER_ROLE}"}}"#),
        ],
    );
    assert!(err.contains("· not visible to these checks: holders of presigned URLs"), "{err}");
    assert!(err.contains("pre-flight passed"), "{err}");

    // --strict: the run stops before any object, naming the reader.
    let out = f.rekey(&["run", "--state", state.to_str().unwrap(), "--quiet", "--strict"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    let line = err.lines().find(|l| l.starts_with("rekey: error:")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("pre-flight failed, no object was touched: readers: "), "{line}");
    assert!(line.contains(PARTNER_ROLE) && line.contains("(--strict)"), "{line}");
    assert_eq!(by_status(&state, "done"), 0);
    let stats = f.moto.stats();
    for op in ["UpdateObjectEncryption", "CopyObject"] {
        assert_eq!(stats["requests"][op].as_u64().unwrap_or(0), 0, "no {op} was sent: {stats}");
    }
    f.assert_untouched().await;

    // The key policy lets the role decrypt, as the warning said: the check passes, strictly.
    f.put_key_policy(
        &key,
        &format!(r#"{{"Sid":"Partner reads","Effect":"Allow","Principal":{{"AWS":"{PARTNER_ROLE}"}},"Action":"kms:Decrypt","Resource":"*"}}"#),
    )
    .await;
    let out = f.preflight(&state, &["--strict", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["format"], "rekey.preflight/1");
    assert_eq!(doc["passed"], true);
    let readers: Vec<&serde_json::Value> =
        doc["checks"].as_array().unwrap().iter().filter(|c| c["title"] == "readers").collect();
    assert_eq!(readers.len(), 1, "{doc:#}");
    assert_eq!(readers[0]["verdict"], "ok");
    assert_eq!(readers[0]["section"], "access");
    let detail = readers[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{PARTNER_ROLE} (key policy statement \"Partner reads\")")), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_readers_and_cloudfront_are_warned_each_in_their_words() {
    let f = fixture(10, 42).await;
    let key = create_kms_key(&f.kms, "rekey access").await.unwrap();
    let state = f.plan(&key);
    let oai = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2QWRUHAPOMQZL";
    let oac = format!(r#"{{"StringEquals":{{"AWS:SourceArn":"{DISTRIBUTION}"}}}}"#);
    let statements = [
        read_statement(r#""*""#, "").replace("Readers", "Public"),
        read_statement(&format!(r#"{{"AWS":"{oai}"}}"#), "").replace("Readers", "OAI"),
        read_statement(r#"{"Service":"cloudfront.amazonaws.com"}"#, &oac).replace("Readers", "OAC"),
    ];
    f.put_bucket_policy(&statements.join(",")).await;

    let out = f.preflight(&state, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "warnings do not stop the pre-flight: {err}");
    let found = lines(&err, "!", "readers");
    assert_eq!(found.len(), 3, "{err}");
    assert!(found[0].contains(&format!("bucket {BUCKET} lets anyone read its objects (statement \"Public\" of its policy): S3 refuses anonymous requests for SSE-KMS objects")), "{}", found[0]);
    assert!(found[1].contains(&format!("{oai} reads bucket {BUCKET} (statement \"OAI\" of its policy): an origin access identity cannot read SSE-KMS objects")), "{}", found[1]);
    assert!(found[2].contains("the service cloudfront.amazonaws.com reads bucket"), "{}", found[2]);
    assert!(found[2].contains("the distribution will answer 403 for each migrated object"), "{}", found[2]);
    assert!(found[2].contains(&format!(r#""Condition":{oac}"#)), "the fix keeps the distribution: {}", found[2]);

    // The key policy lets the distribution decrypt: only the public and OAI readers remain.
    f.put_key_policy(
        &key,
        &format!(r#"{{"Sid":"CloudFront","Effect":"Allow","Principal":{{"Service":"cloudfront.amazonaws.com"}},"Action":"kms:Decrypt","Resource":"*","Condition":{oac}}}"#),
    )
    .await;
    let err = stderr(&f.preflight(&state, &[]));
    assert_eq!(lines(&err, "!", "readers").len(), 2, "{err}");
    let ok = lines(&err, "✔", "readers");
    assert!(ok.len() == 1 && ok[0].contains("cloudfront.amazonaws.com (key policy statement \"CloudFront\")"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_managed_key_cannot_be_shared_with_readers_of_other_accounts() {
    let f = fixture(10, 43).await;
    // The AWS managed key of S3 in the bucket's account, as DescribeKey shows it.
    let managed = f.kms.describe_key().key_id("alias/aws/s3").send().await.unwrap();
    let meta = managed.key_metadata().unwrap();
    assert_eq!(meta.key_manager().map(|m| m.as_str()), Some("AWS"));
    let key = meta.arn().unwrap().to_string();
    // Its policy cannot be changed, so no reader can be let in.
    let put = f.kms.put_key_policy().key_id(&key).policy_name("default").policy("{}").send().await;
    assert!(put.is_err(), "AWS refuses to change an AWS managed key's policy");
    let state = f.plan(&key);
    f.put_bucket_policy(&read_statement(
        &format!(r#"{{"AWS":["{PARTNER_ROLE}","arn:aws:iam::{ACCOUNT}:role/app"]}}"#),
        "",
    ))
    .await;

    let out = f.preflight(&state, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let w = warning(
        &err,
        "readers",
        &[
            &format!("{key} is the AWS managed key aws/s3, whose key policy cannot be changed and lets only its own account use it"),
            PARTNER_ROLE,
            "re-plan with a customer managed key",
        ],
    );
    assert!(!w.contains("role/app"), "a role of the key's own account is no loss: {w}");
    let out = f.preflight(&state, &["--strict"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_acl_grants_to_everyone_and_other_accounts_are_warned() {
    use aws_sdk_s3::types::{AccessControlPolicy, Grant, Grantee, Owner, Permission, Type};
    let f = fixture(10, 44).await;
    let key = create_kms_key(&f.kms, "rekey access").await.unwrap();
    let state = f.plan(&key);
    let owner = f.s3.get_bucket_acl().bucket(BUCKET).send().await.unwrap().owner().unwrap().clone();
    let grant = |g: Grantee, p: Permission| Grant::builder().grantee(g).permission(p).build();
    let everyone =
        Grantee::builder().r#type(Type::Group).uri("http://acs.amazonaws.com/groups/global/AllUsers").build().unwrap();
    let other = Grantee::builder()
        .r#type(Type::CanonicalUser)
        .id("79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be")
        .build()
        .unwrap();
    let mine = Grantee::builder().r#type(Type::CanonicalUser).id(owner.id().unwrap()).build().unwrap();
    let acl = AccessControlPolicy::builder()
        .owner(Owner::builder().id(owner.id().unwrap()).build())
        .grants(grant(mine, Permission::FullControl))
        .grants(grant(everyone, Permission::Read))
        .grants(grant(other, Permission::Read))
        .build();
    f.s3.put_bucket_acl().bucket(BUCKET).access_control_policy(acl).send().await.expect("PutBucketAcl");

    let out = f.preflight(&state, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let found = lines(&err, "!", "bucket ACL");
    assert_eq!(found.len(), 2, "the owner's own grant is no warning: {err}");
    assert!(found[0].contains(&format!("bucket {BUCKET} grants READ to everyone (AllUsers)")), "{}", found[0]);
    assert!(found[0].contains("S3 refuses anonymous requests for SSE-KMS objects"), "{}", found[0]);
    assert!(found[1].contains("grants READ to canonical user 79a59df9"), "{}", found[1]);
    assert!(found[1].contains("rekey cannot tell which account a canonical ID is"), "{}", found[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_without_sse_kms_objects_and_updates_that_do_not_replicate_are_warned() {
    use aws_sdk_s3::types::{
        DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, EncryptionConfiguration,
        ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
        SourceSelectionCriteria, SseKmsEncryptedObjects, SseKmsEncryptedObjectsStatus,
    };
    let f = fixture(20, 45).await;
    let key = create_kms_key(&f.kms, "rekey access").await.unwrap();
    let state = f.plan(&key);
    let replica = "rekey-access-replica";
    f.s3.create_bucket().bucket(replica).send().await.unwrap();
    let rule = |id: &str, sse_kms: bool| {
        let mut dest = Destination::builder().bucket(format!("arn:aws:s3:::{replica}"));
        let mut r = ReplicationRule::builder()
            .id(id)
            .status(ReplicationRuleStatus::Enabled)
            .priority(if sse_kms { 2 } else { 1 })
            .filter(ReplicationRuleFilter::builder().prefix(if sse_kms { "b/" } else { "" }).build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Disabled).build(),
            );
        if sse_kms {
            dest = dest.encryption_configuration(EncryptionConfiguration::builder().replica_kms_key_id(&key).build());
            r = r.source_selection_criteria(
                SourceSelectionCriteria::builder()
                    .sse_kms_encrypted_objects(
                        SseKmsEncryptedObjects::builder()
                            .status(SseKmsEncryptedObjectsStatus::Enabled)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            );
        }
        r.destination(dest.build().unwrap()).build().unwrap()
    };
    let config = ReplicationConfiguration::builder()
        .role(format!("arn:aws:iam::{ACCOUNT}:role/replication"))
        .rules(rule("everything", false))
        .rules(rule("kms-too", true))
        .build()
        .unwrap();
    f.s3.put_bucket_replication()
        .bucket(BUCKET)
        .replication_configuration(config)
        .send()
        .await
        .expect("PutBucketReplication");

    let out = f.preflight(&state, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let warned: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["title"] == "replication" && c["verdict"] == "warn")
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert_eq!(warned.len(), 2, "{doc:#}");
    // Only the rule without SseKmsEncryptedObjects: the other one replicates SSE-KMS objects.
    assert!(
        warned[0].contains(&format!(
            "rule \"everything\" replicates to arn:aws:s3:::{replica} without SseKmsEncryptedObjects"
        )),
        "{}",
        warned[0]
    );
    let updates = f.seeded.iter().filter(|o| o.encrypted).count();
    assert!(
        warned[1].contains(&format!("UpdateObjectEncryption is not replicated: the replicas of the {updates} objects updated in place keep their old encryption")),
        "{}",
        warned[1]
    );
    assert!(doc["warnings"].as_u64().unwrap() >= 2, "{doc:#}");

    // The run goes on despite the warnings (no --strict), and does the whole plan.
    let out = f.rekey(&["run", "--state", state.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("! replication: "), "a quiet run still shows the warnings: {}", stderr(&out));
    assert_eq!(by_status(&state, "done"), 20);
}
