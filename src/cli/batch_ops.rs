//! The S3 Batch Operations hand-off: `rekey export batch-ops` writes manifests and
//! CreateJob requests for the objects still to do, and `rekey import batch-ops` folds the
//! jobs' completion reports back into the checkpoint, so `status`, `verify` and `report`
//! cover both routes.
//!
//! Encodings, chosen so that every reader agrees:
//!
//! * Keys in manifests and in `report --format batch-ops` are percent-encoded
//!   ([`encode_path`]: `/` and unreserved characters kept, a space is `%20`, `+` is `%2B`).
//!   Batch Operations wants URL-encoded keys; a space written `%20` decodes to the same key
//!   whether the reader decodes as a URL or as form data (where `+` would be a space), so
//!   this is the one encoding no reader can get wrong. Commas and newlines in keys are
//!   encoded too, so a manifest line never needs CSV quoting.
//! * Completion reports are read as form data ([`decode_form_key`]), which accepts both
//!   `%20` and `+` for a space.
//! * A null version is `null` in a manifest (what Batch Operations expects), and empty or
//!   `null` in a report.
//!
//! Completion-report columns: AWS's `ReportSchema` names them "Bucket, Key, VersionId,
//! TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage", but every example report in
//! its documentation (batch-ops-examples-reports) has the HTTP status fifth and the error
//! code sixth (`…,failed,200,PermanentFailure,"…"`, `…,succeeded,200,,"…"`). rekey writes
//! what the examples show, and reads either order: of the two columns, the one that is a
//! three-digit number is the HTTP status.

use super::settings::PlanSettings;
use super::usage_error;
use crate::inventory::keys::{decode_form_key, encode_path};
use crate::inventory::BlobStore;
use crate::plan::prices::PriceTable;
use crate::store::{Checkpoint, ImportEffect, ImportedOutcome, ObjectStatus, ReportRow};
use crate::units::{human_bytes, thousands, GIB};
use crate::vocab::Method;
use anyhow::{bail, Context, Result};
use clap::Args;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The Batch Operations Copy operation takes objects "up to 5 GB" (docs/s3-facts.md §4.3).
pub const BATCH_COPY_MAX_BYTES: u64 = 5 * GIB;

/// Storage classes the Copy operation's `StorageClass` accepts (S3StorageClass). A copy
/// without one lands in STANDARD, so objects of any other class stay for `rekey run`,
/// which keeps the class.
const COPY_CLASSES: [&str; 5] = ["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"];

// ---------------------------------------------------------------------------------------
// Completion reports

/// One object as a completion-report line: Bucket, Key (percent-encoded), VersionId,
/// TaskStatus, HTTP status, error code, ResultMessage (see the module doc for the order).
pub fn completion_record(r: &ReportRow) -> [String; 7] {
    let done = r.status == ObjectStatus::Done;
    let code = match (&r.error_code, r.status.as_str()) {
        (_, "done") => String::new(),
        (Some(c), _) => c.clone(),
        (None, "changed") => "PreconditionFailed".into(),
        (None, "gone") => "NoSuchKey".into(),
        (None, "needs_restore") => "InvalidObjectState".into(),
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
fn retryable(code: &str, http: Option<u16>) -> bool {
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

/// Parse one completion-report record; the error names the field (the caller adds the
/// file and line).
pub fn parse_completion(rec: &csv::StringRecord) -> Result<CompletionLine, String> {
    if rec.len() < 7 {
        return Err(format!(
            "expected 7 fields (Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage), found {}",
            rec.len()
        ));
    }
    let bucket = rec[0].trim();
    if bucket.is_empty() {
        return Err("field Bucket: empty".into());
    }
    let key = decode_form_key(rec[1].as_bytes()).map_err(|e| format!("field Key: '{}': {e}", &rec[1]))?;
    let version_id = match rec[2].trim() {
        "" | "null" => None,
        v => Some(v.to_string()),
    };
    let (a, b) = (rec[4].trim(), rec[5].trim());
    let is_http = |s: &str| s.len() == 3 && s.bytes().all(|c| c.is_ascii_digit());
    let (http, code) = if is_http(a) && !is_http(b) {
        (a, b)
    } else if is_http(b) {
        (b, a)
    } else {
        ("", a)
    };
    let http: Option<u16> = http.parse().ok();
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
        other => return Err(format!("field TaskStatus: '{other}' is neither succeeded nor failed")),
    };
    Ok(CompletionLine { bucket: bucket.to_string(), key, version_id, outcome })
}

// ---------------------------------------------------------------------------------------
// Export

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// A new (or empty) directory for the manifests and CreateJob requests.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The IAM role Batch Operations assumes (arn:aws:iam::ACCOUNT:role/NAME).
    #[arg(long, value_name = "ARN")]
    pub role_arn: String,
    /// The account that owns the jobs (12 digits).
    #[arg(long, value_name = "ID")]
    pub account_id: String,
    /// The bucket for the uploaded manifests and the completion reports (default: the
    /// plan's source bucket).
    #[arg(long, value_name = "BUCKET")]
    pub report_bucket: Option<String>,
    /// The jobs' priority (higher runs first).
    #[arg(long, default_value_t = 10)]
    pub priority: i32,
    /// Upload the manifests to --report-bucket and create the jobs with S3 Control
    /// CreateJob; each job still waits for confirmation.
    #[arg(long, requires = "report_bucket")]
    pub submit: bool,
    /// With --submit: the S3 Control endpoint, used exactly as given (default: AWS's, for
    /// the key's region and --account-id).
    #[arg(long, value_name = "URL", requires = "submit")]
    pub s3control_endpoint_url: Option<String>,
    /// With --submit: where to upload the manifests (S3 endpoint, region).
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

/// A written job, for --submit.
struct Written {
    name: String,
    csv: PathBuf,
    job: PathBuf,
    manifest_key: String,
    request: serde_json::Value,
}

/// One job: its operation, bucket and (for copies) storage class, and its manifest.
struct Job {
    name: String,
    bucket: String,
    class: Option<String>,
    objects: u64,
    bytes: u64,
    file: BufWriter<std::fs::File>,
    md5: Md5,
    /// Objects by (method, storage class), to cost the job from the estimate's breakdown.
    by_line: BTreeMap<(Method, String), u64>,
}

pub fn export(args: ExportArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage_error(format!("--account-id '{}': an AWS account id is 12 digits", args.account_id)));
    }
    if !(args.role_arn.starts_with("arn:") && args.role_arn.contains(":iam::") && args.role_arn.contains(":role/")) {
        return Err(usage_error(format!(
            "--role-arn '{}': expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            args.role_arn
        )));
    }
    let cp = Checkpoint::open(&args.state)?;
    let run = cp.run()?;
    let Some(key_arn) = run.kms_key_arn.clone() else {
        bail!("{}: the plan has no KMS key ARN; plan again with --kms-key", args.state.display())
    };
    let plan: PlanSettings = serde_json::from_str(&run.options_json).context("the plan's options")?;
    let bucket_key = plan.bucket_key.unwrap_or(false);
    let prices: PriceTable = serde_json::from_str(&run.prices_json).context("the plan's prices")?;
    let estimate: serde_json::Value = serde_json::from_str(&run.estimate_json).context("the plan's estimate")?;
    // The key's partition (aws, aws-cn, aws-us-gov) is the buckets' too.
    let partition = key_arn.split(':').nth(1).unwrap_or("aws").to_string();
    let region = key_arn.split(':').nth(3).unwrap_or("us-east-1").to_string();
    let Some(report_bucket) = args.report_bucket.clone().or(run.source_bucket.clone()) else {
        bail!("the plan does not name its source bucket: pass --report-bucket")
    };

    match std::fs::read_dir(&args.out) {
        Ok(mut d) => {
            if d.next().is_some() {
                bail!("{}: not empty; export into a new or empty directory", args.out.display());
            }
        }
        Err(_) => std::fs::create_dir_all(&args.out)
            .with_context(|| format!("{}: cannot create the directory", args.out.display()))?,
    }
    let stem = args.state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "rekey".into());
    let prefix = format!("rekey-batch-ops/{}", safe_name(&stem));

    let mut jobs: BTreeMap<(String, String, String), Job> = BTreeMap::new();
    let mut local: BTreeMap<&'static str, u64> = BTreeMap::new();
    cp.for_each_todo(|o| -> Result<()> {
        let (op, class) = if o.method == Method::Update {
            ("update", String::new())
        } else {
            match (o.size, o.storage_class.as_deref()) {
                (Some(s), _) if s > BATCH_COPY_MAX_BYTES => {
                    *local.entry("over 5 GiB: the Batch Operations Copy operation stops at 5 GB").or_default() += 1;
                    return Ok(());
                }
                (None, _) => {
                    *local.entry("size unknown: it may be over the Copy operation's 5 GB").or_default() += 1;
                    return Ok(());
                }
                (_, Some(c)) if COPY_CLASSES.contains(&c) => ("copy", c.to_string()),
                _ => {
                    *local
                        .entry("storage class the Copy operation cannot set (it would become STANDARD)")
                        .or_default() += 1;
                    return Ok(());
                }
            }
        };
        let id = (op.to_string(), o.bucket.clone(), class.clone());
        if !jobs.contains_key(&id) {
            let name = if op == "update" {
                format!("update-{}", safe_name(&o.bucket))
            } else {
                format!("copy-{}-{}", safe_name(&o.bucket), class)
            };
            let path = args.out.join(format!("{name}.csv"));
            let file = super::private_file::create_private(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            jobs.insert(
                id.clone(),
                Job {
                    name,
                    bucket: o.bucket.clone(),
                    class: (op == "copy").then(|| class.clone()),
                    objects: 0,
                    bytes: 0,
                    file: BufWriter::new(file),
                    md5: Md5::new(),
                    by_line: BTreeMap::new(),
                },
            );
        }
        let job = jobs.get_mut(&id).expect("inserted above");
        // Batch Operations wants `null` for the null version, not an empty field.
        let line = format!("{},{},{}\n", o.bucket, encode_path(&o.key), o.version_id.as_deref().unwrap_or("null"));
        job.file.write_all(line.as_bytes())?;
        job.md5.update(line.as_bytes());
        job.objects += 1;
        job.bytes += o.size.unwrap_or(0);
        *job.by_line.entry((o.method, o.storage_class.clone().unwrap_or_default())).or_default() += 1;
        Ok(())
    })?;

    let mut out = String::new();
    let (mut local_usd, mut exported) = (0.0, 0u64);
    let mut commands = Vec::new();
    let mut written = Vec::new();
    for job in jobs.into_values() {
        let Job { name, bucket, class, objects, bytes, mut file, md5, by_line } = job;
        file.flush().with_context(|| format!("{name}.csv: cannot write"))?;
        let etag = format!("{:x}", md5.finalize());
        let operation = match &class {
            None => serde_json::json!({
                "S3UpdateObjectEncryption": {
                    "ObjectEncryption": { "SSEKMS": { "KMSKeyArn": key_arn, "BucketKeyEnabled": bucket_key } }
                }
            }),
            Some(class) => serde_json::json!({
                "S3PutObjectCopy": {
                    "TargetResource": format!("arn:{partition}:s3:::{bucket}"),
                    "MetadataDirective": "COPY",
                    "NewObjectMetadata": { "SSEAlgorithm": "KMS" },
                    "SSEAwsKmsKeyId": key_arn,
                    "BucketKeyEnabled": bucket_key,
                    "StorageClass": class,
                }
            }),
        };
        let what = if class.is_some() { "Copy" } else { "UpdateObjectEncryption" };
        let request = serde_json::json!({
            "AccountId": args.account_id,
            "ConfirmationRequired": true,
            "Operation": operation,
            "Report": {
                "Bucket": format!("arn:{partition}:s3:::{report_bucket}"),
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "Prefix": format!("{prefix}/reports/{name}"),
                "ReportScope": "AllTasks",
            },
            // The same manifest gives the same token: a repeated create-job is not a second job.
            "ClientRequestToken": format!("rekey-{etag}"),
            "Manifest": {
                "Spec": { "Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"] },
                "Location": {
                    "ObjectArn": format!("arn:{partition}:s3:::{report_bucket}/{prefix}/{name}.csv"),
                    "ETag": etag,
                },
            },
            "Description": format!("rekey: {what} of {objects} objects in {bucket}"),
            "Priority": args.priority,
            "RoleArn": args.role_arn,
        });
        let job_path = args.out.join(format!("{name}.job.json"));
        let body = serde_json::to_string_pretty(&request)? + "\n";
        super::private_file::create_private(&job_path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, body.as_bytes()))
            .with_context(|| format!("{}: cannot write", job_path.display()))?;
        written.push(Written {
            name: name.clone(),
            csv: args.out.join(format!("{name}.csv")),
            job: job_path.clone(),
            manifest_key: format!("{prefix}/{name}.csv"),
            request,
        });
        let usd = line_cost(&estimate, &by_line);
        local_usd += usd;
        exported += objects;
        out.push_str(&format!(
            "  {name:<40} {:>14} objects {:>12}  {what}{}  ${usd:.2}\n",
            thousands(objects),
            human_bytes(bytes),
            class.as_deref().map(|c| format!(" to {c}")).unwrap_or_default(),
        ));
        commands
            .push(format!("aws s3control create-job --region {region} --cli-input-json file://{}", job_path.display()));
    }

    let mut head = format!("{}: {} jobs for {} objects\n", args.out.display(), commands.len(), thousands(exported));
    head.push_str(&out);
    for (why, n) in &local {
        head.push_str(&format!("  stays for `rekey run`: {} objects, {why}\n", thousands(*n)));
    }
    if commands.is_empty() {
        head.push_str("nothing to export: no pending object fits a Batch Operations job\n");
        print!("{head}");
        return Ok(());
    }
    let jobs_usd = prices.batch_ops_per_job * commands.len() as f64;
    let objects_usd = prices.batch_ops_per_million_objects * exported as f64 / 1e6;
    head.push_str(&format!(
        "cost of these objects: local route (rekey run) ${local_usd:.2}; Batch Operations route ${:.2} \
         (the same S3 and KMS requests ${local_usd:.2} + {} jobs x ${} + {} objects x ${} per million = ${:.2})\n",
        local_usd + jobs_usd + objects_usd,
        commands.len(),
        prices.batch_ops_per_job,
        thousands(exported),
        prices.batch_ops_per_million_objects,
        jobs_usd + objects_usd,
    ));
    if let (Some(total), Some(alt)) =
        (estimate["cost_usd"]["total"].as_f64(), estimate["alternatives_usd"]["batch_operations"].as_f64())
    {
        head.push_str(&format!(
            "whole plan (the estimate): local ${total:.2}, all through Batch Operations in one job ${alt:.2}\n"
        ));
    }
    if args.submit {
        print!("{head}");
        std::io::stdout().flush()?;
        let plan_s3 = args.connect.settings(&plan, &key_arn);
        let ids = runtime.block_on(submit(&args, &plan_s3, &region, &report_bucket, &mut written))?;
        println!("created {} jobs, each waiting for confirmation (Batch Operations console, or", ids.len());
        println!(
            "  aws s3control update-job-status --region {region} --account-id {} --requested-job-status Ready --job-id ID):",
            args.account_id
        );
        for (name, id) in &ids {
            println!("  JobId {id}  {name}");
        }
        println!(
            "do not run `rekey run` on this plan while the jobs run; afterwards fold the completion reports in with \
             `rekey import batch-ops --state {} s3://{report_bucket}/{prefix}/reports/...`",
            args.state.display()
        );
        return Ok(());
    }
    head.push_str(&format!(
        "upload the manifests, then create the jobs (each waits for confirmation):\n  \
         aws s3 cp {} s3://{report_bucket}/{prefix}/ --recursive --exclude '*' --include '*.csv'\n",
        args.out.display()
    ));
    for c in &commands {
        head.push_str(&format!("  {c}\n"));
    }
    head.push_str(
        "the manifest ETag in each job is the MD5 of the file as written: upload it unchanged (a single-part \
         upload keeps that ETag). Do not run `rekey run` on this plan while the jobs run; afterwards fold \
         the completion reports in with `rekey import batch-ops`.\n",
    );
    print!("{head}");
    Ok(())
}

/// `--submit`: upload each manifest to the report bucket, put the ETag S3 gave it into
/// its job (and its `.job.json`: a bucket with default SSE-KMS encryption gives an ETag
/// that is not the MD5), and create the job. Returns (job name, JobId) in order.
async fn submit(
    args: &ExportArgs,
    s3: &crate::s3::S3Settings,
    region: &str,
    bucket: &str,
    jobs: &mut [Written],
) -> Result<Vec<(String, String)>> {
    let client = crate::s3::build_client(s3).await?;
    let control = crate::s3::build_control_client(s3, region, args.s3control_endpoint_url.as_deref()).await?;
    let mut ids = Vec::new();
    for job in jobs.iter_mut() {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&job.csv)
            .await
            .with_context(|| format!("{}: cannot read", job.csv.display()))?;
        let put = client
            .put_object()
            .bucket(bucket)
            .key(&job.manifest_key)
            .content_type("text/csv")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "uploading {} to s3://{bucket}/{}: {}{}",
                    job.csv.display(),
                    job.manifest_key,
                    aws_sdk_s3::error::DisplayErrorContext(&e),
                    created_so_far(&ids)
                )
            })?;
        let etag =
            put.e_tag().map(|t| t.trim_matches('"').to_string()).filter(|t| !t.is_empty()).with_context(|| {
                format!("s3://{bucket}/{}: PutObject returned no ETag{}", job.manifest_key, created_so_far(&ids))
            })?;
        job.request["Manifest"]["Location"]["ETag"] = etag.clone().into();
        std::fs::write(&job.job, serde_json::to_string_pretty(&job.request)? + "\n")
            .with_context(|| format!("{}: cannot write", job.job.display()))?;
        let out = create_job(&control, &job.request)
            .with_context(|| format!("{}{}", job.job.display(), created_so_far(&ids)))?
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "CreateJob for {}: {}{}",
                    job.name,
                    aws_sdk_s3control::error::DisplayErrorContext(&e),
                    created_so_far(&ids)
                )
            })?;
        let id = out.job_id().unwrap_or_default().to_string();
        if id.is_empty() {
            bail!("CreateJob for {}: the answer has no JobId{}", job.name, created_so_far(&ids));
        }
        ids.push((job.name.clone(), id));
    }
    Ok(ids)
}

/// For an error part-way through --submit: the jobs already created.
fn created_so_far(ids: &[(String, String)]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ids.iter().map(|(n, id)| format!("{n} = {id}")).collect();
    format!(" (jobs already created: {}; running the export again creates no duplicate)", list.join(", "))
}

/// The CreateJob call for a request as written to `.job.json` (the `aws s3control
/// create-job --cli-input-json` shape), so that what is submitted is what is on disk.
fn create_job(
    control: &aws_sdk_s3control::Client,
    req: &serde_json::Value,
) -> Result<aws_sdk_s3control::operation::create_job::builders::CreateJobFluentBuilder> {
    use aws_sdk_s3control::types as t;
    let text = |v: &serde_json::Value, field: &str| -> Result<String> {
        v.as_str().map(str::to_string).with_context(|| format!("field {field}: missing or not a string"))
    };
    let flag = |v: &serde_json::Value| v.as_bool().unwrap_or(false);
    let op = &req["Operation"];
    let operation = if let Some(u) = op.get("S3UpdateObjectEncryption") {
        let k = &u["ObjectEncryption"]["SSEKMS"];
        let ssekms = t::S3UpdateObjectEncryptionSsekms::builder()
            .kms_key_arn(text(&k["KMSKeyArn"], "Operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS.KMSKeyArn")?)
            .bucket_key_enabled(flag(&k["BucketKeyEnabled"]))
            .build()?;
        t::JobOperation::builder()
            .s3_update_object_encryption(
                t::S3UpdateObjectEncryptionOperation::builder()
                    .object_encryption(t::ObjectEncryption::builder().ssekms(ssekms).build())
                    .build(),
            )
            .build()
    } else if let Some(c) = op.get("S3PutObjectCopy") {
        let f = |name: &str| text(&c[name], &format!("Operation.S3PutObjectCopy.{name}"));
        t::JobOperation::builder()
            .s3_put_object_copy(
                t::S3CopyObjectOperation::builder()
                    .target_resource(f("TargetResource")?)
                    .metadata_directive(t::S3MetadataDirective::from(f("MetadataDirective")?.as_str()))
                    .new_object_metadata(
                        t::S3ObjectMetadata::builder()
                            .sse_algorithm(t::S3SseAlgorithm::from(
                                text(
                                    &c["NewObjectMetadata"]["SSEAlgorithm"],
                                    "Operation.S3PutObjectCopy.NewObjectMetadata.SSEAlgorithm",
                                )?
                                .as_str(),
                            ))
                            .build(),
                    )
                    .sse_aws_kms_key_id(f("SSEAwsKmsKeyId")?)
                    .bucket_key_enabled(flag(&c["BucketKeyEnabled"]))
                    .storage_class(t::S3StorageClass::from(f("StorageClass")?.as_str()))
                    .build(),
            )
            .build()
    } else {
        bail!("field Operation: neither S3UpdateObjectEncryption nor S3PutObjectCopy");
    };
    let r = &req["Report"];
    let report = t::JobReport::builder()
        .bucket(text(&r["Bucket"], "Report.Bucket")?)
        .format(t::JobReportFormat::from(text(&r["Format"], "Report.Format")?.as_str()))
        .enabled(flag(&r["Enabled"]))
        .prefix(text(&r["Prefix"], "Report.Prefix")?)
        .report_scope(t::JobReportScope::from(text(&r["ReportScope"], "Report.ReportScope")?.as_str()))
        .build();
    let m = &req["Manifest"];
    let fields = m["Spec"]["Fields"]
        .as_array()
        .context("field Manifest.Spec.Fields: missing")?
        .iter()
        .map(|f| text(f, "Manifest.Spec.Fields").map(|f| t::JobManifestFieldName::from(f.as_str())))
        .collect::<Result<Vec<_>>>()?;
    let manifest = t::JobManifest::builder()
        .spec(
            t::JobManifestSpec::builder()
                .format(t::JobManifestFormat::from(text(&m["Spec"]["Format"], "Manifest.Spec.Format")?.as_str()))
                .set_fields(Some(fields))
                .build()?,
        )
        .location(
            t::JobManifestLocation::builder()
                .object_arn(text(&m["Location"]["ObjectArn"], "Manifest.Location.ObjectArn")?)
                .e_tag(text(&m["Location"]["ETag"], "Manifest.Location.ETag")?)
                .build()?,
        )
        .build();
    Ok(control
        .create_job()
        .account_id(text(&req["AccountId"], "AccountId")?)
        .confirmation_required(flag(&req["ConfirmationRequired"]))
        .operation(operation)
        .report(report)
        .client_request_token(text(&req["ClientRequestToken"], "ClientRequestToken")?)
        .manifest(manifest)
        .description(text(&req["Description"], "Description")?)
        .priority(req["Priority"].as_i64().context("field Priority: missing")? as i32)
        .role_arn(text(&req["RoleArn"], "RoleArn")?))
}

/// File-name-safe: bucket names are already, a state file's stem may not be.
fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// The estimate's cost of `by_line` objects: each (method, class) breakdown line's total,
/// pro rata. These are the S3 and KMS requests either route pays.
fn line_cost(estimate: &serde_json::Value, by_line: &BTreeMap<(Method, String), u64>) -> f64 {
    let lines = estimate["breakdown"].as_array().cloned().unwrap_or_default();
    by_line
        .iter()
        .map(|((method, class), n)| {
            lines
                .iter()
                .find(|l| l["method"].as_str() == Some(method.as_str()) && l["storage_class"].as_str() == Some(class))
                .and_then(|l| Some(l["total_usd"].as_f64()? / l["objects"].as_f64().filter(|o| *o > 0.0)?))
                .map(|per| per * *n as f64)
                .unwrap_or(0.0)
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Import

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The checkpoint the jobs were exported from.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Completion-report CSV files (the `results/*.csv` of a job's report), local or `s3://`.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<String>,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

/// How many unknown objects are named; the rest are counted.
const UNKNOWN_SHOWN: usize = 10;

pub fn import(args: ImportArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let cp = Checkpoint::open(&args.state)?;
    let run = cp.run()?;
    let blobs = if args.reports.iter().any(|r| r.starts_with("s3://")) {
        let plan: PlanSettings = serde_json::from_str(&run.options_json).context("the plan's options")?;
        let s3 = args.connect.settings(&plan, run.kms_key_arn.as_deref().unwrap_or(""));
        Some(crate::s3::S3Blobs::new(runtime.block_on(crate::s3::build_client(&s3))?, runtime.handle().clone()))
    } else {
        None
    };
    // Every report is checked whole before anything is written: a malformed line leaves
    // the checkpoint as it was.
    for report in &args.reports {
        read_report(report, blobs.as_ref(), |_| Ok(()))?;
    }
    let mut importer = cp.importer()?;
    let mut effects: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut unknown_n = 0u64;
    for report in &args.reports {
        let rows = read_report(report, blobs.as_ref(), |l| {
            let effect =
                importer.apply(&l.bucket, &l.key, l.version_id.as_deref(), &l.outcome, run.kms_key_arn.as_deref())?;
            let name = match effect {
                ImportEffect::MarkedDone => "marked done",
                ImportEffect::MarkedFailed => "marked failed",
                ImportEffect::KeptDone => "already done, failure not applied",
                ImportEffect::Unknown => "unknown (not in the plan)",
            };
            *effects.entry(name).or_default() += 1;
            if effect == ImportEffect::Unknown {
                unknown_n += 1;
                if unknown.len() < UNKNOWN_SHOWN {
                    unknown.push(format!(
                        "s3://{}/{} (version {})",
                        l.bucket,
                        l.key.escape_debug(),
                        l.version_id.as_deref().unwrap_or("null")
                    ));
                }
            }
            Ok(())
        })?;
        println!("{report}: {} rows", thousands(rows));
    }
    importer.finish()?;
    for (what, n) in &effects {
        println!("  {what:<36} {:>14}", thousands(*n));
    }
    if unknown_n > 0 {
        eprintln!(
            "rekey: {} reported objects are not planned objects of {} (first {}):",
            thousands(unknown_n),
            args.state.display(),
            unknown.len()
        );
        for u in &unknown {
            eprintln!("  {u}");
        }
    }
    Ok(())
}

/// Parse every line of one report, calling `f` on each; the row count. Errors name the
/// report and line.
fn read_report(
    report: &str,
    blobs: Option<&crate::s3::S3Blobs>,
    mut f: impl FnMut(&CompletionLine) -> Result<()>,
) -> Result<u64> {
    let reader: Box<dyn Read> = match report.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .with_context(|| format!("{report}: expected s3://BUCKET/KEY"))?;
            let blobs = blobs.expect("an S3 client is built when a report is on S3");
            blobs.open(bucket, key).map(|(r, _)| r as Box<dyn Read>).with_context(|| report.to_string())?
        }
        None => Box::new(std::fs::File::open(Path::new(report)).with_context(|| format!("{report}: cannot open"))?),
    };
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(LineProbe::new(reader));
    let mut rec = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        let more = csv.read_record(&mut rec).map_err(|e| {
            let line = e.position().map(|p| format!("line {}: ", p.line())).unwrap_or_default();
            anyhow::anyhow!("{report}: {line}{e}")
        })?;
        if !more {
            break;
        }
        let line = record_line(&rec, csv.position(), csv.get_ref());
        let parsed = parse_completion(&rec).map_err(|e| anyhow::anyhow!("{report}: line {line}: {e}"))?;
        f(&parsed)?;
        rows += 1;
    }
    Ok(rows)
}

/// Passes a report through, noting how much was read and its last byte, so the line a
/// record started on can be worked out (see [`record_line`]).
struct LineProbe<R> {
    inner: R,
    eof: bool,
    total: u64,
    last: Option<u8>,
}

impl<R> LineProbe<R> {
    fn new(inner: R) -> LineProbe<R> {
        LineProbe { inner, eof: false, total: 0, last: None }
    }
}

impl<R: Read> Read for LineProbe<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
        } else {
            self.total += n as u64;
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// The line a record starts on. csv's own record position does not count the blank lines
/// it skipped before the record, so the line is worked back from where the reader stands
/// after it (csv counts LF bytes): less the line ends inside the record (a quoted
/// ResultMessage may hold some), less the one that ended it, unless the record is the
/// file's last and has none.
fn record_line<R>(rec: &csv::StringRecord, after: &csv::Position, probe: &LineProbe<R>) -> u64 {
    let inner = rec.as_slice().bytes().filter(|&b| b == b'\n').count() as u64;
    let unterminated = probe.eof && after.byte() == probe.total && probe.last != Some(b'\n');
    let start = rec.position().map(|p| p.line()).unwrap_or(1);
    after.line().saturating_sub(inner + u64::from(!unterminated)).max(start)
}
