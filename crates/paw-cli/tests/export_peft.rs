//! `paw export --format peft` (issue 19): the PEFT tensors, loaded on the Hugging Face layout of
//! the same weights, give the same logits as the program on its GGUF interpreter. For llama
//! this checks the q/k row order (GGUF llama permutes those rows); the control shows that the
//! GGUF order on the Hugging Face layout would not agree. Tiny random-weight models.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;

use paw_format::{Adapter, LoraPair, TensorDtype};
use paw_rt::Interpreter;
use paw_testkit::tiny_model::*;
use paw_testkit::{f32_tensor, max_abs_diff};

const TEMPLATE: &str =
    "<|im_start|>user\nClassify: {INPUT_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n";

/// Reads the exported safetensors back as an adapter for `identity`; `gguf_b` keeps the
/// original (GGUF-order) `B` tensors of `original` instead, for the control.
fn adapter_from_peft(dir: &Path, original: &Adapter, gguf_b: bool) -> Adapter {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let values = |name: &str| -> ([u64; 2], Vec<f32>) {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32);
        let shape = [t.shape()[0] as u64, t.shape()[1] as u64];
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (shape, v)
    };
    let pairs = original
        .pairs
        .iter()
        .map(|p| {
            let stem = format!(
                "base_model.model.model.layers.{}.{}",
                p.layer,
                paw_rt::hf_module_path(p.module)
            );
            let (a_shape, a) = values(&format!("{stem}.lora_A.weight"));
            let (b_shape, b) = values(&format!("{stem}.lora_B.weight"));
            assert_eq!(a_shape, p.a.shape);
            assert_eq!(b_shape, p.b.shape);
            LoraPair {
                layer: p.layer,
                module: p.module,
                a: f32_tensor(a_shape, &a),
                b: if gguf_b {
                    p.b.clone()
                } else {
                    f32_tensor(b_shape, &b)
                },
            }
        })
        .collect();
    Adapter {
        rank: original.rank,
        alpha: original.alpha,
        pairs,
    }
}

#[test]
fn peft_tensors_on_the_hugging_face_layout_match_the_program_on_its_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    for arch in [Arch::Llama, Arch::Qwen2] {
        let w = random_weights(arch, vocab_size());
        let gguf = tmp.path().join(format!("{}.gguf", arch.name()));
        write_gguf(arch, &gguf_layout(arch, &w), &gguf);
        let hf = tmp.path().join(format!("{}-hf", arch.name()));
        write_hf_dir(
            &hf,
            &hf_weights(&w),
            StDtype::F32,
            1,
            &hf_config(arch),
            &tokenizer_json(&gguf),
        );
        let g = Interpreter::load(&gguf).unwrap();
        let h = Interpreter::load(&hf).unwrap();
        let layers: Vec<u32> = (0..LAYERS as u32).collect();
        let adapter = paw_testkit::random_adapter(4, 8.0, &layers, dims, TensorDtype::F32, 0.2);
        let program = paw_testkit::program(g.identity(), TEMPLATE, Some(adapter.clone()));
        let path = tmp.path().join(format!("{}.paw", arch.name()));
        program.write_to(&path).unwrap();

        let out = tmp.path().join(format!("{}-peft", arch.name()));
        let listed = paw_testkit::stdout_of_success(&paw_testkit::run_in(
            env!("CARGO_BIN_EXE_paw"),
            tmp.path(),
            &home,
            &[
                "export",
                path.to_str().unwrap(),
                "--format",
                "peft",
                "-o",
                out.to_str().unwrap(),
                "--model",
                gguf.to_str().unwrap(),
                "--base-model",
                "org/tiny",
                "--json",
            ],
        ));
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["files"].as_array().unwrap().len(), 3);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 4);
        assert_eq!(config["lora_alpha"], 8.0);
        assert_eq!(config["base_model_name_or_path"], "org/tiny");
        assert_eq!(config["layers_to_transform"], serde_json::json!([0, 1]));
        assert_eq!(
            config["target_modules"],
            serde_json::json!([
                "down_proj",
                "gate_proj",
                "k_proj",
                "o_proj",
                "q_proj",
                "up_proj",
                "v_proj"
            ])
        );
        assert_eq!(
            std::fs::read_to_string(out.join("prompt_template.txt")).unwrap(),
            TEMPLATE
        );

        let on_gguf = g.bind(&program).unwrap();
        let exported = adapter_from_peft(&out, &adapter, false);
        let on_hf = h
            .bind(&paw_testkit::program(
                h.identity(),
                TEMPLATE,
                Some(exported),
            ))
            .unwrap();
        for input in ["the quick brown fox", "x"] {
            let want = on_gguf.next_token_logits(input).unwrap();
            let diff = max_abs_diff(&want, &on_hf.next_token_logits(input).unwrap());
            assert!(diff < 1e-3, "{arch:?} {input:?}: logits differ by {diff}");
            if arch == Arch::Llama {
                let control = adapter_from_peft(&out, &adapter, true);
                let wrong = h
                    .bind(&paw_testkit::program(h.identity(), TEMPLATE, Some(control)))
                    .unwrap();
                let off = max_abs_diff(&want, &wrong.next_token_logits(input).unwrap());
                eprintln!("{input:?}: PEFT order {diff}, GGUF order {off}");
                assert!(
                    off > 10.0 * diff.max(1e-5),
                    "GGUF row order agrees too ({off} vs {diff})"
                );
            }
        }
    }
}
