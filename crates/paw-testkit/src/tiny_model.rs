//! Tiny random-weight llama / qwen2 / qwen3 models built in the test: the same weights written
//! as a GGUF file (llama.cpp's layout) or as a Hugging Face safetensors directory.
//!
//! The GGUF carries a real tokenizer in the `tokenizer.ggml.*` keys a converted model has:
//! GPT-2 byte-level BPE over the 256 byte symbols plus a few merges ([`MERGES`]), the `qwen2`
//! pre-tokenizer, the control tokens `<|endoftext|>`, `<|im_start|>` and `<|im_end|>` (token type
//! 3, so the runtime matches them in program text and never in input), `<|im_end|>` as
//! `eos_token_id` (the runtime stops there, and at `<|endoftext|>` by its text), `<|endoftext|>`
//! as BOS and padding (not prepended), and a ChatML `tokenizer.chat_template`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use paw_format::TargetModule;

use crate::random_values;

pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const FFN: usize = 128;
pub const LAYERS: usize = 2;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// GPT-2's printable stand-ins for the 256 byte values.
pub fn byte_tokens() -> Vec<String> {
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
pub type Weights = BTreeMap<String, (Vec<f32>, Vec<usize>)>;

pub fn random_weights(arch: Arch, vocab: usize) -> Weights {
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
    // Qwen3 ties its LM head to the embedding: a large embedding would dominate the residual
    // stream and make each token predict itself forever.
    let embd_scale = if arch == Arch::Qwen3 { 0.1 } else { 0.5 };
    put(
        "token_embd.weight".into(),
        vec![vocab, HIDDEN],
        embd_scale,
        0.0,
    );
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
    // Byte tokens other than printable ASCII and newline get small LM-head rows, so that greedy
    // output is mostly readable text (stop strings can be picked from it).
    let head = if arch == Arch::Qwen3 {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let (values, _) = w.get_mut(head).unwrap();
    for b in 0..vocab.min(256) {
        let readable = (0x20..0x7f).contains(&b) || b == usize::from(b'\n');
        if !readable {
            for v in &mut values[b * HIDDEN..(b + 1) * HIDDEN] {
                *v *= 0.3;
            }
        }
    }
    w
}

pub fn dims(m: TargetModule) -> [u64; 2] {
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

/// Merges of the tiny tokenizer, in priority order (GPT-2 byte symbols; `Ġ` is a space): enough
/// that common English pieces become multi-byte tokens, so encoding really runs BPE. No merge
/// involves `x`, so `"x".repeat(n)` is `n` tokens.
pub const MERGES: &[(&str, &str)] = &[
    ("h", "e"),
    ("Ġ", "t"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("Ġt", "he"),
    ("o", "u"),
    ("i", "t"),
    ("Ġ", "s"),
    ("e", "n"),
    ("Ġ", "w"),
    ("Ġ", "i"),
    ("Ġ", "o"),
    ("in", "g"),
    ("Ġ", "c"),
    ("e", "s"),
    ("Ċ", "Ċ"),
];

/// Control tokens, after the byte and merged tokens: `<|endoftext|>`, `<|im_start|>`,
/// `<|im_end|>` (the last id, and the default `eos_token_id`).
pub const CONTROL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Qwen2.5's ChatML chat template (default system message "You are a helpful assistant.").
pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}{%- if loop.first and \
messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.\
<|im_end|>\\n' }}{%- endif %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + \
'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' \
}}{%- endif %}";

/// The tiny vocabulary: byte symbols, then one token per merge, then [`CONTROL_TOKENS`].
pub fn vocab() -> Vec<String> {
    let mut tokens = byte_tokens();
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.extend(CONTROL_TOKENS.iter().map(|s| s.to_string()));
    tokens
}

pub fn vocab_size() -> usize {
    byte_tokens().len() + MERGES.len() + CONTROL_TOKENS.len()
}

/// The id of a control token of the tiny vocabulary (one of [`CONTROL_TOKENS`]).
pub fn control_id(text: &str) -> u32 {
    let i = CONTROL_TOKENS
        .iter()
        .position(|t| *t == text)
        .unwrap_or_else(|| panic!("{text} is not a control token of the tiny vocabulary"));
    (vocab_size() - CONTROL_TOKENS.len() + i) as u32
}

/// Settings of a written tiny GGUF beyond its weights.
#[derive(Clone, Debug)]
pub struct GgufOptions {
    /// `{arch}.context_length`: the interpreter's window is this (below the runtime's 2048).
    pub context_length: u32,
    /// `tokenizer.ggml.eos_token_id`; `<|im_end|>` by default.
    pub eos_token_id: u32,
}

impl Default for GgufOptions {
    fn default() -> Self {
        Self {
            context_length: 256,
            eos_token_id: control_id("<|im_end|>"),
        }
    }
}

/// Writes `weights` (GGUF names and layout) as a GGUF file with [`GgufOptions::default`].
pub fn write_gguf(arch: Arch, weights: &Weights, path: &Path) {
    write_gguf_with(arch, weights, &GgufOptions::default(), path);
}

/// Writes the tiny model of `arch` ([`random_weights`]) as a GGUF file at `path`.
pub fn write_tiny_gguf(arch: Arch, path: &Path) {
    write_gguf(arch, &random_weights(arch, vocab_size()), path);
}

/// Writes `weights` (GGUF names and layout) as an f32 GGUF file with the tiny tokenizer.
pub fn write_gguf_with(arch: Arch, weights: &Weights, opts: &GgufOptions, path: &Path) {
    write_gguf_edited(arch, weights, opts, Vec::new(), path);
}

/// [`write_gguf_with`], with metadata keys replaced or added (`Some`) or removed (`None`):
/// for hostile files ([`crate::hostile`]).
pub fn write_gguf_edited(
    arch: Arch,
    weights: &Weights,
    opts: &GgufOptions,
    edits: Vec<(String, Option<Value>)>,
    path: &Path,
) {
    let tokens = vocab();
    let n_plain = tokens.len() - CONTROL_TOKENS.len();
    let types: Vec<Value> = (0..tokens.len())
        .map(|i| Value::I32(if i < n_plain { 1 } else { 3 }))
        .collect();
    let merges: Vec<Value> = MERGES
        .iter()
        .map(|(a, b)| Value::String(format!("{a} {b}")))
        .collect();
    let endoftext = control_id("<|endoftext|>");
    let a = arch.name();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(format!("tiny-{a}"))),
        (format!("{a}.block_count"), Value::U32(LAYERS as u32)),
        (
            format!("{a}.context_length"),
            Value::U32(opts.context_length),
        ),
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
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32(opts.eos_token_id),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(endoftext)),
        (
            "tokenizer.ggml.padding_token_id".into(),
            Value::U32(endoftext),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ];
    if arch == Arch::Llama {
        md.retain(|(k, _)| !k.ends_with("key_length") && !k.ends_with("value_length"));
    }
    for (key, value) in edits {
        md.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            md.push((key, v));
        }
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

/// llama.cpp's converter permutes the rows of llama q/k projections (within each head, the two
/// rotary halves interleaved) for its interleaved-pair RoPE. Returns `weights`, given in
/// Hugging Face layout, as a GGUF llama stores them; other architectures are unchanged.
pub fn gguf_layout(arch: Arch, weights: &Weights) -> Weights {
    let mut out = weights.clone();
    if arch != Arch::Llama {
        return out;
    }
    let half = HEAD_DIM / 2;
    for l in 0..LAYERS {
        for (stem, heads) in [("attn_q", HEADS), ("attn_k", KV_HEADS)] {
            let (w, shape) = out.get_mut(&format!("blk.{l}.{stem}.weight")).unwrap();
            let cols = shape[1];
            let src = w.clone();
            for h in 0..heads {
                for i in 0..half {
                    for s in 0..2 {
                        let to = h * HEAD_DIM + 2 * i + s;
                        let from = h * HEAD_DIM + s * half + i;
                        w[to * cols..(to + 1) * cols]
                            .copy_from_slice(&src[from * cols..(from + 1) * cols]);
                    }
                }
            }
        }
    }
    out
}

/// Element type of the tensors in a written safetensors file.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum StDtype {
    F32,
    F16,
    BF16,
}

impl StDtype {
    fn candle(self) -> DType {
        match self {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
        }
    }
}

/// `weights` with every value rounded through `dtype`, so that a GGUF in f32 holds exactly
/// what a safetensors file in `dtype` holds.
pub fn round_weights(weights: &Weights, dtype: StDtype) -> Weights {
    weights
        .iter()
        .map(|(name, (v, shape))| {
            let v = match dtype {
                StDtype::F32 => v.clone(),
                StDtype::F16 => v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect(),
                StDtype::BF16 => v
                    .iter()
                    .map(|x| half::bf16::from_f32(*x).to_f32())
                    .collect(),
            };
            (name.clone(), (v, shape.clone()))
        })
        .collect()
}

/// The test's own GGUF -> Hugging Face tensor-name table (independent of the runtime's).
pub fn hf_name(gguf: &str) -> String {
    const LAYER: &[(&str, &str)] = &[
        ("attn_norm", "input_layernorm"),
        ("ffn_norm", "post_attention_layernorm"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("attn_k_norm", "self_attn.k_norm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (stem, suffix) = rest.rsplit_once('.').unwrap();
    let hf = LAYER.iter().find(|(g, _)| *g == stem).unwrap().1;
    format!("model.layers.{layer}.{hf}.{suffix}")
}

/// `weights` (GGUF names, Hugging Face layout) under their Hugging Face names.
pub fn hf_weights(weights: &Weights) -> Weights {
    weights
        .iter()
        .map(|(name, w)| (hf_name(name), w.clone()))
        .collect()
}

/// `config.json` of the tiny model (tied embeddings for qwen3, as `random_weights` builds it).
pub fn hf_config(arch: Arch) -> serde_json::Value {
    let class = match arch {
        Arch::Llama => "LlamaForCausalLM",
        Arch::Qwen2 => "Qwen2ForCausalLM",
        Arch::Qwen3 => "Qwen3ForCausalLM",
    };
    let mut c = serde_json::json!({
        "architectures": [class],
        "model_type": arch.name(),
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_scaling": null,
        "tie_word_embeddings": arch == Arch::Qwen3,
        "eos_token_id": control_id("<|im_end|>"),
        "torch_dtype": "bfloat16",
    });
    if arch == Arch::Qwen3 {
        c["head_dim"] = HEAD_DIM.into();
        c["attention_bias"] = false.into();
    }
    if arch != Arch::Llama {
        c["use_sliding_window"] = false.into();
    }
    c
}

/// The `tokenizer.json` equivalent of a tiny GGUF's tokenizer (what paw-rt rebuilt from it).
pub fn tokenizer_json(gguf: &Path) -> Vec<u8> {
    paw_rt::Tokenizer::from_gguf_file(gguf)
        .unwrap()
        .to_json()
        .unwrap()
        .into_bytes()
}

/// Writes a Hugging Face model directory: `config.json`, `tokenizer.json` and `weights`
/// (Hugging Face names) in `dtype`, in one `model.safetensors` or in `shards` files listed by
/// `model.safetensors.index.json`.
pub fn write_hf_dir(
    dir: &Path,
    weights: &Weights,
    dtype: StDtype,
    shards: usize,
    config: &serde_json::Value,
    tokenizer_json: &[u8],
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json).unwrap();
    let tensors: Vec<(String, Tensor)> = weights
        .iter()
        .map(|(name, (v, shape))| {
            let t = Tensor::from_slice(v, shape.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype.candle())
                .unwrap();
            (name.clone(), t)
        })
        .collect();
    if shards <= 1 {
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
        return;
    }
    let mut weight_map = serde_json::Map::new();
    let per = tensors.len().div_ceil(shards);
    for (k, chunk) in tensors.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", k + 1);
        let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
        candle_core::safetensors::save(&map, dir.join(&file)).unwrap();
        for name in map.keys() {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}
