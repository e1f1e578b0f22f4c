//! The local content-addressed store: compiled programs and installed base models.
//!
//! Layout under the root (`$PAW_HOME`, else `~/.cache/paw`):
//!
//! ```text
//! programs/<blake3-hex>.paw   a program, named by the BLAKE3 of its bytes (id `b3:<hex>`)
//! models/<sha256-hex>.gguf    a base model, named by the SHA-256 its manifest entry pins
//! models/<sha256-hex>.dir/    a Hugging Face safetensors directory (`paw models add DIR`),
//!                             named by the SHA-256 of its file listing (`src/model_dir.rs`)
//! models/<sha256-hex>.json    what is known about it: size, SHA-256, `b3:` hash, manifest id
//! compiles/<key-hex>          the id of the program a compile key produced
//! stages/<kind>/<key-hex>     a finished compile stage (derived data, safe to delete)
//! tmp/                        in-progress writes (leftovers older than a day removed on open)
//! ```
//!
//! Every write goes to a temporary file in `tmp/` (same filesystem), is fsynced, then renamed
//! into place. Rename is atomic, and a name is a function of the content, so several processes
//! may write the same entry at once: the last rename wins with identical bytes, and readers see
//! either no file or a complete one.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use paw_format::{FormatError, ProgramId, B3_PREFIX};

/// Environment variable that overrides the store root.
pub const PAW_HOME_ENV: &str = "PAW_HOME";
/// Shortest id prefix `resolve_program` accepts, so that a short word is not taken as an id.
pub const MIN_ID_PREFIX_LEN: usize = 4;

const PROGRAMS_DIR: &str = "programs";
const MODELS_DIR: &str = "models";
const TMP_DIR: &str = "tmp";
/// The file that marks a directory as a paw store.
const STORE_MARKER: &str = "PAW_STORE";
const STORE_MARKER_TEXT: &str = "This directory is a paw store (programs, models, caches).\n";
/// Everything a store root may hold: a directory with anything else is not a store.
const STORE_ENTRIES: [&str; 5] = [PROGRAMS_DIR, MODELS_DIR, TMP_DIR, COMPILES_DIR, STAGES_DIR];
/// Name prefixes of what the store's writers create in `tmp/` (the only names it ever removes).
pub(crate) const TMP_PREFIXES: [&str; 4] = [
    "write-",
    "model-",
    FETCH_TMP_PREFIX,
    crate::model_dir::MODEL_DIR_TMP_PREFIX,
];
/// Prefix of a model download's working directory in `tmp/`.
pub(crate) const FETCH_TMP_PREFIX: &str = "fetch-";
/// Temporary files older than this were left by killed writes (no write takes a day).
pub const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const PROGRAM_EXT: &str = "paw";
/// `compiles/<key hex>` holds the id of the program a compile key produced.
const COMPILES_DIR: &str = "compiles";
/// `stages/<kind>/<key hex>` holds the output of a finished compile stage.
const STAGES_DIR: &str = "stages";
/// First bytes of a stage entry; the BLAKE3 of its kind, key and payload follows.
const STAGE_MAGIC: &[u8; 8] = b"PAWSTG01";
/// Largest stage entry the store writes or reads back, header included.
pub const MAX_STAGE_BYTES: u64 = 64 << 20;
const MODEL_EXT: &str = "gguf";
const MODEL_META_EXT: &str = "json";
/// Large enough that hashing and the write syscalls, not buffer juggling, dominate a 1 GB copy.
pub(crate) const COPY_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot locate the paw store: neither {PAW_HOME_ENV} nor HOME is set")]
    NoHome,
    #[error(
        "{root} is not a paw store: it holds `{}`, and the store removes files it finds in \
         its directories; point PAW_HOME at an empty or new directory",
        found.display()
    )]
    NotAStore { root: PathBuf, found: PathBuf },
    #[error("no program `{reference}`: it is not a file, and no stored program has that id")]
    NoSuchProgram { reference: String },
    #[error(
        "program id prefix `{prefix}` is ambiguous; it matches: {}",
        join_ids(candidates)
    )]
    AmbiguousProgram {
        prefix: String,
        candidates: Vec<ProgramId>,
    },
    #[error(
        "program id prefix `{prefix}` is too short: give at least {MIN_ID_PREFIX_LEN} hex digits"
    )]
    PrefixTooShort { prefix: String },
    #[error(
        "store entry {path} does not hold program {expected}: its bytes hash to {actual} \
         (damaged or swapped); add the program again with `paw add FILE`"
    )]
    WrongBytes {
        path: PathBuf,
        expected: ProgramId,
        actual: ProgramId,
    },
    #[error("reading program {path}: {source}")]
    ReadProgram {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("not storing an invalid program: {0}")]
    InvalidProgram(#[from] FormatError),
    #[error("`{value}` is not a SHA-256 (expected 64 lowercase hex digits)")]
    InvalidSha256 { value: String },
    #[error("`{value}` is not a store key (expected `b3:` and 64 lowercase hex digits)")]
    InvalidKey { value: String },
    #[error("`{value}` is not a stage kind (expected 1 to 32 of a-z, 0-9 and -)")]
    InvalidStageKind { value: String },
    #[error("stage entry {path} is {size} bytes; the limit is {MAX_STAGE_BYTES}")]
    StageTooLarge { path: PathBuf, size: u64 },
    #[error("stage entry {path} is corrupt: {reason}")]
    CorruptStage { path: PathBuf, reason: &'static str },
    #[error(
        "model data does not match what was expected: got {actual_size} bytes with SHA-256 \
         {actual_sha256}, expected {expected_size} bytes with SHA-256 {expected_sha256}"
    )]
    ModelMismatch {
        expected_size: u64,
        expected_sha256: String,
        actual_size: u64,
        actual_sha256: String,
    },
    #[error("{path} is not a Hugging Face model directory: {reason}")]
    NotAModelDir { path: PathBuf, reason: &'static str },
    #[error("the model directory is not one the runtime can load: {0}")]
    WeightsHash(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("model metadata {path}: {source}")]
    ModelMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the program was compiled for interpreter {name} ({weights_hash}), which is not in the \
         store {store_root}; install it (`paw models fetch ID`, see `paw models`) or pass \
         --model PATH"
    )]
    InterpreterNotInstalled {
        /// The interpreter's name as the program records it.
        name: String,
        /// The `b3:` weights hash the program was compiled against.
        weights_hash: String,
        store_root: PathBuf,
    },
}

fn join_ids(ids: &[ProgramId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// A program held by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProgram {
    pub id: ProgramId,
    pub path: PathBuf,
    pub size: u64,
}

/// What a model install must match, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedModel {
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// The manifest id, recorded in the metadata file for humans and `installed_models`.
    pub manifest_id: Option<String>,
}

/// The metadata file written beside each installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub size: u64,
    pub sha256: String,
    /// `b3:<hex>` of the file bytes: what programs record as `weights_hash`, kept here so that
    /// nobody has to re-hash a gigabyte to learn it. For a directory, the runtime's weights
    /// hash of it (`spec/interpreter-identity.md`).
    pub blake3: String,
    pub manifest_id: Option<String>,
    /// A safetensors directory (`models/<sha256>.dir/`) rather than a GGUF file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory: bool,
}

/// A verified model in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    pub path: PathBuf,
    pub meta: ModelMeta,
}

/// Result of re-hashing a model in the store against its expected size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    Missing,
    Verified(InstalledModel),
    /// A file is there but its bytes are wrong; installing again replaces it atomically.
    Corrupt {
        path: PathBuf,
        actual_size: u64,
        actual_sha256: String,
    },
}

/// What [`Store::compile_cached`] stores from a finished compile.
#[derive(Debug, Clone, Copy)]
pub struct CompiledProgram<'a> {
    /// The program's canonical bytes.
    pub bytes: &'a [u8],
    /// The id the compiler computed; the bytes must hash to it.
    pub id: &'a ProgramId,
    /// The compile key of what was compiled, recorded in the compile index (the key looked up,
    /// unless the inputs changed on disk meanwhile).
    pub key: &'a str,
}

/// What a program reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramRef {
    /// A stored program, by its id (from the file name: the bytes are checked when read).
    Stored(StoredProgram),
    /// A file outside the store's naming, by path.
    File(PathBuf),
}

/// A program's bytes and the id they hash to.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// BLAKE3 of `bytes`: when loaded by id, that id.
    pub id: ProgramId,
}

/// What follows `b3:` in a reference that starts with it, or the whole reference if it is hex
/// digits alone: an id or id prefix. Other references are paths.
fn id_shaped(reference: &str) -> Option<&str> {
    match reference.get(..B3_PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(B3_PREFIX) => Some(&reference[B3_PREFIX.len()..]),
        _ => is_id_hex(reference).then_some(reference),
    }
}

/// 1 to 64 hex digits: a full id's or a prefix's.
fn is_id_hex(hex: &str) -> bool {
    !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A program file read under the format's size cap.
fn read_program_file(path: &Path) -> Result<Vec<u8>> {
    paw_format::reader::read_file(path).map_err(|source| StoreError::ReadProgram {
        path: path.to_owned(),
        source,
    })
}

/// Where [`Store::compile_cached`] got the program from.
#[derive(Debug)]
pub enum CompileCached<T> {
    /// The compile index held a program for the key; nothing was compiled.
    Found(StoredProgram),
    /// The compile ran: what it returned, and the program stored from it.
    Compiled { output: T, stored: StoredProgram },
}

/// Handle on a store root. Cheap to clone; holds no open files or locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$PAW_HOME` if set and non-empty, else `$HOME/.cache/paw`.
    pub fn default_root() -> Result<PathBuf> {
        default_root_from(std::env::var_os(PAW_HOME_ENV), std::env::var_os("HOME"))
    }

    pub fn open_default() -> Result<Self> {
        Self::open(Self::default_root()?)
    }

    /// Opens the store at `root`, creating it if it is missing or empty, and removes temporary
    /// files and directories that killed writes left in `tmp/` more than [`STALE_TMP_AGE`] ago.
    /// A directory that holds anything else and no store marker is refused: the store deletes
    /// files, so it must never take a user's directory (`PAW_HOME=$HOME`) for itself.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let store = Self { root: root.into() };
        store.claim_root()?;
        for dir in [store.programs_dir(), store.models_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        store.remove_stale_tmp(STALE_TMP_AGE);
        tracing::debug!(root = %store.root.display(), "opened paw store");
        Ok(store)
    }

    /// Checks that the root is a paw store (it holds the marker), or can become one (it is
    /// missing, empty, or holds only the store's own entries, as stores made before the marker
    /// existed do), and writes the marker.
    fn claim_root(&self) -> Result<()> {
        let marker = self.root.join(STORE_MARKER);
        if marker.is_file() {
            return Ok(());
        }
        match fs::read_dir(&self.root) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io_err("listing", &self.root))?;
                    let name = entry.file_name();
                    let own = name
                        .to_str()
                        .is_some_and(|n| STORE_ENTRIES.contains(&n) && entry.path().is_dir());
                    if !own {
                        return Err(StoreError::NotAStore {
                            root: self.root.clone(),
                            found: PathBuf::from(name),
                        });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.root).map_err(io_err("creating", &self.root))?;
            }
            Err(e) => return Err(io_err("listing", &self.root)(e)),
        }
        fs::write(&marker, STORE_MARKER_TEXT).map_err(io_err("writing", &marker))
    }

    /// Best effort: only names the store's own writers create are removed (anything else in
    /// `tmp/` is left alone); a file that cannot be inspected or removed is left alone (and
    /// logged); the age guard keeps another process's write in progress safe.
    fn remove_stale_tmp(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let ours = entry
                .file_name()
                .to_str()
                .is_some_and(|n| TMP_PREFIXES.iter().any(|p| n.starts_with(p)));
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let stale = meta
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if !ours || !stale {
                continue;
            }
            let result = if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else if meta.is_file() {
                fs::remove_file(&path)
            } else {
                continue;
            };
            match result {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a stale temporary file")
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed stale temporary files from the store");
        }
        removed
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn programs_dir(&self) -> PathBuf {
        self.root.join(PROGRAMS_DIR)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join(MODELS_DIR)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// Where the program `id` lives (whether or not it is there).
    pub fn program_path(&self, id: &ProgramId) -> PathBuf {
        self.program_path_for_hex(&id.to_hex())
    }

    fn program_path_for_hex(&self, hex: &str) -> PathBuf {
        self.programs_dir().join(format!("{hex}.{PROGRAM_EXT}"))
    }

    /// Checks `bytes` fully as a `.paw` program (and, if given, that they hash to `expected`),
    /// then stores them under their id. An entry already holding exactly those bytes is left
    /// alone; a damaged or swapped one is replaced (repaired).
    pub fn add_program_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&ProgramId>,
    ) -> Result<StoredProgram> {
        let id = paw_format::reader::verify_bytes(bytes, expected)?;
        let path = self.program_path(&id);
        if let Err(error) = self.read_stored(&id) {
            if path.exists() {
                tracing::warn!(%id, %error, "replacing a damaged store entry");
            }
            self.write_atomic(&path, bytes)?;
            tracing::debug!(%id, path = %path.display(), "stored program");
        }
        Ok(StoredProgram {
            id,
            path,
            size: bytes.len() as u64,
        })
    }

    pub fn add_program_file(&self, path: &Path) -> Result<StoredProgram> {
        // Programs are small (a prompt and a LoRA adapter); the reader caps the size it loads.
        let bytes = paw_format::reader::read_file(path)?;
        self.add_program_bytes(&bytes, None)
    }

    /// The bytes of stored program `id`, read under the format's size cap, checked to hash to
    /// `id`: whatever the file system holds, a caller never gets other bytes for an id.
    pub fn read_stored(&self, id: &ProgramId) -> Result<Vec<u8>> {
        let path = self.program_path(id);
        let bytes = read_program_file(&path)?;
        let actual = ProgramId::of_bytes(&bytes);
        if actual != *id {
            return Err(StoreError::WrongBytes {
                path,
                expected: *id,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Loads what a user typed: a full id `b3:<hex>` or a unique prefix of one (with or without
    /// `b3:`, at least [`MIN_ID_PREFIX_LEN`] hex digits) from the store, its bytes checked to
    /// hash to that id; anything else is a file path. An id-shaped reference never opens a
    /// file of that name in the working directory (write `./b3:...` to mean the file).
    pub fn load_program(&self, reference: &str) -> Result<LoadedProgram> {
        let (id, path) = match self.resolve_program(reference)? {
            ProgramRef::Stored(stored) => (Some(stored.id), stored.path),
            ProgramRef::File(path) => (None, path),
        };
        let bytes = match id {
            Some(id) => self.read_stored(&id)?,
            None => read_program_file(&path)?,
        };
        Ok(LoadedProgram {
            id: ProgramId::of_bytes(&bytes),
            path,
            bytes,
        })
    }

    /// Resolves what a user typed (see [`Store::load_program`]) without reading the program.
    pub fn resolve_program(&self, reference: &str) -> Result<ProgramRef> {
        let Some(hex) = id_shaped(reference) else {
            return if Path::new(reference).is_file() {
                Ok(ProgramRef::File(PathBuf::from(reference)))
            } else {
                Err(StoreError::NoSuchProgram {
                    reference: reference.to_owned(),
                })
            };
        };
        let no_such = || StoreError::NoSuchProgram {
            reference: reference.to_owned(),
        };
        if !is_id_hex(hex) {
            return Err(no_such());
        }
        let hex = hex.to_ascii_lowercase();
        if hex.len() == 64 {
            let id: ProgramId = format!("{B3_PREFIX}{hex}").parse().map_err(|_| no_such())?;
            let path = self.program_path(&id);
            return match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(ProgramRef::Stored(StoredProgram {
                    id,
                    path,
                    size: meta.len(),
                })),
                _ => Err(no_such()),
            };
        }
        if hex.len() < MIN_ID_PREFIX_LEN {
            return Err(StoreError::PrefixTooShort {
                prefix: reference.to_owned(),
            });
        }
        let mut matches: Vec<StoredProgram> = self
            .list_programs()?
            .into_iter()
            .filter(|p| p.id.to_hex().starts_with(&hex))
            .collect();
        match matches.len() {
            0 => Err(no_such()),
            1 => Ok(ProgramRef::Stored(matches.remove(0))),
            _ => Err(StoreError::AmbiguousProgram {
                prefix: reference.to_owned(),
                candidates: matches.into_iter().map(|p| p.id).collect(),
            }),
        }
    }

    /// All stored programs, sorted by id. Files that are not named like a program are ignored.
    pub fn list_programs(&self) -> Result<Vec<StoredProgram>> {
        let dir = self.programs_dir();
        let mut programs = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let path = entry.path();
            let id = stem_with_ext(&path, PROGRAM_EXT)
                .and_then(|hex| format!("{B3_PREFIX}{hex}").parse::<ProgramId>().ok());
            let Some(id) = id else {
                continue;
            };
            let size = entry.metadata().map_err(io_err("inspecting", &path))?.len();
            programs.push(StoredProgram { id, path, size });
        }
        programs.sort_by_key(|p| p.id);
        Ok(programs)
    }

    /// Where the model with this SHA-256 lives (whether or not it is installed).
    pub fn model_path(&self, sha256: &str) -> Result<PathBuf> {
        check_sha256(sha256)?;
        Ok(self.models_dir().join(format!("{sha256}.{MODEL_EXT}")))
    }

    fn model_meta_path(&self, sha256: &str) -> Result<PathBuf> {
        check_sha256(sha256)?;
        Ok(self.models_dir().join(format!("{sha256}.{MODEL_META_EXT}")))
    }

    /// The installed model with this SHA-256, judged cheaply: its metadata file is readable and
    /// the file has the recorded size. Installs are verified, so this does not re-hash.
    pub fn installed_model(&self, sha256: &str) -> Result<Option<InstalledModel>> {
        let path = self.model_path(sha256)?;
        let meta_path = self.model_meta_path(sha256)?;
        let meta_bytes = match read_small(&meta_path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &meta_path)(e)),
        };
        let meta = parse_model_meta(&meta_bytes).map_err(|source| StoreError::ModelMeta {
            path: meta_path.clone(),
            source,
        })?;
        if meta.directory {
            return Ok(self
                .installed_model_dir(&meta)?
                .filter(|_| meta.sha256 == sha256)
                .map(|path| InstalledModel { path, meta }));
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == meta.size && meta.sha256 == sha256 => {
                Ok(Some(InstalledModel { path, meta }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspecting", &path)(e)),
        }
    }

    /// All installed models, sorted by manifest id (unnamed ones last), then SHA-256.
    pub fn installed_models(&self) -> Result<Vec<InstalledModel>> {
        let dir = self.models_dir();
        let mut models = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let path = entry.map_err(io_err("listing", &dir))?.path();
            let Some(sha) = stem_with_ext(&path, MODEL_META_EXT).filter(|h| is_full_hex(h)) else {
                continue;
            };
            if let Some(model) = self.installed_model(sha)? {
                models.push(model);
            }
        }
        models.sort_by(|a, b| {
            (
                a.meta.manifest_id.is_none(),
                &a.meta.manifest_id,
                &a.meta.sha256,
            )
                .cmp(&(
                    b.meta.manifest_id.is_none(),
                    &b.meta.manifest_id,
                    &b.meta.sha256,
                ))
        });
        Ok(models)
    }

    /// Re-hashes whatever is stored under `expected.sha256`. A verified file whose metadata was
    /// lost gets it rewritten.
    pub fn check_model(&self, expected: &ExpectedModel) -> Result<ModelCheck> {
        let path = self.model_path(&expected.sha256)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ModelCheck::Missing),
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        let mut hashes = Hashes::default();
        let mut reader = io::BufReader::with_capacity(COPY_BUFFER, file);
        io::copy(&mut reader, &mut hashes).map_err(io_err("reading", &path))?;
        let (size, sha256, blake3) = hashes.finish();
        if size != expected.size || sha256 != expected.sha256 {
            return Ok(ModelCheck::Corrupt {
                path,
                actual_size: size,
                actual_sha256: sha256,
            });
        }
        let meta = ModelMeta {
            size,
            sha256,
            blake3,
            manifest_id: expected.manifest_id.clone(),
            directory: false,
        };
        let meta_path = self.model_meta_path(&expected.sha256)?;
        if self
            .installed_model(&expected.sha256)?
            .as_ref()
            .map(|m| &m.meta)
            != Some(&meta)
        {
            self.write_atomic(&meta_path, &meta_json(&meta, &meta_path)?)?;
        }
        Ok(ModelCheck::Verified(InstalledModel { path, meta }))
    }

    /// Starts streaming a model into the store; see [`ModelWriter`].
    pub fn model_writer(&self, expected: ExpectedModel) -> Result<ModelWriter> {
        check_sha256(&expected.sha256)?;
        let tmp_dir = self.tmp_dir();
        let file = temp_file_in(&tmp_dir, "model-")
            .map_err(io_err("creating a temporary file in", &tmp_dir))?;
        Ok(ModelWriter {
            store: self.clone(),
            expected,
            out: BufWriter::with_capacity(COPY_BUFFER, file),
            hashes: Hashes::default(),
        })
    }

    /// Copies a model file into the store, verifying it on the way.
    pub fn install_model(&self, from: &Path, expected: ExpectedModel) -> Result<InstalledModel> {
        let mut writer = self.model_writer(expected)?;
        let mut file = File::open(from).map_err(io_err("opening", from))?;
        io::copy(&mut file, &mut writer).map_err(io_err("copying", from))?;
        writer.finish()
    }

    /// Streams everything `reader` yields into the store as one model, verifying it.
    pub fn install_model_from_reader(
        &self,
        mut reader: impl Read,
        expected: ExpectedModel,
    ) -> Result<InstalledModel> {
        let mut writer = self.model_writer(expected)?;
        let tmp_dir = self.tmp_dir();
        io::copy(&mut reader, &mut writer).map_err(io_err("writing a model into", &tmp_dir))?;
        writer.finish()
    }

    /// Removes a stored program; returns the bytes freed (0 if it was not there). Compile
    /// records pointing at it become misses (the compile runs again); [`Store::prune_compile_records`]
    /// removes them.
    pub fn remove_program(&self, id: &ProgramId) -> Result<u64> {
        let path = self.program_path(id);
        remove_counted(&path)
    }

    /// Removes an installed model and its metadata; returns the bytes freed.
    pub fn remove_model(&self, sha256: &str) -> Result<u64> {
        let freed = remove_counted(&self.model_path(sha256)?)? + self.remove_model_dir(sha256)?;
        Ok(freed + remove_counted(&self.model_meta_path(sha256)?)?)
    }

    /// Removes compile records whose program is no longer stored; returns how many.
    pub fn prune_compile_records(&self) -> Result<usize> {
        let dir = self.root.join(COMPILES_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("listing", &dir)(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(io_err("listing", &dir))?.path();
            let stored = read_small(&path, MAX_RECORD_BYTES)
                .ok()
                .and_then(|bytes| parse_compile_record(&bytes))
                .is_some_and(|id| self.program_path(&id).is_file());
            if !stored {
                remove_counted(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes held by the stage cache (finished compile stages kept for resuming).
    pub fn stage_cache_bytes(&self) -> Result<u64> {
        dir_bytes(&self.root.join(STAGES_DIR))
    }

    /// Empties the stage cache; returns the bytes freed. Compiles still work: they recompute
    /// the stages.
    pub fn clear_stage_cache(&self) -> Result<u64> {
        let dir = self.root.join(STAGES_DIR);
        let freed = dir_bytes(&dir)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("removing", &dir)(e)),
        }
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(freed)
    }

    /// Where the program compiled under `key` (a `b3:` compile key) is recorded.
    fn compile_record_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.root.join(COMPILES_DIR).join(key_hex(key)?))
    }

    /// Records that compiling with `key` produced the stored program `id`, so that the same
    /// compile can return it at once.
    pub fn record_compile(&self, key: &str, id: &ProgramId) -> Result<()> {
        let path = self.compile_record_path(key)?;
        let dir = self.root.join(COMPILES_DIR);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        self.write_atomic(&path, id.to_string().as_bytes())
    }

    /// The stored program a previous compile with `key` produced, if it is still in the store.
    pub fn lookup_compile(&self, key: &str) -> Result<Option<StoredProgram>> {
        let path = self.compile_record_path(key)?;
        let bytes = match read_small(&path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        // A damaged record is a cache miss, not an error: the compile simply runs again.
        let Some(id) = parse_compile_record(&bytes) else {
            tracing::warn!(path = %path.display(), "ignoring an unreadable compile record");
            return Ok(None);
        };
        // The entry must hold exactly the recorded program: a damaged or swapped one is a miss
        // (the compile runs again and its store write repairs the entry).
        match self.read_stored(&id) {
            Ok(bytes) => Ok(Some(StoredProgram {
                id,
                path: self.program_path(&id),
                size: bytes.len() as u64,
            })),
            Err(error) => {
                tracing::warn!(%id, %error, "compile record points at a missing or damaged entry");
                Ok(None)
            }
        }
    }

    /// The program compiled under `key`: the one the compile index records (unless `force`), else
    /// what `compile` makes. Its program (which `program` picks out of the output) is then
    /// stored, atomically, and recorded under its compile key; a failed compile stores nothing.
    /// `paw compile` and the evaluation harness share this; the compiler itself is the caller's.
    pub fn compile_cached<T, E>(
        &self,
        key: &str,
        force: bool,
        compile: impl FnOnce() -> Result<T, E>,
        program: impl FnOnce(&T) -> CompiledProgram<'_>,
    ) -> Result<CompileCached<T>, E>
    where
        E: From<StoreError>,
    {
        if !force {
            if let Some(stored) = self.lookup_compile(key)? {
                return Ok(CompileCached::Found(stored));
            }
        }
        let output = compile()?;
        let compiled = program(&output);
        let stored = self.add_program_bytes(compiled.bytes, Some(compiled.id))?;
        self.record_compile(compiled.key, compiled.id)?;
        Ok(CompileCached::Compiled { output, stored })
    }

    /// The installed model `program` was compiled for: the one whose BLAKE3 (`b3:`) is the
    /// program's `interpreter.weights_hash`. Returns its path; loading it is the caller's.
    pub fn interpreter_for(&self, program: &paw_format::Program) -> Result<PathBuf> {
        let wanted = &program.interpreter.weights_hash;
        let installed = self.installed_models()?;
        match installed.into_iter().find(|m| &m.meta.blake3 == wanted) {
            Some(m) => Ok(m.path),
            None => Err(StoreError::InterpreterNotInstalled {
                name: program.interpreter.name.clone(),
                weights_hash: wanted.clone(),
                store_root: self.root.clone(),
            }),
        }
    }

    /// Where the `kind` stage computed under `key` is cached.
    fn stage_path(&self, kind: &str, key: &str) -> Result<PathBuf> {
        let valid_kind = (1..=32).contains(&kind.len())
            && kind
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        if !valid_kind {
            return Err(StoreError::InvalidStageKind {
                value: kind.to_owned(),
            });
        }
        Ok(self.root.join(STAGES_DIR).join(kind).join(key_hex(key)?))
    }

    /// Caches the output of a finished compile stage: `payload` under `kind` (e.g. `data`) and
    /// `key` (a `b3:` hash of everything the stage depends on), written atomically with a
    /// checksum so that [`Store::get_stage`] never returns damaged or misplaced bytes.
    pub fn put_stage(&self, kind: &str, key: &str, payload: &[u8]) -> Result<()> {
        let path = self.stage_path(kind, key)?;
        let mut entry = Vec::with_capacity(STAGE_MAGIC.len() + blake3::OUT_LEN + payload.len());
        entry.extend_from_slice(STAGE_MAGIC);
        entry.extend_from_slice(stage_checksum(kind, key, payload).as_bytes());
        entry.extend_from_slice(payload);
        if entry.len() as u64 > MAX_STAGE_BYTES {
            return Err(StoreError::StageTooLarge {
                path,
                size: entry.len() as u64,
            });
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        self.write_atomic(&path, &entry)?;
        tracing::debug!(kind, key, path = %path.display(), "cached stage");
        Ok(())
    }

    /// The payload [`Store::put_stage`] cached under `kind` and `key`; `None` if there is none.
    /// An entry that is too large, truncated or fails its checksum is an error
    /// ([`StoreError::CorruptStage`], [`StoreError::StageTooLarge`]), never returned as data.
    pub fn get_stage(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.stage_path(kind, key)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        let size = file.metadata().map_err(io_err("inspecting", &path))?.len();
        if size > MAX_STAGE_BYTES {
            return Err(StoreError::StageTooLarge { path, size });
        }
        let mut entry = Vec::new();
        // `take` guards against a file that grows after the size check.
        file.take(MAX_STAGE_BYTES + 1)
            .read_to_end(&mut entry)
            .map_err(io_err("reading", &path))?;
        match decode_stage_entry(kind, key, &entry) {
            Ok(payload) => Ok(Some(payload.to_vec())),
            Err(reason) => Err(StoreError::CorruptStage { path, reason }),
        }
    }

    /// Writes `bytes` to `dest` via a fsynced temporary file in `tmp/` and a rename.
    pub(crate) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp_dir = self.tmp_dir();
        // Under test the crash points rebind it mutably.
        #[cfg_attr(test, allow(unused_mut))]
        let mut tmp = temp_file_in(&tmp_dir, "write-")
            .map_err(io_err("creating a temporary file in", &tmp_dir))?;
        #[cfg(test)]
        let bytes = disk_full::check(bytes).map_err(io_err("writing", tmp.path()))?;
        #[cfg(test)]
        let mut tmp = crash::point(tmp, dest, |tmp| {
            // Killed halfway through the bytes (they reach the file, not the disk's cache).
            tmp.write_all(&bytes[..bytes.len() / 2])
        })?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err("writing", tmp.path()))?;
        #[cfg(test)]
        let tmp = crash::point(tmp, dest, |_| Ok(()))?;
        persist(tmp, dest)?;
        #[cfg(test)]
        crash::after_rename(dest)?;
        Ok(())
    }
}

/// Fault injection for the tests: a process killed at a numbered step of the store's writes
/// (SIGKILL, so no destructor runs: a temporary file stays behind). Steps are counted per
/// thread across every atomic write: each write has three, killed halfway through its bytes,
/// after its fsync before the rename, and after the rename.
#[cfg(test)]
mod crash {
    use std::cell::Cell;
    use std::path::Path;

    use tempfile::NamedTempFile;

    use super::{Result, StoreError};

    thread_local! {
        /// Steps left before the kill (`None`: never).
        static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// The process is killed at step `step` (0-based) from now on; `None` disarms.
    pub(super) fn arm(step: Option<usize>) {
        LEFT.with(|l| l.set(step));
    }

    /// Whether the kill was armed and has not happened.
    pub(super) fn pending() -> bool {
        LEFT.with(|l| l.get().is_some())
    }

    fn reached() -> bool {
        LEFT.with(|l| match l.get() {
            Some(0) => {
                l.set(None);
                true
            }
            Some(n) => {
                l.set(Some(n - 1));
                false
            }
            None => false,
        })
    }

    fn killed(dest: &Path) -> StoreError {
        StoreError::Io {
            action: "writing (killed by the test)",
            path: dest.to_path_buf(),
            source: std::io::Error::other("killed"),
        }
    }

    /// At the kill step: runs `partial` and leaves `tmp` on disk as a killed process would.
    pub(super) fn point(
        mut tmp: NamedTempFile,
        dest: &Path,
        partial: impl FnOnce(&mut NamedTempFile) -> std::io::Result<()>,
    ) -> Result<NamedTempFile> {
        if !reached() {
            return Ok(tmp);
        }
        partial(&mut tmp).ok();
        // No destructor runs in a killed process: the temporary file stays.
        tmp.keep().ok();
        Err(killed(dest))
    }

    pub(super) fn after_rename(dest: &Path) -> Result<()> {
        if reached() {
            return Err(killed(dest));
        }
        Ok(())
    }
}

/// Fault injection for the tests: a disk with room for only so many more bytes per write.
#[cfg(test)]
mod disk_full {
    use std::cell::Cell;

    thread_local! {
        static ROOM: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Every write on this thread from now on fails after `room` bytes (`None`: no limit).
    pub(super) fn set_room(room: Option<usize>) {
        ROOM.with(|r| r.set(room));
    }

    /// `bytes`, or the error a full disk gives once the room is used up.
    pub(super) fn check(bytes: &[u8]) -> std::io::Result<&[u8]> {
        match ROOM.with(Cell::get) {
            Some(room) if bytes.len() > room => Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            )),
            _ => Ok(bytes),
        }
    }
}

/// Streams bytes (e.g. the concatenated parts of a split GGUF) into the store's `tmp/`, hashing
/// as it goes. [`ModelWriter::finish`] installs the file only if size and SHA-256 match; dropping
/// the writer or a mismatch deletes the temporary file.
#[derive(Debug)]
pub struct ModelWriter {
    store: Store,
    expected: ExpectedModel,
    out: BufWriter<NamedTempFile>,
    hashes: Hashes,
}

impl Write for ModelWriter {
    /// Refuses bytes beyond the expected size as they arrive: a wrong download must not fill
    /// the disk before the final check finds it wrong.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.hashes.size.saturating_add(buf.len() as u64);
        if after > self.expected.size {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "model data runs past the expected {} bytes (at least {after} bytes); it is \
                     not the expected file",
                    self.expected.size
                ),
            ));
        }
        let n = self.out.write(buf)?;
        self.hashes.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl ModelWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hashes.size
    }

    pub fn finish(self) -> Result<InstalledModel> {
        let Self {
            store,
            expected,
            out,
            hashes,
        } = self;
        let (size, sha256, blake3) = hashes.finish();
        if size != expected.size || sha256 != expected.sha256 {
            return Err(StoreError::ModelMismatch {
                expected_size: expected.size,
                expected_sha256: expected.sha256,
                actual_size: size,
                actual_sha256: sha256,
            });
        }
        let tmp = out.into_inner().map_err(|e| {
            let (source, out) = e.into_parts();
            io_err("writing", out.get_ref().path())(source)
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("syncing", tmp.path()))?;
        let meta = ModelMeta {
            size,
            sha256,
            blake3,
            manifest_id: expected.manifest_id,
            directory: false,
        };
        // Metadata first: a model file is then never visible without it.
        let meta_path = store.model_meta_path(&meta.sha256)?;
        store.write_atomic(&meta_path, &meta_json(&meta, &meta_path)?)?;
        let path = store.model_path(&meta.sha256)?;
        persist(tmp, &path)?;
        tracing::info!(path = %path.display(), size, "installed model");
        Ok(InstalledModel { path, meta })
    }
}

/// Byte count, SHA-256 and BLAKE3 computed in one pass.
#[derive(Default)]
struct Hashes {
    size: u64,
    sha256: Sha256,
    blake3: blake3::Hasher,
}

impl std::fmt::Debug for Hashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashes")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Hashes {
    fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.sha256.update(bytes);
        self.blake3.update(bytes);
    }

    /// `(size, sha256 hex, "b3:" + blake3 hex)`.
    fn finish(self) -> (u64, String, String) {
        (
            self.size,
            hex::encode(self.sha256.finalize()),
            format!("{B3_PREFIX}{}", self.blake3.finalize().to_hex()),
        )
    }
}

impl Write for Hashes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn meta_json(meta: &ModelMeta, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(meta).map_err(|source| StoreError::ModelMeta {
        path: path.to_path_buf(),
        source,
    })
}

/// A temporary file that becomes a store entry: readable by all (minus the umask), unlike
/// `tempfile`'s default 0600, so that a store shared between users or CI stays usable.
fn temp_file_in(dir: &Path, prefix: &str) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// Renames a finished temporary file into place and makes the rename durable.
fn persist(tmp: NamedTempFile, dest: &Path) -> Result<()> {
    tmp.persist(dest).map_err(|e| StoreError::Io {
        action: "renaming a temporary file to",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    // The rename lives in the directory entry: sync the directory too (not possible on Windows).
    #[cfg(unix)]
    if let Some(dir) = dest.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", dir))?;
    }
    Ok(())
}

fn default_root_from(paw_home: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    if let Some(root) = paw_home.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    let home = home.filter(|v| !v.is_empty()).ok_or(StoreError::NoHome)?;
    Ok(PathBuf::from(home).join(".cache").join("paw"))
}

/// The 64 hex digits of a `b3:` key (the prefix is optional); also what keeps a
/// caller-supplied key from escaping its directory.
fn key_hex(key: &str) -> Result<&str> {
    let hex = key.strip_prefix(B3_PREFIX).unwrap_or(key);
    if is_full_hex(hex) {
        Ok(hex)
    } else {
        Err(StoreError::InvalidKey {
            value: key.to_owned(),
        })
    }
}

/// BLAKE3 over a stage entry's kind, key (as its hex digits, so both spellings agree) and
/// payload, length-prefixed: an entry copied under another name fails it too.
/// Largest compile record or model metadata file read: real ones are under 1 KiB. A larger
/// one is damage (or not the store's), read no further than this.
const MAX_RECORD_BYTES: u64 = 64 << 10;

/// At most `max + 1` bytes of the file at `path`: a longer file yields `max + 1` bytes, which
/// the record parsers then reject.
/// Removes a file; returns its size (0 if it was missing).
fn remove_counted(path: &Path) -> Result<u64> {
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("inspecting", path)(e)),
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(size),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Total size of the files under `dir` (0 if it is missing); symbolic links are not followed.
pub(crate) fn dir_bytes(dir: &Path) -> Result<u64> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        let kind = entry
            .file_type()
            .map_err(io_err("inspecting", &entry.path()))?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry
                .metadata()
                .map_err(io_err("inspecting", &entry.path()))?
                .len();
        }
    }
    Ok(total)
}

fn read_small(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The program id a compile record holds (`b3:<hex>`, surrounding whitespace allowed); `None`
/// for anything else, which the store treats as a cache miss.
pub fn parse_compile_record(bytes: &[u8]) -> Option<ProgramId> {
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The metadata written beside an installed model, from its JSON bytes.
pub fn parse_model_meta(bytes: &[u8]) -> std::result::Result<ModelMeta, serde_json::Error> {
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(serde::de::Error::custom(format!(
            "larger than {MAX_RECORD_BYTES} bytes"
        )));
    }
    serde_json::from_slice(bytes)
}

/// The payload of a stage-cache entry cached under `kind` and `key`: the entry must start with
/// the stage header and carry the checksum of exactly this kind, key and payload, so damaged
/// or misplaced bytes are never returned as data. On failure, why not.
pub fn decode_stage_entry<'a>(
    kind: &str,
    key: &str,
    entry: &'a [u8],
) -> std::result::Result<&'a [u8], &'static str> {
    let rest = entry.strip_prefix(STAGE_MAGIC).ok_or("no stage header")?;
    if rest.len() < blake3::OUT_LEN || entry.len() as u64 > MAX_STAGE_BYTES {
        return Err("wrong length");
    }
    let (checksum, payload) = rest.split_at(blake3::OUT_LEN);
    if checksum != stage_checksum(kind, key, payload).as_bytes() {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

fn stage_checksum(kind: &str, key: &str, payload: &[u8]) -> blake3::Hash {
    let hex = key.strip_prefix(B3_PREFIX).unwrap_or(key);
    let mut h = blake3::Hasher::new();
    for part in [kind.as_bytes(), hex.as_bytes(), payload] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize()
}

pub(crate) fn is_full_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_sha256(sha256: &str) -> Result<()> {
    // Also what keeps a caller-supplied name from escaping `models/`.
    if is_full_hex(sha256) {
        Ok(())
    } else {
        Err(StoreError::InvalidSha256 {
            value: sha256.to_owned(),
        })
    }
}

/// The file stem of `path` if its extension is `ext`.
fn stem_with_ext<'a>(path: &'a Path, ext: &str) -> Option<&'a str> {
    if path.extension()? != ext {
        return None;
    }
    path.file_stem()?.to_str()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    /// Valid `.paw` bytes, distinct for each `spec`.
    fn program_bytes(spec: &str) -> Vec<u8> {
        program(spec).to_bytes().unwrap()
    }

    /// A prompt-only program for an interpreter whose weights hash is `b3:00…0`.
    fn program(spec: &str) -> paw_format::Program {
        paw_format::Program {
            pseudo_program: "Echo the input.".into(),
            ..paw_format::Program::prompt_only(
                spec,
                format!("<|user|>{}<|assistant|>", paw_format::INPUT_PLACEHOLDER),
                paw_format::InterpreterId {
                    architecture: "llama".into(),
                    name: "test".into(),
                    weights_hash: format!("b3:{}", "0".repeat(64)),
                    tokenizer_hash: format!("b3:{}", "1".repeat(64)),
                },
                paw_format::GenerationConfig {
                    max_tokens: 16,
                    stop: Vec::new(),
                    temperature: 0.0,
                },
            )
        }
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn tmp_is_empty(store: &Store) -> bool {
        fs::read_dir(store.tmp_dir()).unwrap().next().is_none()
    }

    #[test]
    fn default_root_prefers_paw_home_then_home() {
        assert_eq!(
            default_root_from(Some("/x/paw".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/x/paw")
        );
        assert_eq!(
            default_root_from(Some("".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.cache/paw")
        );
        assert!(matches!(
            default_root_from(None, None),
            Err(StoreError::NoHome)
        ));
    }

    #[test]
    fn compile_record_returns_the_stored_program_and_misses_otherwise() {
        let (_dir, store) = temp_store();
        let key = format!("b3:{}", "ab".repeat(32));
        assert!(store.lookup_compile(&key).unwrap().is_none());
        let stored = store
            .add_program_bytes(&program_bytes("recorded"), None)
            .unwrap();
        store.record_compile(&key, &stored.id).unwrap();
        assert_eq!(store.lookup_compile(&key).unwrap(), Some(stored.clone()));
        // A record whose program was removed is a miss, not an error.
        fs::remove_file(&stored.path).unwrap();
        assert!(store.lookup_compile(&key).unwrap().is_none());
        assert!(matches!(
            store.lookup_compile("b3:../../etc"),
            Err(StoreError::InvalidKey { .. })
        ));
    }

    /// A compile output as `compile_cached` callers have one: a program and its key.
    fn compiled(spec: &str, key: &str) -> (Vec<u8>, ProgramId, String) {
        let bytes = program_bytes(spec);
        let id = ProgramId::of_bytes(&bytes);
        (bytes, id, key.to_owned())
    }

    fn pick((bytes, id, key): &(Vec<u8>, ProgramId, String)) -> CompiledProgram<'_> {
        CompiledProgram { bytes, id, key }
    }

    #[test]
    fn compile_cached_compiles_once_then_finds_unless_forced() {
        let (_dir, store) = temp_store();
        let key = format!("b3:{}", "ab".repeat(32));
        let runs = std::cell::Cell::new(0);
        let compile = |spec: &'static str| {
            let (runs, key) = (&runs, &key);
            move || {
                runs.set(runs.get() + 1);
                Ok::<_, StoreError>(compiled(spec, key))
            }
        };

        let first = match store.compile_cached(&key, false, compile("first"), pick) {
            Ok(CompileCached::Compiled { output, stored }) => {
                assert_eq!(stored.id, output.1);
                assert_eq!(fs::read(&stored.path).unwrap(), output.0);
                stored
            }
            other => panic!("expected a compile, got {other:?}"),
        };
        assert_eq!(store.lookup_compile(&key).unwrap(), Some(first.clone()));
        match store.compile_cached(&key, false, compile("unused"), pick) {
            Ok(CompileCached::Found(stored)) => assert_eq!(stored, first),
            other => panic!("expected the stored program, got {other:?}"),
        }
        assert_eq!(runs.get(), 1);

        // Forced: compiles again and the record follows the new program.
        let second = match store.compile_cached(&key, true, compile("second"), pick) {
            Ok(CompileCached::Compiled { stored, .. }) => stored,
            other => panic!("expected a compile, got {other:?}"),
        };
        assert_eq!(runs.get(), 2);
        assert_ne!(second.id, first.id);
        assert_eq!(store.lookup_compile(&key).unwrap(), Some(second));
    }

    #[test]
    fn compile_cached_stores_nothing_when_the_compile_fails_or_lies() {
        let (_dir, store) = temp_store();
        let key = format!("b3:{}", "cd".repeat(32));
        let failed = store.compile_cached(
            &key,
            false,
            || Err::<(Vec<u8>, ProgramId, String), _>(StoreError::NoHome),
            pick,
        );
        assert!(matches!(failed, Err(StoreError::NoHome)));
        // An id that is not the bytes' is refused before anything is recorded.
        let lying = store.compile_cached(
            &key,
            false,
            || {
                let (bytes, _, key) = compiled("a", &key);
                Ok::<_, StoreError>((bytes, ProgramId::of_bytes(b"other"), key))
            },
            pick,
        );
        assert!(matches!(lying, Err(StoreError::InvalidProgram(_))));
        assert!(store.list_programs().unwrap().is_empty());
        assert!(store.lookup_compile(&key).unwrap().is_none());
    }

    #[test]
    fn interpreter_for_finds_the_model_by_its_blake3_or_says_how_to_get_it() {
        let (_dir, store) = temp_store();
        let mut wanting = program("needs a model");
        let missing = store.interpreter_for(&wanting).unwrap_err();
        assert!(matches!(
            &missing,
            StoreError::InterpreterNotInstalled { name, weights_hash, store_root }
                if name == "test"
                    && *weights_hash == wanting.interpreter.weights_hash
                    && store_root == store.root()
        ));
        assert_eq!(
            missing.to_string(),
            format!(
                "the program was compiled for interpreter test ({}), which is not in the store \
                 {}; install it (`paw models fetch ID`, see `paw models`) or pass \
                 --model PATH",
                wanting.interpreter.weights_hash,
                store.root().display()
            )
        );

        let weights = b"GGUF some weights";
        let installed = store
            .install_model_from_reader(
                &weights[..],
                ExpectedModel {
                    size: weights.len() as u64,
                    sha256: sha256_hex(weights),
                    manifest_id: None,
                },
            )
            .unwrap();
        assert!(store.interpreter_for(&wanting).is_err());
        wanting.interpreter.weights_hash = installed.meta.blake3.clone();
        assert_eq!(store.interpreter_for(&wanting).unwrap(), installed.path);
    }

    #[test]
    fn open_removes_only_stale_temporary_files() {
        let (_dir, store) = temp_store();
        let old = store.tmp_dir().join("write-killed");
        let fresh = store.tmp_dir().join("write-in-progress");
        fs::write(&old, b"partial").unwrap();
        fs::write(&fresh, b"partial").unwrap();
        let two_days_ago = std::time::SystemTime::now() - 2 * STALE_TMP_AGE;
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        // Old, but not a name the store's writers use: never removed.
        let foreign = store.tmp_dir().join("user-file");
        fs::write(&foreign, b"not ours").unwrap();
        fs::File::options()
            .write(true)
            .open(&foreign)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let store = Store::open(store.root()).unwrap();
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(foreign.exists());
        assert_eq!(store.remove_stale_tmp(STALE_TMP_AGE), 0);
    }

    #[test]
    fn an_id_always_reads_its_own_bytes_and_add_repairs_a_swapped_entry() {
        let (_dir, store) = temp_store();
        let (a, b) = (program_bytes("one"), program_bytes("two"));
        let pa = store.add_program_bytes(&a, None).unwrap();
        let pb = store.add_program_bytes(&b, None).unwrap();
        fs::write(&pa.path, &b).unwrap();
        for reference in [pa.id.to_string(), pa.id.to_hex()[..8].to_string()] {
            match store.load_program(&reference) {
                Err(StoreError::WrongBytes {
                    expected, actual, ..
                }) => assert_eq!((expected, actual), (pa.id, pb.id)),
                other => panic!("{reference}: expected WrongBytes, got {other:?}"),
            }
        }
        assert!(store.read_stored(&pa.id).is_err());
        store.add_program_bytes(&a, None).unwrap();
        assert_eq!(store.read_stored(&pa.id).unwrap(), a);
        assert_eq!(store.load_program(&pa.id.to_string()).unwrap().id, pa.id);
    }

    #[test]
    fn a_store_made_before_the_marker_is_claimed_and_a_foreign_directory_refused() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("legacy");
        for d in ["programs", "models", "tmp", "compiles", "stages"] {
            fs::create_dir_all(legacy.join(d)).unwrap();
        }
        Store::open(&legacy).unwrap();
        assert!(legacy.join(STORE_MARKER).is_file());

        let foreign = dir.path().join("foreign");
        fs::create_dir_all(foreign.join("programs")).unwrap();
        fs::write(foreign.join("programs.txt"), b"x").unwrap();
        assert!(matches!(
            Store::open(&foreign),
            Err(StoreError::NotAStore { .. })
        ));
        // A file named like a store directory is not one.
        let file_named = dir.path().join("file-named");
        fs::create_dir_all(&file_named).unwrap();
        fs::write(file_named.join("tmp"), b"x").unwrap();
        assert!(Store::open(&file_named).is_err());
    }

    #[test]
    fn a_model_write_stops_at_the_expected_size() {
        let (_dir, store) = temp_store();
        let mut writer = store
            .model_writer(ExpectedModel {
                size: 10,
                sha256: sha256_hex(b"0123456789"),
                manifest_id: None,
            })
            .unwrap();
        writer.write_all(b"01234").unwrap();
        let err = writer.write_all(b"56789+").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(writer.written(), 5);
        drop(writer);
        assert!(tmp_is_empty(&store), "the partial file is removed");
    }

    /// A full disk at any point of an add: a typed error, nothing half-written in the store,
    /// the entries already there intact, and the same add succeeding once there is room.
    #[test]
    fn a_full_disk_during_an_add_leaves_the_store_consistent() {
        let (_dir, store) = temp_store();
        let kept = store
            .add_program_bytes(&program_bytes("kept"), None)
            .unwrap();
        let bytes = program_bytes("new");
        let id = ProgramId::of_bytes(&bytes);
        for room in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            disk_full::set_room(Some(room));
            let got = store.add_program_bytes(&bytes, None);
            disk_full::set_room(None);
            assert!(
                matches!(got, Err(StoreError::Io { .. })),
                "room {room}: {got:?}"
            );
            assert!(!store.program_path(&id).exists(), "room {room}");
            assert!(tmp_is_empty(&store), "room {room}");
            assert!(store.load_program(&id.to_string()).is_err());
            assert_eq!(store.read_stored(&kept.id).unwrap(), program_bytes("kept"));
        }
        store.add_program_bytes(&bytes, None).unwrap();
        assert_eq!(store.load_program(&id.to_string()).unwrap().bytes, bytes);
    }

    /// In the style of sqlite's crash tests: a compile's add killed at every step of its writes
    /// (halfway through the bytes, before the rename, after it; the program, then the compile
    /// record). After each kill the store is consistent: every listed entry holds its id's bytes,
    /// the compile record finds the right program or nothing, nothing partial is in
    /// `programs/`, and the same compile then completes and is found.
    #[test]
    fn an_add_killed_at_every_step_leaves_the_store_consistent() {
        let bytes = program_bytes("crash");
        let id = ProgramId::of_bytes(&bytes);
        let key = format!("b3:{}", "c".repeat(64));
        let mut step = 0;
        loop {
            let (_dir, store) = temp_store();
            let kept = store
                .add_program_bytes(&program_bytes("kept"), None)
                .unwrap();
            crash::arm(Some(step));
            let got = store.compile_cached(
                &key,
                false,
                || Ok::<_, StoreError>((key.clone(), id, bytes.clone())),
                |(key, id, bytes)| CompiledProgram { key, id, bytes },
            );
            let completed = crash::pending();
            crash::arm(None);
            assert_eq!(got.is_ok(), completed, "step {step}");
            for p in store.list_programs().unwrap() {
                let stored = fs::read(&p.path).unwrap();
                assert_eq!(ProgramId::of_bytes(&stored), p.id, "step {step}");
            }
            assert_eq!(
                fs::read_dir(store.programs_dir()).unwrap().count(),
                store.list_programs().unwrap().len(),
                "step {step}"
            );
            if let Some(found) = store.lookup_compile(&key).unwrap() {
                assert_eq!(found.id, id, "step {step}");
            }
            assert_eq!(store.read_stored(&kept.id).unwrap(), program_bytes("kept"));
            // The same compile after the crash: completes, and is found by its key.
            store
                .compile_cached(
                    &key,
                    false,
                    || Ok::<_, StoreError>((key.clone(), id, bytes.clone())),
                    |(key, id, bytes)| CompiledProgram { key, id, bytes },
                )
                .unwrap();
            assert_eq!(store.lookup_compile(&key).unwrap().unwrap().id, id);
            assert_eq!(store.read_stored(&id).unwrap(), bytes);
            if completed {
                break;
            }
            step += 1;
        }
        // Two writes (program, compile record) of three steps each were killed.
        assert_eq!(step, 6);
    }

    #[test]
    fn open_creates_layout() {
        let (_dir, store) = temp_store();
        for d in ["programs", "models", "tmp"] {
            assert!(store.root().join(d).is_dir(), "{d}");
        }
    }

    fn stage_key(byte: &str) -> String {
        format!("b3:{}", byte.repeat(32))
    }

    #[test]
    fn stage_round_trip_overwrite_and_key_spellings() {
        let (_dir, store) = temp_store();
        let key = stage_key("cd");
        assert_eq!(store.get_stage("data", &key).unwrap(), None);
        store.put_stage("data", &key, b"first").unwrap();
        assert_eq!(
            store.get_stage("data", &key).unwrap(),
            Some(b"first".to_vec())
        );
        // `b3:<hex>` and `<hex>` name the same entry; kinds are separate.
        assert_eq!(
            store.get_stage("data", &key[3..]).unwrap(),
            Some(b"first".to_vec())
        );
        assert_eq!(store.get_stage("pseudo-program", &key).unwrap(), None);
        store.put_stage("data", &key[3..], b"").unwrap();
        assert_eq!(store.get_stage("data", &key).unwrap(), Some(Vec::new()));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn corrupt_or_misplaced_stage_entries_are_errors_not_data() {
        let (_dir, store) = temp_store();
        let key = stage_key("cd");
        store.put_stage("data", &key, b"payload").unwrap();
        let path = store.stage_path("data", &key).unwrap();
        let good = fs::read(&path).unwrap();
        let reason = |store: &Store, key: &str| match store.get_stage("data", key) {
            Err(StoreError::CorruptStage { reason, .. }) => reason,
            other => panic!("expected a corrupt entry, got {other:?}"),
        };

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(reason(&store, &key), "checksum mismatch");
        fs::write(&path, &good[..20]).unwrap();
        assert_eq!(reason(&store, &key), "wrong length");
        fs::write(&path, b"{\"train\": []}").unwrap();
        assert_eq!(reason(&store, &key), "no stage header");
        // A valid entry copied under another key (or kind) does not pass as that one.
        let other = stage_key("ef");
        fs::write(store.stage_path("data", &other).unwrap(), &good).unwrap();
        assert_eq!(reason(&store, &other), "checksum mismatch");
        // Oversized (sparse) files are refused before being read.
        File::create(&path)
            .unwrap()
            .set_len(MAX_STAGE_BYTES + 1)
            .unwrap();
        assert!(matches!(
            store.get_stage("data", &key),
            Err(StoreError::StageTooLarge { size, .. }) if size == MAX_STAGE_BYTES + 1
        ));
        // Writing the stage again repairs the entry.
        store.put_stage("data", &key, b"payload").unwrap();
        assert_eq!(
            store.get_stage("data", &key).unwrap(),
            Some(b"payload".to_vec())
        );
    }

    #[test]
    fn stage_kinds_keys_and_sizes_are_checked() {
        let (_dir, store) = temp_store();
        let key = stage_key("cd");
        for kind in ["", "Data", "../x", "a/b", &"k".repeat(33)] {
            assert!(
                matches!(
                    store.put_stage(kind, &key, b"x"),
                    Err(StoreError::InvalidStageKind { .. })
                ),
                "{kind}"
            );
        }
        for bad in ["b3:../../etc", &"AB".repeat(32), "b3:abc", ""] {
            assert!(
                matches!(
                    store.get_stage("data", bad),
                    Err(StoreError::InvalidKey { .. })
                ),
                "{bad}"
            );
        }
        let huge = vec![0u8; MAX_STAGE_BYTES as usize];
        assert!(matches!(
            store.put_stage("data", &key, &huge),
            Err(StoreError::StageTooLarge { .. })
        ));
        assert_eq!(store.get_stage("data", &key).unwrap(), None);
        assert!(tmp_is_empty(&store));
    }

    const KILL_ROOT_ENV: &str = "PAW_STORE_TEST_KILL_ROOT";

    /// Body of the child processes `killed_writer_leaves_no_partial_program` kills.
    #[test]
    #[ignore = "run as a child process by killed_writer_leaves_no_partial_program"]
    fn child_process_endless_writer() {
        let Some(root) = std::env::var_os(KILL_ROOT_ENV) else {
            return;
        };
        let store = Store::open(PathBuf::from(root)).unwrap();
        // Programs of incompressible text, encoded up front so that the loop below spends its
        // time in the store's write path, where the parent kills it.
        let mut x = u64::from(std::process::id()) | 1;
        let programs: Vec<Vec<u8>> = (0..24)
            .map(|i| {
                let noise: String = (0..400_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(b'a' + (x % 26) as u8)
                    })
                    .collect();
                program_bytes(&format!("{i} {noise}"))
            })
            .collect();
        for bytes in &programs {
            store.add_program_bytes(bytes, None).unwrap();
        }
    }

    /// A writer killed at an arbitrary moment (SIGKILL: like a crash, or Ctrl-C, no destructor
    /// runs) never leaves a partial program visible in the store. (Checked by hand: most runs
    /// kill at least one write midway, leaving its temporary file in `tmp/`.)
    #[test]
    fn killed_writer_leaves_no_partial_program() {
        let (_dir, store) = temp_store();
        let exe = std::env::current_exe().unwrap();
        for round in 0..4u64 {
            let before = store.list_programs().unwrap().len();
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "store::tests::child_process_endless_writer",
                    "--ignored",
                    "--quiet",
                ])
                .env(KILL_ROOT_ENV, store.root())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while store.list_programs().unwrap().len() == before {
                assert!(std::time::Instant::now() < deadline, "child wrote nothing");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // Somewhere in the middle of the next program.
            std::thread::sleep(std::time::Duration::from_millis(1 + 7 * round));
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let programs = store.list_programs().unwrap();
        assert!(programs.len() >= 4);
        for p in &programs {
            let bytes = fs::read(&p.path).unwrap();
            assert_eq!(
                paw_format::reader::verify_bytes(&bytes, Some(&p.id)).unwrap(),
                p.id
            );
        }
        // Nothing but complete programs in programs/ (leftovers can only be in tmp/).
        assert_eq!(
            fs::read_dir(store.programs_dir()).unwrap().count(),
            programs.len()
        );
    }

    #[test]
    fn add_program_is_content_addressed_and_idempotent() {
        let (dir, store) = temp_store();
        let bytes = &program_bytes("say hi")[..];
        let p = store.add_program_bytes(bytes, None).unwrap();
        assert_eq!(p.id, ProgramId::of_bytes(bytes));
        assert_eq!(p.size, bytes.len() as u64);
        assert_eq!(fs::read(&p.path).unwrap(), bytes);
        assert_eq!(store.program_path(&p.id), p.path);
        assert_eq!(store.add_program_bytes(bytes, Some(&p.id)).unwrap(), p);

        let file = dir.path().join("x.paw");
        fs::write(&file, bytes).unwrap();
        assert_eq!(store.add_program_file(&file).unwrap(), p);
        assert_eq!(store.list_programs().unwrap(), vec![p]);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn invalid_or_mislabelled_programs_are_not_stored() {
        let (_dir, store) = temp_store();
        assert!(matches!(
            store.add_program_bytes(b"not a program", None),
            Err(StoreError::InvalidProgram(_))
        ));
        let bytes = program_bytes("a");
        let other = ProgramId::of_bytes(b"something else");
        assert!(matches!(
            store.add_program_bytes(&bytes, Some(&other)),
            Err(StoreError::InvalidProgram(FormatError::IdMismatch { .. }))
        ));
        assert!(store.list_programs().unwrap().is_empty());
        assert!(tmp_is_empty(&store));
    }

    /// Two distinct program contents whose ids share their first `MIN_ID_PREFIX_LEN` digits.
    fn colliding_pair() -> (Vec<u8>, Vec<u8>) {
        let mut seen = std::collections::HashMap::new();
        for i in 0u32.. {
            let bytes = program_bytes(&format!("program {i}"));
            let hex = ProgramId::of_bytes(&bytes).to_hex();
            let prefix = hex[..MIN_ID_PREFIX_LEN].to_string();
            if let Some(other) = seen.insert(prefix, bytes.clone()) {
                return (other, bytes);
            }
        }
        unreachable!()
    }

    #[test]
    fn resolve_program_by_path_id_and_prefix() {
        let (dir, store) = temp_store();
        let (a, b) = colliding_pair();
        let pa = store.add_program_bytes(&a, None).unwrap();
        let pb = store.add_program_bytes(&b, None).unwrap();
        let full_a = pa.id.to_string();
        let hex_a = &full_a[3..];

        // A path wins, inside or outside the store.
        let outside = dir.path().join("mine.paw");
        fs::write(&outside, b"x").unwrap();
        assert_eq!(
            store.resolve_program(outside.to_str().unwrap()).unwrap(),
            ProgramRef::File(outside)
        );

        let stored_a = ProgramRef::Stored(pa.clone());
        assert_eq!(store.resolve_program(&full_a).unwrap(), stored_a);
        assert_eq!(store.resolve_program(hex_a).unwrap(), stored_a);
        assert_eq!(store.resolve_program(&full_a[..20]).unwrap(), stored_a);
        assert_eq!(
            store.resolve_program(&hex_a[..10].to_uppercase()).unwrap(),
            stored_a
        );

        let shared = &hex_a[..MIN_ID_PREFIX_LEN];
        match store.resolve_program(shared) {
            Err(StoreError::AmbiguousProgram { candidates, .. }) => {
                let mut want = vec![pa.id, pb.id];
                want.sort();
                assert_eq!(candidates, want);
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        let msg = store.resolve_program(shared).unwrap_err().to_string();
        assert!(
            msg.contains(&full_a) && msg.contains(&pb.id.to_string()),
            "{msg}"
        );

        assert!(matches!(
            store.resolve_program(&hex_a[..3]),
            Err(StoreError::PrefixTooShort { .. })
        ));
        let absent = if hex_a.starts_with('0') { "1" } else { "0" }.repeat(64);
        let absent_prefix = format!("b3:{}", &absent[..12]);
        for missing in [absent.as_str(), &absent_prefix, "no-such-file.paw", "zz"] {
            let got = store.resolve_program(missing);
            assert!(
                matches!(got, Err(StoreError::NoSuchProgram { .. })),
                "{missing}: {got:?}"
            );
        }
    }

    #[test]
    fn list_programs_ignores_foreign_files() {
        let (_dir, store) = temp_store();
        let p1 = store
            .add_program_bytes(&program_bytes("one"), None)
            .unwrap();
        let p2 = store
            .add_program_bytes(&program_bytes("two"), None)
            .unwrap();
        fs::write(store.programs_dir().join("notes.txt"), b"x").unwrap();
        fs::write(store.programs_dir().join("abc.paw"), b"x").unwrap();
        let mut want = vec![p1, p2];
        want.sort_by_key(|p| p.id);
        assert_eq!(store.list_programs().unwrap(), want);
    }

    #[test]
    fn concurrent_writers_in_threads() {
        let (_dir, store) = temp_store();
        let root = Arc::new(store.root().to_path_buf());
        let shared = Arc::new(program_bytes(&"shared spec ".repeat(5_000)));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let root = Arc::clone(&root);
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // Separate handles, as separate processes would have.
                    let store = Store::open(root.as_path()).unwrap();
                    for _ in 0..10 {
                        store.add_program_bytes(&shared, None).unwrap();
                    }
                    store
                        .add_program_bytes(&program_bytes(&format!("own {t}")), None)
                        .unwrap()
                })
            })
            .collect();
        let own: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let listed = store.list_programs().unwrap();
        assert_eq!(listed.len(), 9);
        let shared_id = ProgramId::of_bytes(&shared).to_string();
        assert_eq!(store.load_program(&shared_id).unwrap().bytes, *shared);
        for p in own {
            assert!(listed.contains(&p));
        }
        assert!(tmp_is_empty(&store));
    }

    const CHILD_ROOT_ENV: &str = "PAW_STORE_TEST_CHILD_ROOT";

    /// Body of the child processes spawned by `concurrent_writers_in_processes`.
    #[test]
    #[ignore = "run as a child process by concurrent_writers_in_processes"]
    fn child_process_writer() {
        let Some(root) = std::env::var_os(CHILD_ROOT_ENV) else {
            return;
        };
        let store = Store::open(PathBuf::from(root)).unwrap();
        let program = program_bytes(&"shared spec ".repeat(5_000));
        let shared: Vec<u8> = (0..500_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for _ in 0..5 {
            store.add_program_bytes(&program, None).unwrap();
            store
                .install_model_from_reader(
                    &shared[..],
                    ExpectedModel {
                        size: shared.len() as u64,
                        sha256: sha256_hex(&shared),
                        manifest_id: Some("shared".into()),
                    },
                )
                .unwrap();
        }
    }

    #[test]
    fn concurrent_writers_in_processes() {
        let (_dir, store) = temp_store();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "store::tests::child_process_writer",
                        "--ignored",
                        "--quiet",
                    ])
                    .env(CHILD_ROOT_ENV, store.root())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let shared: Vec<u8> = (0..500_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let programs = store.list_programs().unwrap();
        assert_eq!(programs.len(), 1);
        let program = program_bytes(&"shared spec ".repeat(5_000));
        assert_eq!(fs::read(&programs[0].path).unwrap(), program);
        let models = store.installed_models().unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(fs::read(&models[0].path).unwrap(), shared);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn model_writer_installs_verified_bytes_in_parts() {
        let (_dir, store) = temp_store();
        let parts: [&[u8]; 3] = [b"GGUF", b" part two", b" and three"];
        let whole: Vec<u8> = parts.concat();
        let expected = ExpectedModel {
            size: whole.len() as u64,
            sha256: sha256_hex(&whole),
            manifest_id: Some("tiny".into()),
        };
        let mut w = store.model_writer(expected.clone()).unwrap();
        for part in parts {
            w.write_all(part).unwrap();
        }
        assert_eq!(w.written(), whole.len() as u64);
        let installed = w.finish().unwrap();
        assert_eq!(installed.path, store.model_path(&expected.sha256).unwrap());
        assert_eq!(fs::read(&installed.path).unwrap(), whole);
        assert_eq!(
            installed.meta,
            ModelMeta {
                size: whole.len() as u64,
                sha256: expected.sha256.clone(),
                blake3: format!("b3:{}", blake3::hash(&whole).to_hex()),
                manifest_id: Some("tiny".into()),
                directory: false,
            }
        );
        assert_eq!(
            store.installed_model(&expected.sha256).unwrap(),
            Some(installed.clone())
        );
        assert_eq!(store.installed_models().unwrap(), vec![installed.clone()]);
        assert_eq!(
            store.check_model(&expected).unwrap(),
            ModelCheck::Verified(installed)
        );
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn model_mismatch_is_refused_and_leaves_nothing() {
        let (_dir, store) = temp_store();
        let bytes = b"not the model you wanted";
        let wrong_sha = ExpectedModel {
            size: bytes.len() as u64,
            sha256: "0".repeat(64),
            manifest_id: None,
        };
        let wrong_size = ExpectedModel {
            size: bytes.len() as u64 + 1,
            sha256: sha256_hex(bytes),
            manifest_id: None,
        };
        for expected in [wrong_sha, wrong_size] {
            let err = store
                .install_model_from_reader(&bytes[..], expected.clone())
                .unwrap_err();
            match &err {
                StoreError::ModelMismatch {
                    actual_size,
                    actual_sha256,
                    ..
                } => {
                    assert_eq!(*actual_size, bytes.len() as u64);
                    assert_eq!(*actual_sha256, sha256_hex(bytes));
                }
                other => panic!("expected a mismatch, got {other:?}"),
            }
            assert!(err.to_string().contains(&expected.sha256));
            assert_eq!(store.installed_model(&expected.sha256).unwrap(), None);
        }
        assert!(store.installed_models().unwrap().is_empty());
        assert!(fs::read_dir(store.models_dir()).unwrap().next().is_none());
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn install_model_copies_a_file_and_check_detects_corruption() {
        let (dir, store) = temp_store();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let src = dir.path().join("m.gguf");
        fs::write(&src, &bytes).unwrap();
        let expected = ExpectedModel {
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            manifest_id: Some("m".into()),
        };
        assert_eq!(store.check_model(&expected).unwrap(), ModelCheck::Missing);
        let installed = store.install_model(&src, expected.clone()).unwrap();
        assert_eq!(fs::read(&installed.path).unwrap(), bytes);

        // Lost metadata: not "installed", but a check re-verifies and restores it.
        fs::remove_file(store.model_meta_path(&expected.sha256).unwrap()).unwrap();
        assert_eq!(store.installed_model(&expected.sha256).unwrap(), None);
        assert_eq!(
            store.check_model(&expected).unwrap(),
            ModelCheck::Verified(installed.clone())
        );
        assert_eq!(
            store.installed_model(&expected.sha256).unwrap(),
            Some(installed.clone())
        );

        // Same size, flipped byte: cheap lookup still trusts it, a check does not.
        let mut corrupt = bytes.clone();
        corrupt[1000] ^= 1;
        fs::write(&installed.path, &corrupt).unwrap();
        assert!(matches!(
            store.check_model(&expected).unwrap(),
            ModelCheck::Corrupt { actual_size, .. } if actual_size == bytes.len() as u64
        ));
        // Reinstalling replaces it.
        store.install_model(&src, expected.clone()).unwrap();
        assert!(matches!(
            store.check_model(&expected).unwrap(),
            ModelCheck::Verified(_)
        ));
    }

    #[test]
    fn model_paths_reject_non_sha256_names() {
        let (_dir, store) = temp_store();
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"a".repeat(63)] {
            assert!(matches!(
                store.model_path(bad),
                Err(StoreError::InvalidSha256 { .. })
            ));
        }
        let ok = "a".repeat(64);
        assert_eq!(
            store.model_path(&ok).unwrap(),
            store.models_dir().join(format!("{ok}.gguf"))
        );
    }
}
