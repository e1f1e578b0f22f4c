//! A serialisable description of a `.paw` file, for `paw inspect` (human and `--json`).

use std::fmt;

use serde::Serialize;

use crate::contract::OutputContract;
use crate::error::Result;
use crate::layout::{Compression, FLAG_MUST_UNDERSTAND};
use crate::program::{GenerationConfig, InterpreterId, Provenance};
use crate::reader::ProgramView;

/// Everything a `.paw` file says, without tensor contents.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub id: String,
    pub file_len: u64,
    pub format_version: String,
    pub header_len: u32,
    pub sections: Vec<SectionInfo>,
    pub spec: String,
    pub pseudo_program: String,
    pub prompt_template: String,
    pub interpreter: InterpreterId,
    pub generation: GenerationConfig,
    /// The output contract; `null` for free text bounded only by `max_tokens`.
    pub contract: Option<OutputContract>,
    pub provenance: Provenance,
    pub adapter: Option<AdapterInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionInfo {
    /// Name, or `kind N` for a kind this build skipped.
    pub kind: String,
    pub kind_code: u32,
    pub must_understand: bool,
    pub compression: String,
    pub offset: u64,
    pub stored_len: u64,
    pub uncompressed_len: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub rank: u32,
    pub alpha: f32,
    /// `alpha / rank`, the factor applied to `B · A`.
    pub scale: f32,
    pub parameters: u64,
    pub tensor_bytes: u64,
    pub tensors: Vec<TensorInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    /// llama.cpp name, e.g. `blk.0.attn_q.lora_a`.
    pub name: String,
    pub layer: u32,
    pub module: String,
    pub dtype: String,
    pub shape: [u64; 2],
    pub file_offset: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// Parses and fully checks `bytes`, then describes them.
pub fn inspect(bytes: &[u8]) -> Result<Inspection> {
    Ok(Inspection::from_view(&ProgramView::parse(bytes)?))
}

impl Inspection {
    pub fn from_view(v: &ProgramView<'_>) -> Self {
        let sections = v
            .sections
            .iter()
            .map(|e| SectionInfo {
                kind: e.kind.to_string(),
                kind_code: e.kind.0,
                must_understand: e.flags & FLAG_MUST_UNDERSTAND != 0,
                compression: Compression::from_code(e.compression_code).map_or_else(
                    || format!("code {}", e.compression_code),
                    |c| c.as_str().to_owned(),
                ),
                offset: e.offset,
                stored_len: e.stored_len,
                uncompressed_len: e.uncompressed_len,
                blake3: hex::encode(e.hash),
            })
            .collect();
        let adapter = v.adapter.as_ref().map(|a| AdapterInfo {
            rank: a.rank,
            alpha: a.alpha,
            scale: a.alpha / a.rank as f32,
            parameters: a
                .tensors
                .iter()
                .map(|t| t.shape[0].saturating_mul(t.shape[1]))
                .sum(),
            tensor_bytes: a.tensors.iter().map(|t| t.bytes.len() as u64).sum(),
            tensors: a
                .tensors
                .iter()
                .map(|t| TensorInfo {
                    name: t.name.to_string(),
                    layer: t.name.layer,
                    module: t.name.module.to_string(),
                    dtype: t.dtype.to_string(),
                    shape: t.shape,
                    file_offset: t.file_offset,
                    bytes: t.bytes.len() as u64,
                    blake3: blake3::hash(t.bytes).to_hex().to_string(),
                })
                .collect(),
        });
        Self {
            id: v.id.to_string(),
            file_len: v.header.file_len,
            format_version: format!("{}.{}", v.header.major, v.header.minor),
            header_len: v.header.header_len,
            sections,
            spec: v.spec.clone(),
            pseudo_program: v.pseudo_program.clone(),
            prompt_template: v.prompt_template.clone(),
            interpreter: v.interpreter.clone(),
            generation: v.generation.clone(),
            contract: v.contract.clone(),
            provenance: v.provenance.clone(),
            adapter,
        }
    }
}

/// The human form: a summary, the section table, then the texts.
impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "id:           {}", self.id)?;
        writeln!(
            f,
            "format:       {} ({} bytes)",
            self.format_version, self.file_len
        )?;
        let i = &self.interpreter;
        writeln!(
            f,
            "interpreter:  {} ({}) weights {} tokenizer {}",
            i.name, i.architecture, i.weights_hash, i.tokenizer_hash
        )?;
        let g = &self.generation;
        writeln!(
            f,
            "generation:   max_tokens {} temperature {} stop {:?}",
            g.max_tokens, g.temperature, g.stop
        )?;
        match &self.contract {
            Some(c) => writeln!(f, "contract:     {c}")?,
            None => writeln!(f, "contract:     none (free text up to max_tokens)")?,
        }
        let p = &self.provenance;
        writeln!(
            f,
            "compiler:     {} {} seed {} teacher {}",
            p.compiler,
            p.compiler_version,
            p.seed,
            p.teacher_hash.as_deref().unwrap_or("-")
        )?;
        for (k, v) in &p.hyperparameters {
            writeln!(f, "  hyperparameter {k} = {v}")?;
        }
        for (k, v) in &p.report {
            writeln!(f, "  report {k} = {v}")?;
        }
        writeln!(f, "sections:")?;
        for s in &self.sections {
            writeln!(
                f,
                "  {:<13} @{:<8} {:>9} B stored, {:>9} B raw, {:<4} {} b3:{}",
                s.kind,
                s.offset,
                s.stored_len,
                s.uncompressed_len,
                s.compression,
                if s.must_understand {
                    "must-understand"
                } else {
                    "optional"
                },
                &s.blake3[..16],
            )?;
        }
        match &self.adapter {
            None => writeln!(f, "adapter:      none (prompt-only program)")?,
            Some(a) => {
                writeln!(
                    f,
                    "adapter:      rank {} alpha {} (scale {}), {} tensors, {} parameters, {} bytes",
                    a.rank, a.alpha, a.scale, a.tensors.len(), a.parameters, a.tensor_bytes
                )?;
                for t in &a.tensors {
                    writeln!(
                        f,
                        "  {:<28} {:<5} [{}, {}] @{} {} B",
                        t.name, t.dtype, t.shape[0], t.shape[1], t.file_offset, t.bytes
                    )?;
                }
            }
        }
        writeln!(f, "--- spec ---\n{}", self.spec)?;
        writeln!(f, "--- pseudo-program ---\n{}", self.pseudo_program)?;
        write!(f, "--- prompt template ---\n{}", self.prompt_template)
    }
}
