//! Byte layout of a `.paw` file: fixed header, section table, limits. See `spec/paw-format.md`.

use crate::error::{FormatError, Result};

/// First 8 bytes of every `.paw` file. The high first byte and CR LF / SUB bytes catch 7-bit and
/// newline-translating transfers, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89PAW\r\n\x1a\n";
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version written for a program with an output contract (the section 1.1 added).
pub const FORMAT_MINOR: u16 = 1;
/// Minor version written for a program without one: its bytes are exactly what 1.0 wrote, so
/// programs without a contract keep their ids across the 1.1 change.
pub const FORMAT_MINOR_WITHOUT_CONTRACT: u16 = 0;

/// Size of the fixed header written by this version.
pub const HEADER_LEN: u32 = 32;
/// Upper bound on the header-length field; later minor versions may grow the header up to this.
pub const MAX_HEADER_LEN: u32 = 4096;
pub const SECTION_ENTRY_LEN: u64 = 64;
pub const MAX_SECTIONS: u32 = 64;
/// Every section and every tensor starts at a multiple of this, so tensors can be memory-mapped.
pub const ALIGNMENT: u64 = 64;

/// Limit on a file loaded by path (the reader holds it in memory).
pub const MAX_FILE_LEN: u64 = 16 << 30;
pub const MAX_METADATA_LEN: usize = 1 << 20;
/// Limit on each of the three texts.
pub const MAX_TEXT_LEN: usize = 1 << 20;
/// Three texts plus their three 8-byte length prefixes.
pub const MAX_TEXTS_LEN: usize = 3 * MAX_TEXT_LEN + 24;
pub const MAX_TENSORS: usize = 4096;
pub const TENSOR_ENTRY_LEN: u64 = 40;
/// Limit on a compressed section of a kind this build does not know (decompressed to check its hash).
pub const MAX_UNKNOWN_SECTION_LEN: usize = 16 << 20;
/// Limit on each metadata string (names, hashes, stop strings, map keys and values).
pub const MAX_STRING_LEN: usize = 64 << 10;
pub const MAX_STOP_STRINGS: usize = 64;
pub const MAX_MAP_ENTRIES: usize = 1024;
/// Limit on the contract section (one schema, pattern or grammar, or a label set).
pub const MAX_CONTRACT_LEN: usize = 1 << 20;
/// Limit on a contract's schema, pattern or grammar text (the section less its tag and length).
pub const MAX_CONTRACT_TEXT_LEN: usize = MAX_CONTRACT_LEN - 12;
/// Limit on the labels of a label-set contract.
pub const MAX_LABELS: usize = 1024;
/// zstd level for the texts section; fixed because the level changes the bytes, and so the id.
pub const ZSTD_LEVEL: i32 = 19;

/// Section flag: a reader that does not know this kind must refuse the file.
pub const FLAG_MUST_UNDERSTAND: u16 = 1;

/// A section kind code, printed by name when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SectionKind(pub u32);

impl SectionKind {
    pub const METADATA: Self = Self(1);
    pub const TEXTS: Self = Self(2);
    pub const TENSOR_INDEX: Self = Self(3);
    pub const TENSOR_DATA: Self = Self(4);
    pub const CONTRACT: Self = Self(5);

    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            1 => Some("metadata"),
            2 => Some("texts"),
            3 => Some("tensor-index"),
            4 => Some("tensor-data"),
            5 => Some("contract"),
            _ => None,
        }
    }

    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }

    /// Largest uncompressed length accepted before allocating; `None` for tensor data, which is
    /// never decompressed and so bounded by the file itself.
    pub(crate) const fn max_len(self) -> Option<usize> {
        match self.0 {
            1 => Some(MAX_METADATA_LEN),
            2 => Some(MAX_TEXTS_LEN),
            3 => Some(MAX_TENSORS * TENSOR_ENTRY_LEN as usize),
            4 => None,
            5 => Some(MAX_CONTRACT_LEN),
            _ => Some(MAX_UNKNOWN_SECTION_LEN),
        }
    }
}

impl std::fmt::Display for SectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "kind {}", self.0),
        }
    }
}

/// How a section's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

impl Compression {
    pub const fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Zstd => 1,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
        }
    }
}

/// The fixed header at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub major: u16,
    pub minor: u16,
    pub header_len: u32,
    pub section_count: u32,
    pub flags: u32,
    pub file_len: u64,
}

impl Header {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.major.to_le_bytes());
        out.extend_from_slice(&self.minor.to_le_bytes());
        out.extend_from_slice(&self.header_len.to_le_bytes());
        out.extend_from_slice(&self.section_count.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
    }

    /// Parses and checks the fixed header against the whole file.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let prefix = &bytes[..bytes.len().min(MAGIC.len())];
        if prefix != &MAGIC[..prefix.len()] {
            return Err(FormatError::BadMagic {
                found: prefix.to_vec(),
            });
        }
        let file_len = bytes.len() as u64;
        if file_len < u64::from(HEADER_LEN) {
            return Err(FormatError::Truncated {
                what: "the fixed header",
                needed: u64::from(HEADER_LEN),
                found: file_len,
            });
        }
        let mut r = FieldReader {
            bytes,
            pos: MAGIC.len(),
        };
        let header = Self {
            major: r.u16(),
            minor: r.u16(),
            header_len: r.u32(),
            section_count: r.u32(),
            flags: r.u32(),
            file_len: r.u64(),
        };
        if header.major != FORMAT_MAJOR {
            return Err(FormatError::UnsupportedMajorVersion {
                found: header.major,
                supported: FORMAT_MAJOR,
            });
        }
        if header.header_len < HEADER_LEN {
            return Err(FormatError::HeaderTooShort {
                found: header.header_len,
                min: HEADER_LEN,
            });
        }
        if header.header_len > MAX_HEADER_LEN {
            return Err(FormatError::HeaderTooLarge {
                found: header.header_len,
                max: MAX_HEADER_LEN,
            });
        }
        if header.flags != 0 {
            return Err(FormatError::UnknownHeaderFlags {
                found: header.flags,
            });
        }
        if file_len < header.file_len {
            return Err(FormatError::Truncated {
                what: "the file",
                needed: header.file_len,
                found: file_len,
            });
        }
        if file_len > header.file_len {
            return Err(FormatError::TrailingBytes {
                what: "the declared end of file",
                found: file_len - header.file_len,
            });
        }
        if header.section_count > MAX_SECTIONS {
            return Err(FormatError::TooManySections {
                found: header.section_count,
                max: MAX_SECTIONS,
            });
        }
        Ok(header)
    }

    /// First byte after the section table (fits: both factors are bounded above).
    pub(crate) fn table_end(&self) -> u64 {
        u64::from(self.header_len) + u64::from(self.section_count) * SECTION_ENTRY_LEN
    }
}

/// One row of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    pub kind: SectionKind,
    pub flags: u16,
    pub compression_code: u8,
    pub reserved: u8,
    pub offset: u64,
    pub stored_len: u64,
    pub uncompressed_len: u64,
    /// BLAKE3 of the uncompressed bytes.
    pub hash: [u8; 32],
}

impl SectionEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.kind.0.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.push(self.compression_code);
        out.push(self.reserved);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.uncompressed_len.to_le_bytes());
        out.extend_from_slice(&self.hash);
    }

    /// Parses one 64-byte table row; `row` must be exactly [`SECTION_ENTRY_LEN`] bytes.
    pub(crate) fn decode(row: &[u8]) -> Self {
        let mut r = FieldReader { bytes: row, pos: 0 };
        Self {
            kind: SectionKind(r.u32()),
            flags: r.u16(),
            compression_code: r.u8(),
            reserved: r.u8(),
            offset: r.u64(),
            stored_len: r.u64(),
            uncompressed_len: r.u64(),
            hash: r.array(),
        }
    }
}

/// Reads little-endian fields from a slice whose length the caller has already checked; a short
/// slice yields zeros rather than a panic, so a missed check cannot crash the reader.
pub(crate) struct FieldReader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl FieldReader<'_> {
    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let end = self.pos.saturating_add(N);
        if let Some(src) = self.bytes.get(self.pos..end) {
            out.copy_from_slice(src);
        }
        self.pos = end;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        u8::from_le_bytes(self.array())
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

/// Rounds `n` up to the next multiple of [`ALIGNMENT`], `None` on overflow.
pub(crate) fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGNMENT - 1)
        .map(|v| v / ALIGNMENT * ALIGNMENT)
}
