//! Byte sizes and time formatting shared by the CLI, the planner and the reports.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// A byte count given by a person: `5368709120`, `5GiB`, `512MiB`, `128KiB`, `1TiB`.
/// Decimal units (`5GB`) are refused on purpose: S3's limits are binary (5 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!("'{s}' is not a size: expected a number of bytes or e.g. 512MiB"));
        }
        let n: u64 = num.parse().map_err(|_| format!("'{s}' is too large"))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" => KIB,
            "MiB" => MIB,
            "GiB" => GIB,
            "TiB" => TIB,
            other => return Err(format!("'{s}': unknown unit '{other}' (use B, KiB, MiB, GiB or TiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("'{s}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_bytes(self.0))
    }
}

/// `1.5 TiB`, `512 MiB`, `17 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 5] = [("PiB", 1 << 50), ("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];
    for (name, size) in UNITS {
        if n >= size {
            return format!("{:.1} {name}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// `3d 4h`, `2h 05m`, `4m 10s`, `12.3s`.
pub fn human_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "unknown".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since the Unix epoch as RFC 3339 (`2024-05-07T01:00:00Z`).
pub fn rfc3339_from_ms(ms: i64) -> String {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(ms).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| ms.to_string())
}

/// Parse an RFC 3339 timestamp as S3 Inventory writes it (`2024-05-06T22:37:48.000Z`).
pub fn ms_from_rfc3339(s: &str) -> Option<i64> {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    DateTime::from_str(s, DateTimeFormat::DateTime).ok().and_then(|d| d.to_millis().ok())
}

pub fn now_rfc3339() -> String {
    rfc3339_from_ms(now_ms())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A small, fast, seeded PRNG (SplitMix64): the same seed gives the same inventory.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Pick from weighted choices.
    pub fn pick<'a, T>(&mut self, choices: &'a [(T, u32)]) -> &'a T {
        let total: u32 = choices.iter().map(|c| c.1).sum();
        let mut r = self.below(total as u64) as u32;
        for (v, w) in choices {
            if r < *w {
                return v;
            }
            r -= w;
        }
        &choices[choices.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_binary_units_only() {
        assert_eq!("5GiB".parse::<ByteSize>().unwrap().0, 5 * GIB);
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap().0, 512 * MIB);
        assert_eq!("1234".parse::<ByteSize>().unwrap().0, 1234);
        assert!("5GB".parse::<ByteSize>().is_err());
        assert!("GiB".parse::<ByteSize>().is_err());
        assert!("99999999999999999999".parse::<ByteSize>().is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(human_bytes(5 * GIB), "5.0 GiB");
        assert_eq!(human_duration(3725.0), "1h 02m");
        assert_eq!(rfc3339_from_ms(1715043600000), "2024-05-07T01:00:00Z");
        assert_eq!(ms_from_rfc3339("2024-05-06T22:37:48.000Z"), Some(1715035068000));
        assert_eq!(ms_from_rfc3339("yesterday"), None);
    }
}
