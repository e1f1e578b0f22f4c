//! Content ids: `b3:<64 lowercase hex>` = BLAKE3 of a file's bytes.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use crate::error::{FormatError, Result};

/// Prefix of program ids and of every other `b3:` BLAKE3 hash paw records (weights, tokenizers,
/// store keys).
pub const B3_PREFIX: &str = "b3:";
/// Hex digits in [`ProgramId::short`].
pub const SHORT_ID_HEX_LEN: usize = 12;

/// The content address of a `.paw` file: BLAKE3 of its canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProgramId([u8; 32]);

impl ProgramId {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub const fn from_hash(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the `b3:` prefix (e.g. for store file names).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `b3:` and the first [`SHORT_ID_HEX_LEN`] hex digits, for display only.
    pub fn short(&self) -> String {
        let hex = self.to_hex();
        format!("{B3_PREFIX}{}", &hex[..SHORT_ID_HEX_LEN])
    }
}

impl std::fmt::Display for ProgramId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{B3_PREFIX}{}", self.to_hex())
    }
}

/// Why a string is not a program id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("a program id starts with \"b3:\"; got {0:?}")]
    MissingPrefix(String),
    #[error("a program id is \"b3:\" followed by 64 lowercase hex digits; got {0:?}")]
    BadHex(String),
}

impl FromStr for ProgramId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let hex = s
            .strip_prefix(B3_PREFIX)
            .ok_or_else(|| ParseIdError::MissingPrefix(s.to_owned()))?;
        // Lowercase only, so each id has exactly one spelling.
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseIdError::BadHex(s.to_owned()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| ParseIdError::BadHex(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for ProgramId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ProgramId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `b3:<hex>` BLAKE3 of a file's bytes, read in a streaming fashion (for multi-GB weights).
pub fn hash_file(path: &Path) -> Result<String> {
    let io = |action, source| FormatError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{B3_PREFIX}{}", hasher.finalize().to_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_displays_and_parses_back() {
        let id = ProgramId::of_bytes(b"abc");
        let text = id.to_string();
        assert_eq!(text, format!("b3:{}", blake3::hash(b"abc").to_hex()));
        assert_eq!(text.parse::<ProgramId>(), Ok(id));
        assert_eq!(id.short(), text[..3 + SHORT_ID_HEX_LEN]);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let hex = "ab".repeat(32);
        assert!(matches!(
            hex.parse::<ProgramId>(),
            Err(ParseIdError::MissingPrefix(_))
        ));
        assert!(matches!(
            format!("b3:{}", &hex[1..]).parse::<ProgramId>(),
            Err(ParseIdError::BadHex(_))
        ));
        assert!(matches!(
            format!("b3:{}", hex.to_uppercase()).parse::<ProgramId>(),
            Err(ParseIdError::BadHex(_))
        ));
    }

    #[test]
    fn hash_file_matches_blake3_of_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        assert_eq!(
            hash_file(&path).expect("hash"),
            format!("b3:{}", blake3::hash(&data).to_hex())
        );
    }
}
