//! The deterministic source of `fixtures/programs/*.paw`, shared by `examples/make_fixtures.rs`
//! (which writes them) and the tests (which rebuild them in memory and compare bytes).

use std::collections::BTreeMap;

use paw_format::{
    Adapter, GenerationConfig, InterpreterId, LoraPair, OutputContract, Program, Provenance,
    TargetModule, TensorData, TensorDtype, INPUT_PLACEHOLDER,
};

/// SplitMix64: a fixed-seed generator so fixture bytes never change. The same generator as
/// `paw_rt::SplitMix64` (`next_f32` is its `next_f32_symmetric`), copied because paw-rt depends
/// on paw-format.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    fn next_f32(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * scale
    }
}

fn qwen3_prompt(pseudo_program: &str) -> String {
    format!(
        "<|im_start|>user\n{pseudo_program}\n\n[INPUT]\n{INPUT_PLACEHOLDER}\n[END_INPUT]<|im_end|>\n\
         <|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
}

fn interpreter() -> InterpreterId {
    InterpreterId {
        architecture: "qwen3".into(),
        name: "Qwen3-0.6B-Q8_0.gguf".into(),
        weights_hash: format!("b3:{}", "1f".repeat(32)),
        tokenizer_hash: format!("b3:{}", "2e".repeat(32)),
    }
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prompt_only() -> Program {
    let pseudo = "[PSEUDO_PROGRAM]\nTask: Classify the log line as ERROR, WARN or INFO. Return ONLY the label.\n\n\
                  Examples:\nInput: disk full on /var\nOutput: ERROR\nInput: retrying in 5s\nOutput: WARN\n[END_PSEUDO_PROGRAM]";
    Program {
        spec: "Triage a log line: ERROR, WARN or INFO.".into(),
        pseudo_program: pseudo.into(),
        prompt_template: qwen3_prompt(pseudo),
        interpreter: interpreter(),
        adapter: None,
        generation: GenerationConfig {
            max_tokens: 8,
            stop: vec![],
            temperature: 0.0,
        },
        contract: None,
        provenance: Provenance {
            compiler: "paw-compile/prompt-only".into(),
            compiler_version: "0.1.0".into(),
            teacher_hash: None,
            seed: 0,
            hyperparameters: BTreeMap::new(),
            report: map(&[("examples", "2")]),
        },
    }
}

fn tensor(rng: &mut SplitMix64, dtype: TensorDtype, shape: [u64; 2]) -> TensorData {
    let values: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| rng.next_f32(0.05))
        .collect();
    TensorData::from_f32(dtype, shape, &values).expect("fixture shapes are block aligned")
}

/// Rank 32 so that both A ([32, in]) and B ([out, 32]) can use the 32-wide block types.
fn adapter_mixed() -> Program {
    let mut rng = SplitMix64(0x5eed_0001);
    let rank = 32;
    let layout = [
        (
            0,
            TargetModule::Q,
            TensorDtype::Q8_0,
            TensorDtype::F16,
            64,
            64,
        ),
        (
            0,
            TargetModule::Down,
            TensorDtype::Q4_0,
            TensorDtype::F32,
            128,
            64,
        ),
        (
            1,
            TargetModule::V,
            TensorDtype::F32,
            TensorDtype::Q4_0,
            64,
            32,
        ),
        (
            1,
            TargetModule::Down,
            TensorDtype::F16,
            TensorDtype::Q8_0,
            128,
            64,
        ),
    ];
    let pairs = layout
        .iter()
        .map(|&(layer, module, a_dtype, b_dtype, inf, outf)| LoraPair {
            layer,
            module,
            a: tensor(&mut rng, a_dtype, [rank, inf]),
            b: tensor(&mut rng, b_dtype, [outf, rank]),
        })
        .collect();
    let pseudo = "[PSEUDO_PROGRAM]\nTask: Extract the stock ticker symbol; answer NONE if there is none.\n\n\
                  Examples:\nInput: Apple (AAPL) rose 3%\nOutput: AAPL\nInput: markets were calm\nOutput: NONE\n[END_PSEUDO_PROGRAM]";
    Program {
        spec: "Extract the ticker symbol from a headline, or NONE.".into(),
        pseudo_program: pseudo.into(),
        prompt_template: qwen3_prompt(pseudo),
        interpreter: interpreter(),
        adapter: Some(Adapter {
            rank: rank as u32,
            alpha: 16.0,
            pairs,
        }),
        generation: GenerationConfig {
            max_tokens: 16,
            stop: vec!["\n".into()],
            temperature: 0.0,
        },
        contract: None,
        provenance: Provenance {
            compiler: "paw-compile/train".into(),
            compiler_version: "0.1.0".into(),
            teacher_hash: Some(format!("b3:{}", "3d".repeat(32))),
            seed: 42,
            hyperparameters: map(&[("learning_rate", "2e-4"), ("rank", "32"), ("steps", "300")]),
            report: map(&[
                ("train_examples", "512"),
                ("validation_exact_match", "0.9375"),
            ]),
        },
    }
}

/// Non-ASCII texts, several stop strings and a sampling temperature.
fn multilingual() -> Program {
    let pseudo = "[PSEUDO_PROGRAM]\nTask: Translate the greeting into Japanese.\n\nExamples:\nInput: good morning\nOutput: おはようございます\nInput: thank you — very much\nOutput: どうもありがとうございます\n[END_PSEUDO_PROGRAM]";
    Program {
        spec: "Translate a short English greeting into Japanese (日本語).".into(),
        pseudo_program: pseudo.into(),
        prompt_template: qwen3_prompt(pseudo),
        interpreter: interpreter(),
        adapter: None,
        generation: GenerationConfig {
            max_tokens: 64,
            stop: vec!["\n\n".into(), "。".into(), "<|im_end|>".into()],
            temperature: 0.7,
        },
        contract: None,
        provenance: Provenance {
            compiler: "paw-compile/prompt-only".into(),
            compiler_version: "0.1.0".into(),
            teacher_hash: None,
            seed: u64::MAX,
            hyperparameters: map(&[("temperature_note", "sampled ✓")]),
            report: BTreeMap::new(),
        },
    }
}

/// The prompt-only program with a label-set contract (format 1.1).
fn labels_contract() -> Program {
    Program {
        contract: Some(OutputContract::Labels {
            labels: vec!["ERROR".into(), "WARN".into(), "INFO".into()],
        }),
        ..prompt_only()
    }
}

/// File name (in `fixtures/programs/`) and program, in a fixed order.
pub fn all() -> Vec<(&'static str, Program)> {
    vec![
        ("prompt-only.paw", prompt_only()),
        ("labels-contract.paw", labels_contract()),
        ("adapter-mixed.paw", adapter_mixed()),
        ("multilingual.paw", multilingual()),
    ]
}
