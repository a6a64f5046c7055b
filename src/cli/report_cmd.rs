//! `rekey report`: every object's outcome written to a file, and a summary on stderr that
//! finance can hold against the estimate.
//!
//! * `batch-ops`: the S3 Batch Operations completion-report layout (see
//!   [`crate::batch_ops::completion_record`]), no header, so tooling written for Batch
//!   Operations reads rekey's runs too. Only objects a run dealt with are tasks: pending
//!   and skipped objects are left out (the summary counts them).
//! * `csv`: one header line, then every column the checkpoint holds per object; keys as
//!   they are (RFC 4180 quoting takes care of commas, quotes and newlines).
//! * `json`: JSON Lines, one object per line with the same fields, so a report of
//!   millions of objects streams both when written and when read.
//!
//! Rows are streamed from SQLite to the file: memory stays flat whatever the plan's size.

use crate::batch_ops::completion_record;
use crate::plan::stored::StoredPlan;
use crate::plan::stored::StoredRequests;
use crate::store::{Checkpoint, ReportRow, ReportScope};
use crate::units::{human_bytes, thousands};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Where to write the report (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// `failed`: only objects a run dealt with and did not re-encrypt (failed, changed,
    /// gone, needs_restore). `replaced`: only the copies whose old version is still there
    /// (noncurrent, under the old encryption).
    #[arg(long, value_enum, default_value_t = Only::All)]
    pub only: Only,
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Failed,
    Replaced,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    #[value(name = "batch-ops")]
    BatchOps,
    Csv,
    Json,
}

/// The `csv` format's columns, in order (also the `json` format's field names).
pub const CSV_HEADER: [&str; 27] = [
    "bucket",
    "key",
    "version_id",
    "size",
    "storage_class",
    "encryption",
    "method",
    "skip_reason",
    "status",
    "etag",
    "new_etag",
    "new_version_id",
    "kms_key_id",
    "attempts",
    "error_code",
    "last_error",
    "retryable",
    "note",
    "new_checksum",
    "verify_verdict",
    "verify_detail",
    "verified_at",
    "finished_at",
    "id",
    "replaced_version_id",
    "replaced_deleted_at",
    "replaced_delete_detail",
];

fn csv_record(r: &ReportRow) -> [String; 27] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        r.bucket.clone(),
        r.key.clone(),
        o(&r.version_id),
        r.size.map(|s| s.to_string()).unwrap_or_default(),
        o(&r.storage_class),
        o(&r.encryption),
        r.method.map(|m| m.to_string()).unwrap_or_default(),
        r.skip_reason.map(|s| s.to_string()).unwrap_or_default(),
        r.status.to_string(),
        o(&r.etag),
        o(&r.new_etag),
        o(&r.new_version_id),
        o(&r.kms_key_id),
        r.attempts.to_string(),
        o(&r.error_code),
        o(&r.last_error),
        r.retryable.to_string(),
        o(&r.note),
        o(&r.new_checksum),
        r.verify_verdict.map(|v| v.as_str().to_string()).unwrap_or_default(),
        o(&r.verify_detail),
        o(&r.verified_at),
        o(&r.finished_at),
        r.id.to_string(),
        o(&r.replaced_version_id),
        o(&r.replaced_deleted_at),
        o(&r.replaced_delete_detail),
    ]
}

pub fn run(args: ReportArgs) -> Result<()> {
    let cp = Checkpoint::open(&args.state)?;
    let scope = match (args.only, args.format) {
        (Only::Failed, _) => ReportScope::Failed,
        (Only::Replaced, _) => ReportScope::Replaced,
        (Only::All, ReportFormat::BatchOps) => ReportScope::Finished,
        (Only::All, _) => ReportScope::All,
    };
    let out_name = args.out.display().to_string();
    let file = super::private_file::create_private(&args.out)
        .with_context(|| format!("{out_name}: cannot create the report"))?;
    let mut written = 0u64;
    match args.format {
        ReportFormat::Csv | ReportFormat::BatchOps => {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(BufWriter::new(file));
            if args.format == ReportFormat::Csv {
                w.write_record(CSV_HEADER)?;
            }
            cp.for_each_report_row(scope, |r| -> Result<()> {
                if args.format == ReportFormat::Csv {
                    w.write_record(csv_record(r))?;
                } else {
                    w.write_record(completion_record(r))?;
                }
                written += 1;
                Ok(())
            })?;
            w.flush().with_context(|| format!("{out_name}: cannot write the report"))?;
        }
        ReportFormat::Json => {
            let mut w = BufWriter::new(file);
            cp.for_each_report_row(scope, |r| -> Result<()> {
                serde_json::to_writer(&mut w, r)?;
                w.write_all(b"\n")?;
                written += 1;
                Ok(())
            })?;
            w.flush().with_context(|| format!("{out_name}: cannot write the report"))?;
        }
    }
    eprint!("{}", summary(&cp, written, &out_name)?);
    Ok(())
}

/// The versions copies left behind, and the two ways to remove them.
fn replaced_section(cp: &Checkpoint) -> Result<String> {
    let r = cp.replaced_counts()?;
    let mut s = String::from("replaced versions (left noncurrent by copies, under the old encryption)\n");
    s.push_str(&format!("  {:<28} {:>14}\n", "recorded", thousands(r.recorded)));
    s.push_str(&format!("  {:<28} {:>14}\n", "deleted", thousands(r.deleted)));
    s.push_str(&format!("  {:<28} {:>14}   ({})\n", "left", thousands(r.left), human_bytes(r.bytes_left)));
    if r.left == 0 {
        return Ok(s);
    }
    s.push_str(
        "  `--only replaced` lists them. To remove them, either run `rekey verify --delete-replaced-versions` \
         (deletes exactly those versions, once each copy is verified, never under Object Lock), or apply this \
         lifecycle rule with `aws s3api put-bucket-lifecycle-configuration --bucket BUCKET \
         --lifecycle-configuration file://rule.json`. Careful: the rule expires EVERY noncurrent version in \
         the bucket (older versions kept on purpose too), 1 day after it becomes noncurrent, and \
         put-bucket-lifecycle-configuration REPLACES the bucket's existing rules: merge it into them \
         (aws s3api get-bucket-lifecycle-configuration) first.\n",
    );
    s.push_str(&lifecycle_rule());
    Ok(s)
}

/// The lifecycle configuration that expires noncurrent versions a day after they become
/// noncurrent (docs/s3-facts.md §10), ready for put-bucket-lifecycle-configuration.
pub fn lifecycle_rule() -> String {
    let rule = serde_json::json!({
        "Rules": [{
            "ID": "rekey-expire-replaced-versions",
            "Status": "Enabled",
            "Filter": {},
            "NoncurrentVersionExpiration": { "NoncurrentDays": 1 }
        }]
    });
    let text = serde_json::to_string_pretty(&rule).expect("a JSON value prints");
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Counts by status, method, skip reason and error code, and the estimate's request
/// counts against what the runs recorded.
fn summary(cp: &Checkpoint, written: u64, out: &str) -> Result<String> {
    let counts = cp.counts()?;
    let errors = cp.error_code_counts()?;
    let mut s = format!("wrote {} rows to {out}\n", thousands(written));
    fn section<K: std::fmt::Display>(s: &mut String, title: &str, m: &BTreeMap<K, u64>) {
        s.push_str(&format!("{title}\n"));
        if m.is_empty() {
            s.push_str("  (none)\n");
        }
        for (k, v) in m {
            s.push_str(&format!("  {:<28} {:>14}\n", k.to_string(), thousands(*v)));
        }
    }
    section(&mut s, "by status", &counts.by_status);
    section(&mut s, "by method", &counts.by_method);
    section(&mut s, "skipped, by reason", &counts.by_skip_reason);
    section(&mut s, "by error code", &errors);
    s.push_str(&replaced_section(cp)?);

    let requests = StoredPlan::read(cp)?.estimate.requests;
    let est = |f: fn(&StoredRequests) -> u64| requests.as_ref().map(f);
    let show = |v: Option<u64>| v.map(thousands).unwrap_or_else(|| "-".into());
    let last_run: Option<serde_json::Value> = cp.progress_json()?.and_then(|j| serde_json::from_str(&j).ok());
    let last_requests = last_run.as_ref().and_then(|p| p["requests"].as_u64());
    s.push_str("requests, estimated against actual\n");
    s.push_str(&format!(
        "  estimated S3 PUT-class   {:>14}   S3 GET-class {:>14}   KMS {:>14}\n",
        show(est(|r| r.s3_put_class)),
        show(est(|r| r.s3_get_class)),
        show(est(|r| r.kms))
    ));
    s.push_str(&format!(
        "  actual S3 requests       {:>14}   (attempts recorded per object, every run and import)\n",
        thousands(cp.attempts_total()?)
    ));
    s.push_str(&format!(
        "  actual S3 requests       {:>14}   (the last run's own count, aborts and retries included)\n",
        show(last_requests)
    ));
    s.push_str(
        "  KMS requests are made by S3 on rekey's behalf and are not counted here: see CloudTrail or Cost Explorer\n",
    );
    Ok(s)
}
