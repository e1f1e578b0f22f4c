//! The interpreter's tokenizer: byte-level BPE rebuilt from a GGUF file's `tokenizer.ggml.*`
//! metadata, or a Hugging Face `tokenizer.json` ([`Tokenizer::from_tokenizer_json`]).
//!
//! candle-core ships a GGUF tokenizer builder, but it marks UNUSED padding tokens as special,
//! defaults unknown pre-tokenizers (e.g. SmolLM2's `smollm`) to a prefix-space GPT-2 pipeline
//! and wires BOS into a post-processor; none of that matches the reference tokenizers, so the
//! pipeline is assembled here from `tokenizers` parts.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::{md_str, md_str_array, md_u32_opt};

/// Qwen2 pre-tokenizer regex (as in Qwen's tokenizer.json): single digits.
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama-3 pre-tokenizer regex: digits in groups of up to three.
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml `llama_token_type` values that mark a token matched verbatim in text.
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

/// Texts llama.cpp also treats as end-of-generation when they are control tokens.
const EOG_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
];

/// Special-token settings of a Hugging Face model directory that live outside
/// `tokenizer.json` (`config.json`, `generation_config.json`, `tokenizer_config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HfSpecialTokens {
    /// `eos_token_id` of `config.json` and `generation_config.json` (each an id or a list).
    pub eos_token_ids: Vec<u32>,
    /// `bos_token` of `tokenizer_config.json` (a token text).
    pub bos_token: Option<String>,
    /// `bos_token_id` of `generation_config.json` or `config.json`, used without `bos_token`.
    pub bos_token_id: Option<u32>,
    /// `add_bos_token` of `tokenizer_config.json`.
    pub add_bos_token: Option<bool>,
}

/// The interpreter's tokenizer, with two encoders: one that recognises control tokens (for the
/// program's fixed prompt parts) and one that never does (for user input).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    with_specials: tokenizers::Tokenizer,
    plain: tokenizers::Tokenizer,
    eog: Vec<u32>,
    bos: Option<u32>,
    add_bos: bool,
    vocab_size: usize,
    /// Bytes of the longest vocabulary entry as stored (never fewer than the bytes it decodes
    /// to: a byte-level symbol is at least one byte of UTF-8): bounds the text a token covers.
    max_token_bytes: usize,
}

/// How far the NFC normaliser can shrink text, in bytes (three Hangul jamo of 3 bytes each
/// compose to one 3-byte syllable).
const NORMALIZER_SHRINK: usize = 3;

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let model = md_str(ct, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::UnsupportedTokenizer(format!(
                "tokenizer.ggml.model `{model}` (only byte-level BPE `gpt2` is supported)"
            )));
        }
        let tokens = md_str_array(ct, "tokenizer.ggml.tokens")?;
        let merges = md_str_array(ct, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("malformed merge `{m}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        let token_types = token_types(ct, tokens.len())?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(Error::tokenizer)?;
        let mut tok = tokenizers::Tokenizer::new(bpe);

        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("gpt2");
        match pre {
            "qwen2" => {
                tok.with_normalizer(Some(NFC)).map_err(Error::tokenizer)?;
                tok.with_pre_tokenizer(Some(split_then_bytes(REGEX_QWEN2)?));
            }
            "llama3" | "llama-bpe" | "smaug-bpe" => {
                tok.with_pre_tokenizer(Some(split_then_bytes(REGEX_LLAMA3)?));
            }
            // SmolLM2: every digit alone, then GPT-2 byte-level splitting without prefix space.
            "smollm" => {
                let seq = Sequence::new(vec![
                    Digits::new(true).into(),
                    ByteLevel::new(false, true, true).into(),
                ]);
                tok.with_pre_tokenizer(Some(PreTokenizerWrapper::from(seq)));
            }
            "gpt2" | "default" => {
                tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            }
            other => {
                return Err(Error::UnsupportedTokenizer(format!(
                    "pre-tokenizer `{other}` (supported: qwen2, llama3, llama-bpe, smaug-bpe, \
                     smollm, gpt2)"
                )))
            }
        }
        tok.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));

        // Control and user-defined tokens are matched verbatim in the program's fixed text.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, ty)| matches!(**ty, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tok.add_special_tokens(specials).map_err(Error::tokenizer)?;

        let mut plain = tok.clone();
        plain.set_encode_special_tokens(true);

        let mut eog = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(id) = md_u32_opt(ct, key)? {
                eog.push(id);
            }
        }
        for (id, (t, ty)) in tokens.iter().zip(&token_types).enumerate() {
            if *ty == TOKEN_TYPE_CONTROL && EOG_TEXTS.contains(&t.as_str()) {
                eog.push(id as u32);
            }
        }
        eog.sort_unstable();
        eog.dedup();

        let bos = md_u32_opt(ct, "tokenizer.ggml.bos_token_id")?;
        let add_bos = matches!(
            ct.metadata.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );
        Ok(Self {
            with_specials: tok,
            plain,
            eog,
            bos,
            add_bos,
            vocab_size: tokens.len(),
            max_token_bytes: tokens.iter().map(String::len).max().unwrap_or(1).max(1),
        })
    }

    /// Reads only the metadata of a GGUF file and builds its tokenizer.
    pub fn from_gguf_file(path: &std::path::Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let ct = crate::gguf::read_content(&mut std::io::BufReader::new(f))?;
        Self::from_gguf(&ct)
    }

    /// Builds the tokenizer from a Hugging Face `tokenizer.json` (its bytes) and the special
    /// tokens the model directory's other files declare (see [`HfSpecialTokens`]).
    ///
    /// The program encoder is `tokenizer.json` as it is: its added tokens are matched verbatim.
    /// The input encoder is the same pipeline built without any added token, so no text can
    /// become a control or added token (`<|im_end|>` or `<think>` in an input stay characters).
    /// Generation ends on the declared eos ids and on special added tokens whose text is a
    /// known end-of-turn marker; BOS is prepended when `add_bos_token` says so or, without that
    /// flag, when the post-processor would add it.
    pub fn from_tokenizer_json(json: &[u8], specials: &HfSpecialTokens) -> Result<Self> {
        let with_specials = tokenizers::Tokenizer::from_bytes(json).map_err(Error::tokenizer)?;
        let mut doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        if let Some(added) = doc.get_mut("added_tokens") {
            *added = serde_json::Value::Array(Vec::new());
        }
        let plain = tokenizers::Tokenizer::from_bytes(doc.to_string()).map_err(Error::tokenizer)?;

        let added = with_specials.get_added_tokens_decoder();
        let mut eog = specials.eos_token_ids.clone();
        eog.extend(
            added
                .iter()
                .filter(|(_, t)| t.special && EOG_TEXTS.contains(&t.content.as_str()))
                .map(|(id, _)| *id),
        );
        eog.sort_unstable();
        eog.dedup();

        let bos = match &specials.bos_token {
            Some(text) => Some(with_specials.token_to_id(text).ok_or_else(|| {
                Error::Tokenizer(format!("bos_token `{text}` is not in tokenizer.json"))
            })?),
            None => specials.bos_token_id,
        };
        let add_bos = match specials.add_bos_token {
            Some(flag) => flag,
            None => {
                let probe = with_specials.encode("", true).map_err(Error::tokenizer)?;
                bos.is_some() && probe.get_ids().first() == bos.as_ref()
            }
        };
        if add_bos && bos.is_none() {
            tracing::warn!("add_bos_token is set but the model declares no BOS token");
        }
        let vocab_size = with_specials.get_vocab_size(true);
        let max_token_bytes = with_specials
            .get_vocab(true)
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(1)
            .max(1);
        tracing::debug!(vocab_size, ?eog, ?bos, add_bos, "tokenizer.json loaded");
        Ok(Self {
            with_specials,
            plain,
            eog,
            bos,
            add_bos,
            vocab_size,
            max_token_bytes,
        })
    }

    /// The most bytes of input text that can encode to `tokens` tokens or fewer: longer input
    /// cannot fit, so it is refused before the (memory-hungry) encoder ever sees it.
    pub fn max_input_bytes(&self, tokens: usize) -> usize {
        tokens
            .saturating_mul(self.max_token_bytes)
            .saturating_mul(NORMALIZER_SHRINK)
    }

    /// Encodes program text: control tokens such as `<|im_start|>` become their ids.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .with_specials
            .encode_fast(text, false)
            .map_err(Error::tokenizer)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes untrusted text: control-token strings are tokenized as ordinary characters.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .plain
            .encode_fast(text, false)
            .map_err(Error::tokenizer)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes generated ids to text, dropping control tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.with_specials
            .decode(ids, true)
            .map_err(Error::tokenizer)
    }

    /// Every token id that ends generation (eos, eot, eom and known end-of-turn control tokens).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// The BOS id to prepend to a prompt, when the model asks for one.
    pub fn bos_to_prepend(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Decodes ids to text, control tokens spelled out (`<|im_end|>`).
    pub fn decode_with_specials(&self, ids: &[u32]) -> Result<String> {
        self.with_specials
            .decode(ids, false)
            .map_err(Error::tokenizer)
    }

    /// The first control token that `text` spells (such as `<|im_end|>`), if any: in program
    /// text (a prompt template) that text becomes the token itself; in an input it never does.
    pub fn first_control_token(&self, text: &str) -> Result<Option<String>> {
        let ids = self.encode_with_specials(text)?;
        if ids == self.encode_plain(text)? {
            return Ok(None);
        }
        let added = self.with_specials.get_added_tokens_decoder();
        Ok(Some(
            ids.iter()
                .find_map(|id| added.get(id).map(|t| t.content.clone()))
                .unwrap_or_else(|| "control-token text".into()),
        ))
    }

    /// The tokenizer as a Hugging Face `tokenizer.json` document (control tokens recognised).
    pub fn to_json(&self) -> Result<String> {
        self.with_specials.to_string(true).map_err(Error::tokenizer)
    }
}

fn split_then_bytes(regex: &str) -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(Error::tokenizer)?;
    Ok(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, false, false).into(),
    ])
    .into())
}

fn token_types(ct: &Content, n: usize) -> Result<Vec<u32>> {
    let key = "tokenizer.ggml.token_type";
    let Some(v) = ct.metadata.get(key) else {
        return Ok(vec![1; n]);
    };
    let bad = || Error::BadMetadata {
        key: key.to_string(),
        expected: "array of integers, one per token",
    };
    let arr = v.to_vec().map_err(|_| bad())?;
    if arr.len() != n {
        return Err(bad());
    }
    arr.iter()
        .map(|v| match v {
            Value::I32(x) => u32::try_from(*x).map_err(|_| bad()),
            Value::U32(x) => Ok(*x),
            _ => Err(bad()),
        })
        .collect()
}
