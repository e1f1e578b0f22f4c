//! `paw.lock`: what `paw build` produced for each function of a project, pinned by hash.
//!
//! Compiles are byte-reproducible only on the same machine, so the lock pins the output (the
//! program id), with what it was made from (compile key, interpreter, teacher, compiler) for
//! `--locked` checks and for humans reading a diff. TOML, functions sorted by name, fields in a
//! fixed order: a rebuild that changes nothing rewrites the same bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use paw_format::ProgramId;
use serde::{Deserialize, Serialize};

/// The lock format this code reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// Largest lock file read: thousands of functions fit in far less.
pub const MAX_LOCK_BYTES: u64 = 4 * 1024 * 1024;

const HEADER: &str =
    "# Written by `paw build`: the program each function of paw.toml compiled to, pinned by\n\
                      # hash. Commit it; `paw build --locked` fails if a build would change it.\n";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max} bytes: not a lock file")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path} is not a valid lock file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has lock format version {found}; this paw reads version {LOCK_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: function name `{name}` is not an identifier (letters, digits, `_`, `-`; a letter or `_` first; at most 64)")]
    Name { path: PathBuf, name: String },
    #[error("{path}: function `{name}`: `{field}` is not {expected}: `{value}`")]
    Field {
        path: PathBuf,
        name: String,
        field: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// One function's pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFunction {
    /// The program's content id (`b3:` + 64 hex digits).
    pub program: ProgramId,
    /// The compile key that produced it (`b3:`...): same key, same recipe.
    pub compile_key: String,
    /// The interpreter's name as the program records it.
    pub interpreter_name: String,
    /// BLAKE3 of the interpreter's weights file (`b3:`...), as the program records it.
    pub interpreter: String,
    /// SHA-256 of the interpreter's weights file (64 hex digits), as published model files
    /// are checked.
    pub interpreter_sha256: String,
    /// BLAKE3 of the teacher's weights file, or `none` for a compile from examples only.
    pub teacher: String,
    /// The compiler and its version.
    pub compiler: String,
}

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    pub functions: BTreeMap<String, LockedFunction>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockToml {
    version: u32,
    #[serde(default, rename = "function")]
    functions: BTreeMap<String, LockedFunction>,
}

/// A function name: what `paw.toml`, the lock and `Project::function` accept.
pub fn is_function_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_b3(s: &str) -> bool {
    s.strip_prefix("b3:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Lockfile {
    /// Reads and checks `path`; a missing file is an error (see [`Lockfile::read_or_empty`]).
    pub fn read(path: &Path) -> Result<Self, LockError> {
        let text = read_text_at_most(path, MAX_LOCK_BYTES)
            .map_err(|source| LockError::Io {
                path: path.to_owned(),
                source,
            })?
            .ok_or_else(|| LockError::TooLarge {
                path: path.to_owned(),
                max: MAX_LOCK_BYTES,
            })?;
        Self::parse(&text, path)
    }

    /// [`Lockfile::read`], or an empty lock if `path` does not exist.
    pub fn read_or_empty(path: &Path) -> Result<Self, LockError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            _ => Self::read(path),
        }
    }

    /// Parses lock text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LockError> {
        let raw: LockToml = toml::from_str(text).map_err(|e| LockError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if raw.version != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.to_owned(),
                found: raw.version,
            });
        }
        for (name, f) in &raw.functions {
            if !is_function_name(name) {
                return Err(LockError::Name {
                    path: path.to_owned(),
                    name: name.clone(),
                });
            }
            let field = |field, expected, value: &str| LockError::Field {
                path: path.to_owned(),
                name: name.clone(),
                field,
                expected,
                value: value.to_owned(),
            };
            let b3 = "`b3:` and 64 lowercase hex digits";
            if !is_b3(&f.compile_key) {
                return Err(field("compile_key", b3, &f.compile_key));
            }
            if !is_b3(&f.interpreter) {
                return Err(field("interpreter", b3, &f.interpreter));
            }
            if !is_sha256(&f.interpreter_sha256) {
                return Err(field(
                    "interpreter_sha256",
                    "64 lowercase hex digits",
                    &f.interpreter_sha256,
                ));
            }
            if f.teacher != "none" && !is_b3(&f.teacher) {
                return Err(field("teacher", "`none` or a `b3:` hash", &f.teacher));
            }
        }
        Ok(Self {
            functions: raw.functions,
        })
    }

    /// The canonical text: header, version, functions sorted by name.
    pub fn to_toml(&self) -> String {
        let raw = LockToml {
            version: LOCK_VERSION,
            functions: self.functions.clone(),
        };
        // Serialising plain strings and integers cannot fail.
        let body = toml::to_string(&raw).unwrap_or_default();
        format!("{HEADER}{body}")
    }

    /// Writes the canonical text atomically (temporary file beside `path`, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, self.to_toml().as_bytes())?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// A UTF-8 text file of at most `max` bytes (`Ok(None)` if it is larger), read without ever
/// holding more than `max + 1` bytes: for manifests and locks, which may come from anywhere.
pub fn read_text_at_most(path: &Path, max: u64) -> std::io::Result<Option<String>> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    Ok((text.len() as u64 <= max).then_some(text))
}

/// SHA-256 (64 lowercase hex digits) of a file's bytes, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: u8) -> LockedFunction {
        LockedFunction {
            program: ProgramId::of_bytes(&[n]),
            compile_key: format!("b3:{}", "a".repeat(64)),
            interpreter_name: "tiny".into(),
            interpreter: format!("b3:{}", "b".repeat(64)),
            interpreter_sha256: "c".repeat(64),
            teacher: "none".into(),
            compiler: "paw-compile/train 0.1.0".into(),
        }
    }

    #[test]
    fn round_trips_sorted_and_byte_stable() {
        let mut lock = Lockfile::default();
        lock.functions.insert("zeta".into(), entry(1));
        lock.functions.insert("alpha".into(), entry(2));
        let text = lock.to_toml();
        assert!(text.find("[function.alpha]").unwrap() < text.find("[function.zeta]").unwrap());
        let back = Lockfile::parse(&text, Path::new("paw.lock")).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut lock = Lockfile::default();
        lock.functions.insert("f".into(), entry(1));
        let good = lock.to_toml();
        let p = Path::new("paw.lock");
        let bad =
            |from: &str, to: &str| Lockfile::parse(&good.replacen(from, to, 1), p).unwrap_err();
        assert!(matches!(
            bad("version = 1", "version = 2"),
            LockError::Version { found: 2, .. }
        ));
        assert!(matches!(
            bad("[function.f]", "[function.\"1f\"]"),
            LockError::Name { .. }
        ));
        assert!(matches!(
            bad(&"c".repeat(64), "xyz"),
            LockError::Field {
                field: "interpreter_sha256",
                ..
            }
        ));
        assert!(matches!(
            bad("teacher = \"none\"", "teacher = \"b3:0\""),
            LockError::Field {
                field: "teacher",
                ..
            }
        ));
        let e = bad("compiler =", "colour = \"red\"\ncompiler =");
        assert!(matches!(e, LockError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(matches!(
            bad("program = \"b3:", "program = \"b3:zz"),
            LockError::Parse { .. }
        ));
    }

    #[test]
    fn names_are_identifiers() {
        for ok in ["a", "_x", "log_alert", "json-fix2"] {
            assert!(is_function_name(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_function_name(bad), "{bad}");
        }
    }
}
