//! Planning throughput: rows per second through gunzip, CSV, decode, classify and the
//! SQLite insert, on a generated 200,000-row inventory in the real format; and the same
//! rows as Parquet and ORC inventories (estimate only: the insert does not depend on the
//! format).
//!
//! `cargo bench --bench plan_throughput`. For 1 M and 10 M rows against `gzip -dc`, with
//! peak memory, use `scripts/bench-plan` (docs/performance.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekey::inventory::synthetic::{demo_rows, write_inventory, InventorySpec};
use rekey::inventory::{FileFormat, OpenOptions};
use rekey::plan::{build_plan, ClassifyOptions, KmsQuota, Pace, PlanConfig, PriceTable};
use rekey::store::{PlanWriter, RunRecord};
use std::time::Duration;

const ROWS: usize = 200_000;
const CREATED: i64 = 1_764_000_000_000;

fn config(manifest: &std::path::Path) -> PlanConfig {
    PlanConfig {
        inventory: manifest.display().to_string(),
        open: OpenOptions { verify: true, ..OpenOptions::default() },
        classify: ClassifyOptions::default(),
        versioned: None,
        bucket_key: false,
        prices: PriceTable::default(),
        region: "us-east-1".into(),
        pace: Pace { kms_quota: KmsQuota::for_region("us-east-1"), kms_share: 0.5, s3_rps: 3500.0 },
        monthly_gets: None,
        skip_bad_rows: false,
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let spec = InventorySpec { data_files: 4, ..InventorySpec::new(dir.path(), "bench-bucket", CREATED) };
    let manifest = write_inventory(&spec, demo_rows("bench-bucket", ROWS, 5, CREATED, 1)).unwrap();
    let cfg = config(&manifest);

    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("estimate_200k_rows", |b| {
        b.iter(|| build_plan(&cfg, None, None).unwrap());
    });
    let state = dir.path().join("bench.rekey");
    g.bench_function("plan_to_sqlite_200k_rows", |b| {
        b.iter(|| {
            let mut w = PlanWriter::create(&state, true).unwrap();
            let (e, _) = build_plan(&cfg, None, Some(&mut |batch| w.insert(batch))).unwrap();
            w.finish(&RunRecord {
                inventory_source: cfg.inventory.clone(),
                inventory_created: None,
                source_bucket: None,
                kms_key_arn: None,
                options_json: "{}".into(),
                prices_json: "{}".into(),
                estimate_json: serde_json::to_string(&e).unwrap(),
            })
            .unwrap();
        });
    });
    for (format, name) in
        [(FileFormat::Parquet, "estimate_200k_rows_parquet"), (FileFormat::Orc, "estimate_200k_rows_orc")]
    {
        let spec = InventorySpec {
            data_files: 4,
            format,
            dest_prefix: format!("inventory-{}", format.as_str()),
            ..InventorySpec::new(dir.path(), "bench-bucket", CREATED)
        };
        let manifest = write_inventory(&spec, demo_rows("bench-bucket", ROWS, 5, CREATED, 1)).unwrap();
        let cfg = config(&manifest);
        g.bench_function(name, |b| {
            b.iter(|| build_plan(&cfg, None, None).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
