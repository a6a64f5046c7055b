//! The dispatcher: pages the rows still to do out of the checkpoint, runs one task per
//! object under a bound on live tasks, sizes the in-flight window, and stops cleanly.

use super::limiter::{AdaptiveLimiter, SlowStart};
use super::progress::{self, Progress, ProgressMode, ProgressSnapshot};
use super::redecide::Redecide;
use super::retry::RetryPolicy;
use super::task::{migrate, Fidelity, TaskContext};
use super::writer::{CheckpointWriter, WriterStats};
use super::{RunCounters, StopReason, Stopper};
use crate::plan::classify::Method;
use crate::s3::ObjectStore;
use crate::store::{OutcomeWriter, StoreError, TodoReader, WorkItem};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// `--max-failures N|P%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureBudget {
    Count(u64),
    Percent(f64),
}

impl Default for FailureBudget {
    fn default() -> Self {
        FailureBudget::Percent(1.0)
    }
}

impl FailureBudget {
    pub fn parse(s: &str) -> Result<FailureBudget, String> {
        let bad = || format!("--max-failures {s}: expected a count (100) or a percentage (1%)");
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad());
                }
                Ok(FailureBudget::Percent(p))
            }
            None => s.trim().parse().map(FailureBudget::Count).map_err(|_| bad()),
        }
    }

    /// Failures allowed among `objects`.
    pub fn limit(self, objects: u64) -> u64 {
        match self {
            FailureBudget::Count(n) => n,
            FailureBudget::Percent(p) => (objects as f64 * p / 100.0).floor() as u64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub state: PathBuf,
    pub key_arn: String,
    /// `--from-key` / `--rekey-kms` of the plan: which SSE-KMS objects move to `key_arn`.
    pub kms_sources: crate::plan::KmsSources,
    pub bucket_key: bool,
    /// KMS requests one write causes (the estimate's figure: 1, or 0.01 with a Bucket Key).
    pub kms_per_write: f64,
    pub kms_rps: f64,
    /// The KMS rate slow start opens at (None: [`SlowStart::default_start`], a sixteenth of
    /// `kms_rps`; at or above `kms_rps`: no slow start, AIMD from the ceiling).
    pub kms_start_rps: Option<f64>,
    pub s3_rps: f64,
    /// A fixed in-flight window; None sizes it to the quota and to what the client drives.
    pub concurrency: Option<usize>,
    pub policy: RetryPolicy,
    pub max_failures: FailureBudget,
    /// How long in-flight requests may take to finish after Ctrl-C.
    pub drain_timeout: Duration,
    /// The limiter cuts at most once per cooldown.
    pub cooldown: Duration,
    pub progress: ProgressMode,
    /// Seeds the retry jitter.
    pub seed: u64,
    /// What copies keep beyond what CopyObject keeps by itself.
    pub fidelity: Fidelity,
    /// Multipart part size (None: the estimate's max(512 MiB, size / 10,000)).
    pub part_size: Option<u64>,
    /// A canary run: only the first row still to do of each method, so a pre-flight can
    /// prove one real object of each kind before the whole plan starts.
    pub canary: bool,
    /// The plan assumed objects' encryption: decide them again from a HEAD.
    pub redecide: Option<Redecide>,
}

impl RunConfig {
    pub fn new(state: PathBuf, key_arn: String) -> RunConfig {
        RunConfig {
            state,
            key_arn,
            kms_sources: crate::plan::KmsSources::None,
            bucket_key: false,
            kms_per_write: 1.0,
            kms_rps: 1000.0,
            kms_start_rps: None,
            s3_rps: crate::plan::settings::DEFAULT_S3_RPS,
            concurrency: None,
            policy: RetryPolicy::default(),
            max_failures: FailureBudget::default(),
            drain_timeout: Duration::from_secs(30),
            cooldown: Duration::from_millis(500),
            progress: ProgressMode::Quiet,
            seed: 0x5eed,
            canary: false,
            redecide: None,
            fidelity: Fidelity::default(),
            part_size: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub stop: Option<StopReason>,
    pub last: ProgressSnapshot,
    /// Always 0 now that multipart copy runs (kept for the report's shape).
    pub deferred: u64,
    pub writer: WriterStats,
    /// Tasks still in flight when the drain timeout ran out (their objects stay pending).
    pub abandoned: u64,
}

/// Live tasks at most: the window, plus room for tasks sleeping between retries.
const MIN_LIVE_TASKS: usize = 1024;
/// Bounds of the default window.
const MIN_WINDOW: usize = 4;
const MAX_WINDOW: usize = 4096;
const PAGE: usize = 1000;

/// Execute the plan in `cfg.state` against `store` until done or stopped via `stop`.
///
/// Kept in one piece on purpose: it is the run's async structure in the order it happens
/// (limiters and writer up, the dispatcher's loop, the drain, the teardown in the order
/// the tasks, the controller and the writer must end), which reads best top to bottom.
pub async fn run<S: ObjectStore>(store: Arc<S>, cfg: RunConfig, stop: Stopper) -> Result<RunReport, StoreError> {
    let totals = OutcomeWriter::open(&cfg.state)?.todo_totals()?;
    let counters = Arc::new(RunCounters::default());
    counters.failure_limit.store(cfg.max_failures.limit(totals.objects), Relaxed);
    // KMS opens in slow start: the quota is shared with production traffic, and a throttled
    // request spends it too. S3's per-prefix rate is the bucket's own: it opens at its
    // ceiling, as before.
    let kms_start = cfg.kms_start_rps.unwrap_or_else(|| SlowStart::default_start(cfg.kms_rps));
    let kms = Arc::new(AdaptiveLimiter::slow_start("kms", cfg.kms_rps, kms_start, cfg.cooldown));
    let s3 = Arc::new(AdaptiveLimiter::new("s3", cfg.s3_rps, cfg.cooldown));
    let progress = Arc::new(Progress::new(counters.clone(), kms.clone(), s3.clone(), totals.objects, totals.bytes));
    let writer = CheckpointWriter::spawn(cfg.state.clone(), Some(progress.clone()), stop.clone())?;

    let initial_window = cfg.concurrency.unwrap_or(16).clamp(1, 1 << 20);
    counters.window.store(initial_window as u64, Relaxed);
    let ctx = Arc::new(TaskContext {
        store,
        kms: kms.clone(),
        s3: s3.clone(),
        window: Arc::new(Semaphore::new(initial_window)),
        policy: cfg.policy,
        key_arn: cfg.key_arn.clone(),
        kms_sources: cfg.kms_sources.clone(),
        bucket_key: cfg.bucket_key,
        kms_per_write: cfg.kms_per_write,
        counters: counters.clone(),
        stop: stop.clone(),
        window_excess: Default::default(),
        fidelity: cfg.fidelity,
        part_size: cfg.part_size,
        writer: writer.sender(),
        redecide: cfg.redecide.clone(),
    });

    let (reporter_done_tx, reporter_done_rx) = tokio::sync::oneshot::channel::<()>();
    let reporter = tokio::spawn(progress::report(progress.clone(), cfg.progress, async {
        let _ = reporter_done_rx.await;
    }));
    let controller = tokio::spawn(control(ctx.clone(), cfg.concurrency.is_none().then_some(initial_window)));

    // The dispatcher.
    let live = Arc::new(Semaphore::new(MIN_LIVE_TASKS.max(2 * cfg.concurrency.unwrap_or(MAX_WINDOW))));
    let mut reader = TodoReader::open(&cfg.state)?;
    let mut tasks = JoinSet::new();
    let deferred = 0u64;
    let outcomes = writer.sender();
    let mut canary_done = false;
    'pages: while !stop.is_stopped() {
        if cfg.canary && canary_done {
            break;
        }
        let page = read_page(&mut reader, cfg.canary);
        canary_done = true;
        // A failed read stops the run like a failed write: the tasks already out are
        // drained and recorded rather than dropped mid-request.
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                stop.stop(StopReason::Checkpoint(e.to_string()));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        for item in page {
            // Watch the stop signal only when there is a wait (it costs a registration).
            let permit = match live.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    p = live.clone().acquire_owned() => p.expect("never closed"),
                    _ = stop.stopped() => break 'pages,
                },
            };
            counters.dispatched.fetch_add(1, Relaxed);
            let (ctx, tx, seed) = (ctx.clone(), outcomes.clone(), cfg.seed);
            tasks.spawn(async move {
                let outcome = migrate(&ctx, item, seed).await;
                // Unattempted pending objects need no record; everything else is written.
                if outcome.attempts > 0 {
                    let _ = tx.send(outcome.into());
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    drop(outcomes);

    let abandoned = drain(&mut tasks, &stop, &progress, cfg.drain_timeout).await;
    controller.abort();
    // Wait for it to be dropped: it holds the context, whose writer sender must be gone
    // before the writer can finish.
    let _ = controller.await;
    drop(ctx);
    progress.set_state(if stop.is_stopped() { "stopped" } else { "finished" });
    let writer_stats = writer.finish();
    let _ = reporter_done_tx.send(());
    let _ = reporter.await;
    let (writer, stop) = match writer_stats {
        Ok(w) => (w, stop.reason()),
        // A failed commit is why the run stopped, whatever else happened: report it as
        // such (the caller's exit 5 and one line), not as a bare I/O error.
        Err(e) => (WriterStats::default(), Some(StopReason::Checkpoint(e.to_string()))),
    };
    Ok(RunReport { stop, last: progress.snapshot(), deferred, writer, abandoned })
}

/// The next rows to do: a page, or for a canary run the first row of each single-request
/// method (not a multipart copy: the canary proves permissions, and one object of each
/// single-request method does that without copying gigabytes before the run).
fn read_page(reader: &mut TodoReader, canary: bool) -> Result<Vec<WorkItem>, StoreError> {
    if canary {
        let firsts = [Method::Update, Method::Copy].into_iter().map(|m| reader.first_of(m));
        firsts.collect::<Result<Vec<_>, _>>().map(|firsts| firsts.into_iter().flatten().collect())
    } else {
        reader.next_page(PAGE)
    }
}

/// Wait for the tasks still out; the ones abandoned. Once interrupted (before or during
/// the drain), in-flight requests get `timeout` to finish; other stops wait for them, as
/// they end promptly.
async fn drain(tasks: &mut JoinSet<()>, stop: &Stopper, progress: &Progress, timeout: Duration) -> u64 {
    loop {
        if matches!(stop.reason(), Some(StopReason::Interrupted)) {
            progress.set_state("stopping");
            let drained = tokio::time::timeout(timeout, async { while tasks.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                let abandoned = tasks.len() as u64;
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return abandoned;
            }
            return 0;
        }
        let watching = !stop.is_stopped();
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return 0 },
            _ = stop.stopped(), if watching => {}
        }
    }
}

/// How often the controller runs.
const CONTROL_PERIOD: Duration = Duration::from_millis(250);
/// A window doubling must raise the request rate by this factor to count as paying off.
const PROBE_GAIN: f64 = 1.1;
/// After a doubling that did not pay off, the window is held this long before the next.
const PROBE_HOLD: Duration = Duration::from_secs(5);

/// The run's controller, every [`CONTROL_PERIOD`]: the limiters' AIMD step (fold the
/// admitted counts, raise the rates; kept off the request path), then, unless the window
/// is fixed (`window` None), its size ([`size_window`]). On a stop it closes the window,
/// so tasks queued for a slot wake at once and send nothing.
async fn control<S>(ctx: Arc<TaskContext<S>>, window: Option<usize>) {
    let mut tick = tokio::time::interval(CONTROL_PERIOD);
    let mut stop_seen = false;
    let mut sizer = window.map(|w| Sizer::new(w, ctx.counters.requests.load(Relaxed), Instant::now()));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.stop.stopped(), if !stop_seen => {
                stop_seen = true;
                ctx.window.close();
                continue;
            }
        }
        ctx.kms.tick();
        ctx.s3.tick();
        if let Some(sizer) = sizer.as_mut() {
            let target = sizer.next(&ctx, Instant::now());
            resize_window(&ctx, sizer.window, target);
            sizer.window = target;
        }
    }
}

/// The default window's state: its size, the request count at the last look, and the
/// doubling being tried, if any.
struct Sizer {
    window: usize,
    requests: u64,
    at: Instant,
    probe: Option<Probe>,
    /// No doubling before this (the last one did not pay off).
    hold_until: Option<Instant>,
}

/// A doubling under trial: the window before it, the request rate it achieved, and where
/// the doubled window's measurement starts.
#[derive(Clone, Copy)]
struct Probe {
    from: usize,
    rate: f64,
    requests: u64,
    since: Instant,
}

impl Sizer {
    fn new(window: usize, requests: u64, now: Instant) -> Sizer {
        Sizer { window, requests, at: now, probe: None, hold_until: None }
    }

    /// The window's next size.
    ///
    /// The limiters bound it by Little's law: the requests/s they allow × the observed
    /// latency × 1.5 (headroom against jitter). That alone is right only when the quota is
    /// what binds. Told a quota far above what the machine can drive (`--kms-rps 100000`),
    /// it opened thousands of requests: a saturated client's latency is mostly its own
    /// queueing, so the window and the latency fed each other up to the 4,096 cap, and
    /// the surplus connections only slowed it down. Sizing from the achieved rate ×
    /// latency cannot fix that (achieved × latency is the in-flight count, whatever the
    /// window), so below the quota the window grows by trial instead: it doubles while
    /// each doubling raises the request rate by [`PROBE_GAIN`], goes back to the last size
    /// that did when one does not, and tries again after [`PROBE_HOLD`]. Once the
    /// achieved rate reaches 90 % of what the limiters allow, the quota binds and Little's
    /// law on it sizes the window, as before.
    fn next<S>(&mut self, ctx: &TaskContext<S>, now: Instant) -> usize {
        let current = self.window;
        let latency = ctx.counters.latency_us.load(Relaxed) as f64 / 1e6;
        let sent = ctx.counters.requests.load(Relaxed);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        if latency <= 0.0 || elapsed <= 0.0 {
            return current;
        }
        let achieved = sent.saturating_sub(self.requests) as f64 / elapsed;
        (self.requests, self.at) = (sent, now);
        let allowed = (ctx.kms.rate() / ctx.kms_per_write.max(1e-6)).min(ctx.s3.rate());
        let by_quota = ((allowed * latency * 1.5).ceil() as usize).clamp(MIN_WINDOW, MAX_WINDOW);
        if achieved >= 0.9 * allowed || by_quota <= current {
            // The quota binds, or wants fewer slots than there are.
            self.probe = None;
            return by_quota;
        }
        let doubled = (current * 2).min(by_quota);
        match self.probe {
            Some(p) => {
                // Measure the doubled window over at least two latencies.
                let span = now.saturating_duration_since(p.since);
                if span < CONTROL_PERIOD.max(Duration::from_secs_f64(2.0 * latency)) {
                    return current;
                }
                let rate = sent.saturating_sub(p.requests) as f64 / span.as_secs_f64();
                if rate >= p.rate * PROBE_GAIN {
                    self.probe = Some(Probe { from: current, rate, requests: sent, since: now });
                    doubled
                } else {
                    self.probe = None;
                    self.hold_until = Some(now + PROBE_HOLD);
                    p.from
                }
            }
            None if self.hold_until.is_none_or(|h| now >= h) => {
                self.probe = Some(Probe { from: current, rate: achieved, requests: sent, since: now });
                doubled
            }
            None => current,
        }
    }
}

/// Resize the in-flight window from `current` to `target` slots.
fn resize_window<S>(ctx: &TaskContext<S>, current: usize, target: usize) {
    // The window really holds `current` slots plus those tasks still owe it.
    let mut size = current + ctx.window_excess.swap(0, Relaxed);
    if target > size {
        ctx.window.add_permits(target - size);
        size = target;
    } else if target < size {
        // Idle slots are retired now. Busy ones are retired by the tasks releasing them
        // (TaskContext::release): under load no slot is ever idle, because a released
        // permit goes straight to the next waiting task.
        size -= ctx.window.forget_permits(size - target);
    }
    ctx.window_excess.fetch_add(size - target, Relaxed);
    ctx.counters.window.store(target as u64, Relaxed);
}

#[cfg(test)]
mod tests;
