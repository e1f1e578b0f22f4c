//! `paw export --format peft`: a program's adapter as a Hugging Face PEFT LoRA directory
//! (`adapter_model.safetensors`, `adapter_config.json`), for vLLM (`--enable-lora
//! --lora-modules NAME=DIR`), LoRAX or `peft.PeftModel.from_pretrained`, with the program's
//! prompt template and output contract beside it.
//!
//! Tensors are written in f32 (quantized adapter tensors dequantized exactly as paw-rt reads
//! them). Rows: a GGUF llama stores q/k projections with the rows of each head permuted for
//! interleaved RoPE (llama.cpp's converter), so an adapter trained on such an interpreter has
//! its q/k `B` rows in that order; they are put back in Hugging Face order here. Other
//! architectures, and interpreters loaded from safetensors directories, need nothing.

use std::path::Path;

use anyhow::{bail, Context, Result};
use paw_format::{Program, TargetModule};
use paw_rt::ModelConfig;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

/// One PEFT tensor: name, `[rows, columns]`, row-major values.
pub type PeftTensor = (String, [usize; 2], Vec<f32>);

/// The PEFT tensors of `program`'s adapter for an interpreter of configuration `config`:
/// `(name, shape, values)` in name order.
pub fn peft_tensors(program: &Program, config: &ModelConfig) -> Result<Vec<PeftTensor>> {
    let adapter = program
        .adapter
        .as_ref()
        .context("the program has no LoRA adapter to export (prompt-only program)")?;
    let mut tensors = Vec::new();
    for pair in &adapter.pairs {
        let stem = format!(
            "base_model.model.model.layers.{}.{}",
            pair.layer,
            paw_rt::hf_module_path(pair.module)
        );
        let a = pair.a.to_f32().context("reading an adapter tensor")?;
        let mut b = pair.b.to_f32().context("reading an adapter tensor")?;
        let [a_rows, a_cols] = pair.a.shape.map(|d| d as usize);
        let [b_rows, b_cols] = pair.b.shape.map(|d| d as usize);
        let heads = match pair.module {
            TargetModule::Q => Some(config.n_heads),
            TargetModule::K => Some(config.n_kv_heads),
            _ => None,
        };
        if let (true, Some(heads)) = (config.rope_interleaved, heads) {
            b = hf_row_order(&b, b_rows, b_cols, heads, config.head_dim)?;
        }
        tensors.push((format!("{stem}.lora_A.weight"), [a_rows, a_cols], a));
        tensors.push((format!("{stem}.lora_B.weight"), [b_rows, b_cols], b));
    }
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(tensors)
}

/// Rows of a q/k projection in GGUF llama order (per head, the two rotary halves
/// interleaved: row `2i + s` holds Hugging Face row `s * head_dim/2 + i`) put back in Hugging
/// Face order.
fn hf_row_order(
    values: &[f32],
    rows: usize,
    cols: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Vec<f32>> {
    if heads * head_dim != rows || !head_dim.is_multiple_of(2) {
        bail!("a q/k adapter has {rows} rows, not {heads} heads of {head_dim}");
    }
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for s in 0..2 {
                let gguf = h * head_dim + 2 * i + s;
                let hf = h * head_dim + s * half + i;
                out[hf * cols..(hf + 1) * cols]
                    .copy_from_slice(&values[gguf * cols..(gguf + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// `adapter_config.json` for the adapter (PEFT's LoRA config: rank, alpha, target modules,
/// the layers that have an adapter).
pub fn peft_config(program: &Program, base_model: &str) -> Result<serde_json::Value> {
    let adapter = program
        .adapter
        .as_ref()
        .context("the program has no LoRA adapter to export")?;
    let mut modules: Vec<&str> = adapter
        .pairs
        .iter()
        .map(|p| {
            let path = paw_rt::hf_module_path(p.module);
            path.rsplit('.').next().unwrap_or(path)
        })
        .collect();
    modules.sort_unstable();
    modules.dedup();
    let mut layers: Vec<u32> = adapter.pairs.iter().map(|p| p.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    Ok(json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "target_modules": modules,
        "layers_to_transform": layers,
        "modules_to_save": null,
        "use_rslora": false,
        "use_dora": false,
    }))
}

/// Writes the PEFT directory: adapter weights and config, the prompt template (the input goes
/// where `{INPUT_PLACEHOLDER}` is) and, if the program has one, its output contract in the
/// form llama.cpp takes. Returns the files written.
pub fn write_peft_dir(
    program: &Program,
    config: &ModelConfig,
    base_model: &str,
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    let tensors = peft_tensors(program, config)?;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            TensorView::new(Dtype::F32, shape.to_vec(), data)
                .map(|view| (name.clone(), view))
                .context("building a safetensors tensor")
        })
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let weights = dir.join("adapter_model.safetensors");
    let metadata = Some(
        [("format".to_owned(), "pt".to_owned())]
            .into_iter()
            .collect(),
    );
    safetensors::serialize_to_file(views, metadata, &weights)
        .with_context(|| format!("writing {}", weights.display()))?;
    written.push(weights);
    let config_path = dir.join("adapter_config.json");
    let config_json = serde_json::to_string_pretty(&peft_config(program, base_model)?)?;
    std::fs::write(&config_path, config_json + "\n")
        .with_context(|| format!("writing {}", config_path.display()))?;
    written.push(config_path);
    let template = dir.join("prompt_template.txt");
    std::fs::write(&template, &program.prompt_template)
        .with_context(|| format!("writing {}", template.display()))?;
    written.push(template);
    if let Some((suffix, text)) = program
        .contract
        .as_ref()
        .and_then(paw_format::export::llama_cpp_contract)
    {
        let path = dir.join(format!("contract.{suffix}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gguf_llama_rows_go_back_to_hugging_face_order() {
        // One head of 4 rows, 1 column: GGUF order [hf0, hf2, hf1, hf3].
        let gguf = [10.0, 12.0, 11.0, 13.0];
        assert_eq!(
            hf_row_order(&gguf, 4, 1, 1, 4).unwrap(),
            [10.0, 11.0, 12.0, 13.0]
        );
        assert!(hf_row_order(&gguf, 4, 1, 2, 4).is_err());
    }
}
