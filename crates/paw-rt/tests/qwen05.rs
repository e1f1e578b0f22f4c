//! The default interpreter, Qwen2.5-Coder-0.5B-Instruct Q4_K_M (env `PAW_TEST_QWEN05`).
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use paw_rt::{CallOptions, Interpreter};
use paw_testkit::*;

#[test]
fn qwen2_logits_match_candle_quantized_qwen2_and_calls_run() {
    let path = require_model!("PAW_TEST_QWEN05");
    let interp = Interpreter::load(&path).unwrap();
    assert_eq!(interp.identity().architecture, "qwen2");
    let ids = interp
        .tokenizer()
        .encode_with_specials("<|im_start|>user\nfn add(a: i32, b: i32) -> i32 {<|im_end|>\n")
        .unwrap();
    let ours = interp.next_token_logits(&ids).unwrap();
    let theirs = reference_logits("qwen2", &path, &ids);
    assert_close_to_reference("qwen2", &ours, &theirs);
    let top = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        idx.truncate(5);
        idx
    };
    let (a, b) = (top(&ours), top(&theirs));
    assert!(
        a.iter().filter(|i| b.contains(i)).count() >= 4,
        "{a:?} vs {b:?}"
    );

    // A prompt-only program answers through the full call path and stops on <|im_end|>.
    let f = interp
        .bind(&program(interp.identity(), CHATML_TEMPLATE, None))
        .unwrap();
    let out = f
        .call(
            "I absolutely loved this film!",
            &CallOptions {
                max_tokens: Some(6),
                ..CallOptions::default()
            },
        )
        .unwrap();
    eprintln!("{:?} {:?}", out.text, out.stop_reason);
    assert!(
        out.text.to_lowercase().contains("positive"),
        "{:?}",
        out.text
    );
}
