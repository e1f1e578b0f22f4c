//! Tiny random-weight llama / qwen2 / qwen3 models written as GGUF in the test: the forward
//! pass against candle-transformers, and unmerged LoRA against merged dense weights.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::*;
use paw_format::{Adapter, TargetModule, TensorDtype};
use paw_rt::Interpreter;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const FFN: usize = 128;
const LAYERS: usize = 2;
const RANK: u32 = 32;
const TEMPLATE: &str =
    "<|im_start|>user\nClassify: {INPUT_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// GPT-2's printable stand-ins for the 256 byte values.
fn byte_tokens() -> Vec<String> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap().to_string())
        .collect()
}

/// Weights keyed by GGUF name, `(values, candle shape)`.
type Weights = BTreeMap<String, (Vec<f32>, Vec<usize>)>;

fn random_weights(arch: Arch, vocab: usize) -> Weights {
    let mut w = Weights::new();
    let mut seed = 1000;
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        seed += 1;
        let n = shape.iter().product();
        let v = random_values(n, seed, scale)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        w.insert(name, (v, shape));
    };
    put("token_embd.weight".into(), vec![vocab, HIDDEN], 0.5, 0.0);
    put("output_norm.weight".into(), vec![HIDDEN], 0.1, 1.0);
    if arch != Arch::Qwen3 {
        put("output.weight".into(), vec![vocab, HIDDEN], 0.2, 0.0);
    }
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        put(format!("{p}.attn_norm.weight"), vec![HIDDEN], 0.1, 1.0);
        put(format!("{p}.ffn_norm.weight"), vec![HIDDEN], 0.1, 1.0);
        for m in TargetModule::ALL {
            let [fan_in, fan_out] = dims(m);
            put(
                format!("{p}.{}.weight", m.gguf_stem()),
                vec![fan_out as usize, fan_in as usize],
                0.15,
                0.0,
            );
        }
        if arch == Arch::Qwen2 {
            put(format!("{p}.attn_q.bias"), vec![HEADS * HEAD_DIM], 0.1, 0.0);
            put(
                format!("{p}.attn_k.bias"),
                vec![KV_HEADS * HEAD_DIM],
                0.1,
                0.0,
            );
            put(
                format!("{p}.attn_v.bias"),
                vec![KV_HEADS * HEAD_DIM],
                0.1,
                0.0,
            );
        }
        if arch == Arch::Qwen3 {
            put(format!("{p}.attn_q_norm.weight"), vec![HEAD_DIM], 0.1, 1.0);
            put(format!("{p}.attn_k_norm.weight"), vec![HEAD_DIM], 0.1, 1.0);
        }
    }
    w
}

fn dims(m: TargetModule) -> [u64; 2] {
    let (h, q, kv, f) = (
        HIDDEN as u64,
        (HEADS * HEAD_DIM) as u64,
        (KV_HEADS * HEAD_DIM) as u64,
        FFN as u64,
    );
    match m {
        TargetModule::Q => [h, q],
        TargetModule::K | TargetModule::V => [h, kv],
        TargetModule::O => [q, h],
        TargetModule::Gate | TargetModule::Up => [h, f],
        TargetModule::Down => [f, h],
    }
}

fn write_gguf(arch: Arch, weights: &Weights, path: &Path) {
    let mut tokens = byte_tokens();
    let mut types = vec![Value::I32(1); tokens.len()];
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.to_string());
        types.push(Value::I32(3));
    }
    let vocab = tokens.len() as u32;
    let a = arch.name();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{a}.context_length"), Value::U32(256)),
        (format!("{a}.embedding_length"), Value::U32(HIDDEN as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(FFN as u32)),
        (
            format!("{a}.attention.head_count"),
            Value::U32(HEADS as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(KV_HEADS as u32),
        ),
        (
            format!("{a}.attention.key_length"),
            Value::U32(HEAD_DIM as u32),
        ),
        (
            format!("{a}.attention.value_length"),
            Value::U32(HEAD_DIM as u32),
        ),
        (
            format!("{a}.rope.dimension_count"),
            Value::U32(HEAD_DIM as u32),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(10000.0)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(vocab - 1)),
    ];
    if arch == Arch::Llama {
        md.retain(|(k, _)| !k.ends_with("key_length") && !k.ends_with("value_length"));
    }
    let qtensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(name, (v, shape))| {
            let t = Tensor::from_slice(v, shape.as_slice(), &Device::Cpu).unwrap();
            (name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

fn vocab_size() -> usize {
    byte_tokens().len() + 3
}

#[test]
fn tiny_models_match_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let path = dir.path().join(format!("{}.gguf", arch.name()));
        write_gguf(arch, &random_weights(arch, vocab_size()), &path);
        let interp = Interpreter::load(&path).unwrap();
        assert_eq!(interp.identity().architecture, arch.name());
        let ids = interp
            .tokenizer()
            .encode_with_specials("<|im_start|>user\nhello world, 12 tokens or so<|im_end|>")
            .unwrap();
        let ours = interp.next_token_logits(&ids).unwrap();
        let theirs = reference_logits(arch.name(), &path, &ids);
        let diff = max_abs_diff(&ours, &theirs);
        eprintln!("{arch:?}: max |logit diff| {diff}");
        // candle-transformers' qwen3 computes rotary frequencies in f64, the others (and this
        // runtime, like llama.cpp) in f32: a few 1e-3 of logit difference on qwen3.
        let tol = if arch == Arch::Qwen3 { 5e-3 } else { 1e-5 };
        assert!(diff < tol, "{arch:?}: logits differ by {diff}");
    }
}

fn merged(weights: &Weights, adapter: &Adapter) -> Weights {
    let mut out = weights.clone();
    let scale = adapter.alpha / adapter.rank as f32;
    for pair in &adapter.pairs {
        let name = format!("blk.{}.{}.weight", pair.layer, pair.module.gguf_stem());
        let (w, shape) = out.get_mut(&name).unwrap();
        let a = decode_tensor(&pair.a);
        let b = decode_tensor(&pair.b);
        let (fan_out, fan_in, r) = (shape[0], shape[1], adapter.rank as usize);
        for o in 0..fan_out {
            for i in 0..fan_in {
                let mut acc = 0f32;
                for k in 0..r {
                    acc += b[o * r + k] * a[k * fan_in + i];
                }
                w[o * fan_in + i] += scale * acc;
            }
        }
    }
    out
}

#[test]
fn unmerged_lora_equals_merged_weights_for_each_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Qwen2, Arch::Qwen3, Arch::Llama] {
        let base_w = random_weights(arch, vocab_size());
        let base_path = dir.path().join(format!("{}-base.gguf", arch.name()));
        write_gguf(arch, &base_w, &base_path);
        let base = Interpreter::load(&base_path).unwrap();
        for dtype in [
            TensorDtype::F32,
            TensorDtype::F16,
            TensorDtype::Q8_0,
            TensorDtype::Q4_0,
        ] {
            let layers: Vec<u32> = (0..LAYERS as u32).collect();
            let adapter = random_adapter(RANK, 16.0, &layers, dims, dtype, 0.12);
            let merged_path = dir.path().join(format!("{}-{dtype:?}.gguf", arch.name()));
            write_gguf(arch, &merged(&base_w, &adapter), &merged_path);
            let merged_interp = Interpreter::load(&merged_path).unwrap();

            let input = "the quick brown fox";
            let with_adapter = base
                .bind(&program(base.identity(), TEMPLATE, Some(adapter)))
                .unwrap()
                .next_token_logits(input)
                .unwrap();
            let merged_logits = merged_interp
                .bind(&program(merged_interp.identity(), TEMPLATE, None))
                .unwrap()
                .next_token_logits(input)
                .unwrap();
            let no_adapter = base
                .bind(&program(base.identity(), TEMPLATE, None))
                .unwrap()
                .next_token_logits(input)
                .unwrap();
            let diff = max_abs_diff(&with_adapter, &merged_logits);
            let effect = max_abs_diff(&no_adapter, &merged_logits);
            // Block-quantized factors run through candle's quantized matmul, which quantizes
            // the activations to 8 bits as well.
            let tol = match dtype {
                TensorDtype::F32 | TensorDtype::F16 => 1e-4,
                TensorDtype::Q8_0 | TensorDtype::Q4_0 => 2e-2,
            };
            eprintln!("{arch:?} {dtype:?}: |unmerged - merged| {diff}, adapter effect {effect}");
            assert!(
                diff < tol,
                "{arch:?} {dtype:?}: unmerged vs merged differ by {diff}"
            );
            assert!(
                effect > 20.0 * tol,
                "{arch:?} {dtype:?}: adapter has no effect ({effect})"
            );
        }
    }
}

#[test]
fn template_may_start_or_end_with_the_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen2.gguf");
    write_gguf(
        Arch::Qwen2,
        &random_weights(Arch::Qwen2, vocab_size()),
        &path,
    );
    let interp = Interpreter::load(&path).unwrap();
    let opts = paw_rt::CallOptions {
        max_tokens: Some(3),
        ..Default::default()
    };
    for template in [
        "{INPUT_PLACEHOLDER} -> ",
        "<|im_start|>user\n{INPUT_PLACEHOLDER}",
    ] {
        let f = interp
            .bind(&program(interp.identity(), template, None))
            .unwrap();
        let cached = f.call("abc", &opts).unwrap();
        let uncached = f
            .call(
                "abc",
                &paw_rt::CallOptions {
                    use_prefix_cache: false,
                    ..opts.clone()
                },
            )
            .unwrap();
        assert_eq!(cached.token_ids, uncached.token_ids, "{template:?}");
        assert_eq!(cached.generated_tokens, 3);
    }
    let two = program(interp.identity(), "{INPUT_PLACEHOLDER}", None);
    let mut bad = two.clone();
    bad.prompt_template = "no placeholder".into();
    assert!(matches!(
        interp.bind(&bad),
        Err(paw_rt::Error::Placeholder { found: 0, .. })
    ));
}
