//! Object keys in CSV inventories are URL-encoded as HTML form data: `+` is a space, `%XX`
//! a byte, and the bytes are UTF-8. So `a b+c%.txt` is written `a+b%2Bc%25.txt`
//! (docs/s3-facts.md §1.3: "the key name is URL-encoded and must be decoded"; spaces as `+`
//! per cloud-custodian#1997). Batch Operations manifests use the same encoding, and `%20`
//! decodes to a space here too, so hand-written manifests work as well.

use thiserror::Error;

/// S3's limit on a key's length, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("invalid percent-encoding '{0}' at byte {1}")]
    BadPercent(String, usize),
    #[error("not valid UTF-8 after decoding (byte {0})")]
    InvalidUtf8(usize),
    #[error("key is {0} bytes long; S3 keys are at most 1,024 bytes")]
    TooLong(usize),
    #[error("key is empty")]
    Empty,
}

/// Decode a form-encoded key. Invalid escapes (`%ZZ`, a trailing `%`) are errors, not
/// passed through: a key decoded wrongly would name another object.
pub fn decode_form_key(raw: &[u8]) -> Result<String, KeyError> {
    let bytes = if raw.iter().any(|&b| b == b'%' || b == b'+') {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = raw.get(i + 1..i + 3);
                    let val = hex.and_then(|h| Some(hex_val(h[0])? << 4 | hex_val(h[1])?));
                    match val {
                        Some(v) => out.push(v),
                        None => {
                            let end = (i + 3).min(raw.len());
                            let shown = String::from_utf8_lossy(&raw[i..end]).into_owned();
                            return Err(KeyError::BadPercent(shown, i));
                        }
                    }
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        out
    } else {
        raw.to_vec()
    };
    let key = String::from_utf8(bytes).map_err(|e| KeyError::InvalidUtf8(e.utf8_error().valid_up_to()))?;
    check_key(&key)?;
    Ok(key)
}

/// Length rules every key obeys, whatever its source.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    Ok(())
}

/// The inverse, used when rekey writes inventories (demo, tests) and Batch Operations
/// manifests: unreserved characters and `/` stay, space becomes `+`, the rest `%XX`.
pub fn encode_form_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for &b in key.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encode a key for a URL path or `x-amz-copy-source`: `/` and unreserved characters
/// stay, everything else (space included) becomes `%XX`.
pub fn encode_path(key: &str) -> String {
    percent_encode(key, b"/")
}

/// Percent-encode a query value: only RFC 3986's unreserved characters stay, as the SDK's
/// query writer does.
pub fn encode_query_value(v: &str) -> String {
    percent_encode(v, b"")
}

/// `%XX` for every byte but RFC 3986's unreserved characters and those in `keep`.
fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example() {
        assert_eq!(decode_form_key(b"a+b%2Bc%25.txt").unwrap(), "a b+c%.txt");
        assert_eq!(encode_form_key("a b+c%.txt"), "a+b%2Bc%25.txt");
    }

    #[test]
    fn copy_source_encoding() {
        assert_eq!(encode_path("a b+c%.txt"), "a%20b%2Bc%25.txt");
        assert_eq!(encode_path("dir/é"), "dir/%C3%A9");
    }

    #[test]
    fn real_inventory_key_keeps_slashes() {
        // From the dandiarchive inventory (tests/data/real/real-dandi-s3invsync).
        assert_eq!(
            decode_form_key(b"dandiarchive/hive/dt%3D2024-05-07-01-00/symlink.txt").unwrap(),
            "dandiarchive/hive/dt=2024-05-07-01-00/symlink.txt"
        );
    }

    #[test]
    fn unicode_quotes_newlines_commas_round_trip() {
        for key in ["données/été 2024.csv", "日本語/ファイル", "say \"hi\", ok", "line1\nline2\r\n", "%%++  "]
        {
            let enc = encode_form_key(key);
            assert!(enc.is_ascii());
            assert_eq!(decode_form_key(enc.as_bytes()).unwrap(), key);
        }
        assert_eq!(decode_form_key("données".as_bytes()).unwrap(), "données");
        assert_eq!(decode_form_key(b"a%20b").unwrap(), "a b");
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(decode_form_key(b"bad%ZZkey"), Err(KeyError::BadPercent("%ZZ".into(), 3)));
        assert!(matches!(decode_form_key(b"trailing%"), Err(KeyError::BadPercent(..))));
        assert!(matches!(decode_form_key(b"trailing%4"), Err(KeyError::BadPercent(..))));
        assert!(matches!(decode_form_key(b"bad%FF%FEutf8"), Err(KeyError::InvalidUtf8(3))));
        assert_eq!(decode_form_key(b""), Err(KeyError::Empty));
        let long = "k".repeat(1025);
        assert_eq!(decode_form_key(long.as_bytes()), Err(KeyError::TooLong(1025)));
        assert!(decode_form_key("k".repeat(1024).as_bytes()).is_ok());
    }
}

#[cfg(test)]
pub(crate) mod props {
    use super::*;
    use proptest::prelude::*;

    /// Keys as S3 allows them: any Unicode, heavy on what the encodings must escape
    /// (commas, quotes, CR, LF, `%`, `+`, spaces), cut to at most `max` bytes of UTF-8.
    pub fn key(max: usize) -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            4 => any::<char>(),
            2 => prop::sample::select(vec![',', '"', '\n', '\r', '%', '+', ' ', '/', '\t', '\'', '\0', 'é', '日']),
            2 => prop::char::range('a', 'z'),
        ];
        prop::collection::vec(ch, 1..=max).prop_map(move |chars| {
            let mut k = String::new();
            for c in chars {
                if k.len() + c.len_utf8() > max {
                    break;
                }
                k.push(c);
            }
            k
        })
    }

    proptest! {
        #[test]
        fn encoded_keys_decode_to_themselves(key in key(MAX_KEY_BYTES)) {
            let enc = encode_form_key(&key);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~/*+%".contains(&b)), "{enc}");
            prop_assert_eq!(decode_form_key(enc.as_bytes()), Ok(key.clone()));
            // The path encoding is plain percent-encoding: decoding it as form data is exact too.
            prop_assert_eq!(decode_form_key(encode_path(&key).as_bytes()), Ok(key));
        }

        #[test]
        fn keys_over_the_limit_are_refused(key in key(MAX_KEY_BYTES + 200)) {
            let got = decode_form_key(encode_form_key(&key).as_bytes());
            if key.len() > MAX_KEY_BYTES {
                prop_assert_eq!(got, Err(KeyError::TooLong(key.len())));
            } else {
                prop_assert_eq!(got, Ok(key));
            }
        }

        /// Arbitrary bytes, with `%`, `+` and hex digits common: an error or a key, never a
        /// panic; and a key, re-encoded, decodes to itself.
        #[test]
        fn arbitrary_bytes_never_panic(raw in prop::collection::vec(
            prop_oneof![
                3 => any::<u8>(),
                1 => Just(b'%'),
                1 => Just(b'+'),
                1 => prop::sample::select(b"0123456789abcdefABCDEF".to_vec()),
            ],
            0..1200,
        )) {
            match decode_form_key(&raw) {
                Ok(key) => {
                    prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES);
                    prop_assert_eq!(decode_form_key(encode_form_key(&key).as_bytes()), Ok(key));
                }
                Err(KeyError::BadPercent(shown, at)) => {
                    prop_assert_eq!(raw[at], b'%');
                    prop_assert!(shown.starts_with('%'));
                }
                Err(_) => {}
            }
        }
    }
}
