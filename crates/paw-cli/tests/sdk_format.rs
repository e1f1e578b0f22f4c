//! The published SDK's `.paw` (issue 19): `paw export --format paw-sdk` then `paw import` gives
//! the same adapter, template and outputs; damaged archives are refused with a reason. Tiny
//! random-weight model.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use paw_format::{Program, TensorDtype};
use paw_rt::{CallOptions, Interpreter};
use paw_testkit::tiny_model::{dims, write_tiny_gguf, Arch, LAYERS};

fn paw(cwd: &Path, args: &[&str]) -> std::process::Output {
    paw_testkit::run_in(env!("CARGO_BIN_EXE_paw"), cwd, &cwd.join("home"), args)
}

#[test]
fn export_then_import_keeps_adapter_template_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("tiny.gguf");
    write_tiny_gguf(Arch::Qwen2, &model);
    let interpreter = Interpreter::load(&model).unwrap();
    let layers: Vec<u32> = (0..LAYERS as u32).collect();
    for dtype in [TensorDtype::Q4_0, TensorDtype::F16] {
        let adapter = paw_testkit::random_adapter(32, 32.0, &layers, dims, dtype, 0.05);
        let program = paw_testkit::program(
            interpreter.identity(),
            "<|im_start|>user\nSay: {INPUT_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n",
            Some(adapter),
        );
        let original = dir.join("original.paw");
        program.write_to(&original).unwrap();
        let sdk = dir.join("sdk.paw");
        paw_testkit::stdout_of_success(&paw(
            dir,
            &[
                "export",
                original.to_str().unwrap(),
                "--format",
                "paw-sdk",
                "-o",
                sdk.to_str().unwrap(),
            ],
        ));
        // A ZIP of exactly the three entries.
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&sdk).unwrap()).unwrap();
        let mut names: Vec<String> = (0..zip.len())
            .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["adapter.gguf", "meta.json", "prompt_template.txt"]);

        let imported = dir.join("imported.paw");
        let out = paw_testkit::stdout_of_success(&paw(
            dir,
            &[
                "import",
                sdk.to_str().unwrap(),
                "--interpreter",
                model.to_str().unwrap(),
                "-o",
                imported.to_str().unwrap(),
                "--json",
            ],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (back, id) = Program::read(&imported).unwrap();
        assert_eq!(v["id"], id.to_string());
        assert_eq!(back.adapter, program.adapter, "{dtype:?}");
        assert_eq!(back.prompt_template, program.prompt_template);
        assert_eq!(back.spec, program.spec);
        assert_eq!(
            back.interpreter.weights_hash,
            program.interpreter.weights_hash
        );
        let (a, b) = (
            interpreter.bind(&program).unwrap(),
            interpreter.bind(&back).unwrap(),
        );
        let opts = CallOptions {
            max_tokens: Some(8),
            ..CallOptions::default()
        };
        for input in ["hello", "a longer input with more words"] {
            assert_eq!(
                a.call(input, &opts).unwrap().token_ids,
                b.call(input, &opts).unwrap().token_ids
            );
        }
    }
}

#[test]
fn a_damaged_archive_is_refused_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("tiny.gguf");
    write_tiny_gguf(Arch::Qwen2, &model);
    let bad = dir.join("bad.paw");
    std::fs::write(&bad, b"PK\x03\x04 not really a zip").unwrap();
    let err = paw_testkit::stderr_of_failure(&paw(
        dir,
        &[
            "import",
            bad.to_str().unwrap(),
            "--interpreter",
            model.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("not a valid published .paw"), "{err}");
    assert!(err.contains("not a ZIP"), "{err}");
}
