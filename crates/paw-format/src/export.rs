//! Export of a program's adapter as a llama.cpp GGUF LoRA adapter (GGUF v3), so the same program
//! runs in llama.cpp (`--lora FILE`, `Llama(lora_path=...)`).
//!
//! Layout written (all little-endian): magic `GGUF`, version 3, tensor count, key-value count;
//! the keys `general.architecture`, `general.type = "adapter"`, `general.alignment = 32`,
//! `adapter.type = "lora"`, `adapter.lora.alpha` (f32); one tensor info per tensor; padding to
//! 32; the tensor data, each tensor padded to 32 bytes.
//!
//! Tensors are `blk.{layer}.{stem}.weight.lora_a` / `.lora_b` (stems from
//! [`crate::TargetModule::gguf_stem`]). GGUF lists dimensions innermost first, so A, stored row-major as
//! `[rank, in]`, has `ne = [in, rank]` and B (`[out, rank]`) has `ne = [rank, out]`: exactly what
//! llama.cpp checks against the base weight (`ne = [in, out]`). Row-major bytes with blocks along
//! the columns are ggml's layout, so Q8_0/Q4_0/F16/F32 bytes are copied unchanged.
//!
//! The output is a pure function of the program: same program, same bytes.

use std::io::Write;

use crate::error::FormatError;
use crate::error::TensorRole;
use crate::program::{Program, TensorData};

/// GGUF data alignment written (and declared in `general.alignment`).
pub const GGUF_ALIGNMENT: u64 = 32;

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const GGUF_VERSION: u32 = 3;

// GGUF metadata value type codes.
const GGUF_TYPE_UINT32: u32 = 4;
const GGUF_TYPE_FLOAT32: u32 = 6;
const GGUF_TYPE_STRING: u32 = 8;

/// Why a program could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the program has no LoRA adapter to export (prompt-only program)")]
    NoAdapter,
    #[error("the program is invalid: {0}")]
    Invalid(#[from] FormatError),
    #[error("writing the GGUF adapter failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes `program`'s adapter as a GGUF v3 LoRA adapter that llama.cpp loads for a base model
/// of architecture `program.interpreter.architecture`.
///
/// The program is validated first (shapes, byte sizes, pair order), so every tensor written is
/// well-formed. Bytes are written sequentially; wrap a file in a `BufWriter`.
pub fn write_gguf_lora(program: &Program, out: &mut impl Write) -> Result<(), ExportError> {
    program.validate()?;
    let adapter = program.adapter.as_ref().ok_or(ExportError::NoAdapter)?;

    let tensors: Vec<(String, &TensorData)> = adapter
        .pairs
        .iter()
        .flat_map(|pair| {
            [(TensorRole::A, &pair.a), (TensorRole::B, &pair.b)].map(|(role, data)| {
                let suffix = match role {
                    TensorRole::A => "lora_a",
                    TensorRole::B => "lora_b",
                };
                (
                    format!(
                        "blk.{}.{}.weight.{suffix}",
                        pair.layer,
                        pair.module.gguf_stem()
                    ),
                    data,
                )
            })
        })
        .collect();

    let mut head = Vec::new();
    head.extend_from_slice(GGUF_MAGIC);
    head.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&5u64.to_le_bytes());
    put_kv_string(
        &mut head,
        "general.architecture",
        &program.interpreter.architecture,
    );
    put_kv_string(&mut head, "general.type", "adapter");
    put_str(&mut head, "general.alignment");
    head.extend_from_slice(&GGUF_TYPE_UINT32.to_le_bytes());
    head.extend_from_slice(&(GGUF_ALIGNMENT as u32).to_le_bytes());
    put_kv_string(&mut head, "adapter.type", "lora");
    put_str(&mut head, "adapter.lora.alpha");
    head.extend_from_slice(&GGUF_TYPE_FLOAT32.to_le_bytes());
    head.extend_from_slice(&adapter.alpha.to_le_bytes());

    // Offsets are relative to the start of the data section; llama.cpp expects each tensor at
    // the previous one's end rounded up to the alignment.
    let mut offset = 0u64;
    for (name, data) in &tensors {
        put_str(&mut head, name);
        head.extend_from_slice(&2u32.to_le_bytes());
        let [rows, cols] = data.shape;
        head.extend_from_slice(&cols.to_le_bytes());
        head.extend_from_slice(&rows.to_le_bytes());
        head.extend_from_slice(&u32::from(data.dtype.ggml_type()).to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset += padded(data.bytes.len() as u64);
    }
    head.resize(padded(head.len() as u64) as usize, 0);
    out.write_all(&head)?;

    let zeros = [0u8; GGUF_ALIGNMENT as usize];
    for (_, data) in &tensors {
        out.write_all(&data.bytes)?;
        // The reader reads the data section as the sum of padded sizes, the last one included.
        let pad = padded(data.bytes.len() as u64) - data.bytes.len() as u64;
        out.write_all(&zeros[..pad as usize])?;
    }
    Ok(())
}

fn padded(n: u64) -> u64 {
    n.div_ceil(GGUF_ALIGNMENT) * GGUF_ALIGNMENT
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_kv_string(out: &mut Vec<u8>, key: &str, value: &str) {
    put_str(out, key);
    out.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
    put_str(out, value);
}

/// The program's output contract in a form llama.cpp takes beside the exported adapter:
/// `(file suffix, text)`. A label set becomes plain GBNF (`--grammar-file`); a JSON Schema is
/// written as is (`--json-schema-file`); a pattern or Lark grammar becomes a grammar file for a
/// llama.cpp built with llguidance (`%llguidance` header, `--grammar-file`). Free text has no
/// grammar (bound the answer with `-n`), so `None`.
pub fn llama_cpp_contract(contract: &crate::OutputContract) -> Option<(&'static str, String)> {
    use crate::OutputContract as C;
    match contract {
        C::Labels { labels } => {
            let alternatives: Vec<String> = labels.iter().map(|l| gbnf_literal(l)).collect();
            Some(("gbnf", format!("root ::= {}\n", alternatives.join(" | "))))
        }
        C::JsonSchema { schema } => Some(("schema.json", schema.clone())),
        C::Pattern { regex } => Some((
            "llguidance.gbnf",
            format!("%llguidance {{}}\nstart: /{}/\n", regex.replace('/', "\\/")),
        )),
        C::Grammar { lark } => Some(("llguidance.gbnf", format!("%llguidance {{}}\n{lark}"))),
        C::Free { .. } => None,
    }
}

/// A GBNF string literal: quotes, backslashes and control characters escaped.
fn gbnf_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use candle_core::quantized::gguf_file::{Content, Value};
    use candle_core::quantized::GgmlDType;
    use candle_core::Device;

    use super::*;
    use crate::program::{
        Adapter, GenerationConfig, InterpreterId, LoraPair, Provenance, TargetModule, TensorDtype,
    };

    /// A small deterministic adapter: `layers` layers, the given modules, rank 32 (one block),
    /// in = 64, out = 96, values from a fixed integer sequence.
    fn program(dtype: TensorDtype, layers: u32, modules: &[TargetModule]) -> Program {
        let rank = 32u64;
        let (inp, outp) = (64u64, 96u64);
        let mut seed = 0x9e37_79b9u32;
        let mut values = |n: u64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1
                })
                .collect()
        };
        let mut pairs = Vec::new();
        for layer in 0..layers {
            for &module in modules {
                let a = TensorData::from_f32(dtype, [rank, inp], &values(rank * inp)).unwrap();
                let b = TensorData::from_f32(dtype, [outp, rank], &values(outp * rank)).unwrap();
                pairs.push(LoraPair {
                    layer,
                    module,
                    a,
                    b,
                });
            }
        }
        Program {
            spec: "classify".into(),
            pseudo_program: "Task: classify".into(),
            prompt_template: "<|im_start|>user\n{INPUT_PLACEHOLDER}<|im_end|>\n".into(),
            interpreter: InterpreterId {
                architecture: "qwen2".into(),
                name: "test".into(),
                weights_hash: "b3:00".into(),
                tokenizer_hash: "b3:00".into(),
            },
            adapter: Some(Adapter {
                rank: rank as u32,
                alpha: 16.0,
                pairs,
            }),
            generation: GenerationConfig {
                max_tokens: 8,
                stop: Vec::new(),
                temperature: 0.0,
            },
            contract: None,
            provenance: Provenance::unrecorded(),
        }
    }

    fn export(p: &Program) -> Vec<u8> {
        let mut out = Vec::new();
        write_gguf_lora(p, &mut out).unwrap();
        out
    }

    #[test]
    fn export_parses_with_candle_with_names_shapes_and_bytes() {
        for (dtype, ggml) in [
            (TensorDtype::F32, GgmlDType::F32),
            (TensorDtype::F16, GgmlDType::F16),
            (TensorDtype::Q8_0, GgmlDType::Q8_0),
            (TensorDtype::Q4_0, GgmlDType::Q4_0),
        ] {
            let p = program(dtype, 2, &TargetModule::ALL);
            let bytes = export(&p);
            assert_eq!(&bytes[..4], b"GGUF");
            assert_eq!(bytes.len() as u64 % GGUF_ALIGNMENT, 0);
            let mut cursor = Cursor::new(&bytes);
            let ct = Content::read(&mut cursor).unwrap();
            let md = |k: &str| ct.metadata.get(k).unwrap();
            assert!(matches!(md("general.architecture"), Value::String(s) if s == "qwen2"));
            assert!(matches!(md("general.type"), Value::String(s) if s == "adapter"));
            assert!(matches!(md("adapter.type"), Value::String(s) if s == "lora"));
            assert!(matches!(md("adapter.lora.alpha"), Value::F32(a) if *a == 16.0));
            assert!(matches!(md("general.alignment"), Value::U32(32)));
            assert_eq!(ct.tensor_infos.len(), 2 * 7 * 2);
            assert_eq!(ct.tensor_data_offset % GGUF_ALIGNMENT, 0);

            let adapter = p.adapter.as_ref().unwrap();
            for pair in &adapter.pairs {
                let stem = pair.module.gguf_stem();
                for (suffix, data) in [("lora_a", &pair.a), ("lora_b", &pair.b)] {
                    let name = format!("blk.{}.{stem}.weight.{suffix}", pair.layer);
                    let info = ct.tensor_infos.get(&name).unwrap();
                    // candle reports dims outermost first: the row-major [rows, cols].
                    let [rows, cols] = data.shape;
                    assert_eq!(info.shape.dims(), &[rows as usize, cols as usize], "{name}");
                    assert_eq!(info.ggml_dtype, ggml);
                    let start = (ct.tensor_data_offset + info.offset) as usize;
                    assert_eq!(
                        &bytes[start..start + data.bytes.len()],
                        &data.bytes[..],
                        "{name}"
                    );
                    assert_eq!(info.offset % GGUF_ALIGNMENT, 0);
                }
            }
            // candle's own dequantization agrees with paw-format's.
            let pair = &adapter.pairs[3];
            let q = ct
                .tensor(
                    &mut cursor,
                    &format!("blk.0.{}.weight.lora_b", pair.module.gguf_stem()),
                    &Device::Cpu,
                )
                .unwrap();
            let got: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(got, pair.b.to_f32().unwrap());
        }
    }

    #[test]
    fn export_is_deterministic() {
        let p = program(TensorDtype::Q4_0, 3, &[TargetModule::Q, TargetModule::Down]);
        assert_eq!(export(&p), export(&p));
    }

    #[test]
    fn export_refuses_a_prompt_only_program() {
        let mut p = program(TensorDtype::F32, 1, &[TargetModule::Q]);
        p.adapter = None;
        let mut out = Vec::new();
        assert!(matches!(
            write_gguf_lora(&p, &mut out),
            Err(ExportError::NoAdapter)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn export_refuses_an_invalid_program() {
        let mut p = program(TensorDtype::F32, 1, &[TargetModule::Q]);
        if let Some(a) = p.adapter.as_mut() {
            a.pairs[0].a.bytes.pop();
        }
        assert!(matches!(
            write_gguf_lora(&p, &mut Vec::new()),
            Err(ExportError::Invalid(_))
        ));
    }

    #[test]
    fn contracts_export_as_llama_cpp_grammars() {
        use crate::OutputContract as C;
        let labels = C::Labels {
            labels: vec!["ERROR".into(), "say \"hi\"".into(), "a\\b".into()],
        };
        assert_eq!(
            llama_cpp_contract(&labels),
            Some((
                "gbnf",
                "root ::= \"ERROR\" | \"say \\\"hi\\\"\" | \"a\\\\b\"\n".to_string()
            ))
        );
        let pattern = C::Pattern {
            regex: "[0-9]+/[0-9]+".into(),
        };
        assert_eq!(
            llama_cpp_contract(&pattern).map(|(_, t)| t),
            Some("%llguidance {}\nstart: /[0-9]+\\/[0-9]+/\n".to_string())
        );
        assert_eq!(llama_cpp_contract(&C::Free { max_chars: 9 }), None);
    }
}
