//! `cargo xtask interop`: checks `paw export --format peft` against Hugging Face `transformers` +
//! `peft` on the CPU. Outside CI: it needs torch (a Python venv of a few GB, see below).
//!
//! For each interpreter (default: SmolLM2-135M, a llama GGUF whose q/k rows the export must
//! put back in Hugging Face order, and Qwen2.5-Coder-0.5B, a qwen2 GGUF that needs no such fix):
//! 1. `paw compile` the log-triage spec of `xtask/interop/` from its examples (`--teacher
//!    none`) into `target/interop/<model>/program.paw` (own store `target/interop/home`; a
//!    repeated run finds the program there), and a variant with the adapter's alpha halved
//!    (scale alpha/r = 0.5, so PEFT's scaling is tested too; compiles always have alpha = r);
//! 2. `paw export --format peft` each variant;
//! 3. paw-rt, in process, on `xtask/interop/inputs.txt`: the prompt's token ids, greedy token
//!    ids without the output contract, with and without the adapter, and the next-token logits
//!    at the prompt's last position with and without it;
//! 4. `xtask/interop/peft_check.py` (transformers loads the same GGUF itself, dequantized to
//!    f32; `PeftModel` applies the export) computes the same from paw's token ids;
//! 5. writes `target/interop/peft.md` and fails if the tolerances below are not met.
//!
//! The two sides do not run the same numbers: paw-rt multiplies the quantized weights (its
//! kernels as llama.cpp's), transformers the dequantized weights in f32, so logits differ by a
//! little quantization noise on top of float order; greedy outputs are expected to agree.
//!
//! The venv: `target/interop-venv`, made on first use (`python3 -m venv`, then `pip install
//! torch transformers peft gguf safetensors numpy sentencepiece` from PyPI, whose Linux torch
//! brings CUDA libraries, about 6 GB, unused here), or `--python` with those modules.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use paw_format::{Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Interpreter};
use paw_store::fetch::installed_path;
use paw_store::{Manifest, Store};
use serde_json::{json, Value};

/// The modules the Python side needs.
const PYTHON_MODULES: &str = "torch, transformers, peft, gguf, safetensors, numpy";
/// The venv the check makes and uses by default, and what goes in it.
const VENV: &str = "target/interop-venv";
const PIP_PACKAGES: &str = "torch transformers peft gguf safetensors numpy sentencepiece";

/// Tolerances, per program variant (set from the first measured run, whose figures and
/// margins are in bench/INTEROP.md). Greedy outputs with the adapter must be equal on every
/// input, except where they part at a near tie: transformers' logits of its token and of
/// paw-rt's differ by less than this (the two sides' logits differ by up to about 1: quantized
/// against dequantized weights; paw-rt against itself, prefix cache against a run from scratch,
/// by up to about 0.7) ...
const NEAR_TIE: f64 = 1.0;
/// ... the adapter's logit change (delta: with minus without, at the prompt's last position,
/// over the whole vocabulary) of transformers must reproduce paw-rt's in scale: the
/// least-squares slope of one on the other, averaged over the inputs, within this of 1 (an
/// alpha off by 2x gives about 2; q/k rows in the wrong order lose part of the delta, 0.6-0.9)
/// ...
const MAX_SLOPE_ERROR: f64 = 0.1;
/// ... and in shape: their correlation, averaged over the inputs, at least this. Single inputs
/// are not gated: the quantization noise (about 0.3-0.7 per logit at most, 0.06-0.26 rms) is
/// independent per input, a wrong export is not.
const MIN_MEAN_DELTA_CORR: f64 = 0.98;

#[derive(Debug, Args)]
pub struct InteropArgs {
    /// Interpreters (manifest ids, installed: `cargo xtask models fetch ID`) to check on.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smollm2-135m-instruct-q4_1,qwen2.5-coder-0.5b-instruct-q4_k_m"
    )]
    models: Vec<String>,
    /// Training steps of the compile.
    #[arg(long, default_value_t = 40)]
    steps: u32,
    /// Tokens generated per input on both sides (the adapter's answers end sooner).
    #[arg(long, default_value_t = 16)]
    max_tokens: u32,
    /// Python with torch, transformers, peft and gguf [default: target/interop-venv, made and
    /// filled from PyPI on first use].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Only rewrite target/interop/peft.md (and the verdict) from the last run's results.
    #[arg(long)]
    report_only: bool,
}

/// The Hugging Face name written as `base_model_name_or_path`.
fn hf_name(model_id: &str) -> &'static str {
    match model_id {
        "smollm2-135m-instruct-q4_1" => "HuggingFaceTB/SmolLM2-135M-Instruct",
        "qwen2.5-coder-0.5b-instruct-q4_k_m" => "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "qwen2.5-coder-1.5b-instruct-q4_k_m" => "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        _ => "unknown",
    }
}

pub fn run(args: &InteropArgs, root: &Path) -> Result<()> {
    let out = root.join("target/interop");
    if args.report_only {
        let mut results = Vec::new();
        for id in &args.models {
            let path = out.join(id).join("transformers.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading {} (run without --report-only)", path.display())
            })?;
            results.push((id.clone(), Value::Null, serde_json::from_str(&text)?));
        }
        return finish(&results, args, &out);
    }
    let python = ensure_python(args.python.as_deref(), root)?;

    let paw = crate::build_paw(root)?;
    let home = out.join("home");
    std::fs::create_dir_all(&home)?;
    let interop = root.join("xtask/interop");
    let inputs: Vec<String> = std::fs::read_to_string(interop.join("inputs.txt"))
        .context("reading xtask/interop/inputs.txt")?
        .lines()
        .map(str::to_owned)
        .collect();

    let manifest = Manifest::embedded()?;
    let store = Store::open_default()?;
    let mut results = Vec::new();
    for id in &args.models {
        let model = installed_path(manifest, &store, id)
            .with_context(|| format!("{id} is not installed: cargo xtask models fetch {id}"))?;
        let dir = out.join(id);
        std::fs::create_dir_all(&dir)?;

        println!("== {id}: paw compile ({} steps)", args.steps);
        let program_path = dir.join("program.paw");
        let compiled = output_of(
            Command::new(&paw)
                .env("PAW_HOME", &home)
                .args(["compile", "--json", "--teacher", "none", "--seed", "7"])
                .arg("--spec-file")
                .arg(interop.join("spec.txt"))
                .arg("--examples")
                .arg(interop.join("examples.jsonl"))
                .arg("--interpreter")
                .arg(&model)
                .arg("--steps")
                .arg(args.steps.to_string())
                .arg("-o")
                .arg(&program_path),
        )?;
        let compiled: Value = serde_json::from_str(&compiled).context("paw compile --json")?;
        println!(
            "   {} (adapter {}, train loss {} -> {})",
            compiled["id"].as_str().unwrap_or("?"),
            compiled["report"]["adapter"].as_str().unwrap_or("?"),
            compiled["report"]["train_loss_initial"]
                .as_str()
                .unwrap_or("?"),
            compiled["report"]["train_loss_final"]
                .as_str()
                .unwrap_or("?"),
        );
        let (program, _) = Program::read(&program_path)?;
        let (rank, alpha) = program
            .adapter
            .as_ref()
            .map(|a| (a.rank, a.alpha))
            .context("the compile shipped no adapter: nothing to export")?;
        // A variant with scale alpha/r = 0.5: same tensors, half the effect in paw-rt.
        let mut half = program.clone();
        if let Some(a) = half.adapter.as_mut() {
            a.alpha /= 2.0;
        }
        let half_path = dir.join("program-half-alpha.paw");
        std::fs::write(&half_path, half.to_bytes()?)?;
        let variants = [
            (
                format!("as compiled (r {rank}, alpha {alpha})"),
                program_path.clone(),
                program,
                "compiled",
            ),
            (
                format!("alpha halved (r {rank}, alpha {})", alpha / 2.0),
                half_path,
                half,
                "half-alpha",
            ),
        ];

        let interpreter = Interpreter::load(&model)?;
        let mut cases = Vec::new();
        for (name, path, program, slug) in &variants {
            let peft_dir = dir.join(slug).join("peft");
            let ref_dir = dir.join(slug).join("paw-rt");
            println!("== {id}, {name}: paw export --format peft");
            output_of(
                Command::new(&paw)
                    .env("PAW_HOME", &home)
                    .args(["export", "--format", "peft", "--base-model", hf_name(id)])
                    .arg(path)
                    .arg("-o")
                    .arg(&peft_dir)
                    .arg("--model")
                    .arg(&model),
            )?;
            println!("== {id}, {name}: paw-rt on {} inputs", inputs.len());
            reference(&interpreter, program, &inputs, args.max_tokens, &ref_dir)?;
            cases.push((name.clone(), peft_dir, ref_dir));
        }
        drop(interpreter);

        println!("== {id}: transformers + peft (xtask/interop/peft_check.py)");
        let result_path = dir.join("transformers.json");
        let mut cmd = Command::new(&python);
        cmd.arg(interop.join("peft_check.py"))
            .arg("--gguf")
            .arg(&model)
            .arg("--out")
            .arg(&result_path)
            .env("HF_HUB_OFFLINE", "1");
        for (name, peft_dir, ref_dir) in &cases {
            cmd.arg("--case").arg(name).arg(peft_dir).arg(ref_dir);
        }
        let status = cmd.status().context("running peft_check.py")?;
        if !status.success() {
            bail!("peft_check.py failed ({status})");
        }
        let result: Value = serde_json::from_str(&std::fs::read_to_string(&result_path)?)?;
        results.push((id.clone(), compiled, result));
    }

    finish(&results, args, &out)
}

/// Writes the report and fails if a tolerance is not met.
fn finish(results: &[(String, Value, Value)], args: &InteropArgs, out: &Path) -> Result<()> {
    let (report, failures) = report(results, args)?;
    let md = out.join("peft.md");
    std::fs::write(&md, &report)?;
    println!("\n{report}");
    println!("wrote {}", md.display());
    if !failures.is_empty() {
        bail!(
            "the PEFT export disagrees with paw-rt beyond the tolerances:\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The Python to run the check with: `--python` as given (it must import the modules), else
/// `target/interop-venv`, made and filled from PyPI when missing.
fn ensure_python(given: Option<&Path>, root: &Path) -> Result<PathBuf> {
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {PYTHON_MODULES}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(python) = given {
        if !imports(python) {
            bail!("{} cannot import {PYTHON_MODULES}", python.display());
        }
        return Ok(python.to_path_buf());
    }
    let venv = root.join(VENV);
    let python = venv.join("bin/python");
    if imports(&python) {
        return Ok(python);
    }
    println!(
        "== making {VENV} (PyPI's torch brings CUDA libraries: about 6 GB); by hand:\n   \
         python3 -m venv {VENV} && {VENV}/bin/pip install {PIP_PACKAGES}"
    );
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        if !status.success() {
            bail!("python3 -m venv {VENV} failed ({status})");
        }
    }
    let status = Command::new(&python)
        .args(["-m", "pip", "install"])
        .args(PIP_PACKAGES.split(' '))
        .status()
        .context("running pip install")?;
    if !status.success() || !imports(&python) {
        bail!("pip install {PIP_PACKAGES} into {VENV} failed ({status})");
    }
    Ok(python)
}

/// paw-rt's side for one program: `reference.json` (prompt token ids, greedy token ids with
/// and without the adapter) and `logits.f32` (per input, the next-token logits with the
/// adapter, then without; little-endian f32) in `dir`.
fn reference(
    interpreter: &Interpreter,
    program: &Program,
    inputs: &[String],
    max_tokens: u32,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let with = interpreter.bind(program)?;
    let without = interpreter.bind_without_adapter(program)?;
    let tok = interpreter.tokenizer();
    // The prompt's token ids as paw-rt builds them: BOS if the model wants one, the template
    // around the input with its special tokens, the input as plain text.
    let (before, after) = program
        .prompt_template
        .split_once(INPUT_PLACEHOLDER)
        .context("a prompt template without the placeholder")?;
    let mut prefix: Vec<u32> = tok.bos_to_prepend().into_iter().collect();
    prefix.extend(tok.encode_with_specials(before)?);
    let suffix = tok.encode_with_specials(after)?;
    let opts = CallOptions {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        use_contract: false,
        ..CallOptions::default()
    };
    let mut cases = Vec::new();
    let mut logits_bytes = Vec::new();
    let mut vocab = 0;
    for input in inputs {
        let input_ids = tok.encode_plain(input)?;
        let mut ids = prefix.clone();
        ids.extend(&input_ids);
        ids.extend(&suffix);
        let a = with.call(input, &opts)?;
        let b = without.call(input, &opts)?;
        ensure!(
            (a.prefix_tokens, a.input_tokens, a.suffix_tokens)
                == (prefix.len(), input_ids.len(), suffix.len()),
            "paw-rt's prompt has (prefix, input, suffix) tokens {:?}, the rebuilt one {:?}",
            (a.prefix_tokens, a.input_tokens, a.suffix_tokens),
            (prefix.len(), input_ids.len(), suffix.len())
        );
        let la = with.next_token_logits(input)?;
        let lb = without.next_token_logits(input)?;
        // The rebuilt ids, run from scratch (no prefix cache), give the bound function's base
        // logits up to paw-rt's own numerical noise (8-bit activations, other chunking),
        // recorded as a yardstick for the cross-framework differences.
        let full = interpreter.next_token_logits(&ids)?;
        let rebuilt_diff = full
            .iter()
            .zip(&lb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        ensure!(
            argmax(&full) == argmax(&lb) && rebuilt_diff < 2.0,
            "the rebuilt prompt ids do not give paw-rt's logits (max diff {rebuilt_diff})"
        );
        ensure!(
            a.token_ids.first() == argmax(&la).as_ref(),
            "paw-rt's first greedy token is not its logits' argmax"
        );
        vocab = la.len();
        for v in la.iter().chain(&lb) {
            logits_bytes.extend_from_slice(&v.to_le_bytes());
        }
        cases.push(json!({
            "input": input,
            "prompt_ids": ids,
            "rebuilt_ids_max_logit_diff": rebuilt_diff,
            "adapter": {"ids": a.token_ids, "text": a.text},
            "base": {"ids": b.token_ids, "text": b.text},
        }));
    }
    let reference = json!({
        "vocab": vocab,
        "max_tokens": max_tokens,
        "eog_ids": tok.eog_ids(),
        "cases": cases,
    });
    std::fs::write(
        dir.join("reference.json"),
        serde_json::to_string_pretty(&reference)?,
    )?;
    std::fs::write(dir.join("logits.f32"), logits_bytes)?;
    Ok(())
}

fn argmax(v: &[f32]) -> Option<u32> {
    v.iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .and_then(|(i, _)| u32::try_from(i).ok())
}

/// The markdown report and the failed tolerances.
fn report(results: &[(String, Value, Value)], args: &InteropArgs) -> Result<(String, Vec<String>)> {
    let mut md = String::new();
    let mut failures = Vec::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let versions = results
        .first()
        .map(|(_, _, r)| {
            let v = &r["versions"];
            format!(
                "Python {}, torch {}, transformers {}, peft {}",
                str_of(&v["python"]),
                str_of(&v["torch"]),
                str_of(&v["transformers"]),
                str_of(&v["peft"])
            )
        })
        .unwrap_or_default();
    writeln!(
        md,
        "# PEFT export against transformers + peft\n\n`cargo xtask interop --models {} --steps {} \
         --max-tokens {}` on {cpu}; {versions}; transformers on the CPU in f32 from the same \
         GGUF.\n",
        args.models.join(","),
        args.steps,
        args.max_tokens
    )?;
    writeln!(
        md,
        "Both sides get paw-rt's prompt token ids. Outputs: greedy token ids without the output \
         contract, up to {} tokens (near tie: where they part, transformers' logits of the two \
         tokens differ by less than {NEAR_TIE}). Delta: the adapter's change of the next-token \
         logits at the prompt's last position (with minus without), over the whole vocabulary: \
         corr = Pearson correlation of transformers' delta with paw-rt's; slope = least-squares \
         factor of transformers' delta on paw-rt's (1: same scale); rel. rms error = rms of the \
         difference over rms of paw-rt's delta; max diff = largest absolute difference; \
         |delta| = largest absolute change paw-rt sees. Base logits: without the adapter, \
         transformers against paw-rt (the quantization gap). paw-rt self: paw-rt's base logits \
         from its prefix cache against a run from scratch. Gate per variant: adapter outputs \
         equal but near ties, every exported tensor loaded as written, mean slope within \
         {MAX_SLOPE_ERROR} of 1, mean corr >= {MIN_MEAN_DELTA_CORR}.\n",
        args.max_tokens
    )?;
    md.push_str(
        "| model | adapter | tensors loaded as written | adapter outputs equal | base outputs \
         equal | delta corr (min / mean) | delta slope (min / mean / max) | delta rel. rms \
         error (mean) | delta max diff (max) | \\|delta\\| (min / max) | base logits diff (rms \
         mean / max) | paw-rt self diff (max) | gate |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut controls = String::from(
        "\nControls: the same deltas from a deliberately wrong export, through the same gate. \
         q/k rows: the exported q/k lora_B rows put in GGUF llama order (the export without its \
         row fix; on a qwen2 GGUF, which needs none, a fix applied wrongly). 2x scale: PEFT's \
         scaling doubled (lora_alpha off by 2x). Serving by text: transformers' own tokenization \
         of the rendered prompt (prompt_template.txt with the input in place), as a server sent \
         text would use.\n\n\
         | model | adapter | q/k rows: corr / slope (mean) | q/k rows: gate | 2x scale: corr / \
         slope (mean) | 2x scale: gate | rendered-text tokens = paw-rt's | rendered-text \
         outputs = paw-rt's |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut details = String::new();
    for (id, _, result) in results {
        for v in result["variants"].as_array().context("variants")? {
            let name = str_of(&v["name"]);
            let cases = v["cases"].as_array().context("cases")?;
            let n = cases.len();
            let count = |key: &str| cases.iter().filter(|c| c[key] == true).count();
            let nums =
                |key: &str| -> Vec<f64> { cases.iter().filter_map(|c| c[key].as_f64()).collect() };
            let rel_rms: Vec<f64> = cases
                .iter()
                .filter_map(|c| Some(c["delta_rms_diff"].as_f64()? / c["delta_rms_paw"].as_f64()?))
                .collect();
            let file_tensors = v["file_tensors"].as_u64().unwrap_or(0);
            let loaded = v["loaded_equal_to_file"].as_u64().unwrap_or(0);
            let adapter_equal = count("adapter_output_equal");
            let adapter_ties = near_ties(cases, "adapter_divergence");
            let (corr, slope) = (nums("delta_corr"), nums("delta_slope"));
            let mut why = Vec::new();
            if loaded != file_tensors || file_tensors == 0 {
                why.push(format!(
                    "PEFT holds {loaded} of the file's {file_tensors} tensors as written"
                ));
            }
            if adapter_equal + adapter_ties != n {
                why.push(format!(
                    "greedy outputs with the adapter equal on {adapter_equal} of {n}, \
                     {adapter_ties} more part at a near tie"
                ));
            }
            why.extend(gate(&corr, &slope, n));
            writeln!(
                md,
                "| {id} | {name} | {loaded}/{file_tensors} | {} | {} | {:.4} / {:.4} | \
                 {:.3} / {:.3} / {:.3} | {:.3} | {:.3} | {:.2} / {:.2} | {:.3} / {:.3} | {:.3} | {} |",
                with_ties(adapter_equal, n, adapter_ties),
                with_ties(
                    count("base_output_equal"),
                    n,
                    near_ties(cases, "base_divergence")
                ),
                min(&corr),
                mean(&corr),
                min(&slope),
                mean(&slope),
                max(&slope),
                mean(&rel_rms),
                max(&nums("delta_max_abs_diff")),
                min(&nums("delta_max_abs_paw")),
                max(&nums("delta_max_abs_paw")),
                mean(&nums("base_logits_rms_diff")),
                max(&nums("base_logits_max_abs_diff")),
                max(&nums("paw_self_logits_max_abs_diff")),
                if why.is_empty() { "pass" } else { "FAIL" },
            )?;
            failures.extend(why.into_iter().map(|w| format!("{id}, {name}: {w}")));

            let (qk_corr, qk_slope) = (nums("control_delta_corr"), nums("control_delta_slope"));
            let (sc_corr, sc_slope) = (
                nums("scale_control_delta_corr"),
                nums("scale_control_delta_slope"),
            );
            let verdict = |corr: &[f64], slope: &[f64]| {
                if gate(corr, slope, n).is_empty() {
                    "passes (the check would miss it)"
                } else {
                    "fails"
                }
            };
            writeln!(
                controls,
                "| {id} | {name} | {:.4} / {:.3} | {} | {:.4} / {:.3} | {} | {}/{n} | {}/{n} |",
                mean(&qk_corr),
                mean(&qk_slope),
                verdict(&qk_corr, &qk_slope),
                mean(&sc_corr),
                mean(&sc_slope),
                verdict(&sc_corr, &sc_slope),
                count("rendered_tokenization_equal"),
                count("rendered_adapter_text_equal"),
            )?;

            writeln!(
                details,
                "\n{id}, {name}:\n\n| input | paw-rt with adapter | transformers + peft | \
                 equal | without adapter (paw-rt) | equal |\n|---|---|---|---|---|---|"
            )?;
            for c in cases {
                writeln!(
                    details,
                    "| `{}` | `{}` | `{}` | {} | `{}` | {} |",
                    cell(str_of(&c["input"])),
                    cell(str_of(&c["paw_adapter_text"])),
                    cell(str_of(&c["hf_adapter_text"])),
                    equal(&c["adapter_divergence"]),
                    cell(str_of(&c["paw_base_text"])),
                    equal(&c["base_divergence"]),
                )?;
            }
        }
    }
    md.push_str(&controls);
    md.push_str("\nOutputs (text; equality is of token ids):\n");
    md.push_str(&details);
    md.push_str(if failures.is_empty() {
        "\nVerdict: every variant passes the gate.\n"
    } else {
        "\nVerdict: FAILED (the failures are printed by the command).\n"
    });
    Ok((md, failures))
}

/// Why deltas with these per-input correlations and slopes fail the gate (empty: they pass).
fn gate(corr: &[f64], slope: &[f64], n: usize) -> Vec<String> {
    let mut why = Vec::new();
    if corr.len() != n || slope.len() != n || n == 0 {
        why.push("a delta figure is missing".to_owned());
        return why;
    }
    let (c, s) = (mean(corr), mean(slope));
    // A NaN figure fails both.
    if s.is_nan() || (s - 1.0).abs() > MAX_SLOPE_ERROR {
        why.push(format!("mean delta slope {s:.3}"));
    }
    if c.is_nan() || c < MIN_MEAN_DELTA_CORR {
        why.push(format!("mean delta corr {c:.4}"));
    }
    why
}

fn min(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The margin where two greedy outputs part, if they do and it is known.
fn margin(divergence: &Value) -> Option<f64> {
    divergence["margin"].as_f64()
}

/// Cases whose outputs (`key`: adapter_divergence or base_divergence) part at a near tie.
fn near_ties(cases: &[Value], key: &str) -> usize {
    cases
        .iter()
        .filter(|c| margin(&c[key]).is_some_and(|m| m.abs() < NEAR_TIE))
        .count()
}

fn with_ties(equal: usize, n: usize, ties: usize) -> String {
    match ties {
        0 => format!("{equal}/{n}"),
        1 => format!("{equal}/{n} (+1 near tie)"),
        _ => format!("{equal}/{n} (+{ties} near ties)"),
    }
}

/// "yes", or where the outputs part: token position and transformers' margin there.
fn equal(divergence: &Value) -> String {
    if divergence.is_null() {
        return "yes".to_owned();
    }
    let at = divergence["position"].as_u64().unwrap_or(0);
    match margin(divergence) {
        Some(m) if m.abs() < NEAR_TIE => format!("near tie (token {at}, margin {m:.2})"),
        Some(m) => format!("NO (token {at}, margin {m:.2})"),
        None => format!("NO (token {at})"),
    }
}

/// Text for a markdown table cell inside backticks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "\\n").replace('`', "'")
}

fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    String::from_utf8(out.stdout).context("non-UTF-8 output")
}
