//! Engine overhead: objects per second dispatched, sent and checkpointed against the
//! in-process fake at zero latency, so everything measured is rekey's own cost (paging
//! the checkpoint, tasks, window, limiters, outcome channel, SQLite writer).
//!
//! `cargo bench --bench engine_overhead`. Target (issue "performance"): ≥ 20,000 objects/s
//! on 2 cores.
//!
//! After criterion's samples, the same run is repeated `REKEY_BENCH_CPU_RUNS` times (5 by
//! default) per window with getrusage(RUSAGE_SELF) around it, and the median CPU time
//! (user + system, every thread: runtime workers and the writer) per object is printed:
//! `cpu: window 64: median 9.8 µs/object (user 7.1 + sys 2.7), 140k objects/s wall`.
//!
//! Then CPU per object while paced (issue 14): the fake answers after 20 ms, and the run
//! is paced by `--s3-rps` R for R = 1,000, 3,500 and 20,000 (about 3 s of objects at R),
//! beside the same objects unpaced (both limiters at 10M/s) at the same window (128, as in
//! the issue; 1,024 at 20,000, which 128 slots at 20 ms cannot carry). Each leg runs on
//! the runtime `rekey run` builds for it (`rekey::exec::runtime`: one worker per 5,000
//! requests/s, at most one per core); `REKEY_BENCH_WORKERS=2` puts both on the same one. Each pair alternates
//! `REKEY_BENCH_CPU_RUNS` times and prints medians and the paced/unpaced ratio:
//! `paced: s3 3500 rps, window 128: paced 101.2 µs/object (3490 objects/s) vs unpaced 95.3
//! (6300 objects/s): 1.06×`. `REKEY_BENCH_ONLY=paced` runs only this part (no criterion);
//! to profile one rate, `REKEY_BENCH_RATES=1000` runs only it, `REKEY_BENCH_SECS=10`
//! lengthens each run, and `REKEY_BENCH_LEG=paced` skips the unpaced side.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekey::exec::progress::ProgressMode;
use rekey::exec::{run, runtime, RunConfig, Stopper};
use rekey::inventory::InventoryRow;
use rekey::plan::classify::{Decision, Method};
use rekey::s3::{FakeBehaviour, FakeObject, FakeStore};
use rekey::store::{PlanWriter, PlannedObject, RunRecord};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// User and system CPU time of the whole process so far, in microseconds.
fn cpu_us() -> (u64, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

fn prepared(path: &Path, objs: &[PlannedObject]) -> Arc<FakeStore> {
    write_plan(path, objs);
    let store = FakeStore::new(FakeBehaviour::default());
    for o in objs {
        store.insert("bench", &o.row.key, FakeObject::sse_s3(o.row.etag.as_deref().unwrap()));
    }
    Arc::new(store)
}

/// A rate high enough never to pace.
const UNPACED: f64 = 10_000_000.0;

/// The runtime `rekey run` builds for a run paced to `rps` (one worker per 5,000 requests/s,
/// at most one per core: rekey::exec::runtime), or `REKEY_BENCH_WORKERS` workers for every
/// leg, to compare paced and unpaced on the same runtime.
fn runtime_for(rps: f64) -> tokio::runtime::Runtime {
    let forced = std::env::var("REKEY_BENCH_WORKERS").ok().and_then(|v| v.parse().ok());
    let workers = forced.unwrap_or_else(|| runtime::workers_for(rps, runtime::cores()));
    runtime::build(workers).unwrap()
}

fn one_run(rt: &tokio::runtime::Runtime, path: &Path, store: Arc<FakeStore>, window: usize) {
    paced_run(rt, path, store, window, UNPACED, OBJECTS);
}

/// One run with S3 paced at `s3_rps` (KMS unpaced); returns objects/s of wall time.
fn paced_run(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    store: Arc<FakeStore>,
    window: usize,
    s3_rps: f64,
    objects: usize,
) -> f64 {
    let mut cfg = RunConfig::new(path.to_path_buf(), KEY.into());
    cfg.kms_rps = UNPACED;
    cfg.s3_rps = s3_rps;
    cfg.concurrency = Some(window);
    cfg.progress = ProgressMode::Quiet;
    let report = rt.block_on(run(store, cfg, Stopper::default())).unwrap();
    assert_eq!(report.last.done, objects as u64);
    objects as f64 / report.last.elapsed_secs
}

fn runs() -> usize {
    std::env::var("REKEY_BENCH_CPU_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU per object paced at several S3 rates, each beside the same run unpaced (issue 14).
fn cpu_per_object_paced(dir: &Path) {
    const LATENCY: Duration = Duration::from_millis(20);
    // `REKEY_BENCH_RATES=1000,3500` runs only those rates (to profile one of them).
    let only: Option<Vec<f64>> =
        std::env::var("REKEY_BENCH_RATES").ok().map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
    for (rate, window) in [(1_000.0f64, 128usize), (3_500.0, 128), (20_000.0, 1024)] {
        if only.as_ref().is_some_and(|o| !o.contains(&rate)) {
            continue;
        }
        let secs: f64 = std::env::var("REKEY_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0);
        let objects = (rate * secs) as usize;
        let objs: Vec<PlannedObject> = (0..objects).map(planned).collect();
        let path = dir.join(format!("paced-{rate}.rekey"));
        let (mut paced, mut unpaced) = (Vec::new(), Vec::new());
        // Each leg on the runtime `rekey run` would give it, built once per leg (outside
        // the measured CPU).
        let (paced_rt, unpaced_rt) = (runtime_for(rate), runtime_for(UNPACED));
        let workers = |rt: &tokio::runtime::Runtime| rt.metrics().num_workers();
        let (paced_workers, unpaced_workers) = (workers(&paced_rt), workers(&unpaced_rt));
        for _ in 0..runs() {
            for (limit, out, rt) in [(rate, &mut paced, &paced_rt), (UNPACED, &mut unpaced, &unpaced_rt)] {
                // `REKEY_BENCH_LEG=paced` (or `unpaced`) runs one side only, to profile it.
                if std::env::var("REKEY_BENCH_LEG").is_ok_and(|l| (l == "paced") != (limit == rate)) {
                    out.push((f64::NAN, f64::NAN));
                    continue;
                }
                let store = prepared(&path, &objs);
                store.set_behaviour(FakeBehaviour { latency: LATENCY, ..Default::default() });
                let (u0, s0) = cpu_us();
                let wall_rate = paced_run(rt, &path, store, window, limit, objects);
                let (u1, s1) = cpu_us();
                out.push(((u1 - u0 + s1 - s0) as f64 / objects as f64, wall_rate));
            }
        }
        let show = |v: &[(f64, f64)]| v.iter().map(|s| format!("{:.1}", s.0)).collect::<Vec<_>>().join(", ");
        let (p, u) = (median(paced.iter().map(|s| s.0).collect()), median(unpaced.iter().map(|s| s.0).collect()));
        println!(
            "paced: s3 {rate:.0} rps, window {window}, 20 ms, {objects} objects: paced {p:.1} µs/object ({:.0} objects/s, \
             {paced_workers} workers) vs unpaced {u:.1} ({:.0} objects/s, {unpaced_workers} workers): {:.2}×; runs [{}] vs [{}]",
            median(paced.iter().map(|s| s.1).collect()),
            median(unpaced.iter().map(|s| s.1).collect()),
            p / u,
            show(&paced),
            show(&unpaced),
        );
    }
}

/// CPU-microseconds per object: getrusage around fixed-size runs (setup excluded).
fn cpu_per_object(rt: &tokio::runtime::Runtime, path: &Path, objs: &[PlannedObject]) {
    for window in [64usize, 512] {
        let mut samples = Vec::new();
        for _ in 0..runs() {
            let store = prepared(path, objs);
            let ((u0, s0), t0) = (cpu_us(), Instant::now());
            one_run(rt, path, store, window);
            let ((u1, s1), wall) = (cpu_us(), t0.elapsed());
            let n = OBJECTS as f64;
            samples.push((
                (u1 - u0 + s1 - s0) as f64 / n,
                (u1 - u0) as f64 / n,
                (s1 - s0) as f64 / n,
                n / wall.as_secs_f64(),
            ));
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (total, user, sys, _) = samples[samples.len() / 2];
        let mut rates: Vec<f64> = samples.iter().map(|s| s.3).collect();
        rates.sort_by(f64::total_cmp);
        let all: Vec<String> = samples.iter().map(|s| format!("{:.1}", s.0)).collect();
        println!(
            "cpu: window {window}: median {total:.1} µs/object (user {user:.1} + sys {sys:.1}), {:.0}k objects/s wall; \
             {} runs of {OBJECTS}: [{}] µs/object",
            rates[rates.len() / 2] / 1000.0,
            samples.len(),
            all.join(", "),
        );
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.rekey");
    let objs: Vec<PlannedObject> = (0..OBJECTS).map(planned).collect();
    if std::env::var("REKEY_BENCH_ONLY").is_ok_and(|v| v == "paced") {
        cpu_per_object_paced(dir.path());
        return;
    }
    let rt = runtime_for(UNPACED);
    cpu_per_object(&rt, &path, &objs);
    cpu_per_object_paced(dir.path());
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(OBJECTS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    for window in [64usize, 512] {
        g.bench_function(format!("fake_zero_latency_50k_objects_window_{window}"), |b| {
            b.iter_batched(
                || prepared(&path, &objs),
                |store| one_run(&rt, &path, store, window),
                criterion::BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
