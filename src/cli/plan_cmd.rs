//! `rekey estimate` and `rekey plan`.

use super::output::render;
use super::settings::{resolve, KeyArn, PlanSettings};
use super::PlanArgs;
use crate::inventory::BlobStore;
use crate::plan::{build_plan, Estimate};
use crate::s3::{build_client, build_kms_client, S3Blobs, S3Settings};
use crate::store::{PlanWriter, RunRecord};
use crate::units::thousands;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Estimate,
    Plan,
}

pub fn run(args: PlanArgs, mode: Mode, runtime: &tokio::runtime::Runtime) -> Result<Estimate> {
    let settings = match &args.job {
        Some(path) => args.settings.clone().over(PlanSettings::from_job_file(path)?),
        None => args.settings.clone(),
    };
    let r = resolve(&settings)?;
    let blobs = if r.plan.inventory.starts_with("s3://") {
        let s3 = S3Settings {
            region: Some(r.plan.region.clone()),
            endpoint_url: r.endpoint_url.clone(),
            virtual_host: r.virtual_host,
            allow_http: r.allow_http,
            request_timeout: None,
        };
        Some(S3Blobs::new(runtime.block_on(build_client(&s3))?, runtime.handle().clone()))
    } else {
        None
    };
    let blobs = blobs.as_ref().map(|b| b as &dyn BlobStore);
    let started = Instant::now();
    let (estimate, stats, written) = match mode {
        Mode::Estimate => {
            let (e, stats) = build_plan(&r.plan, blobs, None)?;
            (e, stats, None)
        }
        Mode::Plan => {
            let Some(state) = &r.state else { bail!("plan needs --state FILE (or `state` in the job file)") };
            let Some(key) = &r.kms_key else {
                bail!("plan needs --kms-key ARN (or `kms-key` in the job file): the checkpoint records the target key");
            };
            // A copy-only plan may name the key by alias or id: pin it to the key it names
            // now. S3 reports the ARN, so every later comparison needs it, and an alias
            // re-pointed mid-run would otherwise split the migration across two keys.
            let key_arn = if KeyArn::parse(key).is_ok() {
                key.clone()
            } else {
                let s3 = S3Settings {
                    region: Some(r.plan.region.clone()),
                    endpoint_url: r.endpoint_url.clone(),
                    virtual_host: r.virtual_host,
                    allow_http: r.allow_http,
                    request_timeout: None,
                };
                runtime.block_on(resolve_key(&s3, key))?
            };
            let mut writer = PlanWriter::create(state, r.replace)?;
            let (e, stats) = build_plan(&r.plan, blobs, Some(&mut |batch| writer.insert(batch)))?;
            let run = RunRecord {
                inventory_source: r.plan.inventory.clone(),
                inventory_created: e.inventory.created.clone(),
                source_bucket: e.inventory.source_bucket.clone(),
                kms_key_arn: Some(key_arn),
                options_json: serde_json::to_string(&settings)?,
                prices_json: serde_json::to_string(&r.plan.prices)?,
                estimate_json: serde_json::to_string(&e)?,
            };
            let n = writer.finish(&run).with_context(|| format!("writing {}", state.display()))?;
            (e, stats, Some((n, state.clone())))
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    out.write_all(render(&estimate, r.format).as_bytes())?;
    out.flush()?;
    // Progress notes go to stderr, so stdout stays exactly one document.
    let rate = if secs > 0.0 { (stats.rows as f64 / secs) as u64 } else { 0 };
    match written {
        Some((n, state)) => eprintln!(
            "rekey: planned {} rows in {secs:.1}s ({} rows/s); checkpoint {} holds {} objects",
            thousands(stats.rows),
            thousands(rate),
            state.display(),
            thousands(n)
        ),
        None => eprintln!("rekey: read {} rows in {secs:.1}s ({} rows/s)", thousands(stats.rows), thousands(rate)),
    }
    Ok(estimate)
}

/// The ARN of the key an alias or key id names, via kms:DescribeKey.
async fn resolve_key(s3: &S3Settings, key: &str) -> Result<String> {
    let kms = build_kms_client(s3).await?;
    let out = kms.describe_key().key_id(key).send().await.map_err(|e| {
        anyhow::anyhow!(
            "--kms-key {key}: could not resolve it to a key ARN with kms:DescribeKey ({}); pass the key's full ARN",
            aws_sdk_kms::error::DisplayErrorContext(&e)
        )
    })?;
    out.key_metadata()
        .and_then(|m| m.arn())
        .map(str::to_string)
        .with_context(|| format!("--kms-key {key}: DescribeKey returned no ARN"))
}
