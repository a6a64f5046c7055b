//! `rekey verify`: HEAD the done objects (or a random sample) and record a verdict for each.
//!
//! Each object's current version is checked against the plan: SSE is `aws:kms` under the
//! planned key, the Bucket Key is as planned, and the storage class is the inventoried one.
//! An `update` must also keep its inventoried ETag. A copy must have the inventoried size
//! and, in a versioned bucket where the inventoried version is still there (noncurrent),
//! the same user metadata and tag count as that version (HEAD and GetObjectTagging on
//! both). Verdicts: `ok`, `mismatch` (the detail says what differs), `missing` (404) and
//! `error` (S3 refused or kept failing). Each is recorded in the checkpoint
//! (`verify_verdict`, `verify_detail`, `verified_at`) in batched transactions.
//!
//! The connection comes from the plan, as for `rekey run`; flags override it. Throttles
//! and transient failures are retried with backoff. Exit 6 when any object is not `ok`.

use super::settings::PlanSettings;
use super::{Exit, ExitCode};
use crate::exec::RetryPolicy;
use crate::plan::classify::Method;
use crate::s3::object_store::{same_kms_key, S3CallError, S3ErrorKind};
use crate::s3::{build_client, build_kms_client, S3Settings};
use crate::store::{Checkpoint, Verdict, VerdictRecord, VerifyItem};
use crate::units::{human_duration, now_rfc3339, thousands, Rng};
use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The checkpoint `rekey plan` wrote and `rekey run` filled.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Check a random sample of N done objects instead of all of them.
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// The sample's seed: the same seed on the same checkpoint picks the same objects.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Objects checked at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// The summary: for people, or one JSON object (`rekey.verify/1`) on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: VerifyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Table,
    Json,
}

/// What every done object should look like.
#[derive(Debug, Clone)]
struct Expect {
    /// The planned key, as an ARN (an alias is resolved once, at the start).
    key_arn: String,
    bucket_key: bool,
}

/// Verdict rows per transaction, and the longest a verdict waits to be recorded.
const BATCH_ROWS: usize = 500;
const BATCH_AGE: Duration = Duration::from_secs(1);
/// Done rows read from the checkpoint at a time.
const PAGE_ROWS: usize = 1000;
/// Objects listed in the summary.
const LISTED: usize = 10;
/// A progress line on stderr this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

fn config(args: &VerifyArgs, cp: &Checkpoint) -> Result<(Expect, S3Settings)> {
    let run = cp.run()?;
    let plan: PlanSettings = serde_json::from_str(&run.options_json).context("the plan's options")?;
    let key = run.kms_key_arn.context("the plan has no KMS key, so there is nothing to verify against")?;
    let s3 = args.connect.settings(&plan, &key);
    Ok((Expect { key_arn: key, bucket_key: plan.bucket_key.unwrap_or(false) }, s3))
}

/// S3 reports the key's ARN, never an alias: resolve a planned alias (`--method copy`
/// allows one) to the key it names now.
async fn resolve_alias(key: &str, s3: &S3Settings) -> Result<String> {
    if !(key.starts_with("alias/") || key.contains(":alias/")) {
        return Ok(key.to_string());
    }
    let kms = build_kms_client(s3).await?;
    let out =
        kms.describe_key().key_id(key).send().await.map_err(|e| {
            anyhow!("resolving the planned key alias {key}: KMS DescribeKey: {}", DisplayErrorContext(&e))
        })?;
    out.key_metadata()
        .and_then(|m| m.arn())
        .map(str::to_string)
        .with_context(|| format!("DescribeKey {key} returned no ARN"))
}

/// One object's verdict.
#[derive(Debug)]
struct Checked {
    item: VerifyItem,
    verdict: Verdict,
    detail: Option<String>,
    /// HEAD was refused outright (403, bad credentials, no such bucket): why.
    refused: Option<String>,
}

#[derive(Debug, Serialize)]
struct Problem {
    key: String,
    version_id: Option<String>,
    method: &'static str,
    verdict: Verdict,
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct Summary {
    schema: &'static str,
    state: String,
    kms_key_arn: String,
    bucket_key: bool,
    /// Done objects in the checkpoint.
    done: u64,
    sample: Option<u64>,
    checked: u64,
    by_verdict: BTreeMap<&'static str, u64>,
    not_ok: u64,
    /// The first objects (in plan order) that are not ok.
    listed: Vec<Problem>,
    interrupted: bool,
    elapsed_secs: f64,
}

/// Where the objects to check come from: a sample held whole, or pages of the checkpoint.
enum Source {
    Sample(VecDeque<VerifyItem>),
    Pages { after: i64, buf: VecDeque<VerifyItem>, end: bool },
}

impl Source {
    fn next(&mut self, cp: &Checkpoint) -> Result<Option<VerifyItem>> {
        match self {
            Source::Sample(items) => Ok(items.pop_front()),
            Source::Pages { after, buf, end } => {
                if buf.is_empty() && !*end {
                    let page = cp.done_page(*after, PAGE_ROWS)?;
                    *end = page.len() < PAGE_ROWS;
                    if let Some(last) = page.last() {
                        *after = last.id;
                    }
                    buf.extend(page);
                }
                Ok(buf.pop_front())
            }
        }
    }
}

pub fn run(args: VerifyArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency 0: at least one object must be checked at a time");
    }
    let started = Instant::now();
    let cp = Checkpoint::open(&args.state)?;
    let (mut expect, s3) = config(&args, &cp)?;
    let done = cp.done_count()?;
    let (source, total) = match args.sample {
        Some(n) => {
            let items = cp.done_sample(n, args.seed)?;
            let len = items.len() as u64;
            (Source::Sample(items.into()), len)
        }
        None => (Source::Pages { after: 0, buf: VecDeque::new(), end: false }, done),
    };
    if done == 0 {
        let state = args.state.display();
        eprintln!("rekey: {state} has no done objects to verify; `rekey run --state {state}` first");
    }
    let tally = runtime.block_on(async {
        expect.key_arn = resolve_alias(&expect.key_arn, &s3).await?;
        let client = build_client(&s3).await?;
        check_all(&cp, source, total, client, Arc::new(expect.clone()), args.concurrency).await
    })?;

    let by_verdict = &tally.by_verdict;
    let (checked, not_ok) = (tally.checked, tally.checked - by_verdict[&Verdict::Ok]);
    let summary = Summary {
        schema: "rekey.verify/1",
        state: args.state.display().to_string(),
        kms_key_arn: expect.key_arn.clone(),
        bucket_key: expect.bucket_key,
        done,
        sample: args.sample,
        checked,
        by_verdict: by_verdict.iter().map(|(v, n)| (v.as_str(), *n)).collect(),
        not_ok,
        listed: tally
            .listed
            .into_values()
            .map(|c| Problem {
                key: c.item.key,
                version_id: c.item.version_id,
                method: c.item.method.as_str(),
                verdict: c.verdict,
                detail: c.detail,
            })
            .collect(),
        interrupted: tally.interrupted,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    match args.format {
        VerifyFormat::Json => println!("{}", serde_json::to_string(&summary)?),
        VerifyFormat::Table => print_table(&summary),
    }
    let state = args.state.display();
    if tally.interrupted {
        let message = format!("interrupted after {checked} of {total} objects; their verdicts are recorded in {state}");
        return Err(Exit::new(ExitCode::Interrupted, message).into());
    }
    if not_ok > 0 {
        let counts = [Verdict::Mismatch, Verdict::Missing, Verdict::Error]
            .iter()
            .filter(|v| by_verdict[v] > 0)
            .map(|v| format!("{} {}", by_verdict[v], v.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "{not_ok} of {checked} objects are not as planned ({counts}); \
             each object's verify_verdict and verify_detail are in {state}"
        );
        return Err(Exit::new(ExitCode::VerifyMismatch, message).into());
    }
    Ok(())
}

/// What a pass found.
struct Tally {
    checked: u64,
    by_verdict: BTreeMap<Verdict, u64>,
    /// The first [`LISTED`] objects (by id, i.e. plan order) that are not ok.
    listed: BTreeMap<i64, Checked>,
    interrupted: bool,
}

/// Check every object of `source`, `concurrency` at a time, recording verdicts in batches.
/// Ctrl-C stops it: the verdicts so far are recorded and the tally says `interrupted`.
async fn check_all(
    cp: &Checkpoint,
    mut source: Source,
    total: u64,
    client: aws_sdk_s3::Client,
    expect: Arc<Expect>,
    concurrency: usize,
) -> Result<Tally> {
    let mut tally = Tally {
        checked: 0,
        by_verdict: Verdict::ALL.into_iter().map(|v| (v, 0)).collect(),
        listed: BTreeMap::new(),
        interrupted: false,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut exhausted = false;
    let mut batch: Vec<VerdictRecord> = Vec::with_capacity(BATCH_ROWS);
    let (mut flushed, mut reported) = (Instant::now(), Instant::now());
    // Objects S3 answered for (any verdict but error).
    let mut reachable = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        while !exhausted && tasks.len() < concurrency {
            match source.next(cp)? {
                Some(item) => {
                    let (client, expect) = (client.clone(), expect.clone());
                    tasks.spawn(async move {
                        let (verdict, detail, refused) = check(&client, &expect, &item).await;
                        Checked { item, verdict, detail, refused }
                    });
                }
                None => exhausted = true,
            }
        }
        let joined = tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                tally.interrupted = true;
                break;
            }
            j = tasks.join_next() => j,
        };
        let Some(joined) = joined else { break };
        let c = joined.context("a verify task failed")?;
        match &c.refused {
            // Every answer so far is a refusal: a permission or setup problem, not a verdict
            // on the objects. Stop instead of sending every HEAD.
            Some(why) if reachable == 0 => bail!(
                "stopped: S3 refused the first HEAD ({why}); the role running rekey verify needs \
                 s3:GetObject, s3:GetObjectVersion, s3:GetObjectTagging and s3:GetObjectVersionTagging \
                 on the objects (and the endpoint and region must be the bucket's)"
            ),
            _ if c.verdict != Verdict::Error => reachable += 1,
            _ => {}
        }
        tally.checked += 1;
        *tally.by_verdict.entry(c.verdict).or_default() += 1;
        batch.push(VerdictRecord {
            id: c.item.id,
            verdict: c.verdict,
            detail: c.detail.clone(),
            verified_at: now_rfc3339(),
        });
        if c.verdict != Verdict::Ok {
            tally.listed.insert(c.item.id, c);
            if tally.listed.len() > LISTED {
                tally.listed.pop_last();
            }
        }
        if batch.len() >= BATCH_ROWS || flushed.elapsed() >= BATCH_AGE {
            cp.record_verdicts(&batch).context("recording verdicts")?;
            batch.clear();
            flushed = Instant::now();
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            let not_ok = tally.checked - tally.by_verdict[&Verdict::Ok];
            let (n, of, bad) = (thousands(tally.checked), thousands(total), thousands(not_ok));
            eprintln!("rekey: verified {n} of {of}, {bad} not ok");
            reported = Instant::now();
        }
    }
    tasks.abort_all();
    cp.record_verdicts(&batch).context("recording verdicts")?;
    Ok(tally)
}

fn print_table(s: &Summary) {
    let what = match s.sample {
        Some(n) if n < s.done => format!("a sample of {} of {} done objects", thousands(s.checked), thousands(s.done)),
        Some(_) => {
            format!("{} of {} done objects (the sample asked for all of them)", thousands(s.checked), thousands(s.done))
        }
        None => format!("{} of {} done objects", thousands(s.checked), thousands(s.done)),
    };
    println!(
        "rekey verify: {what} checked in {} against {}{}",
        human_duration(s.elapsed_secs),
        s.kms_key_arn,
        if s.bucket_key { " with a Bucket Key" } else { "" }
    );
    for v in Verdict::ALL {
        let n = s.by_verdict.get(v.as_str()).copied().unwrap_or(0);
        println!("  {:<10} {:>12}", v.as_str(), thousands(n));
    }
    if !s.listed.is_empty() {
        let more = if s.not_ok > s.listed.len() as u64 {
            format!(", the first {} in plan order", s.listed.len())
        } else {
            String::new()
        };
        println!("Not as planned ({}{more}):", thousands(s.not_ok));
        for p in &s.listed {
            println!(
                "  {:<9} {} ({}): {}",
                p.verdict.as_str(),
                one_line(&p.key),
                p.method,
                p.detail.as_deref().map(one_line).unwrap_or_default()
            );
        }
    }
}

/// Control characters (keys may hold newlines) escaped, so one object is one line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// One S3 call, retried with backoff and full jitter while S3 throttles or fails transiently.
async fn retrying<T, E, F, Fut>(id: i64, mut call: F) -> Result<T, S3CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let policy = RetryPolicy::default();
    let mut rng = Rng::new(id as u64);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => crate::s3::sdk_store::call_error(e),
        };
        match policy.delay(attempt, rng.unit()) {
            Some(delay) if e.kind.is_retryable() => tokio::time::sleep(delay).await,
            _ => return Err(e),
        }
    }
}

/// An S3 failure on one line: `403 AccessDenied: …`, or `403 Forbidden` for a HEAD (no body).
fn describe(e: &S3CallError) -> String {
    let code = Some(e.code.as_str()).filter(|c| !c.starts_with("Http") && !c.is_empty());
    let mut s = match (e.status, code) {
        (Some(status), Some(code)) => format!("{status} {code}"),
        (Some(status), None) => match status {
            400 => "400 Bad Request".to_string(),
            403 => "403 Forbidden".to_string(),
            404 => "404 Not Found".to_string(),
            500 => "500 Internal Server Error".to_string(),
            503 => "503 Service Unavailable".to_string(),
            _ => format!("HTTP {status}"),
        },
        (None, Some(code)) => code.to_string(),
        (None, None) => "failed".to_string(),
    };
    if !e.message.is_empty() {
        s.push_str(": ");
        s.push_str(&e.message);
    }
    one_line(&s)
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// A version id S3 would accept (`null` names the null version, which HEAD reports as none).
fn real_version(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty() && *v != "null")
}

/// Check one object's current version against the plan.
async fn check(
    client: &aws_sdk_s3::Client,
    expect: &Expect,
    item: &VerifyItem,
) -> (Verdict, Option<String>, Option<String>) {
    let head = retrying(item.id, || client.head_object().bucket(&item.bucket).key(&item.key).send()).await;
    let head = match head {
        Ok(h) => h,
        Err(e) if e.kind == S3ErrorKind::NotFound => {
            return (Verdict::Missing, Some("HEAD answered 404: the object has no current version".into()), None);
        }
        Err(e) => {
            let refused = (e.kind == S3ErrorKind::Fatal).then(|| describe(&e));
            return (Verdict::Error, Some(format!("HEAD: {}", describe(&e))), refused);
        }
    };
    let mut diffs: Vec<String> = Vec::new();
    match head.server_side_encryption().map(|s| s.as_str()) {
        Some("aws:kms") => {
            match head.ssekms_key_id() {
                Some(k) if same_kms_key(k, &expect.key_arn) => {}
                Some(k) => diffs.push(format!("KMS key {k}, planned {}", expect.key_arn)),
                None => diffs.push("SSE-KMS without a key id".into()),
            }
            let bucket_key = head.bucket_key_enabled().unwrap_or(false);
            if bucket_key != expect.bucket_key {
                diffs.push(format!("Bucket Key {}, planned {}", on_off(bucket_key), on_off(expect.bucket_key)));
            }
        }
        Some(other) => diffs.push(format!("encryption {other}, planned aws:kms")),
        None => diffs.push("not encrypted, planned aws:kms".into()),
    }
    let class = head.storage_class().map(|c| c.as_str()).unwrap_or("STANDARD");
    let planned_class = item.storage_class.as_deref().unwrap_or("STANDARD");
    if class != planned_class {
        diffs.push(format!("storage class {class}, inventoried {planned_class}"));
    }
    let mut unchecked = None;
    match item.method {
        Method::Update => {
            if let Some(want) = item.etag.as_deref().map(|e| e.trim_matches('"')) {
                let got = head.e_tag().map(|e| e.trim_matches('"'));
                if got != Some(want) {
                    diffs.push(format!("ETag {}, inventoried {want}", got.unwrap_or("none")));
                }
            }
        }
        Method::Copy | Method::MultipartCopy => {
            if let Some(want) = item.size {
                let got = head.content_length();
                if got != Some(want as i64) {
                    let got = got.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into());
                    diffs.push(format!("{got} bytes, inventoried {want}"));
                }
            }
            let inventoried = real_version(item.version_id.as_deref());
            if let Some(old) = inventoried.filter(|v| real_version(head.version_id()) != Some(v)) {
                match compare_with_inventoried(client, item, old, &head).await {
                    Ok(found) => diffs.extend(found),
                    Err(e) => unchecked = Some(e),
                }
            }
        }
    }
    if diffs.is_empty() {
        return match unchecked {
            None => (Verdict::Ok, None, None),
            Some(e) => (Verdict::Error, Some(e), None),
        };
    }
    // Say when the current version is not the one the run left: someone wrote since.
    let left = match item.method {
        Method::Update => item.version_id.as_deref(),
        _ => item.new_version_id.as_deref(),
    };
    if let (Some(now), Some(left)) = (real_version(head.version_id()), real_version(left)) {
        if now != left {
            diffs.push(format!("the current version {now} is not the one rekey left ({left})"));
        }
    }
    if let Some(e) = unchecked {
        diffs.push(e);
    }
    (Verdict::Mismatch, Some(one_line(&diffs.join("; "))), None)
}

/// A copy against the inventoried version it replaced, when that version still exists:
/// the same user metadata and the same number of tags. Returns what differs, or why the
/// comparison could not be made.
async fn compare_with_inventoried(
    client: &aws_sdk_s3::Client,
    item: &VerifyItem,
    old: &str,
    head: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Result<Vec<String>, String> {
    let was =
        retrying(item.id, || client.head_object().bucket(&item.bucket).key(&item.key).version_id(old).send()).await;
    let was = match was {
        Ok(w) => w,
        // The inventoried version is gone (lifecycle, deleted): nothing to compare with.
        Err(e) if e.kind == S3ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("HEAD of the inventoried version {old}: {}", describe(&e))),
    };
    let mut diffs = Vec::new();
    let empty = HashMap::new();
    if let Some(d) = metadata_diff(head.metadata().unwrap_or(&empty), was.metadata().unwrap_or(&empty)) {
        diffs.push(d);
    }
    let tags = |version: Option<String>| {
        retrying(item.id, move || {
            client.get_object_tagging().bucket(&item.bucket).key(&item.key).set_version_id(version.clone()).send()
        })
    };
    let now_tags = tags(real_version(head.version_id()).map(str::to_string))
        .await
        .map_err(|e| format!("GetObjectTagging: {}", describe(&e)))?
        .tag_set()
        .len();
    let was_tags = match tags(Some(old.to_string())).await {
        Ok(t) => t.tag_set().len(),
        Err(e) if e.kind == S3ErrorKind::NotFound => return Ok(diffs),
        Err(e) => return Err(format!("GetObjectTagging of the inventoried version {old}: {}", describe(&e))),
    };
    if now_tags != was_tags {
        diffs.push(format!("{now_tags} tags, the inventoried version has {was_tags}"));
    }
    Ok(diffs)
}

/// How the user metadata differs from the inventoried version's, if it does.
fn metadata_diff(now: &HashMap<String, String>, was: &HashMap<String, String>) -> Option<String> {
    let sorted = |mut v: Vec<&str>| {
        v.sort_unstable();
        v.join(", ")
    };
    let lost: Vec<&str> = was.keys().filter(|k| !now.contains_key(*k)).map(String::as_str).collect();
    let added: Vec<&str> = now.keys().filter(|k| !was.contains_key(*k)).map(String::as_str).collect();
    let changed: Vec<&str> =
        now.iter().filter(|(k, v)| was.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k.as_str()).collect();
    let mut parts = Vec::new();
    if !lost.is_empty() {
        parts.push(format!("lost {}", sorted(lost)));
    }
    if !changed.is_empty() {
        parts.push(format!("changed {}", sorted(changed)));
    }
    if !added.is_empty() {
        parts.push(format!("added {}", sorted(added)));
    }
    (!parts.is_empty()).then(|| format!("user metadata differs from the inventoried version's: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn metadata_diff_names_lost_changed_and_added_keys() {
        let was = map(&[("owner", "a"), ("seq", "1"), ("gone", "x")]);
        assert_eq!(metadata_diff(&was.clone(), &was), None);
        let now = map(&[("owner", "b"), ("seq", "1"), ("new", "y")]);
        assert_eq!(
            metadata_diff(&now, &was).as_deref(),
            Some("user metadata differs from the inventoried version's: lost gone; changed owner; added new")
        );
    }

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("a\nb\tc ключ \"q\""), "a\\nb\\tc ключ \"q\"");
    }

    #[test]
    fn the_null_version_is_no_version() {
        assert_eq!(real_version(Some("null")), None);
        assert_eq!(real_version(Some("")), None);
        assert_eq!(real_version(Some("3HL4kqtJ")), Some("3HL4kqtJ"));
    }
}
