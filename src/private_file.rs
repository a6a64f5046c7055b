//! Files rekey writes for people and other tools (reports, Batch Operations manifests and
//! job requests). They list object keys, ETags, account ids and role ARNs, so, like the
//! checkpoint, they are readable by their owner only: created 0600, and brought back to
//! 0600 when an existing file is overwritten.

use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create (or truncate) `path` for writing, mode 0600.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies only to a file that did not exist yet.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_overwritten_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.csv");
        create_private(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        let old = dir.path().join("old.csv");
        std::fs::write(&old, "previous contents").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&old).unwrap();
        assert_eq!(std::fs::metadata(&old).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&old).unwrap(), b"", "truncated");
    }
}
