//! What exported objects cost, from the plan's estimate: the S3 and KMS requests either
//! route pays, plus the Batch Operations fees for the jobs.

use super::manifest::ObjectsByLine;
use crate::plan::prices::PriceTable;

/// The plan's estimate as an export reads it.
pub use crate::plan::stored::StoredEstimate as EstimateCosts;

/// Costs an export reads off the plan's estimate.
pub trait EstimateCostsExt {
    fn line_cost(&self, by_line: &ObjectsByLine) -> f64;
    fn whole_plan(&self) -> Option<(f64, f64)>;
}

impl EstimateCostsExt for EstimateCosts {
    /// The estimate's cost of `by_line` objects: each breakdown line's total, pro rata.
    /// A line the estimate does not have costs nothing.
    fn line_cost(&self, by_line: &ObjectsByLine) -> f64 {
        by_line
            .iter()
            .map(|((method, class), n)| {
                self.breakdown
                    .iter()
                    .find(|l| l.method == *method && l.storage_class.as_str() == class && l.objects > 0)
                    .map(|l| l.total_usd / l.objects as f64 * *n as f64)
                    .unwrap_or(0.0)
            })
            .sum()
    }

    /// The whole plan: (local route, all through Batch Operations in one job), when the
    /// estimate has both.
    fn whole_plan(&self) -> Option<(f64, f64)> {
        Some((self.cost_usd.as_ref()?.total, self.alternatives_usd.as_ref()?.batch_operations))
    }
}

/// The two routes' cost for the exported objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteCosts {
    /// The S3 and KMS requests, which either route pays (`rekey run` pays nothing else).
    pub requests_usd: f64,
    /// Batch Operations' per-job and per-object fees.
    pub fees_usd: f64,
}

impl RouteCosts {
    pub fn new(prices: &PriceTable, requests_usd: f64, jobs: usize, objects: u64) -> RouteCosts {
        let fees_usd =
            prices.batch_ops_per_job * jobs as f64 + prices.batch_ops_per_million_objects * objects as f64 / 1e6;
        RouteCosts { requests_usd, fees_usd }
    }

    pub fn batch_ops_usd(&self) -> f64 {
        self.requests_usd + self.fees_usd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Method;

    fn by_line(lines: &[(&str, &str, u64)]) -> ObjectsByLine {
        lines.iter().map(|(m, c, n)| ((Method::parse(m).unwrap(), c.to_string()), *n)).collect()
    }

    #[test]
    fn objects_cost_their_breakdown_line_pro_rata() {
        let estimate: EstimateCosts = serde_json::from_value(serde_json::json!({
            "breakdown": [
                { "method": "update", "storage_class": "STANDARD", "objects": 4, "bytes": 1, "total_usd": 2.0 },
                { "method": "copy", "storage_class": "GLACIER_IR", "objects": 10, "total_usd": 5.0 },
                { "method": "copy", "storage_class": "STANDARD", "objects": 0, "total_usd": 9.0 }
            ],
            "cost_usd": { "total": 7.0, "kms_requests": 1.0 },
            "alternatives_usd": { "copy_only": 1.0, "batch_operations": 8.5 }
        }))
        .unwrap();
        let cost = estimate.line_cost(&by_line(&[
            ("update", "STANDARD", 2),
            ("copy", "GLACIER_IR", 1),
            ("copy", "STANDARD", 3),
            ("copy", "ONEZONE_IA", 3),
        ]));
        assert!((cost - 1.5).abs() < 1e-9, "{cost}");
        assert_eq!(estimate.whole_plan(), Some((7.0, 8.5)));
    }

    #[test]
    fn an_estimate_without_a_breakdown_costs_nothing() {
        let estimate: EstimateCosts = serde_json::from_str("{}").unwrap();
        assert_eq!(estimate.line_cost(&by_line(&[("update", "STANDARD", 2)])), 0.0);
        assert_eq!(estimate.whole_plan(), None);
    }

    #[test]
    fn batch_ops_fees_are_per_job_and_per_million_objects() {
        let prices =
            PriceTable { batch_ops_per_job: 0.25, batch_ops_per_million_objects: 1.0, ..PriceTable::default() };
        let c = RouteCosts::new(&prices, 3.0, 4, 2_000_000);
        assert!((c.fees_usd - 3.0).abs() < 1e-9);
        assert!((c.batch_ops_usd() - 6.0).abs() < 1e-9);
    }
}
