//! Test support for the paw workspace (a dev-dependency, never published).
//!
//! - [`tiny_model`]: tiny random-weight llama / qwen2 / qwen3 models written as GGUF files or
//!   Hugging Face safetensors directories, with a real byte-level BPE tokenizer (merges, ChatML
//!   control tokens, an end-of-generation id, a chat template) read by the runtime's own code.
//!   Their greedy output is arbitrary but deterministic, which is what the runtime's promises
//!   (`crates/paw-rt/tests/promises.rs`) need, so those run in every plain `cargo test`.
//! - Tiny programs and adapters: [`program`], [`random_adapter`], [`CHATML_TEMPLATE`].
//! - The real-model gate: [`require_model()`] and [`require_model!`] for tests that need a real
//!   model file named by an environment variable. Unset, such a test skips on a developer
//!   machine but fails under CI (`CI` set), so CI never passes by skipping.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

pub mod hostile;
pub mod tiny_model;

use std::path::{Path, PathBuf};

use paw_format::{
    Adapter, GenerationConfig, InterpreterId, LoraPair, Program, Provenance, TargetModule,
    TensorData, TensorDtype, INPUT_PLACEHOLDER,
};

/// Whether the tests run under CI: the `CI` variable is set to anything but ``, `0` or `false`
/// (GitHub Actions, GitLab and most other CI systems set `CI=true`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| {
        let v = v.to_string_lossy();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The path of the real model named by the environment variable `var` (e.g. `PAW_TEST_SMOLLM2`;
/// `bash .ci/run` sets them all).
///
/// Unset or empty, this panics under CI ([`in_ci`]) and otherwise prints a `SKIP` line and
/// returns `None`. Set to a path that does not exist, it panics everywhere.
pub fn require_model(var: &str) -> Option<PathBuf> {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map_or_else(|| "this test".to_string(), str::to_string);
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            assert!(
                path.exists(),
                "{test}: {var}={} does not exist",
                path.display()
            );
            Some(path)
        }
        _ if in_ci() => panic!(
            "{test} needs a real model but {var} is not set, and CI is: CI must not pass by \
             skipping (`bash .ci/run` fetches the models and sets the PAW_TEST_* variables)"
        ),
        _ => {
            eprintln!("SKIP {test}: set {var} to the model path to run this test");
            None
        }
    }
}

/// `require_model!("PAW_TEST_SMOLLM2")`: the model path, or `return` from the calling test
/// after [`require_model()`] printed its skip line (outside CI; under CI it panics).
#[macro_export]
macro_rules! require_model {
    ($var:expr) => {
        match $crate::require_model($var) {
            ::std::option::Option::Some(path) => path,
            ::std::option::Option::None => return,
        }
    };
}

pub const CHATML_TEMPLATE: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
<|im_start|>user\n[PSEUDO_PROGRAM]\nTask: Say whether the text is positive or negative. Answer \
with one word.\nExamples:\nInput: I love it\nOutput: positive\n[END_PSEUDO_PROGRAM]\n\n[INPUT]\n\
{INPUT_PLACEHOLDER}\n[END_INPUT]<|im_end|>\n<|im_start|>assistant\n";

pub fn program(identity: &InterpreterId, template: &str, adapter: Option<Adapter>) -> Program {
    assert_eq!(template.matches(INPUT_PLACEHOLDER).count(), 1);
    Program {
        spec: "sentiment".into(),
        pseudo_program: "Task: sentiment".into(),
        prompt_template: template.into(),
        interpreter: identity.clone(),
        adapter,
        generation: GenerationConfig {
            max_tokens: 8,
            stop: vec![],
            temperature: 0.0,
        },
        contract: None,
        provenance: Provenance::unrecorded(),
    }
}

/// Deterministic pseudo-random values in `[-scale, scale)`.
pub fn random_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            (u * 2.0 - 1.0) * scale
        })
        .collect()
}

pub fn f32_tensor(shape: [u64; 2], values: &[f32]) -> TensorData {
    TensorData {
        dtype: TensorDtype::F32,
        shape,
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Encodes `values` (row-major `shape`) in `dtype`, using candle's ggml quantizers for the
/// block formats.
pub fn encode_tensor(dtype: TensorDtype, shape: [u64; 2], values: &[f32]) -> TensorData {
    use candle_core::quantized::{GgmlDType, QTensor};
    let bytes = match dtype {
        TensorDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorDtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        TensorDtype::Q8_0 | TensorDtype::Q4_0 => {
            let g = if dtype == TensorDtype::Q8_0 {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q4_0
            };
            let t = candle_core::Tensor::from_slice(
                values,
                (shape[0] as usize, shape[1] as usize),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            QTensor::quantize(&t, g)
                .unwrap()
                .data()
                .unwrap()
                .into_owned()
        }
    };
    TensorData {
        dtype,
        shape,
        bytes,
    }
}

/// Last-position logits of `ids` from candle-transformers' own quantized model for `architecture`
/// (`llama`, `qwen2` or `qwen3`) read from the GGUF at `path`: the reference paw-rt's forward
/// pass is checked against.
pub fn reference_logits(architecture: &str, path: &Path, ids: &[u32]) -> Vec<f32> {
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};
    use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = match architecture {
        "llama" => quantized_llama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
            .unwrap()
            .forward(&input, 0),
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
            .unwrap()
            .forward(&input, 0),
        "qwen3" => quantized_qwen3::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
            .unwrap()
            .forward(&input, 0),
        other => panic!("no candle reference model for architecture {other}"),
    }
    .unwrap();
    out.flatten_all().unwrap().to_vec1().unwrap()
}

/// Decodes a TensorData back to f32 values (dequantizing block formats with candle).
pub fn decode_tensor(t: &TensorData) -> Vec<f32> {
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    match t.dtype {
        TensorDtype::F32 => t
            .bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        TensorDtype::F16 => t
            .bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        TensorDtype::Q8_0 | TensorDtype::Q4_0 => {
            let g = if t.dtype == TensorDtype::Q8_0 {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q4_0
            };
            let storage = QStorage::from_data(
                std::borrow::Cow::Borrowed(&t.bytes),
                &candle_core::Device::Cpu,
                g,
            )
            .unwrap();
            let q = QTensor::new(storage, (t.shape[0] as usize, t.shape[1] as usize)).unwrap();
            q.dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        }
    }
}

/// A random adapter of `rank` over `layers`, every module, with `[in, out]` given per module.
pub fn random_adapter(
    rank: u32,
    alpha: f32,
    layers: &[u32],
    dims: impl Fn(TargetModule) -> [u64; 2],
    dtype: TensorDtype,
    scale: f32,
) -> Adapter {
    let mut pairs = Vec::new();
    for &layer in layers {
        for (mi, module) in TargetModule::ALL.iter().enumerate() {
            let [fan_in, fan_out] = dims(*module);
            let seed = u64::from(layer) * 100 + mi as u64;
            let a = random_values((u64::from(rank) * fan_in) as usize, seed * 2 + 1, scale);
            let b = random_values((fan_out * u64::from(rank)) as usize, seed * 2 + 2, scale);
            pairs.push(LoraPair {
                layer,
                module: *module,
                a: encode_tensor(dtype, [u64::from(rank), fan_in], &a),
                b: encode_tensor(dtype, [fan_out, u64::from(rank)], &b),
            });
        }
    }
    Adapter { rank, alpha, pairs }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// paw-rt against candle-transformers on a real quantized model: the same distribution and the
/// same greedy token, not the same bits. paw-rt multiplies Q8_0 and Q5_0 weights with its own
/// kernels (paw-rt's `src/kernels.rs`), candle-transformers with candle's (inputs quantized per
/// 256 values on its tiled path), and paw-rt groups query heads instead of
/// repeating K/V; 8-bit activation rounding amplifies those last-bit differences to a few tenths
/// of a logit. (The tiny f32 models, with no activation quantization, match far tighter.)
pub fn assert_close_to_reference(label: &str, ours: &[f32], theirs: &[f32]) {
    let diff = max_abs_diff(ours, theirs);
    let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
    let dot: f64 = ours.iter().zip(theirs).map(|(a, b)| f64::from(a * b)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
    let cosine = dot / (norm(ours) * norm(theirs));
    eprintln!("{label}: max |logit diff| {diff} (max |logit| {scale}), cosine {cosine}");
    assert!(diff < 0.05 * scale, "{label}: logits differ by {diff}");
    assert!(cosine > 0.999, "{label}: cosine {cosine}");
    assert_eq!(
        argmax(ours),
        argmax(theirs),
        "{label}: greedy token differs"
    );
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Runs `command` to completion with its output captured, sampling the child's peak resident
/// memory (`VmHWM` in `/proc/PID/status`, Linux) while it runs: the output and the peak in MiB.
/// The high-water mark only grows, so the last sample read is the peak up to that moment.
pub fn output_with_peak_rss(mut command: std::process::Command) -> (std::process::Output, u64) {
    use std::process::Stdio;
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kib = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak_kib / 1024
    });
    let out = child.wait_with_output().expect("the command runs");
    (out, watcher.join().expect("the watcher ends"))
}

/// Every file under `dir` (recursively), its path relative to `dir` to its bytes: to compare
/// directory trees byte for byte.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                files.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

/// Runs the binary `bin` (a test's `env!("CARGO_BIN_EXE_paw")`) with `args` in `cwd`, with its
/// store at `home` (`PAW_HOME`) and no `RUST_LOG`, output captured.
pub fn run_in(bin: &str, cwd: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("PAW_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// The stdout of a command that must have succeeded (its stderr in the panic otherwise).
pub fn stdout_of_success(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

/// The stderr of a command that must have exited with status 1.
pub fn stderr_of_failure(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}
