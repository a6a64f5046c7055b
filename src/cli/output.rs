//! Rendering an estimate: a table for people, one JSON object for programs, and CSV cost
//! lines for spreadsheets.

use super::settings::Format;
use crate::plan::job::JobEstimate;
use crate::plan::{Estimate, ShardedPlan};
use crate::units::{human_bytes, human_duration, thousands};
use std::fmt::Write;

pub fn render(e: &Estimate, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(e).expect("an estimate always serialises");
            s.push('\n');
            s
        }
        Format::Csv => csv(e),
        Format::Table => table(e),
    }
}

fn money(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("${x:.4}")
    } else {
        let cents = (x * 100.0).round() as u64;
        format!("${}.{:02}", thousands(cents / 100), cents % 100)
    }
}

/// The estimate for people. Long because it is the table itself, one statement per
/// printed line, in the order they print.
fn table(e: &Estimate) -> String {
    let mut o = String::new();
    let inv = &e.inventory;
    let _ = writeln!(o, "rekey estimate for {}", inv.source);
    match &e.listing {
        Some(l) => {
            let _ = writeln!(
                o,
                "  live listing: {} entries in {} {} page(s){}, listed {}",
                thousands(inv.rows),
                thousands(l.list_requests),
                l.api,
                if l.head_requests > 0 { format!(" + {} HEADs", thousands(l.head_requests)) } else { String::new() },
                inv.created.as_deref().unwrap_or("?"),
            );
            let _ = writeln!(o, "  encryption: {}", l.encryption);
        }
        None => {
            let _ = writeln!(
                o,
                "  inventory: {} rows in {} data file(s){}{}",
                thousands(inv.rows),
                inv.files,
                inv.source_bucket.as_ref().map(|b| format!(", bucket {b}")).unwrap_or_default(),
                inv.created.as_ref().map(|c| format!(", taken {c}")).unwrap_or_default(),
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Planned: {} objects, {}", thousands(e.objects.planned), human_bytes(e.objects.planned_bytes));
    if !e.breakdown.is_empty() {
        let _ = writeln!(
            o,
            "  {:<15} {:<20} {:>12} {:>11} {:>12} {:>12} {:>12}",
            "method", "storage class", "objects", "bytes", "S3 requests", "KMS requests", "cost"
        );
        for l in &e.breakdown {
            let _ = writeln!(
                o,
                "  {:<15} {:<20} {:>12} {:>11} {:>12} {:>12} {:>12}",
                l.method.as_str(),
                l.storage_class.as_str(),
                thousands(l.objects),
                human_bytes(l.bytes),
                thousands(l.s3_put_class + l.s3_get_class),
                thousands(l.kms.ceil() as u64),
                money(l.total_usd),
            );
        }
    }
    if e.objects.locked_copies > 0 {
        let _ = writeln!(
            o,
            "Object Lock: {} locked objects will be copied; each keeps its old, locked SSE-S3 version until its retention ends (the new version gets the same retention and legal hold)",
            thousands(e.objects.locked_copies)
        );
    }
    if e.objects.noncurrent_planned > 0 {
        let _ = writeln!(
            o,
            "Versions: {} noncurrent versions updated in place by version id (no new version)",
            thousands(e.objects.noncurrent_planned)
        );
    }
    if e.objects.kms_to_kms_candidates > 0 {
        let _ = writeln!(
            o,
            "KMS to KMS: {} SSE-KMS objects, each HEADed at run time ({}) to read its key",
            thousands(e.objects.kms_to_kms_candidates),
            money(e.cost_usd.head_decisions)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Skipped: {} objects", thousands(e.objects.skipped_total));
    for (reason, n) in &e.objects.skipped {
        let _ = writeln!(o, "  {reason:<27} {:>12}", thousands(*n));
    }
    let _ = writeln!(o);
    let r = &e.requests;
    let _ = writeln!(
        o,
        "Requests: {} S3 PUT-class, {} S3 GET-class, {} KMS{}",
        thousands(r.s3_put_class),
        thousands(r.s3_get_class),
        thousands(r.kms),
        if e.assumptions.bucket_key {
            format!(" (Bucket Key; {} without)", thousands(r.kms_without_bucket_key))
        } else {
            String::new()
        },
    );
    let c = &e.cost_usd;
    let _ = writeln!(o, "Cost (USD, one-off)");
    for (label, v) in [
        ("S3 requests", c.s3_requests),
        ("retrieval", c.retrieval),
        ("KMS requests", c.kms_requests),
        ("early deletion", c.early_deletion),
    ] {
        let _ = writeln!(o, "  {label:<27} {:>12}", money(v));
    }
    if e.listing.is_some() {
        let _ = writeln!(o, "  {:<27} {:>12}", "listing (spent planning)", money(c.listing));
    }
    let _ = writeln!(o, "  {:<27} {:>12}", "total", money(c.total));
    let _ = writeln!(o, "  {:<27} {:>12}", "same objects, copy only", money(e.alternatives_usd.copy_only));
    let _ = writeln!(o, "  {:<27} {:>12}", "via S3 Batch Operations", money(e.alternatives_usd.batch_operations));
    if e.assumptions.versioned {
        let _ = writeln!(o, "  {:<27} {:>12}", "noncurrent storage / month", money(e.noncurrent_storage_usd_per_month));
    }
    if let Some(g) = &e.ongoing_usd_per_month {
        let _ = writeln!(o, "Ongoing (USD / month, {} GETs)", thousands(g.monthly_gets));
        let _ = writeln!(
            o,
            "  {:<27} {:>12}",
            "KMS decrypt, no Bucket Key",
            money(g.kms_decrypt_without_bucket_key + g.kms_key)
        );
        let _ =
            writeln!(o, "  {:<27} {:>12}", "KMS decrypt, Bucket Key", money(g.kms_decrypt_with_bucket_key + g.kms_key));
    }
    let a = &e.assumptions;
    let _ = writeln!(
        o,
        "Duration: {} ({}-bound: KMS {} req/s = quota {} x share {}; S3 {} req/s)",
        human_duration(e.duration_seconds),
        e.duration_bound_by.to_uppercase(),
        thousands(a.kms_rps as u64),
        thousands(a.kms_quota_rps as u64),
        a.kms_share,
        thousands(a.s3_rps as u64),
    );
    let _ = writeln!(o, "Assumptions: region {}, versioned = {} ({})", a.region, a.versioned, a.versioned_source);
    for n in &a.notes {
        let _ = writeln!(o, "  - {n}");
    }
    o
}

fn csv(e: &Estimate) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER);
    for r in csv_rows(e) {
        let _ = w.write_record(&r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

const CSV_HEADER: [&str; 7] = ["line", "method", "storage_class", "objects", "quantity", "unit", "usd"];

fn csv_rows(e: &Estimate) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    let mut row = |line: &str, method: &str, class: &str, objects: String, qty: String, unit: &str, usd: f64| {
        rows.push([line.into(), method.into(), class.into(), objects, qty, unit.into(), format!("{usd}")]);
    };
    for l in &e.breakdown {
        let (m, c, n) = (l.method.as_str(), l.storage_class.as_str(), l.objects.to_string());
        row(
            "s3_requests",
            m,
            c,
            n.clone(),
            (l.s3_put_class + l.s3_get_class).to_string(),
            "requests",
            l.s3_requests_usd,
        );
        row("retrieval", m, c, n.clone(), format!("{}", l.bytes as f64 / (1u64 << 30) as f64), "GiB", l.retrieval_usd);
        row("kms_requests", m, c, n.clone(), format!("{}", l.kms), "requests", l.kms_usd);
        row("early_deletion", m, c, n.clone(), String::new(), "", l.early_deletion_usd);
        row("noncurrent_storage_per_month", m, c, n, String::new(), "per month", l.noncurrent_storage_usd_per_month);
    }
    let planned = e.objects.planned.to_string();
    if let Some(l) = &e.listing {
        row(
            "listing",
            l.api,
            "",
            String::new(),
            (l.list_requests + l.head_requests).to_string(),
            "requests",
            l.cost_usd,
        );
    }
    row("total", "", "", planned.clone(), String::new(), "", e.cost_usd.total);
    row("alternative_copy_only", "", "", planned.clone(), String::new(), "", e.alternatives_usd.copy_only);
    row(
        "alternative_batch_operations",
        "",
        "",
        planned.clone(),
        String::new(),
        "",
        e.alternatives_usd.batch_operations,
    );
    row(
        "noncurrent_storage_per_month",
        "",
        "",
        planned,
        String::new(),
        "per month",
        e.noncurrent_storage_usd_per_month,
    );
    rows
}

/// A sharded plan's estimates: the whole job, then each shard at `--kms-share` / N.
/// JSON: one `rekey.sharded-estimate/1` object; CSV: the single-plan lines with a leading
/// `shard` column (`all` for the whole job) and a `kms_share` line per shard.
pub fn render_sharded(p: &ShardedPlan, format: Format) -> String {
    let Some(first) = p.shards.first().and_then(|e| e.shard.as_ref()) else {
        return render(&p.total, format);
    };
    let (n, share_total, share) = (first.count, first.kms_share_total, first.kms_share);
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "schema": "rekey.sharded-estimate/1",
                "shards": n,
                "hash": first.hash,
                "kms_share_total": share_total,
                "kms_share_per_shard": share,
                "notes": [KMS_QUOTA_NOTE],
                "total": p.total,
                "by_shard": p.shards,
            });
            let mut s = serde_json::to_string_pretty(&doc).expect("an estimate always serialises");
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut header = vec!["shard"];
            header.extend(CSV_HEADER);
            let _ = w.write_record(&header);
            for r in csv_rows(&p.total) {
                let _ = w.write_record(std::iter::once("all").chain(r.iter().map(String::as_str)));
            }
            for e in &p.shards {
                let Some(info) = &e.shard else { continue };
                let i = info.index.to_string();
                let unit = format!("of the KMS quota: --kms-share {share_total} / {n} shards");
                let _ = w.write_record([
                    i.as_str(),
                    "kms_share",
                    "",
                    "",
                    &e.objects.planned.to_string(),
                    &format!("{}", info.kms_share),
                    &unit,
                    "",
                ]);
                for r in csv_rows(e) {
                    let _ = w.write_record(std::iter::once(i.as_str()).chain(r.iter().map(String::as_str)));
                }
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
        Format::Table => {
            let mut o = format!("Whole job, all {n} shards together (at --kms-share {share_total}):\n");
            o.push_str(&table(&p.total));
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "Shards ({}): each runs on its own machine at --kms-share {share_total} / {n} = {share} of the KMS quota",
                first.hash
            );
            let _ = writeln!(
                o,
                "  {:>5} {:>12} {:>11} {:>12} {:>12} {:>16}  state file",
                "shard", "objects", "bytes", "KMS requests", "cost", "duration"
            );
            for e in &p.shards {
                let Some(info) = &e.shard else { continue };
                let _ = writeln!(
                    o,
                    "  {:>5} {:>12} {:>11} {:>12} {:>12} {:>16}  {}",
                    format!("{}/{n}", info.index),
                    thousands(e.objects.planned),
                    human_bytes(e.objects.planned_bytes),
                    thousands(e.requests.kms),
                    money(e.cost_usd.total),
                    duration_cell(e.duration_seconds, e.duration_bound_by),
                    info.state_file.as_deref().unwrap_or("-"),
                );
            }
            let _ = writeln!(o, "  - {KMS_QUOTA_NOTE}");
            o
        }
    }
}

const KMS_QUOTA_NOTE: &str = "the KMS quota is per account and region: shards in one account share it, so sharding \
     adds S3-side headroom (each machine its own S3 request rate and connections), not KMS headroom";

/// A job of several inventories: each entry at its share of its region's quota, then the
/// sums by bucket, by region and in all. JSON: one `rekey.job-estimate/1` object; CSV: the
/// single-plan lines with leading `entry`, `bucket` and `region` columns (`all` for the
/// job's totals) and a `kms_share` line per entry.
pub fn render_job(j: &JobEstimate, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(j).expect("an estimate always serialises");
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut header = vec!["entry", "bucket", "region"];
            header.extend(CSV_HEADER);
            let _ = w.write_record(&header);
            for x in &j.entries {
                let lead = [x.name.as_str(), x.bucket.as_str(), x.region.as_str()];
                let a = &x.estimate.assumptions;
                let share = format!("{}", a.kms_share);
                let unit = format!("of the {} KMS quota ({} rps)", x.region, a.kms_quota_rps);
                let planned = x.estimate.objects.planned.to_string();
                let line = ["kms_share", "", "", planned.as_str(), share.as_str(), unit.as_str(), ""];
                let _ = w.write_record(lead.iter().copied().chain(line));
                for r in csv_rows(&x.estimate) {
                    let _ = w.write_record(lead.iter().copied().chain(r.iter().map(String::as_str)));
                }
            }
            let t = &j.total;
            let planned = t.objects_planned.to_string();
            for (line, usd) in [
                ("total", t.cost_usd),
                ("alternative_copy_only", t.copy_only_usd),
                ("alternative_batch_operations", t.batch_operations_usd),
            ] {
                let usd = format!("{usd}");
                let _ = w.write_record(["all", "", "", line, "", "", planned.as_str(), "", "", usd.as_str()]);
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
        Format::Table => job_table(j),
    }
}

/// A job's estimate for people: like [`table`], one statement per printed line.
fn job_table(j: &JobEstimate) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rekey estimate for job {}: {} inventories, {} buckets, {} regions",
        j.job_file,
        j.entries.len(),
        j.by_bucket.len(),
        j.by_region.len()
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Inventories (each its own checkpoint, at its share of its region's KMS quota):");
    let _ = writeln!(
        o,
        "  {:<20} {:<24} {:<14} {:>12} {:>11} {:>10} {:>12} {:>12} {:>10} {:>16}  state file",
        "name", "bucket", "region", "objects", "bytes", "skipped", "KMS requests", "cost", "KMS share", "duration"
    );
    for x in &j.entries {
        let e = &x.estimate;
        let _ = writeln!(
            o,
            "  {:<20} {:<24} {:<14} {:>12} {:>11} {:>10} {:>12} {:>12} {:>10} {:>16}  {}",
            x.name,
            x.bucket,
            x.region,
            thousands(e.objects.planned),
            human_bytes(e.objects.planned_bytes),
            thousands(e.objects.skipped_total),
            thousands(e.requests.kms),
            money(e.cost_usd.total),
            format!("{:.4}", e.assumptions.kms_share),
            duration_cell(e.duration_seconds, e.duration_bound_by),
            if x.state_files.is_empty() { "-".to_string() } else { x.state_files.join(", ") },
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "By bucket:");
    let _ = writeln!(
        o,
        "  {:<24} {:<14} {:>8} {:>12} {:>11} {:>12} {:>12} {:>16}",
        "bucket", "region", "entries", "objects", "bytes", "KMS requests", "cost", "duration"
    );
    for b in &j.by_bucket {
        let s = &b.sums;
        let _ = writeln!(
            o,
            "  {:<24} {:<14} {:>8} {:>12} {:>11} {:>12} {:>12} {:>16}",
            b.bucket,
            b.region,
            s.entries.len(),
            thousands(s.objects_planned),
            human_bytes(s.planned_bytes),
            thousands(s.kms_requests),
            money(s.cost_usd),
            duration_cell(s.duration_seconds, s.duration_bound_by),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "By region (the KMS quota is per account and region: a region's entries share it):");
    let _ = writeln!(
        o,
        "  {:<14} {:>10} {:>7} {:>9} {:>8} {:>12} {:>12} {:>12} {:>16}",
        "region", "quota", "share", "KMS rps", "entries", "objects", "KMS requests", "cost", "duration"
    );
    for r in &j.by_region {
        let s = &r.sums;
        let _ = writeln!(
            o,
            "  {:<14} {:>10} {:>7} {:>9} {:>8} {:>12} {:>12} {:>12} {:>16}",
            r.region,
            thousands(r.kms_quota_rps as u64),
            r.kms_share,
            thousands(r.kms_rps as u64),
            s.entries.len(),
            thousands(s.objects_planned),
            thousands(s.kms_requests),
            money(s.cost_usd),
            duration_cell(s.duration_seconds, s.duration_bound_by),
        );
    }
    let t = &j.total;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Job: {} objects, {} planned ({} skipped); {} S3 requests, {} KMS requests",
        thousands(t.objects_planned),
        human_bytes(t.planned_bytes),
        thousands(t.objects_skipped),
        thousands(t.s3_requests),
        thousands(t.kms_requests)
    );
    let _ = writeln!(
        o,
        "  cost {} (copy only {}; via S3 Batch Operations {}); duration {} (the slowest region, {}-bound)",
        money(t.cost_usd),
        money(t.copy_only_usd),
        money(t.batch_operations_usd),
        human_duration(t.duration_seconds),
        t.duration_bound_by.to_uppercase()
    );
    for n in &j.notes {
        let _ = writeln!(o, "  - {n}");
    }
    let _ = writeln!(o, "  (every entry's full estimate: --format json)");
    o
}

/// A duration and what bounds it: `42.8s (S3)`.
fn duration_cell(secs: f64, bound_by: &str) -> String {
    format!("{} ({})", human_duration(secs), bound_by.to_uppercase())
}
