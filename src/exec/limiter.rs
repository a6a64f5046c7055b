//! Pacing to a quota: token buckets whose rate adapts to throttling (AIMD).
//!
//! governor's rate is fixed once a limiter is built, and rebuilding it on every change was
//! seen to collapse the rate. So the bucket is a fixed, fine-grained governor limiter
//! ([`CELLS_PER_SEC`] cells per second) and the *cost* of one request varies: at R
//! requests/s a request costs `CELLS_PER_SEC / R` cells, held in an atomic. Fractional
//! requests cost proportionally fewer cells, which is how a Bucket Key run (about 0.01 KMS
//! request per object) ends up paced by S3 rather than KMS.
//!
//! The rate follows [`Aimd`]: cut to 0.7× on a throttle (at most once per cooldown, so one
//! burst of 503s from a full in-flight window counts once), then climb back: quickly to
//! just below the rate that was throttled, slowly above it, never past the configured
//! ceiling.
//!
//! The request path takes no lock: a request that got through adds its weight to an
//! atomic counter, and taking tokens is governor's lock-free check. The AIMD state sits
//! behind a mutex that only [`AdaptiveLimiter::tick`] (called by the engine's 250 ms
//! controller: fold the counter into the admitted-rate window, raise the rate) and
//! [`AdaptiveLimiter::on_throttle`] (rare by design) take.

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Cells per second of the underlying limiter: fine enough for 1 % steps at 100,000 rps.
pub const CELLS_PER_SEC: u32 = 10_000_000;
/// A burst of at most 0.1 s of the current rate.
const BURST_CELLS: u32 = CELLS_PER_SEC / 10;
/// Rates below this are not useful and would need a larger burst.
pub const MIN_RATE: f64 = 10.0;

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
    aimd: Mutex<Aimd>,
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
}

impl AdaptiveLimiter<DefaultClock> {
    pub fn new(name: &'static str, ceiling_rps: f64, cooldown: Duration) -> Self {
        Self::with_clock(name, ceiling_rps, cooldown, DefaultClock::default())
    }
}

impl<C: Clock> AdaptiveLimiter<C> {
    pub fn with_clock(name: &'static str, ceiling_rps: f64, cooldown: Duration, clock: C) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(CELLS_PER_SEC).unwrap())
            .allow_burst(NonZeroU32::new(BURST_CELLS).unwrap());
        let aimd = Aimd::new(ceiling_rps, cooldown);
        let started = clock.now();
        let l = AdaptiveLimiter {
            name,
            limiter: RateLimiter::direct_with_clock(quota, clock),
            cost: AtomicU32::new(0),
            rate_milli: AtomicU64::new(0),
            admitted_milli: AtomicU64::new(0),
            started,
            ceiling: aimd.ceiling,
            aimd: Mutex::new(aimd.clone()),
        };
        l.publish(aimd.rate);
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
        self.aimd.lock().unwrap().throttles
    }

    /// A copy of the AIMD state (for tests and diagnostics).
    pub fn aimd(&self) -> Aimd {
        self.aimd.lock().unwrap().clone()
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

    /// Move the admitted weight counted so far into the AIMD window, at `now`.
    fn fold(&self, a: &mut Aimd, now: Duration) {
        let milli = self.admitted_milli.swap(0, Ordering::Relaxed);
        a.fold_admitted(now, milli as f64 / 1000.0);
    }

    pub fn on_throttle(&self) {
        let now = self.now();
        let mut a = self.aimd.lock().unwrap();
        // The admitted rate the cut may use must include what got through just now.
        self.fold(&mut a, now);
        if a.on_throttle(now) {
            tracing::debug!("{} throttled: rate cut to {:.0}/s", self.name, a.rate);
            self.publish(a.rate);
        }
    }

    /// The periodic AIMD step (the engine's controller calls it every 250 ms): fold the
    /// admitted count into its window and raise the rate for the time passed without a
    /// throttle. The rate rises in [`STEP`]s however often this runs.
    pub fn tick(&self) {
        let now = self.now();
        let mut a = self.aimd.lock().unwrap();
        self.fold(&mut a, now);
        let before = a.rate;
        a.tick(now);
        if a.rate != before {
            self.publish(a.rate);
        }
    }
}

impl<C: governor::clock::ReasonablyRealtime> AdaptiveLimiter<C> {
    /// Wait until `weight` requests may be sent. Lock-free (governor's GCRA is one atomic
    /// compare-and-swap); the rate changes only through `tick` and `on_throttle`.
    pub async fn acquire(&self, weight: f64) {
        let mut cells = self.cells_for(weight);
        while cells > 0 {
            let n = cells.min(BURST_CELLS as u64) as u32;
            // n ≤ burst, so this cannot fail for lack of capacity.
            let _ = self.limiter.until_n_ready(NonZeroU32::new(n).unwrap()).await;
            cells -= n as u64;
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
