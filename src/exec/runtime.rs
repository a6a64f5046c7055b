//! The async runtime a run executes on: one worker per [`REQUESTS_PER_WORKER`] of the
//! request rate it is paced to, at least one, at most one per core.
//!
//! A paced run is mostly waiting, and on tokio's multi-thread scheduler a second worker
//! turns waiting into work: a worker holding more than one runnable task wakes a parked
//! sibling to steal some (an eventfd write and two context switches), so every batch the
//! pacer lets through and every burst of answers set both workers going. At 1,000
//! requests/s on the 2-core test machine that was about 750 context switches a second
//! with two workers and 62 with one, and the CPU per object fell by 15 % (issue 14,
//! docs/performance.md). Flat out, the second worker is what carries the rate, so it is
//! sized from the rate, not fixed.

use super::RunConfig;

/// Requests per second one runtime worker is given: over HTTP a request costs 55–76 µs of
/// CPU (docs/performance.md, "Sizing"), so 5,000/s keep a core about a third busy, with
/// room for TLS and for bursts.
pub const REQUESTS_PER_WORKER: f64 = 5_000.0;

/// Workers for a run whose requests are paced to at most `requests_per_sec`, on `cores`.
pub fn workers_for(requests_per_sec: f64, cores: usize) -> usize {
    let cores = cores.max(1);
    let want = (requests_per_sec / REQUESTS_PER_WORKER).ceil();
    if want.is_nan() {
        return cores;
    }
    (want.min(cores as f64) as usize).max(1)
}

/// The cores this process may use (2 when the system cannot say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// A multi-thread runtime with `workers` workers, timers and I/O enabled.
pub fn build(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(1)).enable_all().build()
}

/// The runtime for `cfg`: [`workers_for`] its request ceiling on this machine's cores.
pub fn for_run(cfg: &RunConfig) -> std::io::Result<tokio::runtime::Runtime> {
    build(workers_for(cfg.request_ceiling(), cores()))
}

impl RunConfig {
    /// The most requests per second the limiters allow: the S3 rate, or the KMS rate over
    /// the KMS requests one write causes, whichever is lower.
    pub fn request_ceiling(&self) -> f64 {
        requests_allowed(self.kms_rps, self.kms_per_write, self.s3_rps)
    }
}

/// Requests per second the limiters allow at `kms_rps` and `s3_rps`, when one write causes
/// `kms_per_write` KMS requests (the window sizer applies it to the limiters' live rates).
pub fn requests_allowed(kms_rps: f64, kms_per_write: f64, s3_rps: f64) -> f64 {
    (kms_rps / kms_per_write.max(1e-6)).min(s3_rps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_run_gets_one_worker_per_five_thousand_requests_a_second() {
        assert_eq!(workers_for(1_000.0, 2), 1);
        assert_eq!(workers_for(3_500.0, 2), 1);
        assert_eq!(workers_for(5_000.0, 8), 1);
        assert_eq!(workers_for(5_001.0, 8), 2);
        assert_eq!(workers_for(20_000.0, 8), 4);
        // Never more than the cores, never none.
        assert_eq!(workers_for(20_000.0, 2), 2);
        assert_eq!(workers_for(10_000_000.0, 2), 2);
        assert_eq!(workers_for(f64::INFINITY, 4), 4);
        assert_eq!(workers_for(0.0, 4), 1);
        assert_eq!(workers_for(f64::NAN, 3), 3);
        assert_eq!(workers_for(1_000.0, 0), 1);
    }

    #[test]
    fn the_request_ceiling_is_the_lower_of_s3_and_kms_per_write() {
        let mut cfg = RunConfig::new("x.rekey".into(), "arn".into());
        (cfg.kms_rps, cfg.s3_rps, cfg.kms_per_write) = (1_000.0, 3_500.0, 1.0);
        assert_eq!(cfg.request_ceiling(), 1_000.0);
        // A Bucket Key: 100 writes per KMS request, so S3 binds.
        cfg.kms_per_write = 0.01;
        assert_eq!(cfg.request_ceiling(), 3_500.0);
        assert_eq!(workers_for(cfg.request_ceiling(), 2), 1);
    }
}
