//! Which pending objects a Batch Operations job can take, and which job: the route each
//! object goes by. Objects a job cannot take stay for `rekey run`, with the reason.

use crate::store::ExportRow;
use crate::units::GIB;
use crate::vocab::Method;

/// The Batch Operations Copy operation takes objects "up to 5 GB" (docs/s3-facts.md §4.3).
pub const BATCH_COPY_MAX_BYTES: u64 = 5 * GIB;

/// Storage classes the Copy operation's `StorageClass` accepts (S3StorageClass). A copy
/// without one lands in STANDARD, so objects of any other class stay for `rekey run`,
/// which keeps the class.
pub const COPY_CLASSES: [&str; 5] = ["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"];

/// The Batch Operations operation a job runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// `S3PutObjectCopy` onto itself, into this storage class.
    Copy { storage_class: String },
    /// `S3UpdateObjectEncryption`: no copy, the object's data is not touched.
    Update,
}

impl Operation {
    /// The operation as the export's summary names it.
    pub fn label(&self) -> &'static str {
        match self {
            Operation::Copy { .. } => "Copy",
            Operation::Update => "UpdateObjectEncryption",
        }
    }

    pub fn storage_class(&self) -> Option<&str> {
        match self {
            Operation::Copy { storage_class } => Some(storage_class),
            Operation::Update => None,
        }
    }
}

/// Why an object stays for `rekey run` instead of going to a job. Ordered as the export
/// lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeftForRun {
    OverCopyLimit,
    SizeUnknown,
    ClassNotCopyable,
}

impl LeftForRun {
    pub fn reason(self) -> &'static str {
        match self {
            LeftForRun::OverCopyLimit => "over 5 GiB: the Batch Operations Copy operation stops at 5 GB",
            LeftForRun::SizeUnknown => "size unknown: it may be over the Copy operation's 5 GB",
            LeftForRun::ClassNotCopyable => "storage class the Copy operation cannot set (it would become STANDARD)",
        }
    }
}

/// The operation that re-encrypts `o` in a job, or why none can.
pub fn route(o: &ExportRow) -> Result<Operation, LeftForRun> {
    if o.method == Method::Update {
        return Ok(Operation::Update);
    }
    match (o.size, o.storage_class.as_deref()) {
        (Some(s), _) if s > BATCH_COPY_MAX_BYTES => Err(LeftForRun::OverCopyLimit),
        (None, _) => Err(LeftForRun::SizeUnknown),
        (_, Some(c)) if COPY_CLASSES.contains(&c) => Ok(Operation::Copy { storage_class: c.to_string() }),
        _ => Err(LeftForRun::ClassNotCopyable),
    }
}

/// The job an operation on a bucket goes to, named for its files: one job per operation,
/// bucket and (for copies) storage class.
pub fn job_name(operation: &Operation, bucket: &str) -> String {
    match operation {
        Operation::Update => format!("update-{}", safe_name(bucket)),
        Operation::Copy { storage_class } => format!("copy-{}-{storage_class}", safe_name(bucket)),
    }
}

/// File-name-safe: bucket names are already, a state file's stem may not be.
pub fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, size: Option<u64>, class: Option<&str>) -> ExportRow {
        ExportRow {
            bucket: "src-bucket".into(),
            key: "k".into(),
            version_id: None,
            size,
            storage_class: class.map(str::to_string),
            method: Method::parse(method).unwrap(),
        }
    }

    #[test]
    fn copies_up_to_5_gib_in_a_settable_class_go_to_a_job() {
        let at_limit = row("copy", Some(BATCH_COPY_MAX_BYTES), Some("STANDARD_IA"));
        assert_eq!(route(&at_limit), Ok(Operation::Copy { storage_class: "STANDARD_IA".into() }));
        for class in COPY_CLASSES {
            assert_eq!(route(&row("copy", Some(1), Some(class))).unwrap().storage_class(), Some(class));
        }
    }

    #[test]
    fn copies_a_job_cannot_take_stay_for_rekey_run() {
        assert_eq!(
            route(&row("copy", Some(BATCH_COPY_MAX_BYTES + 1), Some("STANDARD"))),
            Err(LeftForRun::OverCopyLimit)
        );
        assert_eq!(route(&row("copy", None, Some("STANDARD"))), Err(LeftForRun::SizeUnknown));
        for class in [Some("GLACIER"), Some("DEEP_ARCHIVE"), Some("REDUCED_REDUNDANCY"), None] {
            assert_eq!(route(&row("copy", Some(10), class)), Err(LeftForRun::ClassNotCopyable), "{class:?}");
        }
    }

    #[test]
    fn updates_go_to_a_job_whatever_their_size_or_class() {
        assert_eq!(route(&row("update", Some(6 * GIB), Some("DEEP_ARCHIVE"))), Ok(Operation::Update));
        assert_eq!(route(&row("update", None, None)), Ok(Operation::Update));
    }

    #[test]
    fn job_names_are_per_operation_bucket_and_class() {
        assert_eq!(job_name(&Operation::Update, "src-bucket"), "update-src-bucket");
        let copy = Operation::Copy { storage_class: "GLACIER_IR".into() };
        assert_eq!(job_name(&copy, "my.bucket"), "copy-my.bucket-GLACIER_IR");
        assert_eq!(copy.label(), "Copy");
        assert_eq!(Operation::Update.label(), "UpdateObjectEncryption");
    }

    #[test]
    fn safe_name_keeps_file_name_characters_only() {
        assert_eq!(safe_name("job-2024_01.v2"), "job-2024_01.v2");
        assert_eq!(safe_name("my job/plan é+"), "my_job_plan___");
        assert_eq!(safe_name(""), "");
    }
}
