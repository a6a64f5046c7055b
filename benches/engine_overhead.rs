//! Engine overhead: objects per second dispatched, sent and checkpointed against the
//! in-process fake at zero latency, so everything measured is rekey's own cost (paging
//! the checkpoint, tasks, window, limiters, outcome channel, SQLite writer).
//!
//! `cargo bench --bench engine_overhead`. Target (issue "performance"): ≥ 20,000 objects/s
//! on 2 cores.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekey::exec::progress::ProgressMode;
use rekey::exec::{run, RunConfig, Stopper};
use rekey::inventory::InventoryRow;
use rekey::plan::classify::{Decision, Method};
use rekey::s3::{FakeBehaviour, FakeObject, FakeStore};
use rekey::store::{PlanWriter, PlannedObject, RunRecord};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const OBJECTS: usize = 50_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn planned(i: usize) -> PlannedObject {
    PlannedObject {
        row: InventoryRow::sse_s3("bench", &format!("data/{i:08}.bin"), 4096, &format!("{i:032x}")),
        decision: Decision::Migrate(if i % 2 == 0 { Method::Update } else { Method::Copy }),
    }
}

fn write_plan(path: &Path, objs: &[PlannedObject]) {
    let mut w = PlanWriter::create(path, true).unwrap();
    w.insert(objs).unwrap();
    w.finish(&RunRecord {
        inventory_source: "bench".into(),
        inventory_created: None,
        source_bucket: Some("bench".into()),
        kms_key_arn: Some(KEY.into()),
        options_json: "{}".into(),
        prices_json: "{}".into(),
        estimate_json: "{}".into(),
    })
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.rekey");
    let objs: Vec<PlannedObject> = (0..OBJECTS).map(planned).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(OBJECTS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    for window in [64usize, 512] {
        g.bench_function(format!("fake_zero_latency_50k_objects_window_{window}"), |b| {
            b.iter_batched(
                || {
                    write_plan(&path, &objs);
                    let store = FakeStore::new(FakeBehaviour::default());
                    for o in &objs {
                        store.insert("bench", &o.row.key, FakeObject::sse_s3(o.row.etag.as_deref().unwrap()));
                    }
                    Arc::new(store)
                },
                |store| {
                    let mut cfg = RunConfig::new(path.clone(), KEY.into());
                    cfg.kms_rps = 10_000_000.0;
                    cfg.s3_rps = 10_000_000.0;
                    cfg.concurrency = Some(window);
                    cfg.progress = ProgressMode::Quiet;
                    let report = rt.block_on(run(store, cfg, Stopper::default())).unwrap();
                    assert_eq!(report.last.done, OBJECTS as u64);
                },
                criterion::BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
