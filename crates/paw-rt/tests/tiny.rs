//! Tiny random-weight llama / qwen2 / qwen3 models written as GGUF in the test: the forward
//! pass against candle-transformers, and unmerged LoRA against merged dense weights.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use paw_format::{Adapter, TensorDtype};
use paw_rt::Interpreter;
use paw_testkit::tiny_model::*;
use paw_testkit::*;

const RANK: u32 = 32;
const TEMPLATE: &str =
    "<|im_start|>user\nClassify: {INPUT_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n";

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
