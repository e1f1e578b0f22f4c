//! An independent, deliberately unvalidating `.paw` assembler written from `spec/paw-format.md`,
//! used to craft malformed files that the real writer refuses to produce.

/// One section as the test wants it stored.
#[derive(Debug, Clone)]
pub struct RawSection {
    pub kind: u32,
    pub flags: u16,
    pub compression: u8,
    /// The bytes the hash covers.
    pub content: Vec<u8>,
    /// The bytes stored in the file (equal to `content` when uncompressed).
    pub stored: Vec<u8>,
}

impl RawSection {
    pub fn plain(kind: u32, flags: u16, content: Vec<u8>) -> Self {
        Self {
            kind,
            flags,
            compression: 0,
            stored: content.clone(),
            content,
        }
    }
}

pub const HEADER_LEN: usize = 32;
pub const ENTRY_LEN: usize = 64;

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Splits a valid file into sections with their contents decompressed.
pub fn sections_of(bytes: &[u8]) -> Vec<RawSection> {
    let count = u32::from_le_bytes(bytes[16..20].try_into().expect("fixed-size field")) as usize;
    (0..count)
        .map(|i| {
            let e = &bytes[HEADER_LEN + i * ENTRY_LEN..HEADER_LEN + (i + 1) * ENTRY_LEN];
            let u64_at = |o: usize| {
                u64::from_le_bytes(e[o..o + 8].try_into().expect("fixed-size field")) as usize
            };
            let (offset, stored_len, raw_len) = (u64_at(8), u64_at(16), u64_at(24));
            let stored = bytes[offset..offset + stored_len].to_vec();
            let content = if e[6] == 1 {
                zstd::bulk::decompress(&stored, raw_len).expect("valid zstd")
            } else {
                stored.clone()
            };
            RawSection {
                kind: u32::from_le_bytes(e[0..4].try_into().expect("fixed-size field")),
                flags: u16::from_le_bytes(e[4..6].try_into().expect("fixed-size field")),
                compression: e[6],
                content,
                stored,
            }
        })
        .collect()
}

/// Lays sections out canonically with correct hashes, exactly as the spec describes.
pub fn assemble(sections: &[RawSection]) -> Vec<u8> {
    let mut offset = align64(HEADER_LEN + sections.len() * ENTRY_LEN);
    let mut table = Vec::new();
    let mut body: Vec<(usize, &[u8])> = Vec::new();
    for s in sections {
        table.extend_from_slice(&s.kind.to_le_bytes());
        table.extend_from_slice(&s.flags.to_le_bytes());
        table.push(s.compression);
        table.push(0);
        table.extend_from_slice(&(offset as u64).to_le_bytes());
        table.extend_from_slice(&(s.stored.len() as u64).to_le_bytes());
        table.extend_from_slice(&(s.content.len() as u64).to_le_bytes());
        table.extend_from_slice(blake3::hash(&s.content).as_bytes());
        body.push((offset, &s.stored));
        offset = align64(offset + s.stored.len());
    }
    let file_len = body.last().map_or(offset, |(o, b)| o + b.len());
    let mut out = Vec::new();
    out.extend_from_slice(b"\x89PAW\r\n\x1a\n");
    out.extend_from_slice(&1u16.to_le_bytes());
    // Minor 1 marks the contract section (kind 5) that 1.1 added; without it a file is 1.0.
    let minor: u16 = sections.iter().any(|s| s.kind == 5).into();
    out.extend_from_slice(&minor.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(file_len as u64).to_le_bytes());
    out.extend_from_slice(&table);
    for (o, b) in body {
        out.resize(o, 0);
        out.extend_from_slice(b);
    }
    out
}

/// Byte offset of field `field_offset` within section-table entry `index`.
pub fn entry_field(index: usize, field_offset: usize) -> usize {
    HEADER_LEN + index * ENTRY_LEN + field_offset
}

pub fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("fixed-size field"))
}

/// Hand-written encoder for the metadata section, following the bincode rules in the spec.
pub fn encode_metadata(p: &paw_format::Program, hyperparameters: &[(&str, &str)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn pairs<'a>(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>) {
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (k, v) in entries {
            string(out, k);
            string(out, v);
        }
    }
    let mut out = Vec::new();
    let i = &p.interpreter;
    for s in [&i.architecture, &i.name, &i.weights_hash, &i.tokenizer_hash] {
        string(&mut out, s);
    }
    let g = &p.generation;
    out.extend_from_slice(&g.max_tokens.to_le_bytes());
    out.extend_from_slice(&(g.stop.len() as u64).to_le_bytes());
    for s in &g.stop {
        string(&mut out, s);
    }
    out.extend_from_slice(&g.temperature.to_le_bytes());
    let pr = &p.provenance;
    string(&mut out, &pr.compiler);
    string(&mut out, &pr.compiler_version);
    match &pr.teacher_hash {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            string(&mut out, t);
        }
    }
    out.extend_from_slice(&pr.seed.to_le_bytes());
    pairs(&mut out, hyperparameters.iter().copied());
    pairs(
        &mut out,
        pr.report.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    match &p.adapter {
        None => out.push(0),
        Some(a) => {
            out.push(1);
            out.extend_from_slice(&a.rank.to_le_bytes());
            out.extend_from_slice(&a.alpha.to_le_bytes());
        }
    }
    out
}
