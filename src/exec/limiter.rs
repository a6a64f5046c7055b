//! Pacing to a quota: token buckets whose rate adapts to throttling (AIMD).
//!
//! governor's rate is fixed once a limiter is built, and rebuilding it on every change was
//! seen to collapse the rate. So the bucket is a fixed, fine-grained governor limiter
//! ([`CELLS_PER_SEC`] cells per second) and the *cost* of one request varies: at R
//! requests/s a request costs `CELLS_PER_SEC / R` cells, held in an atomic. Fractional
//! requests cost proportionally fewer cells, which is how a Bucket Key run (about 0.01 KMS
//! request per object) ends up paced by S3 rather than KMS.
//!
//! A KMS limiter opens with a [`SlowStart`]: at a sixteenth of the ceiling, doubling every
//! step in which the limiter was what held requests back, until the first throttle or the
//! ceiling. A throttled request still spends the account's quota, which production
//! traffic shares, so the limit is probed from below rather than learned from a burst of
//! throttles at the ceiling.
//!
//! After that the rate follows [`Aimd`]: cut to 0.7× on a throttle (at most once per
//! cooldown, so one burst of 503s from a full in-flight window counts once), then climb
//! back: quickly to just below the rate that was throttled, slowly above it, never past the
//! configured ceiling, and only while the limiter is what holds requests back (the
//! admitted rate reaches [`RAMP_DEMAND`] of the rate, as in slow start).
//!
//! Waiting (issue 14): a request that conforms now takes its cells with governor's
//! lock-free check and goes. One that must wait joins the limiter's first-in-first-out
//! queue, and one pacer task per limiter lets the queue through as cells conform. The
//! pacer sleeps, on a tokio timer, at least [`ADMIT_BATCH`] requests' worth of time (at
//! most [`ADMIT_MAX`], half the burst), so each wake-up lets a batch through: a wake-up of
//! a parked worker cost 40–70 µs of CPU on the 2-core test machine, as much as a request.
//! Before, governor's `until_n_ready` had every waiting task sleep to the same instant and
//! re-poll (12× the CPU per object of an unpaced run at 1,000 rps), and then a queue on an
//! async mutex handed the turn on task by task, one cross-worker wake-up each
//! (docs/performance.md, "CPU per object while paced").
//!
//! The request path takes no lock when it need not wait: a request that got through adds
//! its weight to an atomic counter, and taking tokens is governor's lock-free check. The rate state (slow
//! start, AIMD) sits behind a mutex that only [`AdaptiveLimiter::tick`] (called by the engine's 250 ms
//! controller: fold the counter into the admitted-rate window, raise the rate) and
//! [`AdaptiveLimiter::on_throttle`] (rare by design) take.

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Cells per second of the underlying limiter: fine enough for 1 % steps at 100,000 rps.
pub const CELLS_PER_SEC: u32 = 10_000_000;
/// A burst of at most 0.1 s of the current rate.
const BURST_CELLS: u32 = CELLS_PER_SEC / 10;
/// Rates below this are not useful and would need a larger burst.
pub const MIN_RATE: f64 = 10.0;

/// The pacer sleeps until this many requests' cells have built up (within
/// [`ADMIT_MAX`]), then lets them through one after another: one wake-up per batch rather
/// than per request (issue 14).
pub const ADMIT_BATCH: f64 = 64.0;
/// The longest the pacer sleeps past the head's own cells: half the burst, so the batch
/// always fits.
pub const ADMIT_MAX: Duration = Duration::from_millis(50);

const CUT: f64 = 0.7;
/// The rate is raised at most this often.
const STEP: Duration = Duration::from_millis(100);
/// After a cut, climb quickly back to this share of the rate that was throttled.
const KNEE_SHARE: f64 = 0.97;
/// Above that, grow by 0.3 % per step…
const PROBE_GROWTH: f64 = 0.003;
/// …for at most 5 s; then the knee is forgotten and the climb is fast again.
const PROBE_STEPS: u32 = 50;

/// Additive-increase, multiplicative-decrease over a request rate. Pure: time is passed in,
/// so tests drive it with a fake clock.
#[derive(Debug, Clone)]
pub struct Aimd {
    pub ceiling: f64,
    pub rate: f64,
    cooldown: Duration,
    last_cut: Option<Duration>,
    last_raise: Duration,
    /// The rate at the last throttle: climb fast to just below it, then probe slowly.
    knee: Option<f64>,
    probe_steps: u32,
    pub throttles: u64,
    pub cuts: u64,
    /// Requests that got through (not throttled), measured over WINDOW-long windows.
    window_start: Duration,
    window_weight: f64,
    admitted_rate: Option<f64>,
}

/// The window over which the admitted rate is measured.
const WINDOW: Duration = Duration::from_millis(500);

/// Slow start opens at this share of the ceiling (never below [`MIN_RATE`])…
pub const SLOW_START_SHARE: f64 = 1.0 / 16.0;
/// …and doubles the rate after each step of at least this long…
const RAMP_STEP: Duration = Duration::from_millis(200);
/// …in which the admitted rate reached this share of the rate: the limiter was holding
/// requests back. A step in which fewer were sent proves nothing about the limit (the
/// window is still growing, or the run is paced by S3), so the rate is held.
const RAMP_DEMAND: f64 = 0.75;

/// The opening phase of a limiter: probe the limit from below. Starts at `start`, doubles
/// per [`RAMP_STEP`] while the admitted rate keeps up with the rate, and ends at the
/// ceiling or at the first throttle (the caller then hands over to [`Aimd`]). Pure: time is
/// passed in.
#[derive(Debug, Clone)]
pub struct SlowStart {
    pub ceiling: f64,
    pub rate: f64,
    step_start: Duration,
    step_weight: f64,
    /// Doublings so far.
    pub raises: u32,
}

impl SlowStart {
    /// None when `start` is at or above the ceiling: nothing to probe.
    pub fn new(ceiling: f64, start: f64, now: Duration) -> Option<SlowStart> {
        let ceiling = ceiling.max(MIN_RATE);
        let rate = start.max(MIN_RATE);
        (rate < ceiling).then_some(SlowStart { ceiling, rate, step_start: now, step_weight: 0.0, raises: 0 })
    }

    /// The first rate for a `ceiling`: [`SLOW_START_SHARE`] of it, at least [`MIN_RATE`].
    pub fn default_start(ceiling: f64) -> f64 {
        (ceiling * SLOW_START_SHARE).max(MIN_RATE)
    }

    /// `weight` requests got through since the last call, up to `now`. Returns the rate,
    /// doubled when a step has passed in which the admitted rate reached [`RAMP_DEMAND`]
    /// of it.
    pub fn tick(&mut self, now: Duration, weight: f64) -> f64 {
        self.step_weight += weight.max(0.0);
        let len = now.saturating_sub(self.step_start);
        if len >= RAMP_STEP {
            if self.step_weight / len.as_secs_f64() >= RAMP_DEMAND * self.rate {
                self.rate = (self.rate * 2.0).min(self.ceiling);
                self.raises += 1;
            }
            self.step_start = now;
            self.step_weight = 0.0;
        }
        self.rate
    }

    pub fn reached_ceiling(&self) -> bool {
        self.rate >= self.ceiling
    }
}

impl Aimd {
    pub fn new(ceiling: f64, cooldown: Duration) -> Aimd {
        let ceiling = ceiling.max(MIN_RATE);
        Aimd {
            ceiling,
            rate: ceiling,
            cooldown,
            last_cut: None,
            last_raise: Duration::ZERO,
            knee: None,
            probe_steps: 0,
            throttles: 0,
            cuts: 0,
            window_start: Duration::ZERO,
            window_weight: 0.0,
            admitted_rate: None,
        }
    }

    /// `weight` requests got through (answered, not throttled) at `now`.
    pub fn on_admitted(&mut self, now: Duration, weight: f64) {
        self.roll(now);
        self.window_weight += weight;
    }

    /// `weight` requests got through since the last call, up to `now`: a count folded in
    /// periodically rather than request by request. It belongs to the window it was
    /// admitted in, which `now` may then close.
    ///
    /// No weight, no roll: time alone does not close a window, so a stretch in which
    /// nothing got through (everyone in backoff) is seen as idleness by `roll`.
    pub fn fold_admitted(&mut self, now: Duration, weight: f64) {
        if weight <= 0.0 {
            return;
        }
        self.window_weight += weight;
        self.roll(now);
    }

    /// The rate that got through over the last closed window, if any.
    pub fn admitted_rate(&self) -> Option<f64> {
        self.admitted_rate
    }

    fn roll(&mut self, now: Duration) {
        let len = now.saturating_sub(self.window_start);
        if len >= 2 * WINDOW {
            // A window stretched by idleness (everyone in backoff) measures demand, not the
            // limit: cutting to it would drop the rate to the floor. Start afresh (what was
            // admitted just now straddles the idle stretch, and is dropped with it).
            self.admitted_rate = None;
            self.window_start = now;
            self.window_weight = 0.0;
        } else if len >= WINDOW {
            self.admitted_rate = Some(self.window_weight / len.as_secs_f64());
            self.window_start = now;
            self.window_weight = 0.0;
        }
    }

    /// A throttle seen at `now`. Returns whether the rate was cut.
    ///
    /// The cut is to 0.7×, or to the rate that was getting through when that is lower:
    /// far above a limit, 0.7× steps would need many cooldowns (and many throttles) to
    /// come down, while the admitted rate is a direct reading of the limit.
    pub fn on_throttle(&mut self, now: Duration) -> bool {
        self.throttles += 1;
        self.roll(now);
        if self.last_cut.is_some_and(|t| now.saturating_sub(t) < self.cooldown) {
            return false;
        }
        let admitted = self.admitted_rate.filter(|r| *r >= MIN_RATE && *r < self.rate);
        self.knee = Some(admitted.unwrap_or(self.rate));
        self.probe_steps = 0;
        self.rate = (self.rate * CUT).min(admitted.unwrap_or(f64::MAX)).max(MIN_RATE);
        self.last_cut = Some(now);
        self.last_raise = now;
        self.cuts += 1;
        true
    }

    /// Raise the rate for the time passed without throttles.
    pub fn tick(&mut self, now: Duration) {
        if self.last_cut.is_some_and(|t| now.saturating_sub(t) < self.cooldown) {
            // Time spent cooling down is not banked: otherwise the rate would leap back
            // above the limit the moment the cooldown ends.
            self.last_raise = now;
            return;
        }
        if let Some(cut) = self.last_cut {
            self.last_raise = self.last_raise.max(cut + self.cooldown);
        }
        if self.admitted_rate.is_some_and(|r| r >= MIN_RATE && r < RAMP_DEMAND * self.rate) {
            // Fewer requests are sent than the rate allows (the run is paced elsewhere, or
            // the backend is slower than the limit): a raise would be blind, and the rate
            // it builds up would burst into the quota the moment demand comes back. Like
            // an application-limited TCP sender (RFC 7661), hold, and do not bank the time.
            // A reading below the floor is no reading (as for a cut): everything is in
            // backoff after a storm, and the climb back must not wait for it.
            self.last_raise = now;
            return;
        }
        while now.saturating_sub(self.last_raise) >= STEP && self.rate < self.ceiling {
            self.rate = match self.knee {
                // Fast (5 % of the ceiling per step) back to just below the throttled rate…
                Some(knee) if self.rate < knee * KNEE_SHARE => (self.rate + self.ceiling * 0.05).min(knee * KNEE_SHARE),
                // …then a slow probe, in case the limit has moved. A knee that has not been
                // hit for PROBE_STEPS is forgotten (a throttle storm has passed).
                Some(_) => {
                    self.probe_steps += 1;
                    if self.probe_steps >= PROBE_STEPS {
                        self.knee = None;
                    }
                    self.rate * (1.0 + PROBE_GROWTH)
                }
                None => self.rate + self.ceiling * 0.05,
            }
            .min(self.ceiling);
            self.last_raise += STEP;
        }
        if self.rate >= self.ceiling {
            self.last_raise = now;
        }
    }
}

/// One paced resource (KMS requests, or S3 requests).
pub struct AdaptiveLimiter<C: Clock = DefaultClock> {
    name: &'static str,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    /// Taken by `tick` and `on_throttle` only, never per admitted request.
    state: Mutex<Pacing>,
    /// The AIMD clock's zero, on the limiter's own clock (so a fake clock drives both).
    started: C::Instant,
    ceiling: f64,
    /// Cells per request at the current rate.
    cost: AtomicU32,
    /// The current rate × 1000, for lock-free reads by progress reporting.
    rate_milli: AtomicU64,
    /// Weight admitted since the last fold into the AIMD window, × 1000 (a Bucket Key
    /// write weighs 0.01 = 10).
    admitted_milli: AtomicU64,
    /// The requests waiting for their cells, in order (see [`Self::pace`]).
    queue: Mutex<PaceQueue>,
    /// Requests in the queue: while any are, new ones queue behind them instead of taking
    /// the cells the head is waiting for (read without the lock).
    waiting: AtomicUsize,
}

/// A limiter's rate state: slow start while it lasts, then AIMD.
#[derive(Debug, Clone)]
struct Pacing {
    aimd: Aimd,
    ramp: Option<SlowStart>,
    /// When slow start ended (at the ceiling or at the first throttle).
    ramp_ended: Option<Duration>,
    /// The rate that was getting through at the last cut: the limit the throttles showed.
    learned: Option<f64>,
}

/// What a limiter has learned, for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingView {
    /// Still in slow start.
    pub slow_start: bool,
    /// Seconds from the start to the end of slow start, once it has ended.
    pub ramp_secs: Option<f64>,
    /// The rate getting through at the last throttle; None before any.
    pub learned: Option<f64>,
    pub throttles: u64,
}

impl AdaptiveLimiter<DefaultClock> {
    /// A limiter that opens at the ceiling (AIMD from the start).
    pub fn new(name: &'static str, ceiling_rps: f64, cooldown: Duration) -> Self {
        Self::with_clock(name, ceiling_rps, cooldown, DefaultClock::default())
    }

    /// A limiter that opens at `start_rps` and probes up to the ceiling ([`SlowStart`]).
    pub fn slow_start(name: &'static str, ceiling_rps: f64, start_rps: f64, cooldown: Duration) -> Self {
        Self::with_clock_from(name, ceiling_rps, Some(start_rps), cooldown, DefaultClock::default())
    }
}

impl<C: Clock> AdaptiveLimiter<C> {
    pub fn with_clock(name: &'static str, ceiling_rps: f64, cooldown: Duration, clock: C) -> Self {
        Self::with_clock_from(name, ceiling_rps, None, cooldown, clock)
    }

    /// With `start_rps`, the limiter opens there in [`SlowStart`]; without, at the ceiling.
    pub fn with_clock_from(
        name: &'static str,
        ceiling_rps: f64,
        start_rps: Option<f64>,
        cooldown: Duration,
        clock: C,
    ) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(CELLS_PER_SEC).unwrap())
            .allow_burst(NonZeroU32::new(BURST_CELLS).unwrap());
        let mut aimd = Aimd::new(ceiling_rps, cooldown);
        let ramp = start_rps.and_then(|s| SlowStart::new(aimd.ceiling, s, Duration::ZERO));
        if let Some(r) = &ramp {
            aimd.rate = r.rate;
        }
        let started = clock.now();
        let rate = aimd.rate;
        let l = AdaptiveLimiter {
            name,
            limiter: RateLimiter::direct_with_clock(quota, clock),
            cost: AtomicU32::new(0),
            rate_milli: AtomicU64::new(0),
            admitted_milli: AtomicU64::new(0),
            queue: Mutex::new(PaceQueue::default()),
            waiting: AtomicUsize::new(0),
            started,
            ceiling: aimd.ceiling,
            state: Mutex::new(Pacing { aimd, ramp, ramp_ended: None, learned: None }),
        };
        l.publish(rate);
        l
    }

    fn now(&self) -> Duration {
        self.limiter.clock().now().duration_since(self.started).into()
    }

    fn publish(&self, rate: f64) {
        self.cost.store(cells_per_request(rate), Ordering::Relaxed);
        self.rate_milli.store((rate * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn rate(&self) -> f64 {
        self.rate_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    pub fn throttles(&self) -> u64 {
        self.state.lock().unwrap().aimd.throttles
    }

    /// A copy of the AIMD state (for tests and diagnostics).
    pub fn aimd(&self) -> Aimd {
        self.state.lock().unwrap().aimd.clone()
    }

    /// The slow start state, while it lasts.
    pub fn ramp(&self) -> Option<SlowStart> {
        self.state.lock().unwrap().ramp.clone()
    }

    /// What the limiter has learned so far (taken by the progress reporter, once a second
    /// at most, never per request).
    pub fn pacing(&self) -> PacingView {
        let s = self.state.lock().unwrap();
        PacingView {
            slow_start: s.ramp.is_some(),
            ramp_secs: s.ramp_ended.map(|d| d.as_secs_f64()),
            learned: s.learned,
            throttles: s.aimd.throttles,
        }
    }

    /// How long the pacer sleeps at least, for requests of `weight`: the time
    /// [`ADMIT_BATCH`] of them take at the current rate, at most [`ADMIT_MAX`]. Tasks that
    /// wait hold a window slot, so the window sizer adds this to the latency.
    pub fn admit_interval(&self, weight: f64) -> Duration {
        let cells = self.cells_for(weight) as f64 * ADMIT_BATCH;
        Duration::from_secs_f64(cells / CELLS_PER_SEC as f64).min(ADMIT_MAX)
    }

    /// The cells `weight` requests cost now (0 for a zero weight).
    pub fn cells_for(&self, weight: f64) -> u64 {
        (self.cost.load(Ordering::Relaxed) as f64 * weight).round() as u64
    }

    /// Non-blocking: take `weight` requests' cells if they conform now (for tests).
    pub fn try_acquire(&self, weight: f64) -> bool {
        let cells = self.cells_for(weight).min(BURST_CELLS as u64) as u32;
        match NonZeroU32::new(cells) {
            None => true,
            Some(n) => matches!(self.limiter.check_n(n), Ok(Ok(()))),
        }
    }

    /// `weight` requests were answered without a throttle. Lock-free: counted here, folded
    /// into the admitted-rate window by the next `tick` or `on_throttle`.
    pub fn on_admitted(&self, weight: f64) {
        let milli = (weight * 1000.0).round();
        if milli >= 1.0 {
            self.admitted_milli.fetch_add(milli as u64, Ordering::Relaxed);
        }
    }

    /// Move the admitted weight counted so far into the AIMD window, at `now`; returns it.
    fn fold(&self, a: &mut Aimd, now: Duration) -> f64 {
        let milli = self.admitted_milli.swap(0, Ordering::Relaxed);
        let weight = milli as f64 / 1000.0;
        a.fold_admitted(now, weight);
        weight
    }

    pub fn on_throttle(&self) {
        let now = self.now();
        let mut guard = self.state.lock().unwrap();
        let s = &mut *guard;
        // The admitted rate the cut may use must include what got through just now.
        self.fold(&mut s.aimd, now);
        if let Some(r) = s.ramp.take() {
            // The first throttle ends slow start: AIMD cuts from the rate it reached.
            s.ramp_ended = Some(now);
            tracing::debug!(
                "{}: slow start ended at {:.0}/s by a throttle after {} doublings",
                self.name,
                r.rate,
                r.raises
            );
        }
        if s.aimd.on_throttle(now) {
            s.learned = s.aimd.knee;
            tracing::debug!("{} throttled: rate cut to {:.0}/s", self.name, s.aimd.rate);
            self.publish(s.aimd.rate);
        }
    }

    /// The periodic AIMD step (the engine's controller calls it every 250 ms): fold the
    /// admitted count into its window and raise the rate for the time passed without a
    /// throttle. The rate rises in [`STEP`]s however often this runs.
    ///
    /// In slow start the rate doubles instead ([`SlowStart::tick`]), and AIMD takes over at
    /// the ceiling.
    pub fn tick(&self) {
        let now = self.now();
        let mut guard = self.state.lock().unwrap();
        let s = &mut *guard;
        let weight = self.fold(&mut s.aimd, now);
        let before = s.aimd.rate;
        match s.ramp.as_mut() {
            Some(r) => {
                s.aimd.rate = r.tick(now, weight);
                // Time spent ramping is not banked for AIMD's raises.
                s.aimd.last_raise = now;
                if r.reached_ceiling() {
                    tracing::debug!("{}: slow start reached the ceiling {:.0}/s", self.name, r.rate);
                    s.ramp = None;
                    s.ramp_ended = Some(now);
                }
            }
            None => s.aimd.tick(now),
        }
        if s.aimd.rate != before {
            self.publish(s.aimd.rate);
        }
    }
}

impl<C> AdaptiveLimiter<C>
where
    C: governor::clock::ReasonablyRealtime + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Wait until `weight` requests may be sent. Lock-free when the cells conform now
    /// (governor's GCRA is one atomic compare-and-swap); otherwise in line behind the
    /// requests already waiting, let through by the limiter's pacer ([`Self::pace`]). The
    /// rate changes only through `tick` and `on_throttle`, and the pacer reads it afresh
    /// for every request it lets through.
    ///
    /// Once the limiter is [closed](Self::close), every request goes at once.
    pub async fn acquire(self: &Arc<Self>, weight: f64) {
        if self.waiting.load(Ordering::Relaxed) == 0 && self.take_now(weight) {
            return;
        }
        let (admit, admitted) = tokio::sync::oneshot::channel();
        let id = {
            let mut q = self.queue.lock().unwrap();
            if q.closed {
                return;
            }
            q.next_id += 1;
            let id = q.next_id;
            q.waiters.push_back(Waiter { id, weight, taken: 0, admit });
            self.waiting.fetch_add(1, Ordering::Relaxed);
            if !q.pacing {
                q.pacing = true;
                tokio::spawn(Self::pace(self.clone()));
            }
            id
        };
        // Leaves the queue however this ends, an abort (the drain's timeout) or a timeout
        // dropping the future included.
        let queued = Queued { limiter: self, id };
        let _ = admitted.await;
        std::mem::forget(queued);
    }

    /// The pacer: lets the queue through in order as the cells conform, and sleeps in
    /// between, at least [`Self::admit_interval`], so that one wake-up lets a batch
    /// through. It runs while there are waiters, and a new one is spawned by the first
    /// request to queue after it ended.
    ///
    /// One pacer per limiter replaced a queue on an async mutex whose head slept and then
    /// handed the turn on: every hand-over woke the next task on its own, and on the
    /// multi-thread runtime the two workers woke each other for each one (two context
    /// switches per request, seen in a scheduler trace at 1,000 rps). The pacer wakes the
    /// whole batch at once.
    async fn pace(self: Arc<Self>) {
        // A pacer that ends any other way (a panic, its runtime shutting down) must not
        // leave the queue believing it is paced: it lets the waiters go and clears the flag.
        let guard = PacerGone(&self);
        loop {
            let sleep = {
                let mut q = self.queue.lock().unwrap();
                match self.let_through(&mut q) {
                    Some(sleep) => sleep,
                    None => {
                        q.pacing = false;
                        drop(q);
                        std::mem::forget(guard);
                        return;
                    }
                }
            };
            tokio::time::sleep(sleep).await;
        }
    }

    /// Let the queue's conforming head through, request by request; the time to sleep
    /// when one does not conform, or None once the queue is empty.
    fn let_through(&self, q: &mut PaceQueue) -> Option<Duration> {
        loop {
            let front = q.waiters.front_mut()?;
            // The cost at the current rate: a cut or a raise while it waited counts.
            let cells = self.cells_for(front.weight).saturating_sub(front.taken).min(BURST_CELLS as u64) as u32;
            match NonZeroU32::new(cells) {
                None => {}
                // cells ≤ burst, so the check cannot fail for lack of capacity.
                Some(n) => match self.limiter.check_n(n) {
                    Ok(Ok(())) => {
                        front.taken += n.get() as u64;
                        continue;
                    }
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.limiter.clock().now());
                        return Some(wait.max(self.admit_interval(front.weight)));
                    }
                    Err(_) => unreachable!("{n} cells fit the burst of {BURST_CELLS}"),
                },
            }
            let w = q.waiters.pop_front().expect("the front is there");
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = w.admit.send(());
        }
    }

    /// Let every waiting request go now, and every later one at once: the run is stopping,
    /// and the requests check the stop signal when they get through. (Their tasks need not
    /// each watch the signal while they wait: that was a registration on a shared waker
    /// list per paced request.)
    pub fn close(&self) {
        let mut q = self.queue.lock().unwrap();
        q.closed = true;
        q.release_all(&self.waiting);
    }

    /// Take `weight` requests' cells if all of them conform now (the common case: within
    /// the burst, or unpaced).
    fn take_now(&self, weight: f64) -> bool {
        let cells = self.cells_for(weight);
        if cells > BURST_CELLS as u64 {
            return false;
        }
        match NonZeroU32::new(cells as u32) {
            None => true,
            Some(n) => matches!(self.limiter.check_n(n), Ok(Ok(()))),
        }
    }
}

/// The requests waiting for their cells, in order, and whether a pacer is letting them
/// through.
#[derive(Default)]
struct PaceQueue {
    waiters: std::collections::VecDeque<Waiter>,
    pacing: bool,
    next_id: u64,
    /// See [`AdaptiveLimiter::close`].
    closed: bool,
}

impl PaceQueue {
    /// Let every queued request go, without its cells (`waiting` counts them).
    fn release_all(&mut self, waiting: &AtomicUsize) {
        for w in self.waiters.drain(..) {
            waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = w.admit.send(());
        }
    }
}

/// One waiting request: its weight, the cells taken for it so far (a weight above the
/// burst is taken in parts), and how to tell it to go.
struct Waiter {
    id: u64,
    weight: f64,
    taken: u64,
    admit: tokio::sync::oneshot::Sender<()>,
}

/// The pacer's end other than by an empty queue (see [`AdaptiveLimiter::pace`]).
struct PacerGone<'a, C: Clock>(&'a AdaptiveLimiter<C>);

impl<C: Clock> Drop for PacerGone<'_, C> {
    fn drop(&mut self) {
        let Ok(mut q) = self.0.queue.lock() else { return };
        q.pacing = false;
        q.release_all(&self.0.waiting);
    }
}

/// A queued request whose future was dropped (an abort, a timeout): it leaves the queue, so that the
/// pacer does not take cells for it and new requests need not queue behind it.
struct Queued<'a, C: Clock> {
    limiter: &'a AdaptiveLimiter<C>,
    id: u64,
}

impl<C: Clock> Drop for Queued<'_, C> {
    fn drop(&mut self) {
        let mut q = self.limiter.queue.lock().unwrap();
        if let Some(at) = q.waiters.iter().position(|w| w.id == self.id) {
            q.waiters.remove(at);
            self.limiter.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub fn cells_per_request(rate: f64) -> u32 {
    (CELLS_PER_SEC as f64 / rate.max(MIN_RATE)).round().max(1.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn cost_tracks_the_rate() {
        assert_eq!(cells_per_request(100_000.0), 100);
        assert_eq!(cells_per_request(1_000.0), 10_000);
        assert_eq!(cells_per_request(1.0), 1_000_000); // clamped to MIN_RATE
    }

    /// With a fake clock: in one second at 100 rps exactly 100 requests conform (plus the
    /// 0.1 s burst), whatever the cell granularity.
    #[test]
    fn admits_the_configured_rate_on_a_fake_clock() {
        let clock = FakeRelativeClock::default();
        let l = AdaptiveLimiter::with_clock("kms", 100.0, S, clock.clone());
        let mut admitted = 0;
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(1));
            while l.try_acquire(1.0) {
                admitted += 1;
            }
        }
        assert!((100..=111).contains(&admitted), "admitted {admitted} in 1 s at 100/s");
        // Fractional weights: 100 requests of weight 0.01 cost one request's cells.
        clock.advance(Duration::from_secs(1));
        let mut tiny = 0;
        while l.try_acquire(0.01) && tiny < 100_000 {
            tiny += 1;
        }
        assert!(tiny >= 1000, "{tiny}");
    }

    #[test]
    fn aimd_cuts_once_per_cooldown_and_recovers_to_the_ceiling() {
        let mut a = Aimd::new(1000.0, S);
        assert!(a.on_throttle(Duration::from_millis(10)));
        assert_eq!(a.rate, 700.0);
        // A burst of throttles from the same in-flight window: one cut.
        assert!(!a.on_throttle(Duration::from_millis(20)));
        assert!(!a.on_throttle(Duration::from_millis(900)));
        assert_eq!(a.rate, 700.0);
        assert_eq!((a.throttles, a.cuts), (3, 1));
        // No raise during the cooldown.
        a.tick(Duration::from_millis(500));
        assert_eq!(a.rate, 700.0);
        // Fast climb toward 95 % of the knee (1000), then 1 % steps, up to the ceiling.
        a.tick(Duration::from_millis(1010) + STEP);
        assert!(a.rate > 700.0);
        a.tick(Duration::from_secs(60));
        assert_eq!(a.rate, 1000.0);
    }

    #[test]
    fn aimd_converges_near_a_gate_below_the_ceiling() {
        // A 200 rps gate against a 1,000 rps ceiling: each 10 ms step in which the rate is
        // above the gate sends throttles. After 30 s the time-average admitted rate must
        // sit near the gate and few steps may be throttled.
        let mut a = Aimd::new(1000.0, Duration::from_millis(500));
        let gate = 200.0;
        let (mut sum, mut n, mut throttled_steps) = (0.0, 0, 0);
        for ms in (0..120_000).step_by(10) {
            let now = Duration::from_millis(ms);
            a.tick(now);
            let over = a.rate > gate;
            if over {
                a.on_throttle(now);
            }
            if ms >= 30_000 {
                sum += a.rate.min(gate);
                n += 1;
                throttled_steps += over as u32;
            }
        }
        let avg = sum / n as f64;
        let share = throttled_steps as f64 / n as f64;
        eprintln!("gate {gate}: average admitted {avg:.1}/s, throttled steps {:.2} %", share * 100.0);
        assert!(avg > 0.85 * gate, "average admitted rate {avg:.0} vs gate {gate}");
        assert!(share < 0.02, "throttled in {:.1} % of steps", share * 100.0);
    }

    #[test]
    fn a_cut_far_above_the_limit_goes_straight_to_the_admitted_rate() {
        // 1,000 rps configured, 200 rps getting through: one cut, not five 0.7× steps.
        let mut a = Aimd::new(1000.0, Duration::from_millis(500));
        for ms in (0..600).step_by(5) {
            a.on_admitted(Duration::from_millis(ms), 1.0); // 200/s
        }
        assert!(a.on_throttle(Duration::from_millis(600)));
        assert!((190.0..=210.0).contains(&a.rate), "cut to {}", a.rate);
        // The knee is the admitted rate: the climb stops just below it.
        a.tick(Duration::from_millis(1600));
        assert!(a.rate <= 0.97 * 210.0, "{}", a.rate);
    }

    #[test]
    fn aimd_recovers_the_ceiling_after_a_storm() {
        // Throttled down to the floor by a storm, the rate must climb all the way back
        // once the storm is over (the low knee is forgotten).
        let mut a = Aimd::new(1000.0, Duration::from_millis(500));
        for i in 0..20 {
            a.on_throttle(Duration::from_millis(i * 600));
        }
        assert!(a.rate < 20.0);
        a.tick(Duration::from_secs(60));
        assert_eq!(a.rate, 1000.0);
    }

    #[test]
    fn no_weight_closes_no_window() {
        // The limiter folds its counter on every tick, admitted or not: a tick with
        // nothing admitted must not close a window (it would read idleness as the limit).
        let mut a = Aimd::new(1000.0, Duration::from_millis(500));
        a.fold_admitted(Duration::from_millis(250), 50.0);
        a.fold_admitted(Duration::from_millis(500), 50.0);
        assert_eq!(a.admitted_rate(), Some(200.0));
        a.fold_admitted(Duration::from_millis(750), 0.0);
        a.fold_admitted(Duration::from_millis(1000), 0.0);
        assert_eq!(a.admitted_rate(), Some(200.0));
    }

    /// The limiter as the engine drives it: requests counted lock-free, a tick every
    /// 250 ms, on a fake clock.
    struct Driven {
        clock: FakeRelativeClock,
        l: AdaptiveLimiter<FakeRelativeClock>,
        ms: u64,
    }

    impl Driven {
        fn new(ceiling: f64, cooldown: Duration) -> Driven {
            let clock = FakeRelativeClock::default();
            let l = AdaptiveLimiter::with_clock("kms", ceiling, cooldown, clock.clone());
            Driven { clock, l, ms: 0 }
        }

        /// Advance to `until_ms` in 1 ms steps, admitting `per_sec` × `weight` a second
        /// and ticking every 250 ms.
        fn run(&mut self, until_ms: u64, per_sec: u64, weight: f64) {
            while self.ms < until_ms {
                self.clock.advance(Duration::from_millis(1));
                self.ms += 1;
                let due = per_sec * self.ms / 1000 - per_sec * (self.ms - 1) / 1000;
                for _ in 0..due {
                    self.l.on_admitted(weight);
                }
                if self.ms % 250 == 0 {
                    self.l.tick();
                }
            }
        }
    }

    #[test]
    fn the_limiter_cuts_once_per_cooldown_and_ticks_back_to_the_ceiling() {
        let mut d = Driven::new(1000.0, S);
        d.run(10, 0, 1.0);
        d.l.on_throttle();
        assert_eq!(d.l.rate(), 700.0);
        assert_eq!(d.l.cells_for(1.0), cells_per_request(700.0) as u64);
        // The rest of the burst, within the cooldown: counted, not cut again.
        d.run(20, 0, 1.0);
        d.l.on_throttle();
        d.run(900, 0, 1.0);
        d.l.on_throttle();
        let a = d.l.aimd();
        assert_eq!((a.rate, a.throttles, a.cuts), (700.0, 3, 1));
        assert_eq!(d.l.throttles(), 3);
        // No raise without a tick, and none from ticks during the cooldown.
        d.run(1000, 0, 1.0);
        assert_eq!(d.l.rate(), 700.0);
        // Ticks after the cooldown raise it, and publish the new cost.
        d.run(1250, 0, 1.0);
        assert!(d.l.rate() > 700.0, "{}", d.l.rate());
        assert_eq!(d.l.cells_for(1.0), cells_per_request(d.l.rate()) as u64);
        d.run(60_000, 0, 1.0);
        assert_eq!(d.l.rate(), 1000.0);
        assert_eq!(d.l.cells_for(1.0), cells_per_request(1000.0) as u64);
    }

    #[test]
    fn admitted_requests_counted_lock_free_set_the_cut() {
        // 1,000 rps configured, 200 rps getting through, counted by on_admitted and
        // folded by the ticks: one throttle cuts straight to about 200.
        let mut d = Driven::new(1000.0, Duration::from_millis(500));
        d.run(1100, 200, 1.0);
        d.l.on_throttle();
        assert!((190.0..=210.0).contains(&d.l.rate()), "cut to {}", d.l.rate());
        // After the cooldown the ticks climb back fast to just below that rate (the knee),
        // then probe slowly above it.
        d.run(2000, 200, 1.0);
        assert!((190.0..=0.97 * 210.0).contains(&d.l.rate()), "{}", d.l.rate());
    }

    #[test]
    fn no_raise_while_fewer_requests_are_sent_than_the_rate_allows() {
        // CI saw it: cut once near a 200 rps gate, then the emulator served only 137/s, and
        // the rate climbed blind to 844 (it would have burst into the gate the moment the
        // emulator caught up).
        let mut d = Driven::new(1000.0, Duration::from_millis(500));
        d.run(1100, 200, 1.0);
        d.l.on_throttle();
        let cut = d.l.rate();
        assert!((190.0..=210.0).contains(&cut), "cut to {cut}");
        d.run(31_100, 137, 1.0);
        // (One 0.3 % probe step may come before the first window at 137/s closes.)
        assert!(d.l.rate() <= 1.01 * cut, "held while 137/s were sent: {} after a cut to {cut}", d.l.rate());
        // Demand comes back: the climb goes on, all the way to the ceiling.
        d.run(91_100, 2000, 1.0);
        assert_eq!(d.l.rate(), 1000.0);
    }

    #[test]
    fn a_throttle_between_ticks_sees_what_was_admitted_since_the_last_one() {
        // No tick at all: the throttle itself folds the counter.
        let clock = FakeRelativeClock::default();
        let l = AdaptiveLimiter::with_clock("kms", 1000.0, Duration::from_millis(500), clock.clone());
        for _ in 0..600 {
            clock.advance(Duration::from_millis(1));
            // A Bucket Key run: 20,000 writes/s of weight 0.01 = 200 KMS requests/s.
            for _ in 0..20 {
                l.on_admitted(0.01);
            }
        }
        l.on_throttle();
        assert!((190.0..=210.0).contains(&l.rate()), "cut to {}", l.rate());
    }

    /// A slow-starting limiter on a fake clock, sent to at `demand` × its rate (capped at
    /// `cap` requests/s), ticked every 250 ms, until `until_ms`.
    fn ramp(l: &AdaptiveLimiter<FakeRelativeClock>, clock: &FakeRelativeClock, from_ms: u64, until_ms: u64, cap: f64) {
        let mut owed = 0.0;
        for ms in from_ms + 1..=until_ms {
            clock.advance(Duration::from_millis(1));
            owed += l.rate().min(cap) / 1000.0;
            while owed >= 1.0 {
                l.on_admitted(1.0);
                owed -= 1.0;
            }
            if ms % 250 == 0 {
                l.tick();
            }
        }
    }

    #[test]
    fn slow_start_reaches_the_ceiling_in_four_steps_when_nothing_throttles() {
        // Pure: 1,000 rps ceiling, opened at 62.5 (a sixteenth), every step's admitted rate
        // at the current rate: 125, 250, 500, 1000.
        let mut r = SlowStart::new(1000.0, SlowStart::default_start(1000.0), Duration::ZERO).unwrap();
        assert_eq!(r.rate, 62.5);
        let mut rates = Vec::new();
        for step in 1..=4u64 {
            let weight = r.rate * 0.25;
            rates.push(r.tick(Duration::from_millis(250 * step), weight));
        }
        assert_eq!(rates, [125.0, 250.0, 500.0, 1000.0]);
        assert!(r.reached_ceiling());
        assert_eq!(r.raises, 4);
        assert!(SlowStart::new(100.0, 100.0, Duration::ZERO).is_none(), "nothing to probe at the ceiling");
        assert_eq!(SlowStart::default_start(50.0), MIN_RATE);

        // The limiter as the engine drives it: the ceiling after 4 ticks (1 s), then AIMD.
        let clock = FakeRelativeClock::default();
        let l = AdaptiveLimiter::with_clock_from("kms", 1000.0, Some(62.5), S, clock.clone());
        assert_eq!(l.rate(), 62.5);
        assert_eq!(l.cells_for(1.0), cells_per_request(62.5) as u64);
        assert!(l.pacing().slow_start);
        ramp(&l, &clock, 0, 1000, f64::MAX);
        assert_eq!(l.rate(), 1000.0);
        assert_eq!(l.cells_for(1.0), cells_per_request(1000.0) as u64);
        let p = l.pacing();
        assert_eq!((p.slow_start, p.ramp_secs, p.learned, p.throttles), (false, Some(1.0), None, 0));
        assert!(l.ramp().is_none());
        // Once at the ceiling AIMD works as it always has: a throttle cuts to 0.7×.
        ramp(&l, &clock, 1000, 2000, f64::MAX);
        l.on_throttle();
        assert_eq!(l.rate(), 700.0);
        assert!(l.pacing().learned.is_some_and(|k| (950.0..=1000.0).contains(&k)), "{:?}", l.pacing());
    }

    #[test]
    fn a_throttle_during_slow_start_ends_it_and_aimd_cuts_from_there() {
        let clock = FakeRelativeClock::default();
        let l = AdaptiveLimiter::with_clock_from("kms", 1000.0, Some(62.5), Duration::from_millis(500), clock.clone());
        ramp(&l, &clock, 0, 500, f64::MAX);
        assert_eq!(l.rate(), 250.0, "two doublings");
        // Only 150/s get through now: a throttle ends the ramp and cuts to what got through.
        ramp(&l, &clock, 500, 1100, 150.0);
        assert_eq!(l.rate(), 250.0, "held: the admitted rate fell short of it");
        l.on_throttle();
        let p = l.pacing();
        assert!(!p.slow_start);
        assert_eq!((p.ramp_secs, p.throttles), (Some(1.1), 1));
        assert!((140.0..=160.0).contains(&l.rate()), "cut to {}", l.rate());
        assert!(p.learned.is_some_and(|k| (140.0..=160.0).contains(&k)), "{p:?}");
        // No more doubling: AIMD probes slowly above the knee from here.
        ramp(&l, &clock, 1100, 3000, 150.0);
        assert!(l.rate() <= 1.05 * 160.0, "{}", l.rate());
        assert!(l.ramp().is_none());
    }

    #[test]
    fn slow_start_holds_while_fewer_requests_are_sent_than_it_allows() {
        // A run paced elsewhere (S3, a Bucket Key, a window still growing) sends 30/s: no
        // step shows the limiter holding anything back, so the rate is not raised blind.
        let clock = FakeRelativeClock::default();
        let l = AdaptiveLimiter::with_clock_from("kms", 1000.0, Some(62.5), S, clock.clone());
        ramp(&l, &clock, 0, 10_000, 30.0);
        assert_eq!(l.rate(), 62.5);
        assert!(l.pacing().slow_start);
        // Demand picks up: the ramp goes on from where it was.
        ramp(&l, &clock, 10_000, 11_000, f64::MAX);
        assert_eq!(l.rate(), 1000.0);
    }

    /// Waiters past the burst go in the order they came, each once (one waiter on the
    /// clock, the rest queued), and one given up on (a stop drops its future) leaves the
    /// queue: the next request takes the fast path again.
    #[tokio::test]
    async fn waiters_go_in_order_and_a_dropped_one_leaves_the_queue() {
        // 100 rps: the 0.1 s burst holds 10 requests; 25 need about 0.15 s more.
        let l = std::sync::Arc::new(AdaptiveLimiter::new("s3", 100.0, S));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..25 {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                l.acquire(1.0).await;
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..25).collect::<Vec<_>>());
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
        // The bucket is empty now: this one has to wait, and is given up on.
        let gave_up = tokio::time::timeout(Duration::from_micros(10), l.acquire(1.0)).await;
        assert!(gave_up.is_err(), "the 26th request conformed at once");
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0, "a dropped waiter stays counted");
        // A weight above the burst (cells in several takes) gets through the queue too.
        l.acquire(15.0).await;
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
    }

    /// A closed limiter (the run is stopping) lets every waiter go at once, and every later
    /// request: at 10 rps, 40 waiters past the burst would otherwise take about 4 s.
    #[tokio::test]
    async fn a_closed_limiter_lets_every_waiter_go_at_once() {
        let l = std::sync::Arc::new(AdaptiveLimiter::new("s3", 10.0, S));
        let mut tasks = Vec::new();
        for _ in 0..41 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move { l.acquire(1.0).await }));
        }
        // Let them queue (the first one or two take the burst).
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(l.waiting.load(Ordering::Relaxed) >= 39, "{} waiting", l.waiting.load(Ordering::Relaxed));
        l.close();
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(1), all).await.expect("the waiters went at once");
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
        tokio::time::timeout(Duration::from_millis(100), l.acquire(1.0)).await.expect("a later request goes at once");
    }

    #[test]
    fn never_above_the_ceiling_or_below_the_floor() {
        let mut a = Aimd::new(50.0, Duration::ZERO);
        for i in 0..100 {
            a.on_throttle(Duration::from_millis(i * 10));
        }
        assert_eq!(a.rate, MIN_RATE);
        a.tick(Duration::from_secs(600));
        assert_eq!(a.rate, 50.0);
    }
}
