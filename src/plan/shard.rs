//! Sharded plans: `rekey plan --shards N` splits the objects over N checkpoints, each run
//! on its own machine.
//!
//! An object's shard is `FNV-1a-64(bucket ‖ 0x00 ‖ key) mod N`, numbered from 1. FNV-1a
//! (64-bit offset basis 0xcbf29ce484222325, prime 0x100000001b3) is fixed and documented,
//! so the same object lands in the same shard on every machine, in every build and every
//! planning run; std's `DefaultHasher` is randomly keyed per process and would not.
//! The version is not hashed: every version of a key is in one shard. The NUL separator
//! cannot occur in a bucket name, so `("ab", "c")` and `("a", "bc")` hash apart.

use std::path::{Path, PathBuf};

/// The most shards a plan may have: each is a SQLite file written at once while planning.
pub const MAX_SHARDS: u32 = 256;

/// How `--shards` is described in estimates and in docs/scale-out.md.
pub const HASH_NAME: &str = "FNV-1a 64 of bucket, NUL, key; mod N";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit, over `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The stable hash of an object's bucket and key.
pub fn object_hash(bucket: &str, key: &str) -> u64 {
    fnv1a(fnv1a(fnv1a(FNV_OFFSET, bucket.as_bytes()), &[0]), key.as_bytes())
}

/// The object's shard, 0-based (`shards` must be at least 1).
pub fn shard_of(bucket: &str, key: &str, shards: u32) -> usize {
    (object_hash(bucket, key) % u64::from(shards.max(1))) as usize
}

/// Shard `index` (0-based) of `count`'s checkpoint: `plan.rekey` → `plan.shard-1-of-4.rekey`,
/// `plan` → `plan.shard-1-of-4`.
pub fn shard_path(state: &Path, index: usize, count: u32) -> PathBuf {
    let tag = format!("shard-{}-of-{count}", index + 1);
    let name = match (state.file_stem(), state.extension()) {
        (Some(stem), Some(ext)) => format!("{}.{tag}.{}", stem.to_string_lossy(), ext.to_string_lossy()),
        (Some(stem), None) => format!("{}.{tag}", stem.to_string_lossy()),
        _ => format!("rekey.{tag}"),
    };
    state.with_file_name(name)
}

/// `--shards N`: between 1 and [`MAX_SHARDS`].
pub fn check_shards(n: u32) -> Result<u32, String> {
    if n == 0 || n > MAX_SHARDS {
        return Err(format!(
            "--shards {n}: must be between 1 and {MAX_SHARDS} (1 is an unsharded plan; each shard is one checkpoint for one machine)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_reference_values() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
        // bucket NUL key, fixed forever: changing it would move objects between shards.
        assert_eq!(object_hash("a", "bc"), fnv1a(FNV_OFFSET, b"a\0bc"));
        assert_ne!(object_hash("ab", "c"), object_hash("a", "bc"));
    }

    #[test]
    fn shards_are_spread_and_in_range() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            let s = shard_of("bucket", &format!("logs/2026/{i:05}.gz"), 4);
            counts[s] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of("b", "k", 1), 0);
    }

    #[test]
    fn shard_file_names() {
        assert_eq!(shard_path(Path::new("dir/plan.rekey"), 0, 4), Path::new("dir/plan.shard-1-of-4.rekey"));
        assert_eq!(shard_path(Path::new("plan"), 3, 4), Path::new("plan.shard-4-of-4"));
        assert_eq!(shard_path(Path::new("/x/a.b.rekey"), 1, 2), Path::new("/x/a.b.shard-2-of-2.rekey"));
    }

    #[test]
    fn bad_counts() {
        assert!(check_shards(0).unwrap_err().contains("--shards 0: must be between 1 and 256"));
        assert!(check_shards(257).is_err());
        assert_eq!(check_shards(4), Ok(4));
    }
}
