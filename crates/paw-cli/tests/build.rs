//! `paw build`, `paw.lock` and loading functions by name (issue 17), end to end on SmolLM2-135M
//! (`PAW_TEST_SMOLLM2`): compiles from examples only, a few training steps each.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use paw_store::{Lockfile, Store};

fn paw_in(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    paw_testkit::run_in(env!("CARGO_BIN_EXE_paw"), cwd, home, args)
}

fn ok(out: &Output) -> String {
    paw_testkit::stdout_of_success(out)
}

fn failed(out: &Output) -> String {
    paw_testkit::stderr_of_failure(out)
}

/// `paw build --json ARGS`: each function's status by name.
fn build(dir: &Path, home: &Path, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let out = ok(&paw_in(dir, home, &all));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn write_cases(path: &Path, cases: &[(&str, &str)]) {
    let lines: Vec<String> = cases
        .iter()
        .map(|(i, o)| serde_json::json!({"input": i, "output": o}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A three-function project on `model` (teacher none, 4 training steps).
fn write_project(dir: &Path, model: &Path) {
    write_cases(
        &dir.join("shout.jsonl"),
        &[
            ("hello", "HELLO"),
            ("good day", "GOOD DAY"),
            ("rust", "RUST"),
        ],
    );
    write_cases(
        &dir.join("mood.jsonl"),
        &[
            ("I love it", "positive"),
            ("I hate it", "negative"),
            ("great", "positive"),
        ],
    );
    write_cases(
        &dir.join("mood.tests.jsonl"),
        &[("I adore this", "positive"), ("terrible", "negative")],
    );
    write_cases(
        &dir.join("first.jsonl"),
        &[("a b c", "a"), ("x y", "x"), ("dog cat", "dog")],
    );
    std::fs::write(
        dir.join("mood.txt"),
        "Say whether the text is positive or negative.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("paw.toml"),
        format!(
            r#"[defaults]
interpreter = "{}"
teacher = "none"
steps = 4

[[function]]
name = "shout"
spec = "Upper-case the input."
examples = "shout.jsonl"

[[function]]
name = "mood"
spec-file = "mood.txt"
examples = "mood.jsonl"
labels = ["positive", "negative"]
tests = "mood.tests.jsonl"
threshold = 0.0

[[function]]
name = "first_word"
spec = "Reply with the first word of the input."
examples = "first.jsonl"
"#,
            model.display()
        ),
    )
    .unwrap();
}

#[test]
fn build_lock_rebuild_locked_frozen_and_call_by_name() {
    let Some(model) = paw_testkit::require_model("PAW_TEST_SMOLLM2") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, home) = (tmp.path().join("proj"), tmp.path().join("home"));
    std::fs::create_dir_all(&dir).unwrap();
    write_project(&dir, &model);
    ok(&paw_in(
        &dir,
        &home,
        &[
            "models",
            "add",
            model.to_str().unwrap(),
            "--name",
            "smollm2",
        ],
    ));

    // First build: every function compiles; the lock pins all three.
    let first = build(&dir, &home, &[]);
    let first_mood = Lockfile::read(&dir.join("paw.lock")).unwrap().functions["mood"].program;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|(_, s)| s == "compiled"), "{first:?}");
    let lock_path = dir.join("paw.lock");
    let lock_text = std::fs::read_to_string(&lock_path).unwrap();
    let lock = Lockfile::read(&lock_path).unwrap();
    assert_eq!(
        lock.functions.keys().collect::<Vec<_>>(),
        ["first_word", "mood", "shout"]
    );

    // Rebuild: nothing compiles, the lock keeps its bytes; --locked and --frozen agree.
    for args in [&[][..], &["--locked"], &["--frozen"]] {
        let again = build(&dir, &home, args);
        assert!(
            again.iter().all(|(_, s)| s == "unchanged"),
            "{args:?}: {again:?}"
        );
        assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock_text);
    }

    // One spec changes: --locked and --frozen refuse, naming it; a build compiles only it.
    std::fs::write(
        dir.join("mood.txt"),
        "Is the text positive or negative? One word.\n",
    )
    .unwrap();
    for flag in ["--locked", "--frozen"] {
        let err = failed(&paw_in(&dir, &home, &["build", flag]));
        assert!(
            err.contains("mood: its compile key changed"),
            "{flag}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock_text);
    }
    let second = build(&dir, &home, &[]);
    let statuses: Vec<(&str, &str)> = second
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("shout", "unchanged"),
            ("mood", "compiled"),
            ("first_word", "unchanged")
        ]
    );
    let lock = Lockfile::read(&lock_path).unwrap();

    // Calling by name gives what `paw run` gives for the same program.
    let store = Store::open(&home).unwrap();
    let project = paw::Project::open_in(&lock_path, &store).unwrap();
    assert_eq!(
        project.names().collect::<Vec<_>>(),
        ["first_word", "mood", "shout"]
    );
    for (name, input) in [("mood", "I adore this"), ("shout", "loud noises")] {
        let out = project
            .function(name)
            .unwrap()
            .call(input, &paw::CallOptions::default())
            .unwrap();
        let id = lock.functions[name].program.to_string();
        let run = ok(&paw_in(&dir, &home, &["run", &id, input]));
        assert_eq!(run.trim_end_matches('\n'), out.text, "{name}");
    }
    assert!(matches!(
        project.function("nope"),
        Err(paw::ProjectError::UnknownFunction { .. })
    ));
    // One function by name, and one program by id, share one loaded interpreter and answer
    // as the whole project does.
    let mut interpreters = paw::Interpreters::default();
    let one = paw::Project::open_function(&lock_path, "mood", &store, &mut interpreters).unwrap();
    let id = lock.functions["mood"].program.to_string();
    let by_id = paw::open_function(&store, &id, None, &mut interpreters).unwrap();
    assert_eq!(one.id, by_id.id);
    assert_eq!(one.spec, by_id.spec);
    let opts = paw::CallOptions::default();
    let want = project
        .function("mood")
        .unwrap()
        .call("meh", &opts)
        .unwrap()
        .text;
    assert_eq!(one.function.call("meh", &opts).unwrap().text, want);
    assert_eq!(by_id.function.call("meh", &opts).unwrap().text, want);
    assert!(matches!(
        paw::Project::open_function(&lock_path, "nope", &store, &mut interpreters),
        Err(paw::ProjectError::UnknownFunction { .. })
    ));
    assert!(matches!(
        paw::open_function(
            &store,
            &format!("b3:{}", "0".repeat(64)),
            None,
            &mut interpreters
        ),
        Err(paw::ProjectError::NoSuchProgram { .. })
    ));
    drop(project);

    // `paw test` runs the manifest's tests on the locked programs.
    let out = ok(&paw_in(&dir, &home, &["test", "."]));
    assert!(out.contains("PASS mood"), "{out}");

    // gc: a dry run lists the superseded program and removes nothing; --apply removes it
    // and keeps every pinned one.
    let old = store.program_path(&first_mood);
    let dry: serde_json::Value =
        serde_json::from_str(&ok(&paw_in(&dir, &home, &["gc", "--json"]))).unwrap();
    assert_eq!(
        dry["removed_programs"],
        serde_json::json!([first_mood.to_string()])
    );
    assert!(old.is_file());
    ok(&paw_in(&dir, &home, &["gc", "--apply", "--stages"]));
    assert!(!old.exists());
    let frozen = build(&dir, &home, &["--frozen"]);
    assert!(frozen.iter().all(|(_, s)| s == "unchanged"), "{frozen:?}");

    // A damaged program: the frozen build and the project both refuse it, by name.
    let path = store.program_path(&lock.functions["shout"].program);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = failed(&paw_in(&dir, &home, &["build", "--frozen"]));
    assert!(err.contains("shout"), "{err}");
    let err = paw::Project::open_in(&lock_path, &store).unwrap_err();
    assert!(
        matches!(&err, paw::ProjectError::Program { name, .. } if name == "shout"),
        "{err}"
    );
    // A plain build repairs it: the same compile key, compiled again.
    let third = build(&dir, &home, &["shout"]);
    assert_eq!(third, [("shout".to_owned(), "compiled".to_owned())]);

    // Without its interpreter installed, the project says which function needs which model.
    ok(&paw_in(&dir, &home, &["models", "rm", "smollm2"]));
    let err = paw::Project::open_in(&lock_path, &store).unwrap_err();
    assert!(
        matches!(&err, paw::ProjectError::InterpreterNotInstalled { .. }),
        "{err}"
    );
}

#[test]
fn init_writes_a_manifest_that_parses_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, home) = (tmp.path().join("new"), tmp.path().join("home"));
    let out = ok(&paw_in(tmp.path(), &home, &["init", "new"]));
    assert!(out.contains("log_alert"), "{out}");
    let manifest = paw_project::ProjectManifest::read(&dir.join("paw.toml")).unwrap();
    assert_eq!(manifest.functions.len(), 1);
    let f = &manifest.functions[0];
    for file in [f.examples.as_ref().unwrap(), f.tests.as_ref().unwrap()] {
        assert_eq!(paw_eval::load_cases(file).unwrap().len(), 4);
    }
    let before = std::fs::read(dir.join("paw.toml")).unwrap();
    let err = failed(&paw_in(tmp.path(), &home, &["init", "new"]));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(dir.join("paw.toml")).unwrap(), before);
}

#[test]
fn manifest_mistakes_fail_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::write(
        tmp.path().join("paw.toml"),
        "[[function]]\nname = \"a\"\nspec = \"x\"\ntreshold = 0.5\n",
    )
    .unwrap();
    let err = failed(&paw_in(tmp.path(), &home, &["build"]));
    assert!(err.contains("treshold") && err.contains("line 4"), "{err}");
    std::fs::write(
        tmp.path().join("paw.toml"),
        "[[function]]\nname = \"a\"\nspec = \"x\"\n",
    )
    .unwrap();
    let err = failed(&paw_in(tmp.path(), &home, &["build", "b"]));
    assert!(err.contains("no function `b`"), "{err}");
}

/// `paw models add DIR`: a safetensors directory is copied into the store under the SHA-256 of
/// its file listing, listed, found by hash from a lock (`paw::Project`), and removed by name.
/// Tiny random weights: runs in every plain `cargo test`.
#[test]
fn a_safetensors_directory_is_added_found_by_hash_and_removed() {
    use paw_testkit::tiny_model::*;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, home) = (tmp.path().join("project"), tmp.path().join("home"));
    std::fs::create_dir_all(&dir).unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    let weights = random_weights(Arch::Qwen2, vocab_size());
    write_gguf(Arch::Qwen2, &gguf_layout(Arch::Qwen2, &weights), &gguf);
    let hf = tmp.path().join("tiny-hf");
    write_hf_dir(
        &hf,
        &hf_weights(&weights),
        StDtype::F32,
        1,
        &hf_config(Arch::Qwen2),
        &tokenizer_json(&gguf),
    );
    std::fs::write(hf.join("README.md"), "not copied").unwrap();

    let added = ok(&paw_in(
        &dir,
        &home,
        &[
            "models",
            "add",
            hf.to_str().unwrap(),
            "--name",
            "tiny-hf",
            "--json",
        ],
    ));
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let identity = paw_rt::identity(&hf, None).unwrap();
    assert_eq!(added["blake3"], identity.weights_hash.as_str());
    let sha256 = paw_store::model_dir_sha256(&hf).unwrap().1;
    assert_eq!(added["sha256"], sha256.as_str());
    let stored = std::path::PathBuf::from(added["path"].as_str().unwrap());
    assert!(stored.join("model.safetensors").is_file());
    assert!(!stored.join("README.md").exists());

    let listed = ok(&paw_in(&dir, &home, &["models", "list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "tiny-hf")
        .expect("the added directory is listed");
    assert_eq!(row["role"], "added");

    // A lock naming a program for the directory's identity: found by BLAKE3 and SHA-256.
    let program = paw_testkit::program(&identity, paw_testkit::CHATML_TEMPLATE, None);
    let path = tmp.path().join("p.paw");
    program.write_to(&path).unwrap();
    let store = Store::open(&home).unwrap();
    let id = store.add_program_file(&path).unwrap().id;
    let mut lock = Lockfile::default();
    lock.functions
        .insert("echo".into(), common::hand_locked(id, &identity, &sha256));
    let lock_path = dir.join("paw.lock");
    lock.write(&lock_path).unwrap();
    let project = paw::Project::open_in(&lock_path, &store).unwrap();
    let out = project
        .function("echo")
        .unwrap()
        .call("hello", &paw::CallOptions::default())
        .unwrap();
    // `paw run` by id finds the stored directory by the program's weights hash.
    let run = ok(&paw_in(&dir, &home, &["run", &id.to_string(), "hello"]));
    assert_eq!(run.trim_end_matches('\n'), out.text);
    drop(project);

    ok(&paw_in(&dir, &home, &["models", "rm", "tiny-hf"]));
    assert!(!stored.exists());
    let err = paw::Project::open_in(&lock_path, &store).unwrap_err();
    assert!(err.to_string().contains("not installed"), "{err}");
}
