//! Parsing and verification of `.paw` bytes. Every length is bounded before allocation, every
//! offset computed with checked arithmetic, every section hash recomputed.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::contract::OutputContract;
use crate::error::{FormatError, Result, TensorName, TensorRole};
use crate::id::ProgramId;
use crate::layout::{
    align_up, Compression, Header, SectionEntry, SectionKind, FLAG_MUST_UNDERSTAND, MAX_FILE_LEN,
    SECTION_ENTRY_LEN,
};
use crate::metadata::{ContractV1, MetadataV1, TensorEntry, TextsV1};
use crate::program::{
    check_pair_order, validate_adapter_header, validate_tensor, validate_texts, Adapter,
    GenerationConfig, InterpreterId, LoraPair, Program, Provenance, TargetModule, TensorData,
    TensorDtype,
};

/// One adapter tensor, borrowed from the file bytes (64-byte aligned within them).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: TensorName,
    pub dtype: TensorDtype,
    pub shape: [u64; 2],
    /// Absolute offset of the first byte in the file.
    pub file_offset: u64,
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct AdapterView<'a> {
    pub rank: u32,
    pub alpha: f32,
    /// A then B for each pair, pairs sorted by (layer, module).
    pub tensors: Vec<TensorView<'a>>,
}

/// A fully checked `.paw` file whose tensor bytes are borrowed, not copied: parse a memory map
/// with this to use the adapter in place.
#[derive(Debug, Clone)]
pub struct ProgramView<'a> {
    pub id: ProgramId,
    pub header: Header,
    /// The section table as stored, including sections this build skipped.
    pub sections: Vec<SectionEntry>,
    pub spec: String,
    pub pseudo_program: String,
    pub prompt_template: String,
    pub interpreter: InterpreterId,
    pub generation: GenerationConfig,
    pub provenance: Provenance,
    pub adapter: Option<AdapterView<'a>>,
    pub contract: Option<OutputContract>,
}

impl<'a> ProgramView<'a> {
    /// Parses and checks `bytes` completely, including every section hash.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let header = Header::decode(bytes)?;
        let sections = read_table(bytes, &header)?;
        let mut metadata = None;
        let mut texts = None;
        let mut index = None;
        let mut data = None;
        let mut contract = None;
        for entry in &sections {
            let content = section_bytes(bytes, entry)?;
            match entry.kind {
                SectionKind::METADATA => metadata = Some(MetadataV1::decode(&content)?),
                SectionKind::TEXTS => texts = Some(TextsV1::decode(&content)?),
                SectionKind::TENSOR_INDEX => index = Some(TensorEntry::decode_all(&content)?),
                SectionKind::TENSOR_DATA => data = Some((entry.offset, content)),
                SectionKind::CONTRACT => {
                    let c = ContractV1::decode(&content)?.into_contract();
                    c.validate()?;
                    contract = Some(c);
                }
                other => {
                    tracing::debug!(kind = other.0, "skipping optional section of unknown kind")
                }
            }
        }
        let metadata = metadata.ok_or(FormatError::MissingSection {
            kind: SectionKind::METADATA,
        })?;
        let texts = texts.ok_or(FormatError::MissingSection {
            kind: SectionKind::TEXTS,
        })?;
        validate_texts(&texts.spec, &texts.pseudo_program, &texts.prompt_template)?;
        let (interpreter, generation, provenance, adapter_header) = metadata.into_parts()?;
        interpreter.validate()?;
        generation.validate()?;
        provenance.validate()?;
        let adapter = match (adapter_header, index, data) {
            (None, None, None) => None,
            (Some(a), Some(index), Some((data_offset, Cow::Borrowed(data)))) => {
                Some(read_adapter(a.rank, a.alpha, &index, data_offset, data)?)
            }
            (Some(_), Some(_), None) => {
                return Err(FormatError::MissingSection {
                    kind: SectionKind::TENSOR_DATA,
                })
            }
            (Some(_), None, _) => {
                return Err(FormatError::MissingSection {
                    kind: SectionKind::TENSOR_INDEX,
                })
            }
            // Tensor data is never decompressed, so it is always borrowed.
            (Some(_), Some(_), Some((_, Cow::Owned(_)))) => {
                return Err(FormatError::CompressedTensorData {
                    kind: SectionKind::TENSOR_DATA,
                })
            }
            (None, _, _) => return Err(FormatError::AdapterSectionMismatch { has_adapter: false }),
        };
        Ok(Self {
            id: ProgramId::of_bytes(bytes),
            header,
            sections,
            spec: texts.spec,
            pseudo_program: texts.pseudo_program,
            prompt_template: texts.prompt_template,
            interpreter,
            generation,
            provenance,
            adapter,
            contract,
        })
    }

    /// Copies the tensors out into an owned [`Program`].
    pub fn into_program(self) -> Program {
        let adapter = self.adapter.map(|a| Adapter {
            rank: a.rank,
            alpha: a.alpha,
            pairs: a
                .tensors
                .chunks_exact(2)
                .map(|ab| {
                    let owned = |t: &TensorView<'_>| TensorData {
                        dtype: t.dtype,
                        shape: t.shape,
                        bytes: t.bytes.to_vec(),
                    };
                    LoraPair {
                        layer: ab[0].name.layer,
                        module: ab[0].name.module,
                        a: owned(&ab[0]),
                        b: owned(&ab[1]),
                    }
                })
                .collect(),
        });
        Program {
            spec: self.spec,
            pseudo_program: self.pseudo_program,
            prompt_template: self.prompt_template,
            interpreter: self.interpreter,
            adapter,
            generation: self.generation,
            provenance: self.provenance,
            contract: self.contract,
        }
    }
}

impl Program {
    /// Parses and fully checks `.paw` bytes; returns the program and its content id.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Program, ProgramId)> {
        let view = ProgramView::parse(bytes)?;
        let id = view.id;
        Ok((view.into_program(), id))
    }

    /// Reads and fully checks a `.paw` file.
    pub fn read(path: &Path) -> Result<(Program, ProgramId)> {
        let bytes = read_file(path)?;
        let (program, id) = Self::from_bytes(&bytes)?;
        tracing::debug!(path = %path.display(), %id, "read program");
        Ok((program, id))
    }
}

/// Checks `bytes` completely (structure, every section hash, content rules) and, when given, that
/// they hash to `expected`. Returns the id.
pub fn verify_bytes(bytes: &[u8], expected: Option<&ProgramId>) -> Result<ProgramId> {
    let id = ProgramView::parse(bytes)?.id;
    match expected {
        Some(e) if *e != id => Err(FormatError::IdMismatch {
            expected: e.to_string(),
            actual: id.to_string(),
        }),
        _ => Ok(id),
    }
}

/// [`verify_bytes`] on a file.
pub fn verify_file(path: &Path, expected: Option<&ProgramId>) -> Result<ProgramId> {
    verify_bytes(&read_file(path)?, expected)
}

/// Reads a whole file after checking its size against [`MAX_FILE_LEN`] (without checking it is
/// a program: see [`verify_bytes`]).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |action, source| FormatError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let len = file.metadata().map_err(|e| io("stat", e))?.len();
    if len > MAX_FILE_LEN {
        return Err(FormatError::FileTooLarge {
            path: path.to_owned(),
            len,
            max: MAX_FILE_LEN,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take` keeps a file that grows while being read within the limit.
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("read", e))?;
    Ok(bytes)
}

/// Reads the section table and checks order, flags, ranges, alignment, the canonical layout and
/// that all padding is zero.
fn read_table(bytes: &[u8], header: &Header) -> Result<Vec<SectionEntry>> {
    let file_len = bytes.len() as u64;
    let table_end = header.table_end();
    if table_end > file_len {
        return Err(FormatError::Truncated {
            what: "the section table",
            needed: table_end,
            found: file_len,
        });
    }
    let mut entries = Vec::with_capacity(header.section_count as usize);
    let mut cursor = table_end;
    let mut previous: Option<SectionKind> = None;
    for i in 0..u64::from(header.section_count) {
        let start = u64::from(header.header_len) + i * SECTION_ENTRY_LEN;
        let row = bytes
            .get(start as usize..(start + SECTION_ENTRY_LEN) as usize)
            .unwrap_or_default();
        let e = SectionEntry::decode(row);
        let kind = e.kind;
        match previous {
            Some(p) if p == kind => return Err(FormatError::DuplicateSection { kind }),
            Some(p) if p > kind => return Err(FormatError::SectionsOutOfOrder { kind }),
            _ => {}
        }
        previous = Some(kind);
        let expected_flags = if kind.is_known() {
            FLAG_MUST_UNDERSTAND
        } else {
            e.flags & FLAG_MUST_UNDERSTAND
        };
        if e.flags != expected_flags {
            return Err(FormatError::UnexpectedSectionFlags {
                kind,
                found: e.flags,
                expected: expected_flags,
            });
        }
        if !kind.is_known() && e.flags & FLAG_MUST_UNDERSTAND != 0 {
            return Err(FormatError::UnknownRequiredSection { kind });
        }
        let compression =
            Compression::from_code(e.compression_code).ok_or(FormatError::UnknownCompression {
                kind,
                found: e.compression_code,
            })?;
        if e.reserved != 0 {
            return Err(FormatError::NonzeroReserved {
                what: "a section entry's reserved byte",
                found: u64::from(e.reserved),
            });
        }
        if kind == SectionKind::TENSOR_DATA && compression != Compression::None {
            return Err(FormatError::CompressedTensorData { kind });
        }
        let end = e
            .offset
            .checked_add(e.stored_len)
            .filter(|end| *end <= file_len)
            .ok_or(FormatError::SectionOutOfRange {
                kind,
                offset: e.offset,
                len: e.stored_len,
                file_len,
            })?;
        check_placement(bytes, cursor, e.offset, Placement::Section(kind))?;
        cursor = end;
        entries.push(e);
    }
    if cursor != file_len {
        return Err(FormatError::TrailingBytes {
            what: "the last section",
            found: file_len - cursor,
        });
    }
    Ok(entries)
}

/// What is being placed, for error messages.
#[derive(Clone, Copy)]
enum Placement {
    Section(SectionKind),
    Tensor(TensorName),
}

/// Checks that something starting at `offset` (already known to be in range) follows `cursor`
/// without overlap, at the next multiple of 64, with zero padding in between. `bytes` and the
/// offsets share an origin.
fn check_placement(bytes: &[u8], cursor: u64, offset: u64, what: Placement) -> Result<()> {
    if offset < cursor {
        return Err(match what {
            Placement::Section(kind) => FormatError::OverlappingSections {
                kind,
                offset,
                previous_end: cursor,
            },
            Placement::Tensor(tensor) => FormatError::OverlappingTensors {
                tensor,
                offset,
                previous_end: cursor,
            },
        });
    }
    if !offset.is_multiple_of(crate::layout::ALIGNMENT) {
        return Err(match what {
            Placement::Section(kind) => FormatError::MisalignedSection { kind, offset },
            Placement::Tensor(tensor) => FormatError::MisalignedTensor { tensor, offset },
        });
    }
    let expected = align_up(cursor).unwrap_or(u64::MAX);
    if offset != expected {
        return Err(match what {
            Placement::Section(kind) => FormatError::SectionGap {
                kind,
                offset,
                expected,
            },
            Placement::Tensor(tensor) => FormatError::TensorGap {
                tensor,
                offset,
                expected,
            },
        });
    }
    // cursor <= offset <= len(bytes) here, and the gap is below 64 bytes.
    let padding = bytes
        .get(cursor as usize..offset as usize)
        .unwrap_or_default();
    if let Some(pos) = padding.iter().position(|b| *b != 0) {
        return Err(FormatError::NonzeroPadding {
            offset: cursor + pos as u64,
            value: padding[pos],
        });
    }
    Ok(())
}

/// The uncompressed bytes of a section, hash-checked. Lengths are bounded before allocating.
fn section_bytes<'a>(bytes: &'a [u8], e: &SectionEntry) -> Result<Cow<'a, [u8]>> {
    let kind = e.kind;
    if let Some(max) = kind.max_len() {
        if e.uncompressed_len > max as u64 {
            return Err(FormatError::SectionTooLarge {
                kind,
                len: e.uncompressed_len,
                max: max as u64,
            });
        }
    }
    // The table check guarantees offset + stored_len <= bytes.len().
    let stored = bytes
        .get(e.offset as usize..(e.offset + e.stored_len) as usize)
        .unwrap_or_default();
    let content = match Compression::from_code(e.compression_code) {
        Some(Compression::Zstd) => {
            let capacity = e.uncompressed_len as usize;
            let out = zstd::bulk::decompress(stored, capacity).map_err(|err| {
                FormatError::Decompress {
                    kind,
                    reason: err.to_string(),
                }
            })?;
            if out.len() != capacity {
                return Err(FormatError::DecompressedLengthMismatch {
                    kind,
                    expected: e.uncompressed_len,
                    found: out.len() as u64,
                });
            }
            Cow::Owned(out)
        }
        _ => {
            if e.stored_len != e.uncompressed_len {
                return Err(FormatError::StoredLengthMismatch {
                    kind,
                    stored: e.stored_len,
                    uncompressed: e.uncompressed_len,
                });
            }
            Cow::Borrowed(stored)
        }
    };
    let computed = blake3::hash(&content);
    if computed.as_bytes() != &e.hash {
        return Err(FormatError::SectionHashMismatch {
            kind,
            expected: hex::encode(e.hash),
            computed: computed.to_hex().to_string(),
        });
    }
    Ok(content)
}

/// Checks the tensor index against the data section and the adapter rules.
fn read_adapter<'a>(
    rank: u32,
    alpha: f32,
    index: &[TensorEntry],
    data_offset: u64,
    data: &'a [u8],
) -> Result<AdapterView<'a>> {
    validate_adapter_header(rank, alpha, index.len().div_ceil(2))?;
    let data_len = data.len() as u64;
    let mut tensors: Vec<TensorView<'a>> = Vec::with_capacity(index.len());
    let mut cursor = 0u64;
    let mut previous_pair: Option<(u32, TargetModule)> = None;
    for (i, e) in index.iter().enumerate() {
        let module =
            TargetModule::from_code(e.module_code).ok_or(FormatError::UnknownTargetModule {
                index: i,
                code: e.module_code,
            })?;
        let role = TensorRole::from_code(e.role_code).ok_or(FormatError::UnknownTensorRole {
            index: i,
            code: e.role_code,
        })?;
        let dtype = TensorDtype::from_ggml_type(e.dtype_code).ok_or(FormatError::UnknownDtype {
            index: i,
            code: e.dtype_code,
        })?;
        if e.reserved != 0 {
            return Err(FormatError::NonzeroReserved {
                what: "a tensor entry's reserved byte",
                found: u64::from(e.reserved),
            });
        }
        let name = TensorName {
            layer: e.layer,
            module,
            role,
        };
        // Rows alternate A, B, with each B belonging to the A just before it.
        match (role, tensors.last()) {
            (TensorRole::A, Some(prev)) if prev.name.role == TensorRole::A => {
                return Err(FormatError::IncompleteLoraPair {
                    tensor: prev.name,
                    missing: "lora_b",
                })
            }
            (TensorRole::A, _) => {
                check_pair_order(previous_pair, e.layer, module)?;
                previous_pair = Some((e.layer, module));
            }
            (TensorRole::B, Some(prev))
                if prev.name.role == TensorRole::A
                    && (prev.name.layer, prev.name.module) == (e.layer, module) => {}
            (TensorRole::B, Some(prev)) if prev.name.role == TensorRole::A => {
                return Err(FormatError::IncompleteLoraPair {
                    tensor: prev.name,
                    missing: "lora_b",
                })
            }
            (TensorRole::B, _) => {
                return Err(FormatError::IncompleteLoraPair {
                    tensor: name,
                    missing: "lora_a",
                })
            }
        }
        validate_tensor(name, dtype, e.shape, e.len, rank)?;
        let end = e
            .offset
            .checked_add(e.len)
            .filter(|end| *end <= data_len)
            .ok_or(FormatError::TensorOutOfRange {
                tensor: name,
                offset: e.offset,
                len: e.len,
                data_len,
            })?;
        check_placement(data, cursor, e.offset, Placement::Tensor(name))?;
        cursor = end;
        tensors.push(TensorView {
            name,
            dtype,
            shape: e.shape,
            file_offset: data_offset + e.offset,
            bytes: data
                .get(e.offset as usize..end as usize)
                .unwrap_or_default(),
        });
    }
    if let Some(last) = tensors.last().filter(|t| t.name.role == TensorRole::A) {
        return Err(FormatError::IncompleteLoraPair {
            tensor: last.name,
            missing: "lora_b",
        });
    }
    if cursor != data_len {
        return Err(FormatError::TrailingBytes {
            what: "the last tensor",
            found: data_len - cursor,
        });
    }
    Ok(AdapterView {
        rank,
        alpha,
        tensors,
    })
}
