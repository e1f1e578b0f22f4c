//! Hugging Face model directories in the store (`paw models add DIR`): a safetensors checkpoint
//! the runtime loads as a directory, kept as `models/<sha256>.dir/` beside its metadata file.
//!
//! What is kept: every regular file directly in the directory whose name ends in `.json` or
//! `.safetensors` (configuration, tokenizer, weights, shard index); everything else (README,
//! `.gitattributes`, other formats) is not copied. Symbolic links are followed, so a Hugging
//! Face cache snapshot (links into its blob store) installs as the files it points at.
//!
//! Its SHA-256 (what `paw.lock` pins as `interpreter-sha256`) is the SHA-256 of the listing
//! `sha256sum` prints for those files sorted by name: one line `<sha256 hex>  <name>\n` per
//! file, so `sha256sum *.json *.safetensors | LC_ALL=C sort -k2 | sha256sum` reproduces it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{
    io_err, is_full_hex, meta_json, ModelMeta, Result, Store, StoreError, COPY_BUFFER,
};

/// Extension of a model directory in `models/`.
pub(crate) const MODEL_DIR_EXT: &str = "dir";
/// Prefix of a model directory being copied into `tmp/`.
pub(crate) const MODEL_DIR_TMP_PREFIX: &str = "modeldir-";
/// More files than any checkpoint has (the largest public ones have a few hundred shards).
const MAX_MODEL_DIR_FILES: usize = 4096;

/// The files of a model directory the store keeps, as (name, path), sorted by name.
pub fn model_dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let kept = name.ends_with(".json") || name.ends_with(".safetensors");
        // `metadata` follows links: a link to a regular file counts as one.
        if !kept || !fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            continue;
        }
        files.push((name, entry.path()));
        if files.len() > MAX_MODEL_DIR_FILES {
            return Err(StoreError::NotAModelDir {
                path: dir.to_path_buf(),
                reason: "more than 4096 .json and .safetensors files",
            });
        }
    }
    files.sort();
    if !files.iter().any(|(n, _)| n == "config.json") {
        return Err(StoreError::NotAModelDir {
            path: dir.to_path_buf(),
            reason: "no config.json",
        });
    }
    if !files.iter().any(|(n, _)| n.ends_with(".safetensors")) {
        return Err(StoreError::NotAModelDir {
            path: dir.to_path_buf(),
            reason: "no .safetensors file",
        });
    }
    Ok(files)
}

/// The listing hasher: one `<sha256 hex>  <name>\n` line per file, in name order.
#[derive(Default)]
struct Listing {
    sha256: Sha256,
    size: u64,
}

impl Listing {
    fn add(&mut self, name: &str, file_sha256: &str, size: u64) {
        self.sha256
            .update(format!("{file_sha256}  {name}\n").as_bytes());
        self.size += size;
    }

    /// `(total bytes of the files, SHA-256 hex of the listing)`.
    fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.sha256.finalize()))
    }
}

/// Copies `from` to `to` (synced), returning the size and SHA-256 hex of the bytes copied.
fn hash_copy(from: &Path, to: &Path) -> Result<(u64, String)> {
    let mut reader = File::open(from).map_err(io_err("opening", from))?;
    let mut out = BufWriter::with_capacity(
        COPY_BUFFER,
        File::create(to).map_err(io_err("creating", to))?,
    );
    let (mut sha, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; COPY_BUFFER]);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", from)(e)),
        };
        sha.update(&buf[..n]);
        size += n as u64;
        out.write_all(&buf[..n]).map_err(io_err("writing", to))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| io_err("writing", to)(e.into_error()))?;
    file.sync_all().map_err(io_err("syncing", to))?;
    Ok((size, hex::encode(sha.finalize())))
}

/// The total size and the SHA-256 (see the module docs) of the model directory at `dir`.
pub fn model_dir_sha256(dir: &Path) -> Result<(u64, String)> {
    let mut listing = Listing::default();
    for (name, path) in model_dir_files(dir)? {
        let size = fs::metadata(&path)
            .map_err(io_err("inspecting", &path))?
            .len();
        let sha = crate::sha256_file(&path).map_err(io_err("hashing", &path))?;
        listing.add(&name, &sha, size);
    }
    Ok(listing.finish())
}

impl Store {
    fn model_dir_path(&self, sha256: &str) -> PathBuf {
        self.models_dir().join(format!("{sha256}.{MODEL_DIR_EXT}"))
    }

    /// Copies a Hugging Face model directory into the store, hashing every byte as it is
    /// copied, so the SHA-256 recorded is that of the bytes stored. `weights_hash` computes
    /// the runtime's `b3:` weights hash from the copy (before it is renamed into place): the
    /// hash programs record and lock files pin. `name` is recorded beside it.
    pub fn install_model_dir<E>(
        &self,
        from: &Path,
        name: Option<String>,
        weights_hash: impl FnOnce(&Path) -> std::result::Result<String, E>,
    ) -> Result<crate::InstalledModel>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let files = model_dir_files(from)?;
        let tmp_root = self.tmp_dir();
        let tmp = tempfile::Builder::new()
            .prefix(MODEL_DIR_TMP_PREFIX)
            .tempdir_in(&tmp_root)
            .map_err(io_err("creating a temporary directory in", &tmp_root))?;
        let mut listing = Listing::default();
        for (name, path) in &files {
            let (size, sha) = hash_copy(path, &tmp.path().join(name))?;
            listing.add(name, &sha, size);
        }
        let (size, sha256) = listing.finish();
        let blake3 = weights_hash(tmp.path()).map_err(|e| StoreError::WeightsHash(Box::new(e)))?;
        let dest = self.model_dir_path(&sha256);
        // Content-addressed: an existing entry with this name holds these bytes already, unless
        // damaged; it is replaced by the fresh copy either way.
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io_err("removing", &dest))?;
        }
        let kept = tmp.keep();
        fs::rename(&kept, &dest).map_err(io_err("renaming a temporary directory to", &dest))?;
        let meta = ModelMeta {
            size,
            sha256: sha256.clone(),
            blake3,
            manifest_id: name,
            directory: true,
        };
        let meta_path = self.models_dir().join(format!("{sha256}.json"));
        self.write_atomic(&meta_path, &meta_json(&meta, &meta_path)?)?;
        Ok(crate::InstalledModel { path: dest, meta })
    }

    /// The path of an installed model directory, if `meta` describes one and it still holds
    /// the recorded number of bytes.
    pub(crate) fn installed_model_dir(&self, meta: &ModelMeta) -> Result<Option<PathBuf>> {
        if !is_full_hex(&meta.sha256) {
            return Ok(None);
        }
        let path = self.model_dir_path(&meta.sha256);
        if !path.is_dir() {
            return Ok(None);
        }
        let size: u64 = match model_dir_files(&path) {
            Ok(files) => files
                .iter()
                .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum(),
            Err(_) => return Ok(None),
        };
        Ok((size == meta.size).then_some(path))
    }

    /// Re-hashes an installed model directory: whether its files still have the SHA-256 its
    /// metadata records.
    pub fn verify_model_dir(&self, sha256: &str) -> Result<bool> {
        let path = self.model_dir_path(sha256);
        Ok(model_dir_sha256(&path)?.1 == sha256)
    }

    /// Removes a model directory; returns the bytes freed.
    pub(crate) fn remove_model_dir(&self, sha256: &str) -> Result<u64> {
        let path = self.model_dir_path(sha256);
        let freed = crate::store::dir_bytes(&path)?;
        match fs::remove_dir_all(&path) {
            Ok(()) => Ok(freed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(dir: &Path) {
        fs::write(dir.join("config.json"), b"{\"model_type\":\"llama\"}").expect("write");
        fs::write(dir.join("tokenizer.json"), b"{}").expect("write");
        fs::write(dir.join("model.safetensors"), b"weights").expect("write");
        fs::write(dir.join("README.md"), b"not kept").expect("write");
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn the_sha256_is_that_of_the_sorted_sha256sum_listing() {
        let dir = tempfile::tempdir().expect("dir");
        checkpoint(dir.path());
        let listing = format!(
            "{}  config.json\n{}  model.safetensors\n{}  tokenizer.json\n",
            sha(b"{\"model_type\":\"llama\"}"),
            sha(b"weights"),
            sha(b"{}")
        );
        let (size, sha256) = model_dir_sha256(dir.path()).expect("hash");
        assert_eq!(sha256, sha(listing.as_bytes()));
        assert_eq!(size, 22 + 7 + 2);
    }

    #[test]
    fn a_directory_without_config_or_weights_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        fs::write(dir.path().join("model.safetensors"), b"w").expect("write");
        let err = model_dir_files(dir.path()).expect_err("no config");
        assert!(err.to_string().contains("no config.json"), "{err}");
        fs::remove_file(dir.path().join("model.safetensors")).expect("rm");
        fs::write(dir.path().join("config.json"), b"{}").expect("write");
        let err = model_dir_files(dir.path()).expect_err("no weights");
        assert!(err.to_string().contains("no .safetensors"), "{err}");
    }

    #[test]
    fn install_lists_verifies_and_removes_a_model_directory() {
        let root = tempfile::tempdir().expect("root");
        let store = Store::open(root.path().join("store")).expect("store");
        let src = tempfile::tempdir().expect("src");
        checkpoint(src.path());
        let installed = store
            .install_model_dir(src.path(), Some("tiny".into()), |copy: &Path| {
                assert!(copy.join("model.safetensors").is_file());
                assert!(!copy.join("README.md").exists());
                Ok::<_, io::Error>("b3:weights".to_string())
            })
            .expect("install");
        assert!(installed.meta.directory);
        assert_eq!(installed.meta.blake3, "b3:weights");
        assert_eq!(
            installed.meta.sha256,
            model_dir_sha256(src.path()).expect("hash").1
        );
        let listed = store.installed_models().expect("list");
        assert_eq!(listed, vec![installed.clone()]);
        assert!(store
            .verify_model_dir(&installed.meta.sha256)
            .expect("verify"));

        // A changed file: the cheap check (sizes) misses a same-size change, the re-hash not.
        fs::write(installed.path.join("model.safetensors"), b"WEIGHTS").expect("tamper");
        assert!(!store
            .verify_model_dir(&installed.meta.sha256)
            .expect("verify"));
        // A changed size drops it from the list.
        fs::write(installed.path.join("model.safetensors"), b"w").expect("tamper");
        assert!(store.installed_models().expect("list").is_empty());

        let freed = store.remove_model(&installed.meta.sha256).expect("rm");
        assert!(freed > 0);
        assert!(!installed.path.exists());
        assert!(store
            .installed_model(&installed.meta.sha256)
            .expect("look")
            .is_none());
    }

    #[test]
    fn a_failing_weights_hash_installs_nothing() {
        let root = tempfile::tempdir().expect("root");
        let store = Store::open(root.path().join("store")).expect("store");
        let src = tempfile::tempdir().expect("src");
        checkpoint(src.path());
        let err = store
            .install_model_dir(src.path(), None, |_: &Path| {
                Err(io::Error::other("not a model the runtime reads"))
            })
            .expect_err("refused");
        assert!(matches!(err, StoreError::WeightsHash(_)), "{err}");
        assert!(store.installed_models().expect("list").is_empty());
        assert_eq!(fs::read_dir(store.models_dir()).expect("models").count(), 0);
    }
}
