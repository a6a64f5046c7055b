//! `rekey estimate` and `rekey plan`.

use super::output::{render, render_sharded};
use super::settings::{resolve, KeyArn, PlanSettings};
use super::PlanArgs;
use crate::inventory::BlobStore;
use crate::plan::shard::shard_path;
use crate::plan::{build_sharded_plan, Estimate};
use crate::s3::{build_client, build_kms_client, S3Blobs, S3Settings};
use crate::store::{PlanWriter, RunRecord, DEFAULT_CACHE_KIB};
use crate::units::thousands;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
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
    let key_arn = match mode {
        Mode::Estimate => None,
        Mode::Plan => {
            let Some(key) = &r.kms_key else {
                bail!("plan needs --kms-key ARN (or `kms-key` in the job file): the checkpoint records the target key");
            };
            if r.state.is_none() {
                bail!("plan needs --state FILE (or `state` in the job file)");
            }
            // A copy-only plan may name the key by alias or id: pin it to the key it names
            // now. S3 reports the ARN, so every later comparison needs it, and an alias
            // re-pointed mid-run would otherwise split the migration across two keys.
            Some(if KeyArn::parse(key).is_ok() {
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
            })
        }
    };
    // One checkpoint, or one per shard.
    let n = r.shards;
    let targets: Vec<PathBuf> = match (&r.state, mode) {
        (Some(state), Mode::Plan) if n > 1 => (0..n as usize).map(|i| shard_path(state, i, n)).collect(),
        (Some(state), Mode::Plan) => vec![state.clone()],
        _ => Vec::new(),
    };
    let mut writers = Vec::with_capacity(targets.len());
    for t in &targets {
        writers.push(PlanWriter::create_with_cache(t, r.replace, (DEFAULT_CACHE_KIB / n).max(4096))?);
    }
    let (mut plan, stats) = if writers.is_empty() {
        build_sharded_plan(&r.plan, blobs, n, None)?
    } else {
        build_sharded_plan(&r.plan, blobs, n, Some(&mut |shard, batch| writers[shard].insert(batch)))?
    };
    let mut written = Vec::new();
    if let Some(key_arn) = key_arn {
        // Every shard is sealed before any is moved into place: a failure leaves none.
        let estimates: Vec<&mut Estimate> =
            if n > 1 { plan.shards.iter_mut().collect() } else { vec![&mut plan.total] };
        let mut sealed = Vec::with_capacity(writers.len());
        for ((writer, e), target) in writers.into_iter().zip(estimates).zip(&targets) {
            if let Some(s) = e.shard.as_mut() {
                s.state_file = Some(target.display().to_string());
            }
            // Each shard's checkpoint paces its run at its share of the quota.
            let mut options = settings.clone();
            if n > 1 {
                options.kms_share = Some(e.assumptions.kms_share);
                options.shards = Some(n);
            }
            let run = RunRecord {
                inventory_source: r.plan.inventory.clone(),
                inventory_created: e.inventory.created.clone(),
                source_bucket: e.inventory.source_bucket.clone(),
                kms_key_arn: Some(key_arn.clone()),
                options_json: serde_json::to_string(&options)?,
                prices_json: serde_json::to_string(&r.plan.prices)?,
                estimate_json: serde_json::to_string(&*e)?,
            };
            sealed.push(writer.seal(&run).with_context(|| format!("writing {}", target.display()))?);
        }
        for (s, target) in sealed.into_iter().zip(&targets) {
            let objects = s.install().with_context(|| format!("writing {}", target.display()))?;
            written.push((target.clone(), objects));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let text = if n > 1 { render_sharded(&plan, r.format) } else { render(&plan.total, r.format) };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    // Progress notes go to stderr, so stdout stays exactly one document.
    let rate = if secs > 0.0 { (stats.rows as f64 / secs) as u64 } else { 0 };
    if written.is_empty() {
        eprintln!("rekey: read {} rows in {secs:.1}s ({} rows/s)", thousands(stats.rows), thousands(rate));
    }
    match written.as_slice() {
        [] => {}
        [(state, objects)] => eprintln!(
            "rekey: planned {} rows in {secs:.1}s ({} rows/s); checkpoint {} holds {} objects",
            thousands(stats.rows),
            thousands(rate),
            state.display(),
            thousands(*objects)
        ),
        shards => {
            eprintln!(
                "rekey: planned {} rows in {secs:.1}s ({} rows/s) into {} shards:",
                thousands(stats.rows),
                thousands(rate),
                shards.len()
            );
            for (state, objects) in shards {
                eprintln!("  checkpoint {} holds {} objects", state.display(), thousands(*objects));
            }
        }
    }
    Ok(plan.total)
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
