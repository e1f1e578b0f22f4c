//! The tokenizer rebuilt from GGUF metadata against the official Qwen tokenizer.json
//! (env `PAW_TEST_QWEN05` = Qwen2.5 GGUF, `PAW_TEST_QWEN3_TOKENIZER` = tokenizer.json).
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use paw_rt::Tokenizer;
use paw_testkit::require_model;

/// Ids 151665 and above differ between Qwen2.5 and Qwen3; the corpus avoids their strings.
const SHARED_IDS: u32 = 151_665;

fn corpus() -> Vec<String> {
    let mut c: Vec<String> = [
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
        "def f(a, b=3):\n\treturn a**b  # comment\n\n\nclass A(object):\n    pass\n",
        r#"{"name": "Zoë", "age": 42, "tags": ["a","b"], "nested": {"k": null, "v": -1.5e-3}}"#,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|fim_prefix|>def <|fim_suffix|> pass<|fim_middle|>",
        "<tool_call>\n{\"name\": \"get_weather\"}\n</tool_call>",
        "日本語のテキストと中文混合, 한국어도 있어요. Ünïcödé naïve café — “quotes” ‘single’ …",
        "emoji 😀🎉👩‍👩‍👧‍👦 🇺🇸 flags and ZWJ; math ∑∫√∞ ≠ ≤; arrows →⇒",
        "   leading spaces\n\n\n\ttabs\t\tand    runs      of   spaces   \r\n\r\nCRLF  ",
        "numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 1,000,000 2026-11-26T07:09:34Z",
        "It's we're they've I'm you'll he'd DON'T SHOULDN'T",
        "   ",
        "",
        "a",
        "\n",
        "[PSEUDO_PROGRAM]\nTask: Classify.\n\nExamples:\nInput: x\nOutput: y\n[END_PSEUDO_PROGRAM]\n\n[INPUT]\n",
        "URL https://example.com/path?q=1&r=[2]#frag and email a.b+c@d.org",
        "SELECT * FROM users WHERE id IN (1, 2, 3) AND name LIKE '%o''brien%';",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Mixed: every ASCII printable character, and some combining characters needing NFC.
    c.push((32u8..127).map(char::from).collect());
    c.push("e\u{301} a\u{308} n\u{303} Å vs A\u{30a}".to_string());
    c
}

#[test]
fn qwen_gguf_tokenizer_matches_official_tokenizer_json() {
    let gguf = require_model!("PAW_TEST_QWEN05");
    let json = require_model!("PAW_TEST_QWEN3_TOKENIZER");
    let ours = Tokenizer::from_gguf_file(&gguf).unwrap();
    let official = tokenizers::Tokenizer::from_file(&json).unwrap();
    for text in corpus() {
        let want = official
            .encode(text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(
            want.iter().all(|&id| id < SHARED_IDS),
            "corpus uses Qwen3-only ids: {text:?}"
        );
        let got = ours.encode_with_specials(&text).unwrap();
        assert_eq!(got, want, "text {text:?}");
        // Plain encoding round-trips to the (NFC-normalised) text the official tokenizer sees.
        let plain = ours.encode_plain(&text).unwrap();
        assert_eq!(
            ours.decode_with_specials(&plain).unwrap(),
            official.decode(&want, false).unwrap(),
            "plain round trip of {text:?}"
        );
    }
    // End-of-generation tokens: <|im_end|> (eos) and <|endoftext|>.
    let eog = ours.eog_ids();
    assert!(eog.contains(&151_645) && eog.contains(&151_643), "{eog:?}");
    assert_eq!(ours.bos_to_prepend(), None);
}

#[test]
fn plain_encoding_never_yields_control_tokens() {
    let gguf = require_model!("PAW_TEST_QWEN05");
    let tok = Tokenizer::from_gguf_file(&gguf).unwrap();
    let text = "<|im_end|><|im_start|>system\n<|endoftext|><tool_call>";
    let ids = tok.encode_plain(text).unwrap();
    assert!(ids.iter().all(|&id| id < 151_643), "{ids:?}");
    assert_eq!(tok.decode_with_specials(&ids).unwrap(), text);
    assert_eq!(
        tok.encode_with_specials(text).unwrap()[..2],
        [151_645, 151_644]
    );
}

#[test]
fn tokenizer_hash_is_stable_and_model_specific() {
    let qwen = require_model!("PAW_TEST_QWEN05");
    let smol = require_model!("PAW_TEST_SMOLLM2");
    let read = |p: &std::path::Path| {
        let mut f = std::io::BufReader::new(std::fs::File::open(p).unwrap());
        candle_core::quantized::gguf_file::Content::read(&mut f).unwrap()
    };
    let q = read(&qwen);
    let h1 = paw_rt::tokenizer_hash(&q);
    assert_eq!(h1, paw_rt::tokenizer_hash(&read(&qwen)));
    assert!(h1.starts_with("b3:") && h1.len() == 3 + 64);
    assert_ne!(h1, paw_rt::tokenizer_hash(&read(&smol)));
    // Changing one token changes the hash; the chat template does not take part.
    let mut changed = read(&qwen);
    if let Some(candle_core::quantized::gguf_file::Value::Array(toks)) =
        changed.metadata.get_mut("tokenizer.ggml.tokens")
    {
        toks[1000] = candle_core::quantized::gguf_file::Value::String("zzz".into());
    }
    assert_ne!(h1, paw_rt::tokenizer_hash(&changed));
    let mut templ = read(&qwen);
    templ.metadata.insert(
        "tokenizer.chat_template".into(),
        candle_core::quantized::gguf_file::Value::String("x".into()),
    );
    assert_eq!(h1, paw_rt::tokenizer_hash(&templ));
}
