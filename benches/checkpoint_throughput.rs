//! The checkpoint's two hot paths during a run:
//!
//! * outcome records per second through the writer thread (batches of ≤ 1,000 rows per
//!   transaction), so that the checkpoint never limits a 100k-rps run (target ≥ 100,000/s);
//! * resume start-up: the queries a resumed run makes before its first dispatch (count
//!   what is left, page the first 1,000 rows to do) on a 1 M-row state with 900k done.
//!
//! `cargo bench --bench checkpoint_throughput`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekey::exec::writer::CheckpointWriter;
use rekey::exec::Stopper;
use rekey::inventory::InventoryRow;
use rekey::plan::classify::{Decision, Method};
use rekey::store::{ObjectStatus, OutcomeRecord, OutcomeWriter, PlanWriter, PlannedObject, RunRecord, TodoReader};
use std::path::Path;
use std::time::Duration;

fn planned(i: usize) -> PlannedObject {
    PlannedObject {
        row: InventoryRow {
            version_id: Some(format!("{i:032x}")),
            is_latest: Some(true),
            ..InventoryRow::sse_s3("bench", &format!("logs/2026/11/{i:09}.gz"), 65_536, &format!("{i:032x}"))
        },
        decision: Decision::Migrate(Method::Update),
    }
}

fn write_plan(path: &Path, n: usize) {
    let mut w = PlanWriter::create(path, true).unwrap();
    let batch: Vec<PlannedObject> = (0..n).map(planned).collect();
    for chunk in batch.chunks(4096) {
        w.insert(chunk).unwrap();
    }
    w.finish(&RunRecord {
        inventory_source: "bench".into(),
        inventory_created: None,
        source_bucket: Some("bench".into()),
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        options_json: "{}".into(),
        prices_json: "{}".into(),
        estimate_json: "{}".into(),
    })
    .unwrap();
}

fn done(id: i64) -> OutcomeRecord {
    OutcomeRecord {
        id,
        status: ObjectStatus::Done,
        attempts: 1,
        error_code: None,
        last_error: None,
        retryable: false,
        note: None,
        new_etag: Some(format!("{id:032x}")),
        new_version_id: Some(format!("{id:032x}")),
        kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        new_checksum: None,
        upload_id: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    const RECORDS: usize = 100_000;
    let path = dir.path().join("writer.rekey");
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("writer_100k_outcomes", |b| {
        b.iter_batched(
            || write_plan(&path, RECORDS),
            |()| {
                let w = CheckpointWriter::spawn(path.clone(), None, Stopper::default()).unwrap();
                let tx = w.sender();
                for id in 1..=RECORDS as i64 {
                    tx.send(done(id).into()).unwrap();
                }
                drop(tx);
                let stats = w.finish().unwrap();
                assert_eq!(stats.records, RECORDS as u64);
            },
            criterion::BatchSize::PerIteration,
        );
    });

    // A 1 M-row state with the first 900k done, as a resumed run finds it.
    const ROWS: usize = 1_000_000;
    let resume = dir.path().join("resume.rekey");
    write_plan(&resume, ROWS);
    rusqlite::Connection::open(&resume)
        .unwrap()
        .execute("UPDATE objects SET status = 'done' WHERE id <= 900000", [])
        .unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("resume_startup_1m_rows_900k_done", |b| {
        b.iter(|| {
            let totals = OutcomeWriter::open(&resume).unwrap().todo_totals().unwrap();
            assert_eq!(totals.objects, 100_000);
            let page = TodoReader::open(&resume).unwrap().next_page(1000).unwrap();
            assert_eq!(page.first().map(|w| w.id), Some(900_001));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
