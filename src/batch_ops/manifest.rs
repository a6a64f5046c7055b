//! Batch Operations CSV manifests: one `Bucket,Key,VersionId` line per object, written
//! with its MD5 alongside, since the MD5 of a single-part upload is the ETag CreateJob
//! must name.

use super::select::Operation;
use crate::inventory::keys::encode_path;
use crate::store::ExportRow;
use crate::vocab::Method;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One manifest line. The key is percent-encoded (see the module doc of
/// [`crate::batch_ops`]), so a line never needs CSV quoting; Batch Operations wants
/// `null` for the null version, not an empty field.
pub fn manifest_line(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    format!("{bucket},{},{}\n", encode_path(key), version_id.unwrap_or("null"))
}

/// Objects by (method, storage class), to cost a job from the estimate's breakdown.
pub type ObjectsByLine = BTreeMap<(Method, String), u64>;

/// A manifest being written.
pub struct ManifestWriter<W: Write> {
    out: W,
    md5: Md5,
    manifest: Manifest,
}

/// A manifest: its job's operation and bucket, what it lists, and (once finished) its MD5.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The job's name, also the manifest's file stem.
    pub name: String,
    pub bucket: String,
    pub operation: Operation,
    pub path: PathBuf,
    pub objects: u64,
    pub bytes: u64,
    pub by_line: ObjectsByLine,
    /// Hex MD5 of the file as written; empty until [`ManifestWriter::finish`].
    pub md5: String,
}

impl ManifestWriter<BufWriter<std::fs::File>> {
    /// Create `dir/NAME.csv`, owner-only (it lists keys).
    pub fn create(dir: &Path, name: String, bucket: String, operation: Operation) -> io::Result<Self> {
        let path = dir.join(format!("{name}.csv"));
        let file = crate::private_file::create_private(&path)?;
        Ok(ManifestWriter::new(BufWriter::new(file), Manifest::empty(name, bucket, operation, path)))
    }
}

impl<W: Write> ManifestWriter<W> {
    pub fn new(out: W, manifest: Manifest) -> Self {
        ManifestWriter { out, md5: Md5::new(), manifest }
    }

    /// The job's name, also the manifest's file stem.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn add(&mut self, o: &ExportRow) -> io::Result<()> {
        let line = manifest_line(&o.bucket, &o.key, o.version_id.as_deref());
        self.out.write_all(line.as_bytes())?;
        self.md5.update(line.as_bytes());
        let m = &mut self.manifest;
        m.objects += 1;
        m.bytes += o.size.unwrap_or(0);
        *m.by_line.entry((o.method, o.storage_class.clone().unwrap_or_default())).or_default() += 1;
        Ok(())
    }

    /// Flush the file and record its MD5.
    pub fn finish(mut self) -> io::Result<Manifest> {
        self.out.flush()?;
        self.manifest.md5 = format!("{:x}", self.md5.finalize());
        Ok(self.manifest)
    }
}

impl Manifest {
    pub fn empty(name: String, bucket: String, operation: Operation, path: PathBuf) -> Manifest {
        Manifest { name, bucket, operation, path, objects: 0, bytes: 0, by_line: BTreeMap::new(), md5: String::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, version: Option<&str>, size: u64, class: &str) -> ExportRow {
        ExportRow {
            bucket: "src-bucket".into(),
            key: key.into(),
            version_id: version.map(str::to_string),
            size: Some(size),
            storage_class: Some(class.into()),
            method: Method::Update,
        }
    }

    #[test]
    fn lines_percent_encode_the_key_and_write_null_versions_as_null() {
        assert_eq!(manifest_line("b", "plain/a.txt", Some("v1")), "b,plain/a.txt,v1\n");
        assert_eq!(manifest_line("b", "x y+z,é/ü.txt", Some("v3")), "b,x%20y%2Bz%2C%C3%A9/%C3%BC.txt,v3\n");
        assert_eq!(manifest_line("b", "a\nb%c", None), "b,a%0Ab%25c,null\n");
    }

    #[test]
    fn the_md5_and_counts_are_of_the_lines_written() {
        let m = Manifest::empty("update-b".into(), "src-bucket".into(), Operation::Update, "m.csv".into());
        let mut w = ManifestWriter::new(Vec::new(), m);
        w.add(&row("a", Some("v1"), 10, "STANDARD")).unwrap();
        w.add(&row("b c", None, 5, "STANDARD")).unwrap();
        w.add(&row("d", None, 1, "GLACIER")).unwrap();
        let written = String::from_utf8(w.out.clone()).unwrap();
        let m = w.finish().unwrap();
        assert_eq!(written, "src-bucket,a,v1\nsrc-bucket,b%20c,null\nsrc-bucket,d,null\n");
        assert_eq!(m.md5, format!("{:x}", Md5::digest(written.as_bytes())));
        assert_eq!((m.objects, m.bytes), (3, 16));
        let by_line: Vec<_> = m.by_line.into_iter().collect();
        assert_eq!(
            by_line,
            [((Method::Update, "GLACIER".to_string()), 1), ((Method::Update, "STANDARD".to_string()), 2)]
        );
    }
}
