//! Tiny random-weight llama / qwen2 / qwen3 models built in the test: the same weights written
//! as a GGUF file (llama.cpp's layout) or as a Hugging Face safetensors directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use paw_format::TargetModule;

use super::random_values;

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

pub fn write_gguf(arch: Arch, weights: &Weights, path: &Path) {
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

pub fn vocab_size() -> usize {
    byte_tokens().len() + 3
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
        "eos_token_id": vocab_size() - 1,
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
        .inner()
        .to_string(true)
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
