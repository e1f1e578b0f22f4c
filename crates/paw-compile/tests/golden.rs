//! Regression goldens: the exact program ids (BLAKE3 of the bytes) that two fixed SmolLM2
//! compiles produce, and what the programs answer on fixed inputs, as recorded in
//! `fixtures/golden/smollm2-compiles-<vendor>.json` (one per CPU). A refactor that claims "behaviour unchanged" must
//! keep them; a change of compiler output must bump `COMPILER_VERSION` and re-record them with
//! `PAW_UPDATE_GOLDEN=1 cargo test -p paw-compile --test golden` (say why in the commit).
//!
//! Float kernels are not bit-identical across CPU feature sets, so the goldens hold for the
//! machine kind they were recorded on (the file says which); on another CPU, check the
//! difference is only that, then re-record.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{examples, options};
use paw_compile::{compile, CompileOptions};
use paw_format::{Program, TensorDtype};
use paw_rt::{CallOptions, Interpreter};
use serde::{Deserialize, Serialize};

/// Inputs every golden program is run on.
const INPUTS: [&str; 4] = [
    "ERROR disk full on /dev/sda1",
    "INFO request served in 12ms",
    "kernel: Out of memory: Killed process 4242",
    "user <|im_end|> logged in",
];

/// Training sums floats in an order that depends on the CPU's SIMD kernels, so byte identity
/// holds per CPU: one golden file per CPU vendor (`smollm2-compiles-<vendor>.json`), and the
/// test compares against the one recorded on exactly this CPU's model and SIMD flags.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden")
}

fn golden_path_for(cpu: &str) -> PathBuf {
    let vendor: String = cpu
        .split_whitespace()
        .next()
        .unwrap_or("cpu")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    golden_dir().join(format!("smollm2-compiles-{vendor}.json"))
}

/// The golden file recorded on this CPU, or why there is none.
fn golden_for(cpu: &str) -> Result<GoldenFile, String> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).expect("fixtures/golden") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.starts_with("smollm2-compiles") && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("golden file");
        let file: GoldenFile = serde_json::from_str(&text).expect("golden json");
        if file.recorded_on == cpu {
            return Ok(file);
        }
        seen.push(file.recorded_on);
    }
    Err(format!(
        "no golden recorded on this CPU ({cpu}); recorded on: {seen:?}. Record one with \
         PAW_UPDATE_GOLDEN=1 (after checking that the recorded CPUs still pass)"
    ))
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Recorded {
    /// `b3:` id of the program's bytes.
    id: String,
    /// Size of the program in bytes.
    bytes: usize,
    /// The program's answer to each of [`INPUTS`], in order.
    outputs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GoldenFile {
    about: String,
    /// CPU the goldens were recorded on (`/proc/cpuinfo` model name and flags that matter).
    recorded_on: String,
    compiler_version: String,
    compiles: BTreeMap<String, Recorded>,
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| f.starts_with("avx") || *f == "fma" || *f == "f16c")
        .collect();
    format!("{} [{}]", field("model name"), simd.join(" "))
}

fn record(interpreter: &Interpreter, opts: &CompileOptions) -> Recorded {
    let out = compile(opts, &mut |_| {}).expect("compile");
    let (program, id) = Program::from_bytes(&out.bytes).expect("valid .paw");
    assert_eq!(id, out.id);
    let f = interpreter.bind(&program).expect("bind");
    let outputs = INPUTS
        .iter()
        .map(|i| f.call(i, &CallOptions::default()).expect("call").text)
        .collect();
    Recorded {
        id: out.id.to_string(),
        bytes: out.bytes.len(),
        outputs,
    }
}

/// A teacher compile and an examples-only (`--teacher none`, Q8_0 adapter) compile give the
/// recorded bytes and answers.
#[test]
fn smollm2_compiles_match_the_recorded_goldens() {
    let path = paw_testkit::require_model!("PAW_TEST_SMOLLM2");
    let interpreter = Interpreter::load(&path).expect("load");
    let mut got = BTreeMap::new();
    got.insert("teacher".to_string(), record(&interpreter, &options(&path)));
    let mut examples_only = options(&path);
    examples_only.teacher = None;
    examples_only.examples = examples();
    examples_only.adapter_dtype = Some(TensorDtype::Q8_0);
    got.insert(
        "examples_only".to_string(),
        record(&interpreter, &examples_only),
    );

    if std::env::var_os("PAW_UPDATE_GOLDEN").is_some() {
        let path = golden_path_for(&cpu());
        let file = GoldenFile {
            about: "Program ids and answers of the SmolLM2 compiles in crates/paw-compile/tests/golden.rs; \
                    re-record with PAW_UPDATE_GOLDEN=1 only when compiler output changes on purpose"
                .into(),
            recorded_on: cpu(),
            compiler_version: paw_compile::COMPILER_VERSION.into(),
            compiles: got,
        };
        let text = serde_json::to_string_pretty(&file).expect("json") + "\n";
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write golden");
        eprintln!("recorded {}", path.display());
        return;
    }
    let want = golden_for(&cpu()).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(
        want.compiler_version,
        paw_compile::COMPILER_VERSION,
        "the compiler version changed: re-record the goldens (PAW_UPDATE_GOLDEN=1)"
    );
    for (name, recorded) in &want.compiles {
        let mine = got.get(name).expect("compile of that name");
        assert_eq!(
            mine,
            recorded,
            "compile `{name}` differs from the golden recorded on {} (this CPU: {}); \
             if only the CPU differs, re-record with PAW_UPDATE_GOLDEN=1",
            want.recorded_on,
            cpu()
        );
    }
}
