//! Trust by hash (issue 15), through the `paw` binary: an id always means exactly those bytes,
//! the store only ever deletes what it wrote, and a closed stdout is not a crash.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/programs")
        .join(name)
}

/// Runs `paw ARGS` in `cwd` with the store at `home`.
fn paw_in(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    paw_testkit::run_in(env!("CARGO_BIN_EXE_paw"), cwd, home, args)
}

fn ok(out: &Output) -> String {
    paw_testkit::stdout_of_success(out)
}

fn failed(out: &Output) -> String {
    paw_testkit::stderr_of_failure(out)
}

fn id_of(path: &Path) -> String {
    format!(
        "b3:{}",
        blake3::hash(&std::fs::read(path).unwrap()).to_hex()
    )
}

#[test]
fn an_id_shaped_argument_never_opens_a_file_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let a = fixture("prompt-only.paw");
    let a_id = id_of(&a);
    // A file named like A's id, holding program B.
    let b = fixture("labels-contract.paw");
    std::fs::copy(&b, dir.path().join(&a_id)).unwrap();

    // A is not stored: the id does not resolve, whatever the working directory holds.
    for reference in [a_id.as_str(), &a_id[..12], &a_id[3..20]] {
        for command in ["verify", "inspect"] {
            let err = failed(&paw_in(dir.path(), &home, &[command, reference]));
            assert!(err.contains("no program"), "{command} {reference}: {err}");
        }
    }
    // A path is a path.
    let by_path = ok(&paw_in(
        dir.path(),
        &home,
        &["verify", &format!("./{a_id}")],
    ));
    assert!(
        by_path.starts_with(&format!("ok {}", id_of(&b))),
        "{by_path}"
    );

    // Once A is stored, its id means A's bytes.
    ok(&paw_in(dir.path(), &home, &["add", a.to_str().unwrap()]));
    let by_id = ok(&paw_in(dir.path(), &home, &["verify", &a_id]));
    assert!(by_id.starts_with(&format!("ok {a_id}")), "{by_id}");
}

#[test]
fn a_swapped_store_entry_is_refused_by_id_listed_as_damaged_and_repaired_by_add() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let (a, b, c) = (
        fixture("prompt-only.paw"),
        fixture("labels-contract.paw"),
        fixture("multilingual.paw"),
    );
    let (a_id, b_id, c_id) = (id_of(&a), id_of(&b), id_of(&c));
    for f in [&a, &c] {
        ok(&paw_in(dir.path(), &home, &["add", f.to_str().unwrap()]));
    }
    // Swap: A's entry now holds B's (valid) bytes.
    let entry = home.join("programs").join(format!("{}.paw", &a_id[3..]));
    std::fs::copy(&b, &entry).unwrap();

    for reference in [a_id.as_str(), &a_id[..12]] {
        for command in ["verify", "inspect"] {
            let err = failed(&paw_in(dir.path(), &home, &[command, reference]));
            assert!(
                err.contains("does not hold program") && err.contains(&b_id),
                "{command} {reference}: {err}"
            );
        }
        let err = failed(&paw_in(dir.path(), &home, &["run", reference, "x"]));
        assert!(err.contains("does not hold program"), "run: {err}");
    }

    // `list` shows the bytes' id, marks the entry damaged, and still lists the rest.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&paw_in(dir.path(), &home, &["list", "--json"]))).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    let swapped = rows.iter().find(|r| r["id"] == b_id.as_str()).unwrap();
    assert!(swapped["damaged"]
        .as_str()
        .unwrap()
        .contains("does not hold"));
    let good = rows.iter().find(|r| r["id"] == c_id.as_str()).unwrap();
    assert!(good["damaged"].is_null() && good["spec"].is_string());

    // Adding the real A repairs the entry.
    ok(&paw_in(dir.path(), &home, &["add", a.to_str().unwrap()]));
    assert_eq!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    let by_id = ok(&paw_in(dir.path(), &home, &["verify", &a_id]));
    assert!(by_id.starts_with(&format!("ok {a_id}")), "{by_id}");
}

#[test]
fn the_store_refuses_a_directory_that_is_not_a_store_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    let mine = home.join("notes.txt");
    let old = home.join("tmp").join("write-looks-like-ours");
    std::fs::write(&mine, b"mine").unwrap();
    std::fs::write(&old, b"also mine").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let err = failed(&paw_in(dir.path(), &home, &["list"]));
    assert!(
        err.contains("not a paw store") && err.contains("notes.txt"),
        "{err}"
    );
    assert_eq!(std::fs::read(&mine).unwrap(), b"mine");
    assert_eq!(std::fs::read(&old).unwrap(), b"also mine");
    assert!(!home.join("programs").exists(), "nothing created");

    // An empty directory becomes a store.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&paw_in(dir.path(), &empty, &["list"]));
    assert!(empty.join("programs").is_dir());
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let program = fixture("adapter-mixed.paw");
    for args in [
        vec!["inspect", program.to_str().unwrap()],
        vec!["inspect", "--json", program.to_str().unwrap()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paw"))
            .args(&args)
            .env("PAW_HOME", &home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before paw writes (as `| head -0` would).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Makes `path` and everything under it read-only (directories stay listable).
fn make_read_only(path: &Path) {
    set_modes(path, 0o555, 0o444);
}

fn set_modes(path: &Path, dir_mode: u32, file_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { dir_mode } else { file_mode };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            set_modes(&entry.unwrap().path(), dir_mode, file_mode);
        }
    }
}

/// `paw ARGS` as a user who cannot write `home`: the current user when that is not root (the
/// permissions bind it), else `nobody` (root ignores permissions).
/// The binary is run from a copy in `cwd`: the build directory may not be reachable by
/// `nobody` (a clone under a private temporary directory).
fn paw_unprivileged(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let exe = cwd.join("paw-unprivileged");
    if !exe.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_paw"), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = Command::new(&exe);
    command
        .args(args)
        .current_dir(cwd)
        .env("PAW_HOME", home)
        .env_remove("RUST_LOG");
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    if root {
        command.uid(65534).gid(65534);
    }
    // Another test thread forking while the copy above was open for writing holds that
    // descriptor until its exec: running the copy then fails with ETXTBSY for a moment.
    for _ in 0..100 {
        match command.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.expect("paw runs"),
        }
    }
    panic!("{} stayed busy (ETXTBSY) for 2 s", exe.display());
}

/// A store its user cannot write (a container image, a shared cache): reading, verifying and
/// running by id work; adding fails with a clear error and changes nothing.
#[test]
fn a_read_only_store_serves_reads_and_refuses_writes_without_damage() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged user must reach the files.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("store");
    let a = fixture("prompt-only.paw");
    let a_id = id_of(&a);
    ok(&paw_in(dir.path(), &home, &["add", a.to_str().unwrap()]));
    let b = dir.path().join("b.paw");
    std::fs::copy(fixture("labels-contract.paw"), &b).unwrap();
    make_read_only(&home);
    let before = paw_testkit::files_under(&home);

    let listed = ok(&paw_unprivileged(dir.path(), &home, &["list", "--json"]));
    assert!(listed.contains(&a_id), "{listed}");
    let verified = ok(&paw_unprivileged(dir.path(), &home, &["verify", &a_id]));
    assert!(verified.starts_with(&format!("ok {a_id}")), "{verified}");
    let inspected = ok(&paw_unprivileged(
        dir.path(),
        &home,
        &["inspect", &a_id[..12]],
    ));
    assert!(!inspected.is_empty());

    let err = failed(&paw_unprivileged(
        dir.path(),
        &home,
        &["add", b.to_str().unwrap()],
    ));
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert_eq!(
        paw_testkit::files_under(&home),
        before,
        "a refused add changed the store"
    );
    // Writable again, so that the temporary directory can be removed by a non-root user.
    set_modes(&home, 0o755, 0o644);
}
