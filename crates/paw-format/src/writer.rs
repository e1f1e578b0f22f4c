//! Canonical encoding of a [`Program`] and atomic writes.

use std::io::Write;
use std::path::Path;

use crate::error::{FormatError, Result, TensorRole};
use crate::id::ProgramId;
use crate::layout::{
    align_up, Compression, Header, SectionEntry, SectionKind, ALIGNMENT, FLAG_MUST_UNDERSTAND,
    FORMAT_MAJOR, FORMAT_MINOR, FORMAT_MINOR_WITHOUT_CONTRACT, HEADER_LEN, SECTION_ENTRY_LEN,
    ZSTD_LEVEL,
};
use crate::metadata::{ContractV1, MetadataV1, TensorEntry, TextsV1};
use crate::program::Program;

struct Section<'p> {
    kind: SectionKind,
    compression: Compression,
    body: Body<'p>,
}

enum Body<'p> {
    /// Bytes held in memory; `stored` is the compressed form when compressed.
    Bytes {
        uncompressed: Vec<u8>,
        stored: Option<Vec<u8>>,
    },
    /// The tensor-data section, copied straight from the program into the output so that a large
    /// adapter is not held a third time. `tensors` pairs each data offset with its bytes.
    Tensors {
        tensors: Vec<(u64, &'p [u8])>,
        len: u64,
        hash: [u8; 32],
    },
}

impl Section<'_> {
    fn bytes(kind: SectionKind, content: Vec<u8>) -> Self {
        Self {
            kind,
            compression: Compression::None,
            body: Body::Bytes {
                uncompressed: content,
                stored: None,
            },
        }
    }

    fn stored_len(&self) -> u64 {
        match &self.body {
            Body::Bytes {
                uncompressed,
                stored,
            } => stored.as_ref().unwrap_or(uncompressed).len() as u64,
            Body::Tensors { len, .. } => *len,
        }
    }

    fn uncompressed_len(&self) -> u64 {
        match &self.body {
            Body::Bytes { uncompressed, .. } => uncompressed.len() as u64,
            Body::Tensors { len, .. } => *len,
        }
    }

    fn hash(&self) -> [u8; 32] {
        match &self.body {
            Body::Bytes { uncompressed, .. } => *blake3::hash(uncompressed).as_bytes(),
            Body::Tensors { hash, .. } => *hash,
        }
    }

    /// Appends the stored bytes; `out` ends at the section's offset.
    fn write_into(&self, out: &mut Vec<u8>) {
        match &self.body {
            Body::Bytes {
                uncompressed,
                stored,
            } => out.extend_from_slice(stored.as_ref().unwrap_or(uncompressed)),
            Body::Tensors { tensors, .. } => {
                let start = out.len();
                for (offset, bytes) in tensors {
                    out.resize(start + *offset as usize, 0);
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
}

impl Program {
    /// The canonical bytes of this program: equal programs give identical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut sections = vec![
            Section::bytes(
                SectionKind::METADATA,
                MetadataV1::from_program(self).encode()?,
            ),
            texts_section(self)?,
        ];
        if let Some(adapter) = &self.adapter {
            let (index, data) = tensor_sections(adapter)?;
            sections.push(Section::bytes(SectionKind::TENSOR_INDEX, index));
            sections.push(data);
        }
        let minor = match &self.contract {
            Some(contract) => {
                let body = ContractV1::from_contract(contract).encode()?;
                sections.push(Section::bytes(SectionKind::CONTRACT, body));
                FORMAT_MINOR
            }
            None => FORMAT_MINOR_WITHOUT_CONTRACT,
        };
        assemble(&sections, minor)
    }

    /// The id [`Program::to_bytes`] would have.
    pub fn id(&self) -> Result<ProgramId> {
        Ok(ProgramId::of_bytes(&self.to_bytes()?))
    }

    /// Writes the canonical bytes to `path` atomically: a temporary file in the same directory is
    /// written, synced and renamed over `path`, so a crash leaves either the old file or the new.
    pub fn write_to(&self, path: &Path) -> Result<ProgramId> {
        let bytes = self.to_bytes()?;
        let id = ProgramId::of_bytes(&bytes);
        let io = |action, source| FormatError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".paw-write-");
        // Temporary files default to 0600; a program file should be readable like any other
        // file the user creates (0666 minus the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut tmp = builder
            .tempfile_in(dir)
            .map_err(|e| io("create a temporary file next to", e))?;
        tmp.write_all(&bytes).map_err(|e| io("write", e))?;
        tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
        tmp.persist(path)
            .map_err(|e| io("rename a temporary file onto", e.error))?;
        sync_dir(dir).map_err(|e| io("sync the directory of", e))?;
        tracing::debug!(path = %path.display(), %id, len = bytes.len(), "wrote program");
        Ok(id)
    }
}

/// Makes the rename durable; directories cannot be opened for syncing on Windows.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn texts_section(p: &Program) -> Result<Section<'static>> {
    let texts = TextsV1 {
        spec: p.spec.clone(),
        pseudo_program: p.pseudo_program.clone(),
        prompt_template: p.prompt_template.clone(),
    }
    .encode()?;
    let compressed = zstd::bulk::compress(&texts, ZSTD_LEVEL).map_err(|e| FormatError::Encode {
        reason: format!("zstd: {e}"),
    })?;
    Ok(Section {
        kind: SectionKind::TEXTS,
        compression: Compression::Zstd,
        body: Body::Bytes {
            uncompressed: texts,
            stored: Some(compressed),
        },
    })
}

/// The tensor index and the tensor-data section: A then B for each pair, each tensor 64-byte
/// aligned, zero padding between them.
fn tensor_sections(adapter: &crate::program::Adapter) -> Result<(Vec<u8>, Section<'_>)> {
    let mut index = Vec::new();
    let mut tensors = Vec::with_capacity(adapter.pairs.len() * 2);
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    for pair in &adapter.pairs {
        for (role, t) in [(TensorRole::A, &pair.a), (TensorRole::B, &pair.b)] {
            let offset = align_up(len).ok_or_else(too_large)?;
            hasher.update(&ZEROS[..(offset - len) as usize]);
            hasher.update(&t.bytes);
            let entry = TensorEntry::new(
                pair.layer,
                pair.module,
                role,
                t.dtype,
                t.shape,
                offset,
                t.bytes.len() as u64,
            );
            entry.encode(&mut index);
            tensors.push((offset, t.bytes.as_slice()));
            len = offset
                .checked_add(t.bytes.len() as u64)
                .ok_or_else(too_large)?;
        }
    }
    let data = Section {
        kind: SectionKind::TENSOR_DATA,
        compression: Compression::None,
        body: Body::Tensors {
            tensors,
            len,
            hash: *hasher.finalize().as_bytes(),
        },
    };
    Ok((index, data))
}

/// Source of padding bytes (a gap is always shorter than the alignment).
const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];

fn too_large() -> FormatError {
    FormatError::Encode {
        reason: "the program is larger than this platform can address".into(),
    }
}

fn padded_len(len: usize) -> Result<usize> {
    align_up(len as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(too_large)
}

/// Lays out `sections` (in kind order) after a header of format `1.minor`.
fn assemble(sections: &[Section], minor: u16) -> Result<Vec<u8>> {
    let count = sections.len() as u64;
    let mut offset =
        align_up(u64::from(HEADER_LEN) + count * SECTION_ENTRY_LEN).unwrap_or(u64::MAX);
    let mut entries = Vec::with_capacity(sections.len());
    for s in sections {
        let stored_len = s.stored_len();
        entries.push(SectionEntry {
            kind: s.kind,
            flags: FLAG_MUST_UNDERSTAND,
            compression_code: s.compression.code(),
            reserved: 0,
            offset,
            stored_len,
            uncompressed_len: s.uncompressed_len(),
            hash: s.hash(),
        });
        offset = offset
            .checked_add(stored_len)
            .and_then(align_up)
            .ok_or_else(too_large)?;
    }
    let file_len = entries.last().map_or(offset, |e| e.offset + e.stored_len);
    let header = Header {
        major: FORMAT_MAJOR,
        minor,
        header_len: HEADER_LEN,
        section_count: count as u32,
        flags: 0,
        file_len,
    };
    let mut out = Vec::with_capacity(usize::try_from(file_len).map_err(|_| too_large())?);
    header.encode(&mut out);
    for e in &entries {
        e.encode(&mut out);
    }
    for (s, e) in sections.iter().zip(&entries) {
        out.resize(padded_len(out.len())?, 0);
        debug_assert_eq!(out.len() as u64, e.offset);
        s.write_into(&mut out);
    }
    Ok(out)
}
