//! What a run reports while it goes: a [`ProgressSnapshot`] (also written into the
//! checkpoint for `rekey status`), drawn as indicatif bars on a terminal, as one plain
//! line every 10 s otherwise, or as JSON lines.

use super::limiter::AdaptiveLimiter;
use super::RunCounters;
use crate::units::{human_bytes, human_duration, thousands};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, else a log line every 10 s.
    #[default]
    Auto,
    /// A log line every `interval`.
    Lines,
    /// One JSON snapshot per second on stdout.
    Json,
    Quiet,
}

/// The state of a run at one moment (`rekey.progress/1`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgressSnapshot {
    pub schema: String,
    pub pid: u32,
    /// running | stopping | finished | stopped
    pub state: String,
    pub started_at: String,
    pub updated_at: String,
    pub elapsed_secs: f64,
    /// Objects and bytes this run set out to do.
    pub total_objects: u64,
    pub total_bytes: u64,
    pub done: u64,
    pub failed: u64,
    pub changed: u64,
    pub gone: u64,
    pub needs_restore: u64,
    /// SSE-KMS objects the run found already under the target key, or under a key it was
    /// not asked to move (`--from-key`). Absent from snapshots of older builds: 0.
    #[serde(default)]
    pub already_target_key: u64,
    #[serde(default)]
    pub other_kms_key: u64,
    pub bytes_done: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttles_kms: u64,
    pub throttles_s3: u64,
    pub transient_errors: u64,
    /// Objects finished per second over the last 10 s.
    pub objects_per_sec: f64,
    pub kms_rate: f64,
    pub kms_ceiling: f64,
    /// Requests sent that cost KMS requests, and the share of them KMS throttled
    /// (`throttles_kms / kms_requests`). Absent from snapshots of older builds: 0.
    #[serde(default)]
    pub kms_requests: u64,
    #[serde(default)]
    pub kms_throttled_share: f64,
    /// The KMS rate that was getting through at the last throttle: the limit the run has
    /// learned. None before the first throttle (the ceiling was never found too high).
    #[serde(default)]
    pub kms_learned_rate: Option<f64>,
    /// `slow_start` while the KMS limiter probes up from its first rate, then `adaptive`
    /// (AIMD). Empty in snapshots of older builds.
    #[serde(default)]
    pub kms_pacing: String,
    /// Seconds from the start to the end of slow start (the ceiling or the first throttle).
    #[serde(default)]
    pub kms_ramp_secs: Option<f64>,
    pub s3_rate: f64,
    pub s3_ceiling: f64,
    pub window: u64,
    pub latency_ms: f64,
    pub eta_secs: Option<f64>,
}

/// A share as a percentage: one decimal, two below 1 %.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 1.0 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}

impl ProgressSnapshot {
    pub fn finished(&self) -> u64 {
        self.done
            + self.failed
            + self.changed
            + self.gone
            + self.needs_restore
            + self.already_target_key
            + self.other_kms_key
    }

    /// Where the KMS rate stands: `slow start`, `learned 98 rps`, or `not throttled`.
    pub fn kms_learning(&self) -> String {
        match (self.kms_pacing.as_str(), self.kms_learned_rate) {
            ("slow_start", _) => "slow start".into(),
            (_, Some(r)) => format!("learned {r:.0} rps"),
            ("adaptive", None) => "not throttled".into(),
            // A snapshot of an older build: nothing known.
            _ => "-".into(),
        }
    }

    /// One plain line, for logs.
    pub fn line(&self) -> String {
        format!(
            "{}/{} objects ({} done, {} failed, {} changed, {} gone), {} of {}, {:.0} obj/s, KMS {:.0}/{:.0} rps ({}), {} of KMS requests throttled, throttles {}, retries {}, ETA {}",
            thousands(self.finished()),
            thousands(self.total_objects),
            thousands(self.done),
            thousands(self.failed),
            thousands(self.changed),
            thousands(self.gone),
            human_bytes(self.bytes_done),
            human_bytes(self.total_bytes),
            self.objects_per_sec,
            self.kms_rate,
            self.kms_ceiling,
            self.kms_learning(),
            percent(self.kms_throttled_share),
            thousands(self.throttles_kms + self.throttles_s3),
            thousands(self.retries),
            self.eta_secs.map(human_duration).unwrap_or_else(|| "-".into()),
        )
    }
}

/// `part` of `whole`, 0 when there is no whole.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Builds snapshots from the live counters; keeps the 10 s rate window.
pub struct Progress {
    pub counters: Arc<RunCounters>,
    pub kms: Arc<AdaptiveLimiter>,
    pub s3: Arc<AdaptiveLimiter>,
    pub total_objects: u64,
    pub total_bytes: u64,
    started: Instant,
    started_at: String,
    state: Mutex<&'static str>,
    window: Mutex<VecDeque<(Instant, u64)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Progress {
    pub fn new(
        counters: Arc<RunCounters>,
        kms: Arc<AdaptiveLimiter>,
        s3: Arc<AdaptiveLimiter>,
        total_objects: u64,
        total_bytes: u64,
    ) -> Progress {
        Progress {
            counters,
            kms,
            s3,
            total_objects,
            total_bytes,
            started: Instant::now(),
            started_at: crate::units::now_rfc3339(),
            state: Mutex::new("running"),
            window: Mutex::new(VecDeque::new()),
        }
    }

    pub fn set_state(&self, state: &'static str) {
        *self.state.lock().unwrap() = state;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let c = &self.counters;
        let now = Instant::now();
        let finished = c.finished();
        let rate = {
            let mut w = self.window.lock().unwrap();
            w.push_back((now, finished));
            while w.len() > 2 && now.duration_since(w[0].0) > RATE_WINDOW {
                w.pop_front();
            }
            let (t0, n0) = w[0];
            let secs = now.duration_since(t0).as_secs_f64();
            if secs > 0.5 {
                (finished - n0) as f64 / secs
            } else if self.started.elapsed().as_secs_f64() > 0.5 {
                finished as f64 / self.started.elapsed().as_secs_f64()
            } else {
                0.0
            }
        };
        let remaining = self.total_objects.saturating_sub(finished);
        let (throttles_kms, kms_requests) = (c.throttles_kms.load(Relaxed), c.kms_requests.load(Relaxed));
        let pacing = self.kms.pacing();
        ProgressSnapshot {
            schema: "rekey.progress/1".into(),
            pid: std::process::id(),
            state: self.state.lock().unwrap().to_string(),
            started_at: self.started_at.clone(),
            updated_at: crate::units::now_rfc3339(),
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            total_objects: self.total_objects,
            total_bytes: self.total_bytes,
            done: c.done.load(Relaxed),
            failed: c.failed.load(Relaxed),
            changed: c.changed.load(Relaxed),
            gone: c.gone.load(Relaxed),
            needs_restore: c.needs_restore.load(Relaxed),
            already_target_key: c.already_target_key.load(Relaxed),
            other_kms_key: c.other_kms_key.load(Relaxed),
            bytes_done: c.bytes_done.load(Relaxed),
            requests: c.requests.load(Relaxed),
            retries: c.retries.load(Relaxed),
            throttles_kms,
            throttles_s3: c.throttles_s3.load(Relaxed),
            transient_errors: c.transient.load(Relaxed),
            objects_per_sec: rate,
            kms_rate: self.kms.rate(),
            kms_ceiling: self.kms.ceiling(),
            kms_requests,
            kms_throttled_share: share(throttles_kms, kms_requests),
            kms_learned_rate: pacing.learned,
            kms_pacing: if pacing.slow_start { "slow_start" } else { "adaptive" }.into(),
            kms_ramp_secs: pacing.ramp_secs,
            s3_rate: self.s3.rate(),
            s3_ceiling: self.s3.ceiling(),
            window: c.window.load(Relaxed),
            latency_ms: c.latency_us.load(Relaxed) as f64 / 1000.0,
            eta_secs: (rate > 0.0).then(|| remaining as f64 / rate),
        }
    }
}

/// Draws progress until `done` resolves; returns after drawing the last state.
pub async fn report(progress: Arc<Progress>, mode: ProgressMode, done: impl std::future::Future<Output = ()>) {
    let mode = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => None,
        ProgressMode::Auto => Some(ProgressMode::Lines),
        m => Some(m),
    };
    tokio::pin!(done);
    match mode {
        Some(ProgressMode::Quiet) => done.await,
        Some(ProgressMode::Lines) | Some(ProgressMode::Auto) => {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    _ = tick.tick() => eprintln!("rekey: {}", progress.snapshot().line()),
                }
            }
        }
        Some(ProgressMode::Json) => {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    _ = tick.tick() => println!("{}", serde_json::to_string(&progress.snapshot()).unwrap_or_default()),
                }
            }
        }
        None => bars(&progress, done).await,
    }
}

async fn bars(progress: &Progress, done: impl std::future::Future<Output = ()>) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let objects = multi.add(ProgressBar::new(progress.total_objects));
    objects.set_style(
        ProgressStyle::with_template("objects {bar:40.cyan/blue} {pos}/{len} {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let bytes = multi.add(ProgressBar::new(progress.total_bytes));
    bytes.set_style(
        ProgressStyle::with_template("bytes   {bar:40.green/blue} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stats = multi.add(ProgressBar::new_spinner());
    tokio::pin!(done);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let s = progress.snapshot();
        objects.set_position(s.finished());
        bytes.set_position(s.bytes_done);
        stats.set_message(format!(
            "KMS {:.0}/{:.0} rps ({}, {} throttled)  S3 {:.0}/{:.0} rps  window {}  throttles {}  retries {}  failed {}  changed {}  gone {}",
            s.kms_rate,
            s.kms_ceiling,
            s.kms_learning(),
            percent(s.kms_throttled_share),
            s.s3_rate,
            s.s3_ceiling,
            s.window,
            thousands(s.throttles_kms + s.throttles_s3),
            thousands(s.retries),
            thousands(s.failed),
            thousands(s.changed),
            thousands(s.gone),
        ));
        tokio::select! {
            _ = &mut done => break,
            _ = tick.tick() => {}
        }
    }
    objects.finish_and_clear();
    bytes.finish_and_clear();
    stats.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_kms_limiter_learned_reads_as_a_word_and_older_snapshots_still_parse() {
        let mut s = ProgressSnapshot { kms_pacing: "slow_start".into(), ..Default::default() };
        assert_eq!(s.kms_learning(), "slow start");
        s.kms_pacing = "adaptive".into();
        assert_eq!(s.kms_learning(), "not throttled");
        s.kms_learned_rate = Some(101.4);
        assert_eq!(s.kms_learning(), "learned 101 rps");
        assert_eq!((percent(0.0046), percent(0.21), percent(0.0)), ("0.46 %".into(), "21.0 %".into(), "0.0 %".into()));
        // A snapshot written before the KMS pacing fields existed reads with them empty.
        let mut old = serde_json::to_value(ProgressSnapshot::default()).unwrap();
        for k in ["kms_requests", "kms_throttled_share", "kms_learned_rate", "kms_pacing", "kms_ramp_secs"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let old: ProgressSnapshot = serde_json::from_value(old).unwrap();
        assert_eq!((old.kms_requests, old.kms_pacing.as_str(), old.kms_learned_rate), (0, "", None));
        assert_eq!(old.kms_learning(), "-");
    }
}
