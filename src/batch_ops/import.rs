//! Folding completion reports into the checkpoint: read each report (local or `s3://`),
//! check every line before anything is written, then mark each reported object done or
//! failed.

use super::report::{parse_completion, CompletionLine};
use crate::inventory::BlobStore;
use crate::store::{Checkpoint, ImportEffect};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// How many unknown objects are named; the rest are counted.
pub const UNKNOWN_SHOWN: usize = 10;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportTally {
    /// Each report and its row count, in the order read.
    pub rows: Vec<(String, u64)>,
    /// Objects by what importing them did ([`effect_label`]).
    pub effects: BTreeMap<&'static str, u64>,
    /// The first [`UNKNOWN_SHOWN`] reported objects that are not in the plan.
    pub unknown: Vec<String>,
    pub unknown_total: u64,
}

pub fn effect_label(effect: ImportEffect) -> &'static str {
    match effect {
        ImportEffect::MarkedDone => "marked done",
        ImportEffect::MarkedFailed => "marked failed",
        ImportEffect::KeptDone => "already done, failure not applied",
        ImportEffect::Unknown => "unknown (not in the plan)",
    }
}

/// Fold `reports` into `cp`. Every report is checked whole first: a malformed line leaves
/// the checkpoint as it was. `blobs` reads the `s3://` reports.
pub fn fold_reports(
    cp: &Checkpoint,
    reports: &[String],
    blobs: Option<&dyn BlobStore>,
    kms_key_arn: Option<&str>,
) -> Result<ImportTally> {
    for report in reports {
        read_report(report, blobs, |_| Ok(()))?;
    }
    let mut importer = cp.importer()?;
    let mut tally = ImportTally::default();
    for report in reports {
        let rows = read_report(report, blobs, |l| {
            let effect = importer.apply(&l.bucket, &l.key, l.version_id.as_deref(), &l.outcome, kms_key_arn)?;
            *tally.effects.entry(effect_label(effect)).or_default() += 1;
            if effect == ImportEffect::Unknown {
                tally.unknown_total += 1;
                if tally.unknown.len() < UNKNOWN_SHOWN {
                    tally.unknown.push(format!(
                        "s3://{}/{} (version {})",
                        l.bucket,
                        l.key.escape_debug(),
                        l.version_id.as_deref().unwrap_or("null")
                    ));
                }
            }
            Ok(())
        })?;
        tally.rows.push((report.clone(), rows));
    }
    importer.finish()?;
    Ok(tally)
}

/// Parse every line of one report, calling `f` on each; the row count. Errors name the
/// report and line.
pub fn read_report(
    report: &str,
    blobs: Option<&dyn BlobStore>,
    f: impl FnMut(&CompletionLine) -> Result<()>,
) -> Result<u64> {
    let reader: Box<dyn Read> = match report.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .with_context(|| format!("{report}: expected s3://BUCKET/KEY"))?;
            let blobs = blobs.expect("an S3 client is built when a report is on S3");
            blobs.open(bucket, key).map(|(r, _)| r as Box<dyn Read>).with_context(|| report.to_string())?
        }
        None => Box::new(std::fs::File::open(Path::new(report)).with_context(|| format!("{report}: cannot open"))?),
    };
    read_lines(report, reader, f)
}

/// The lines of one report from `reader`; `report` names it in errors.
fn read_lines(report: &str, reader: impl Read, mut f: impl FnMut(&CompletionLine) -> Result<()>) -> Result<u64> {
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(LineProbe::new(reader));
    let mut rec = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        let more = csv.read_record(&mut rec).map_err(|e| {
            let line = e.position().map(|p| format!("line {}: ", p.line())).unwrap_or_default();
            anyhow::anyhow!("{report}: {line}{e}")
        })?;
        if !more {
            break;
        }
        let line = record_line(&rec, csv.position(), csv.get_ref());
        let parsed = parse_completion(&rec).map_err(|e| anyhow::anyhow!("{report}: line {line}: {e}"))?;
        f(&parsed)?;
        rows += 1;
    }
    Ok(rows)
}

/// Passes a report through, noting how much was read and its last byte, so the line a
/// record started on can be worked out (see [`record_line`]).
struct LineProbe<R> {
    inner: R,
    eof: bool,
    total: u64,
    last: Option<u8>,
}

impl<R> LineProbe<R> {
    fn new(inner: R) -> LineProbe<R> {
        LineProbe { inner, eof: false, total: 0, last: None }
    }
}

impl<R: Read> Read for LineProbe<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
        } else {
            self.total += n as u64;
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// The line a record starts on. csv's own record position does not count the blank lines
/// it skipped before the record, so the line is worked back from where the reader stands
/// after it (csv counts LF bytes): less the line ends inside the record (a quoted
/// ResultMessage may hold some), less the one that ended it, unless the record is the
/// file's last and has none.
fn record_line<R>(rec: &csv::StringRecord, after: &csv::Position, probe: &LineProbe<R>) -> u64 {
    let inner = rec.as_slice().bytes().filter(|&b| b == b'\n').count() as u64;
    let unterminated = probe.eof && after.byte() == probe.total && probe.last != Some(b'\n');
    let start = rec.position().map(|p| p.line()).unwrap_or(1);
    after.line().saturating_sub(inner + u64::from(!unterminated)).max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", read_lines("r.csv", text.as_bytes(), |_| Ok(())).unwrap_err())
    }

    #[test]
    fn every_line_is_read_with_blank_lines_skipped() {
        let text =
            "b,k1,v,succeeded,200,,ok\n\nb,k2,,failed,403,AccessDenied,\"multi\nline\"\nb,k3,null,succeeded,,200,";
        let mut keys = Vec::new();
        let rows = read_lines("r.csv", text.as_bytes(), |l| {
            keys.push(l.key.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, 3);
        assert_eq!(keys, ["k1", "k2", "k3"]);
    }

    #[test]
    fn errors_name_the_line_the_record_starts_on() {
        assert_eq!(
            error_of("b,k,v,succeeded,200,,ok\n\n\nb,k,v,maybe,,,\n"),
            "r.csv: line 4: field TaskStatus: 'maybe' is neither succeeded nor failed"
        );
        assert_eq!(error_of("b,k,v,failed,500,,\"two\nlines\"\n,k,v,failed,,,"), "r.csv: line 3: field Bucket: empty");
    }
}
