//! The dispatcher: pages the rows still to do out of the checkpoint, feeds them to a pool
//! of tasks (each takes the next row when it has finished one), sizes the in-flight
//! window, and stops cleanly.

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
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
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

/// Tasks in the pool (fewer only when there are fewer rows to do): the window, plus room
/// for tasks sleeping between retries.
const MIN_LIVE_TASKS: usize = 1024;
/// Bounds of the default window.
const MIN_WINDOW: usize = 4;
const MAX_WINDOW: usize = 4096;
const PAGE: usize = 1000;

/// Execute the plan in `cfg.state` against `store` until done or stopped via `stop`.
///
/// Kept in one piece on purpose: it is the run's async structure in the order it happens
/// (limiters and writer up, the dispatcher and its pool ([`dispatch`]), the teardown in
/// the order the tasks, the controller and the writer must end), which reads best top to
/// bottom.
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

    // The dispatcher runs as a task of the runtime, not on the thread that called `run`
    // (the CLI's block_on): spawned from a worker, a task goes to that worker's queue, while
    // from outside the runtime each spawn woke a worker thread and each freed task slot
    // woke the calling thread, two futex calls per object that cost most at a paced
    // trickle (issue 14).
    let dispatcher = tokio::spawn(dispatch(
        ctx.clone(),
        TodoReader::open(&cfg.state)?,
        writer.sender(),
        progress.clone(),
        Dispatch {
            canary: cfg.canary,
            seed: cfg.seed,
            // At most one task per row to do (a canary does one per method, two at most).
            pool: MIN_LIVE_TASKS
                .max(2 * cfg.concurrency.unwrap_or(MAX_WINDOW))
                .min(totals.objects.max(1) as usize)
                .min(if cfg.canary { 2 } else { usize::MAX }),
            drain_timeout: cfg.drain_timeout,
        },
    ));
    let abandoned = match dispatcher.await {
        Ok(abandoned) => abandoned,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and with it every task.
        Err(_) => 0,
    };
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
    Ok(RunReport { stop, last: progress.snapshot(), deferred: 0, writer, abandoned })
}

/// What the dispatcher is told beside the shared context.
struct Dispatch {
    canary: bool,
    seed: u64,
    /// Tasks in the pool (at least 1).
    pool: usize,
    drain_timeout: Duration,
}

/// The rows still to do, between the dispatcher (which pages them out of the checkpoint)
/// and the pool's tasks (which take them one at a time).
struct Feed {
    rows: std::sync::Mutex<FeedRows>,
    /// Tasks that found no row wait here for the next page.
    refilled: Notify,
    /// The dispatcher waits here for the rows to run low.
    low: Notify,
}

struct FeedRows {
    rows: std::collections::VecDeque<WorkItem>,
    /// No more pages: the plan is done, the canary's rows are out, or the run stopped.
    ended: bool,
}

/// The dispatcher reads the next page when this many rows are left.
const LOW_WATER: usize = PAGE / 2;

impl Feed {
    /// The next row, or None when there are no more; waits while the dispatcher reads a
    /// page.
    async fn next(&self, stop: &Stopper) -> Option<WorkItem> {
        loop {
            // Created before the look, so a page pushed between the look and the wait
            // still wakes it (Notify::notified catches notify_waiters from creation).
            let refilled = self.refilled.notified();
            {
                let mut f = self.rows.lock().unwrap();
                if let Some(row) = f.rows.pop_front() {
                    if f.rows.len() == LOW_WATER {
                        self.low.notify_one();
                    }
                    return Some(row);
                }
                if f.ended {
                    return None;
                }
            }
            self.low.notify_one();
            tokio::select! {
                () = refilled => {}
                _ = stop.stopped() => return None,
            }
        }
    }

    fn push(&self, page: Vec<WorkItem>) {
        self.rows.lock().unwrap().rows.extend(page);
        self.refilled.notify_waiters();
    }

    fn end(&self) {
        self.rows.lock().unwrap().ended = true;
        self.refilled.notify_waiters();
    }

    fn rows_left(&self) -> usize {
        self.rows.lock().unwrap().rows.len()
    }
}

/// Run the plan's rows through a pool of `pool` tasks, each taking the next row when it
/// has finished one, while this task pages the rows out of the checkpoint half a page
/// ahead; then drain. Returns the tasks abandoned by the drain.
///
/// A pool rather than a task per object: spawning from a worker wakes a parked worker
/// to steal the new task, so while paced (a worker parked between batches) every spawn
/// cost two context switches. A scheduler trace at 1,000 rps showed the two workers
/// waking each other in bursts of hundreds, one per spawned task (issue 14).
async fn dispatch<S: ObjectStore>(
    ctx: Arc<TaskContext<S>>,
    mut reader: TodoReader,
    outcomes: super::writer::WriterSender,
    progress: Arc<Progress>,
    d: Dispatch,
) -> u64 {
    let stop = ctx.stop.clone();
    let feed = Arc::new(Feed {
        rows: std::sync::Mutex::new(FeedRows { rows: Default::default(), ended: false }),
        refilled: Notify::new(),
        low: Notify::new(),
    });
    let mut tasks = JoinSet::new();
    for _ in 0..d.pool {
        let (ctx, feed, tx, seed) = (ctx.clone(), feed.clone(), outcomes.clone(), d.seed);
        tasks.spawn(async move {
            while let Some(item) = feed.next(&ctx.stop).await {
                if ctx.stop.is_stopped() {
                    break;
                }
                ctx.counters.dispatched.fetch_add(1, Relaxed);
                let key = item.key.clone();
                // A panic loses this object's outcome (it stays pending, for the next run),
                // not the pool's task: with a task per object it lost only that task, and
                // a pool that shrank with every panic could leave rows no task takes.
                match AssertUnwindSafe(migrate(&ctx, item, seed)).catch_unwind().await {
                    // Unattempted pending objects need no record; everything else is written.
                    Ok(outcome) if outcome.attempts > 0 => {
                        let _ = tx.send(outcome.into());
                    }
                    Ok(_) => {}
                    Err(_) => tracing::error!("the task for {key} panicked; the object stays pending"),
                }
            }
        });
    }
    drop(outcomes);
    while !stop.is_stopped() {
        // SQLite blocks: off the runtime's workers, which the pool is using.
        let canary = d.canary;
        let read = tokio::task::spawn_blocking(move || {
            let page = read_page(&mut reader, canary);
            (reader, page)
        })
        .await;
        let page = match read {
            Ok((r, Ok(page))) => {
                reader = r;
                page
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // A failed read (or the runtime shutting down) stops the run like a failed
            // write: the tasks already out are drained and recorded rather than dropped
            // mid-request.
            Ok((_, Err(e))) => {
                stop.stop(StopReason::Checkpoint(e.to_string()));
                break;
            }
            Err(e) => {
                stop.stop(StopReason::Checkpoint(e.to_string()));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        feed.push(page);
        if d.canary {
            break;
        }
        while feed.rows_left() > LOW_WATER {
            tokio::select! {
                () = feed.low.notified() => {}
                _ = stop.stopped() => break,
            }
        }
    }
    feed.end();
    drain(&mut tasks, &stop, &progress, d.drain_timeout).await
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
/// is fixed (`window` None), its size ([`size_window`]). On a stop it closes the window
/// and the limiters, so tasks queued for a slot or for tokens wake at once and send
/// nothing.
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
                ctx.kms.close();
                ctx.s3.close();
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
        let allowed = super::runtime::requests_allowed(ctx.kms.rate(), ctx.kms_per_write, ctx.s3.rate());
        // A paced request also holds its slot while it waits for its batch to be let through
        // (AdaptiveLimiter::admit_interval), so that wait counts as latency here.
        let batching = ctx.kms.admit_interval(ctx.kms_per_write).max(ctx.s3.admit_interval(1.0));
        let by_quota =
            ((allowed * (latency + batching.as_secs_f64()) * 1.5).ceil() as usize).clamp(MIN_WINDOW, MAX_WINDOW);
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
