//! `rekey demo`: the whole job against a local emulator, with nothing to set up.
//!
//! It starts the S3/KMS emulator ([`emulator`]), creates a KMS key and a bucket of a few
//! thousand SSE-S3 and unencrypted objects with metadata, tags and mixed storage classes
//! ([`bucket`]), writes a real-format S3 Inventory of it, then plans (printing the
//! estimate), runs with progress, and checks every object with HEAD and GetObjectTagging.
//!
//! `--offline` does the planning half only, on a generated 100k-row inventory (every
//! storage class and encryption status, versions, delete markers, object lock, objects
//! over 5 GiB, awkward keys), without the emulator.

pub mod bucket;
pub mod emulator;

use super::plan_cmd::{self, Mode};
use super::run_cmd::RunArgs;
use super::settings::{Format, PlanSettings};
use super::PlanArgs;
use crate::inventory::synthetic::{demo_rows, write_inventory, InventorySpec};
use crate::s3::{build_client, S3Settings};
use anyhow::{Context, Result};
use bucket::{BucketSpec, SeededObject};
use clap::Args;
use std::path::{Path, PathBuf};

/// A KMS key ARN of the shape AWS issues; the demo never calls KMS with it.
pub const DEMO_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Objects to put in the emulator's bucket.
    #[arg(long, default_value_t = 2000)]
    pub objects: usize,
    /// Plan only, on a generated inventory of this many rows, without the emulator.
    #[arg(long)]
    pub offline: bool,
    /// Inventory rows to generate with --offline.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Keep the inventory and checkpoint in DIR instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Seed for the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

pub fn run(args: DemoArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let tmp;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    if args.offline {
        offline(&args, &dir, runtime)
    } else {
        live(&args, &dir, runtime)
    }
}

/// The planning half on a generated inventory.
fn offline(args: &DemoArgs, dir: &Path, runtime: &tokio::runtime::Runtime) -> Result<()> {
    // An inventory taken yesterday, of a bucket that has been in use for over a year.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let created = now - 86_400_000;
    let spec =
        InventorySpec { data_files: 4, ..InventorySpec::new(&dir.join("inventory-bucket"), "demo-bucket", created) };
    let manifest = write_inventory(&spec, demo_rows("demo-bucket", args.rows, 5, created, args.seed))
        .with_context(|| format!("writing the demo inventory under {}", dir.display()))?;
    eprintln!("rekey demo: wrote a {}-row S3 Inventory at {}", args.rows, manifest.display());
    let state = dir.join("demo.rekey");
    let settings = PlanSettings {
        inventory: Some(manifest.display().to_string()),
        kms_key: Some(DEMO_KEY.into()),
        state: Some(state.clone()),
        replace: Some(true),
        format: Some(args.format),
        monthly_gets: Some(10_000_000),
        ..PlanSettings::default()
    };
    plan_cmd::run(PlanArgs { job: None, settings }, Mode::Plan, runtime)?;
    if args.keep.is_some() {
        eprintln!("rekey demo: inventory and checkpoint kept in {}", dir.display());
        eprintln!("  try: rekey estimate --inventory {} --method copy --bucket-key", manifest.display());
    }
    Ok(())
}

/// The whole job against the emulator.
fn live(args: &DemoArgs, dir: &Path, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let started = std::time::Instant::now();
    let emu = emulator::Emulator::start(&[])?;
    eprintln!("rekey demo: S3/KMS emulator (moto + scripts/s3emu.py) on {}", emu.endpoint);
    // The emulator takes any credentials; these keep real ones away from it.
    std::env::set_var("AWS_ACCESS_KEY_ID", "demo");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "demo");
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let s3_settings = S3Settings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(emu.endpoint.clone()),
        ..S3Settings::default()
    };
    let spec = BucketSpec { seed: args.seed, ..BucketSpec::new("rekey-demo", args.objects) };
    let (s3, key, seeded, manifest) = runtime.block_on(async {
        let s3 = build_client(&s3_settings).await?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&emu.endpoint)
            .load()
            .await;
        let kms = aws_sdk_kms::Client::new(&shared);
        let key = bucket::create_kms_key(&kms, "rekey demo").await?;
        let seeded = bucket::populate(&s3, &spec).await?;
        let encrypted = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
        let manifest = bucket::write_inventory_of(&s3, &spec.bucket, &encrypted, &dir.join("inventory-bucket")).await?;
        anyhow::Ok((s3, key, seeded, manifest))
    })?;
    let unencrypted = seeded.iter().filter(|o| !o.encrypted).count();
    eprintln!(
        "rekey demo: bucket {} holds {} objects ({} SSE-S3, {} unencrypted) with metadata, tags and mixed storage classes",
        spec.bucket,
        seeded.len(),
        seeded.len() - unencrypted,
        unencrypted
    );
    eprintln!("rekey demo: KMS key {key}");
    eprintln!("rekey demo: S3 Inventory written to {}\n", manifest.display());

    let state = dir.join("demo.rekey");
    let settings = PlanSettings {
        inventory: Some(manifest.display().to_string()),
        kms_key: Some(key.clone()),
        endpoint_url: Some(emu.endpoint.clone()),
        state: Some(state.clone()),
        replace: Some(true),
        format: Some(args.format),
        // The emulator is not AWS: pace it like a small account, which also shows the limiter.
        kms_quota: Some(400.0),
        ..PlanSettings::default()
    };
    plan_cmd::run(PlanArgs { job: None, settings }, Mode::Plan, runtime)?;
    eprintln!();
    let run_args = RunArgs::defaults(&state);
    super::run_cmd::run(run_args)?;

    eprintln!("\nrekey demo: checking every object with HEAD and GetObjectTagging…");
    let problems = runtime.block_on(verify(&s3, &spec.bucket, &key, &seeded))?;
    let by_method = crate::store::Checkpoint::open(&state)?.counts()?.by_method;
    println!();
    println!("rekey demo: summary");
    for (m, n) in &by_method {
        println!("  {m:<16} {n:>8} objects");
    }
    println!("  verified         {:>8} objects SSE-KMS under the key, with metadata, content type, tags and storage class intact", seeded.len() - problems.len());
    for p in problems.iter().take(10) {
        println!("  PROBLEM: {p}");
    }
    println!("  took {:.1} s in all", started.elapsed().as_secs_f64());
    println!();
    println!("The same job against real AWS (credentials from the usual chain):");
    println!("  rekey plan --inventory s3://INVENTORY-BUCKET/PREFIX/BUCKET/CONFIG/DATE/manifest.json \\");
    println!("             --kms-key arn:aws:kms:REGION:ACCOUNT:key/ID --bucket-key --state job.rekey");
    println!("  rekey run --state job.rekey       # Ctrl-C stops cleanly; run it again to resume");
    println!("  rekey status --state job.rekey    # from another shell");
    if args.keep.is_some() {
        println!("Inventory and checkpoint kept in {}", dir.display());
    }
    if !problems.is_empty() {
        anyhow::bail!("{} objects failed verification", problems.len());
    }
    Ok(())
}

/// HEAD and GetObjectTagging every object: SSE-KMS under `key`, and nothing else changed.
async fn verify(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, seeded: &[SeededObject]) -> Result<Vec<String>> {
    use futures::StreamExt;
    let checks = futures::stream::iter(seeded)
        .map(|o| async move {
            let head =
                s3.head_object().bucket(bucket).key(&o.key).send().await.with_context(|| format!("HEAD {}", o.key))?;
            let tags = s3
                .get_object_tagging()
                .bucket(bucket)
                .key(&o.key)
                .send()
                .await
                .with_context(|| format!("tags of {}", o.key))?;
            let mut why = Vec::new();
            if head.server_side_encryption().map(|s| s.as_str()) != Some("aws:kms") {
                why.push(format!("encryption {:?}", head.server_side_encryption()));
            }
            if !head.ssekms_key_id().is_some_and(|k| crate::s3::object_store::same_kms_key(k, key)) {
                why.push(format!("key {:?}", head.ssekms_key_id()));
            }
            let class = head.storage_class().map(|c| c.as_str()).unwrap_or("STANDARD");
            if class != o.storage_class {
                why.push(format!("storage class {class}, was {}", o.storage_class));
            }
            if head.metadata() != Some(&o.metadata) {
                why.push(format!("metadata {:?}", head.metadata()));
            }
            if head.content_type() != Some(o.content_type.as_str()) {
                why.push(format!("content type {:?}", head.content_type()));
            }
            if head.content_length() != Some(o.size as i64) {
                why.push(format!("size {:?}, was {}", head.content_length(), o.size));
            }
            let mut got: Vec<(String, String)> =
                tags.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
            let mut want = o.tags.clone();
            got.sort();
            want.sort();
            if got != want {
                why.push(format!("tags {got:?}"));
            }
            anyhow::Ok((!why.is_empty()).then(|| format!("{}: {}", o.key, why.join(", "))))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut problems = Vec::new();
    for c in checks {
        if let Some(p) = c? {
            problems.push(p);
        }
    }
    Ok(problems)
}
