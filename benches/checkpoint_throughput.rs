//! The checkpoint's two hot paths during a run:
//!
//! * outcome records per second through the writer thread (batches of ≤ 1,000 rows per
//!   transaction), so that the checkpoint never limits a 100k-rps run (target ≥ 100,000/s);
//! * resume start-up on a state with 90 % done (1 M rows by default; `REKEY_BENCH_RESUME_ROWS`
//!   sets the size, e.g. 10000000 for issue 6's 10 M rows with 9 M done):
//!   - criterion: the queries the engine makes before its first dispatch (count what is
//!     left, page the first 1,000 rows to do);
//!   - end to end, printed after criterion's samples: `rekey run --skip-preflight` on that
//!     state against a local TCP listener that never answers, timed from the spawn to the
//!     first connection (the first request of the first dispatched object), the median of
//!     `REKEY_BENCH_RESUME_RUNS` (5) runs: `resume: 10000000 rows, 9000000 done: first
//!     request 0.41 s after spawn (median of 5: [...])`.
//!
//!   The state is built once and kept in the target directory (`bench-resume-ROWS.rekey`).
//!
//! `cargo bench --bench checkpoint_throughput`;
//! `REKEY_BENCH_RESUME_ROWS=10000000 cargo bench --bench checkpoint_throughput -- resume`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekey::exec::writer::CheckpointWriter;
use rekey::exec::Stopper;
use rekey::inventory::InventoryRow;
use rekey::plan::classify::{Decision, Method};
use rekey::plan::PriceTable;
use rekey::store::{ObjectStatus, OutcomeRecord, OutcomeWriter, PlanWriter, PlannedObject, RunRecord, TodoReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    // Generated a chunk at a time: 10 M rows at once would not fit in memory.
    for start in (0..n).step_by(4096) {
        let chunk: Vec<PlannedObject> = (start..(start + 4096).min(n)).map(planned).collect();
        w.insert(&chunk).unwrap();
    }
    w.finish(&RunRecord {
        inventory_source: "bench".into(),
        inventory_created: None,
        source_bucket: Some("bench".into()),
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        options_json: "{}".into(),
        prices_json: serde_json::to_string(&PriceTable::default()).unwrap(),
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
        replaced_version_id: None,
        redecided: None,
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

    // A state with the first 90 % done, as a resumed run finds it.
    let rows: usize = std::env::var("REKEY_BENCH_RESUME_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let done_rows = rows / 10 * 9;
    let resume = resume_state(rows, done_rows);
    g.throughput(Throughput::Elements(1));
    let name = if rows == 1_000_000 {
        "resume_startup_1m_rows_900k_done".to_string()
    } else {
        format!("resume_startup_{rows}_rows_{done_rows}_done")
    };
    g.bench_function(name, |b| {
        b.iter(|| {
            let totals = OutcomeWriter::open(&resume).unwrap().todo_totals().unwrap();
            assert_eq!(totals.objects, (rows - done_rows) as u64);
            let page = TodoReader::open(&resume).unwrap().next_page(1000).unwrap();
            assert_eq!(page.first().map(|w| w.id), Some(done_rows as i64 + 1));
        });
    });
    g.finish();
    resume_end_to_end(&resume, rows, done_rows);
}

/// The resume state for `rows` rows with the first `done` done, built once and kept.
fn resume_state(rows: usize, done: usize) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-resume-{rows}.rekey"));
    let complete = path.with_extension("complete");
    if !complete.exists() {
        eprintln!("building a {rows}-row state with {done} done in {} ...", path.display());
        write_plan(&path, rows);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE objects SET status = 'done' WHERE id <= ?1", [done as i64])
            .unwrap();
        std::fs::write(&complete, b"").unwrap();
    }
    // `rekey run` reads the plan's price table (a state built before it was written here).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE run SET prices_json = ?1", [serde_json::to_string(&PriceTable::default()).unwrap()])
        .unwrap();
    path
}

/// `rekey run` on the state, from the spawn to its first request on the wire.
fn resume_end_to_end(state: &Path, rows: usize, done: usize) {
    let runs: usize = std::env::var("REKEY_BENCH_RESUME_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut secs = Vec::new();
    for _ in 0..runs.max(1) {
        // A listener that accepts and never answers: the first object's request hangs
        // there, so nothing is recorded and every run starts from the same state.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = state.with_extension("log");
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rekey"))
            .args(["run", "--skip-preflight", "--quiet", "--region", "us-east-1", "--endpoint-url", &endpoint])
            .arg("--state")
            .arg(state)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env_remove("AWS_PROFILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let _conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!(
                            "rekey run ended ({status}) before any request: {}",
                            std::fs::read_to_string(&log).unwrap()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        secs.push(started.elapsed().as_secs_f64());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let all: Vec<String> = secs.iter().map(|s| format!("{s:.3}")).collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "resume: {rows} rows, {done} done: first request {:.3} s after spawn (median of {}: [{}] s)",
        secs[secs.len() / 2],
        secs.len(),
        all.join(", ")
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
