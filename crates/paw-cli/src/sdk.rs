//! The published Program-as-Weights SDK's `.paw` (`paw import`, `paw export --format
//! paw-sdk`): a ZIP of exactly `adapter.gguf` (a llama.cpp GGUF LoRA: `general.type =
//! adapter`, `adapter.type = lora`, `adapter.lora.alpha`, tensors `blk.N.STEM.weight.lora_a` /
//! `lora_b`), `prompt_template.txt` (the rendered prompt with exactly one
//! `{INPUT_PLACEHOLDER}`) and `meta.json` (a JSON object: spec, interpreter name, rank, alpha,
//! the SDK's program id; fields paw does not know are kept out, not refused).
//!
//! Reading treats the archive as hostile: at most 16 entries, names exactly those three (no
//! directories, no paths, no duplicates), sizes bounded before and while reading, the GGUF read
//! by paw-rt's checked reader, every tensor a known type with the size its shape gives, every
//! (layer, module) with both halves, one rank, and `meta.json`'s rank and alpha (if given)
//! equal to the adapter's.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use anyhow::{bail, ensure, Context, Result};
use paw_format::{
    Adapter, LoraPair, Program, TargetModule, TensorData, TensorDtype, INPUT_PLACEHOLDER,
};

pub const ADAPTER_FILE: &str = "adapter.gguf";
pub const TEMPLATE_FILE: &str = "prompt_template.txt";
pub const META_FILE: &str = "meta.json";
const MAX_ENTRIES: usize = 16;
/// A rank-64 adapter on every module of a 4B model in f16 is ~250 MB.
const MAX_ADAPTER_BYTES: u64 = 1 << 30;
const MAX_TEXT_BYTES: u64 = 1 << 20;

/// What a published `.paw` holds.
#[derive(Debug)]
pub struct SdkProgram {
    pub adapter: Adapter,
    pub template: String,
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl SdkProgram {
    /// `meta.json`'s string field `key`, if present.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(serde_json::Value::as_str)
    }
}

/// Reads a published `.paw` from its bytes.
pub fn read_sdk(bytes: &[u8]) -> Result<SdkProgram> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).context("not a ZIP archive")?;
    ensure!(
        zip.len() <= MAX_ENTRIES,
        "the archive has {} entries; a published .paw has 3",
        zip.len()
    );
    let mut files: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).context("reading the ZIP directory")?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .map_err(|e| anyhow::anyhow!("an entry name is not valid: {e}"))?;
        let (known, limit) = match name.as_str() {
            ADAPTER_FILE => (ADAPTER_FILE, MAX_ADAPTER_BYTES),
            TEMPLATE_FILE => (TEMPLATE_FILE, MAX_TEXT_BYTES),
            META_FILE => (META_FILE, MAX_TEXT_BYTES),
            other => bail!(
                "unexpected entry {other:?}: a published .paw holds only {ADAPTER_FILE}, \
                 {TEMPLATE_FILE} and {META_FILE}"
            ),
        };
        ensure!(!files.contains_key(known), "entry {known} appears twice");
        ensure!(
            entry.size() <= limit,
            "entry {known} declares {} bytes; at most {limit} are accepted",
            entry.size()
        );
        let mut data = Vec::new();
        (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("reading entry {known}"))?;
        ensure!(
            data.len() as u64 <= limit,
            "entry {known} holds more than {limit} bytes"
        );
        files.insert(known, data);
    }
    let mut take = |name: &'static str| {
        files
            .remove(name)
            .with_context(|| format!("the archive has no {name}"))
    };
    let (adapter_bytes, template, meta) =
        (take(ADAPTER_FILE)?, take(TEMPLATE_FILE)?, take(META_FILE)?);
    let template = String::from_utf8(template).context("prompt_template.txt is not UTF-8")?;
    let found = template.matches(INPUT_PLACEHOLDER).count();
    ensure!(
        found == 1,
        "prompt_template.txt holds {INPUT_PLACEHOLDER} {found} times; exactly once is required"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&meta).context("meta.json is not valid JSON")?;
    let serde_json::Value::Object(meta) = meta else {
        bail!("meta.json is not a JSON object");
    };
    for key in ["spec", "interpreter", "program_id", "compiler"] {
        if let Some(v) = meta.get(key) {
            ensure!(v.is_string(), "meta.json: `{key}` is not a string");
        }
    }
    let adapter = read_gguf_lora(&adapter_bytes)?;
    if let Some(rank) = meta.get("rank") {
        ensure!(
            rank.as_u64() == Some(u64::from(adapter.rank)),
            "meta.json: rank {rank} but the adapter's is {}",
            adapter.rank
        );
    }
    if let Some(alpha) = meta.get("alpha") {
        let same = alpha
            .as_f64()
            .is_some_and(|a| (a - f64::from(adapter.alpha)).abs() <= 1e-6 * a.abs().max(1.0));
        ensure!(
            same,
            "meta.json: alpha {alpha} but the adapter's is {}",
            adapter.alpha
        );
    }
    Ok(SdkProgram {
        adapter,
        template,
        meta,
    })
}

/// The LoRA of a llama.cpp GGUF adapter, checked.
fn read_gguf_lora(bytes: &[u8]) -> Result<Adapter> {
    use candle_core::quantized::gguf_file::Value;
    ensure!(
        bytes.starts_with(b"GGUF"),
        "adapter.gguf is not a GGUF file"
    );
    let mut reader = Cursor::new(bytes);
    let content = paw_rt::read_content(&mut reader).context("adapter.gguf")?;
    let text = |key: &str| match content.metadata.get(key) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    ensure!(
        text("general.type") == Some("adapter") && text("adapter.type") == Some("lora"),
        "adapter.gguf is not a LoRA adapter (general.type = adapter, adapter.type = lora)"
    );
    let alpha = match content.metadata.get("adapter.lora.alpha") {
        Some(Value::F32(a)) if a.is_finite() && *a > 0.0 => *a,
        _ => bail!("adapter.gguf has no positive adapter.lora.alpha"),
    };
    let mut halves: BTreeMap<(u32, usize), [Option<TensorData>; 2]> = BTreeMap::new();
    for (name, info) in &content.tensor_infos {
        let (layer, module, half) = parse_tensor_name(name)
            .with_context(|| format!("adapter.gguf: unexpected tensor {name:?}"))?;
        use candle_core::quantized::GgmlDType;
        let dtype = match info.ggml_dtype {
            GgmlDType::F32 => TensorDtype::F32,
            GgmlDType::F16 => TensorDtype::F16,
            GgmlDType::Q8_0 => TensorDtype::Q8_0,
            GgmlDType::Q4_0 => TensorDtype::Q4_0,
            other => bail!("{name}: type {other:?} is not supported (f32, f16, q8_0, q4_0)"),
        };
        let dims = info.shape.dims();
        ensure!(dims.len() == 2, "{name}: {} dimensions, not 2", dims.len());
        let shape = [dims[0] as u64, dims[1] as u64];
        let len = dtype.byte_len(shape).with_context(|| name.clone())?;
        let start = content
            .tensor_data_offset
            .checked_add(info.offset)
            .context("tensor offset overflows")?;
        let end = start.checked_add(len).context("tensor size overflows")?;
        ensure!(
            end <= bytes.len() as u64,
            "{name}: its data lies past the end of the file"
        );
        reader.seek(SeekFrom::Start(start))?;
        let mut data = vec![0u8; len as usize];
        reader.read_exact(&mut data)?;
        let slot = &mut halves.entry((layer, module.index())).or_default()[half];
        ensure!(slot.is_none(), "{name} appears twice");
        *slot = Some(TensorData {
            dtype,
            shape,
            bytes: data,
        });
    }
    ensure!(!halves.is_empty(), "adapter.gguf holds no LoRA tensor");
    let mut pairs = Vec::new();
    let mut rank = None;
    for ((layer, module), [a, b]) in halves {
        let module = TargetModule::ALL[module];
        let (Some(a), Some(b)) = (a, b) else {
            bail!("layer {layer} {module:?}: only one of lora_a and lora_b");
        };
        let r = a.shape[0];
        ensure!(
            b.shape[1] == r && *rank.get_or_insert(r) == r,
            "layer {layer} {module:?}: ranks disagree"
        );
        pairs.push(LoraPair {
            layer,
            module,
            a,
            b,
        });
    }
    let rank = u32::try_from(rank.unwrap_or(0)).context("rank too large")?;
    let adapter = Adapter { rank, alpha, pairs };
    adapter.validate().context("adapter.gguf")?;
    Ok(adapter)
}

/// `blk.N.STEM.weight.lora_a|lora_b` -> (N, module, 0 for A / 1 for B).
fn parse_tensor_name(name: &str) -> Option<(u32, TargetModule, usize)> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (stem, half) = rest.rsplit_once(".weight.")?;
    let half = match half {
        "lora_a" => 0,
        "lora_b" => 1,
        _ => return None,
    };
    let module = TargetModule::ALL
        .into_iter()
        .find(|m| m.gguf_stem() == stem)?;
    Some((layer.parse().ok()?, module, half))
}

/// Writes `program` as a published `.paw` (entries stored uncompressed with a fixed
/// timestamp, so the same program gives the same bytes).
pub fn write_sdk(program: &Program, id: &paw_format::ProgramId) -> Result<Vec<u8>> {
    let adapter = program
        .adapter
        .as_ref()
        .context("the published format needs a LoRA adapter; this program has none")?;
    let mut gguf = Vec::new();
    paw_format::export::write_gguf_lora(program, &mut gguf)?;
    let hex = id.to_string();
    let hex = hex.trim_start_matches("b3:");
    let meta = serde_json::json!({
        "program_id": &hex[..20.min(hex.len())],
        "spec": program.spec,
        "compiler": format!("{} {}", program.provenance.compiler, program.provenance.compiler_version),
        "interpreter": program.interpreter.name,
        "rank": adapter.rank,
        "alpha": adapter.alpha,
        "paw_program": id.to_string(),
        "paw_interpreter_weights_hash": program.interpreter.weights_hash,
    });
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(gguf.len() as u64 >= u64::from(u32::MAX));
    for (name, bytes) in [
        (ADAPTER_FILE, gguf),
        (TEMPLATE_FILE, program.prompt_template.clone().into_bytes()),
        (META_FILE, serde_json::to_vec_pretty(&meta)?),
    ] {
        out.start_file(name, options)?;
        out.write_all(&bytes)?;
    }
    Ok(out.finish()?.into_inner())
}

/// A paw program from a published one, for the interpreter `interpreter`.
pub fn to_program(sdk: SdkProgram, interpreter: paw_format::InterpreterId) -> Program {
    let mut hyperparameters = BTreeMap::new();
    hyperparameters.insert("rank".to_owned(), sdk.adapter.rank.to_string());
    hyperparameters.insert("alpha".to_owned(), sdk.adapter.alpha.to_string());
    if let Some(id) = sdk.meta_str("program_id") {
        hyperparameters.insert("sdk_program_id".to_owned(), id.to_owned());
    }
    let spec = sdk.meta_str("spec").unwrap_or_default().to_owned();
    let compiler_version = sdk.meta_str("compiler").unwrap_or("unknown").to_owned();
    Program {
        spec,
        pseudo_program: String::new(),
        prompt_template: sdk.template,
        interpreter,
        adapter: Some(sdk.adapter),
        generation: paw_format::GenerationConfig {
            max_tokens: 128,
            stop: Vec::new(),
            temperature: 0.0,
        },
        contract: None,
        provenance: paw_format::Provenance {
            compiler: "programasweights-sdk (imported)".to_owned(),
            compiler_version,
            teacher_hash: None,
            seed: 0,
            hyperparameters,
            report: BTreeMap::new(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            out.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(bytes).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", read_sdk(bytes).unwrap_err())
    }

    #[test]
    fn tensor_names_follow_llama_cpp() {
        assert_eq!(
            parse_tensor_name("blk.12.attn_q.weight.lora_a"),
            Some((12, TargetModule::Q, 0))
        );
        assert_eq!(
            parse_tensor_name("blk.0.ffn_down.weight.lora_b"),
            Some((0, TargetModule::Down, 1))
        );
        for bad in [
            "blk.x.attn_q.weight.lora_a",
            "blk.1.attn_qq.weight.lora_a",
            "output.weight",
        ] {
            assert_eq!(parse_tensor_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostile_archives_are_refused_with_the_reason() {
        let t = b"Q: {INPUT_PLACEHOLDER}".as_slice();
        let m = b"{}".as_slice();
        assert!(err(b"not a zip").contains("not a ZIP"));
        assert!(err(&zip_of(&[
            ("../adapter.gguf", b"GGUF"),
            (TEMPLATE_FILE, t),
            (META_FILE, m)
        ]))
        .contains("unexpected entry"));
        assert!(err(&zip_of(&[(TEMPLATE_FILE, t), (META_FILE, m)])).contains("no adapter.gguf"));
        let two = b"{INPUT_PLACEHOLDER} {INPUT_PLACEHOLDER}".as_slice();
        assert!(err(&zip_of(&[
            (ADAPTER_FILE, b"GGUF"),
            (TEMPLATE_FILE, two),
            (META_FILE, m)
        ]))
        .contains("2 times"));
        assert!(err(&zip_of(&[
            (ADAPTER_FILE, b"GGUF"),
            (TEMPLATE_FILE, t),
            (META_FILE, b"[1]")
        ]))
        .contains("not a JSON object"));
        assert!(err(&zip_of(&[
            (ADAPTER_FILE, b"ZZZZ"),
            (TEMPLATE_FILE, t),
            (META_FILE, m)
        ]))
        .contains("not a GGUF"));
        assert!(err(&zip_of(&[
            (ADAPTER_FILE, b"GGUF\x03\0\0\0"),
            (TEMPLATE_FILE, t),
            (META_FILE, m)
        ]))
        .contains("adapter.gguf"));
        let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}"), t)).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        assert!(err(&zip_of(&refs)).contains("20 entries"));
    }

    /// Flipped bytes in a valid archive give an error or a program, never a panic.
    #[test]
    fn corrupted_archives_never_panic() {
        let f = |n: usize| paw_testkit::f32_tensor([1, n as u64], &vec![0.5; n]);
        let b = |n: usize| paw_testkit::f32_tensor([n as u64, 1], &vec![0.25; n]);
        let adapter = Adapter {
            rank: 1,
            alpha: 2.0,
            pairs: vec![LoraPair {
                layer: 0,
                module: TargetModule::Q,
                a: f(8),
                b: b(8),
            }],
        };
        let identity = paw_format::InterpreterId {
            architecture: "qwen2".into(),
            name: "tiny".into(),
            weights_hash: format!("b3:{}", "1".repeat(64)),
            tokenizer_hash: format!("b3:{}", "2".repeat(64)),
        };
        let program = paw_testkit::program(&identity, "Q: {INPUT_PLACEHOLDER}", Some(adapter));
        let id = paw_format::ProgramId::of_bytes(&program.to_bytes().unwrap());
        let good = write_sdk(&program, &id).unwrap();
        let back = read_sdk(&good).unwrap();
        assert_eq!(Some(&back.adapter), program.adapter.as_ref());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] ^= 1 << (next() % 8);
            }
            match read_sdk(&bytes) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 0 && ok + refused == 2000);
    }
}
