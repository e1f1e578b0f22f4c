//! Behaviour of the `.paw` container: one test per promise.

mod common;

use common::raw::{
    assemble, encode_metadata, entry_field, get_u64, put_u64, sections_of, RawSection,
};
use common::{fixture, fixtures, repo_root};
use paw_format::layout::{SectionKind, ALIGNMENT, MAX_HEADER_LEN, MAX_SECTIONS};
use paw_format::{
    verify_bytes, FormatError, Program, ProgramId, ProgramView, TargetModule, TensorDtype,
    INPUT_PLACEHOLDER,
};

const PROMPT_ONLY: &str = "prompt-only.paw";
const ADAPTER: &str = "adapter-mixed.paw";

fn read_err(bytes: &[u8]) -> FormatError {
    match Program::from_bytes(bytes) {
        Ok(_) => panic!("malformed input was accepted"),
        Err(e) => e,
    }
}

#[test]
fn round_trip_preserves_every_field() {
    for (name, program) in fixtures::all() {
        let bytes = program.to_bytes().expect("valid");
        let (back, id) = Program::from_bytes(&bytes).expect("reads back");
        assert_eq!(back, program, "{name}");
        assert_eq!(id, ProgramId::of_bytes(&bytes), "{name}");
    }
}

#[test]
fn writing_twice_gives_identical_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, program) in fixtures::all() {
        let (a, b) = (dir.path().join("a.paw"), dir.path().join("b.paw"));
        let id_a = program.write_to(&a).expect("first write");
        let id_b = program.clone().write_to(&b).expect("second write");
        assert_eq!(id_a, id_b, "{name}");
        assert_eq!(
            std::fs::read(&a).expect("a"),
            std::fs::read(&b).expect("b"),
            "{name}"
        );
    }
}

#[test]
fn committed_fixtures_match_their_generator() {
    for (name, program) in fixtures::all() {
        let path = repo_root().join("fixtures/programs").join(name);
        let committed =
            std::fs::read(&path).expect("fixture file exists; run the make_fixtures example");
        assert!(
            committed == program.to_bytes().expect("valid"),
            "{name} differs from its generator: run `cargo run -p paw-format --example make_fixtures`"
        );
        let (read, _) = Program::read(&path).expect("fixture reads");
        assert_eq!(read, program, "{name}");
    }
}

#[test]
fn id_is_blake3_of_the_file_bytes() {
    let (program, bytes) = fixture(ADAPTER);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.paw");
    let id = program.write_to(&path).expect("writes");
    assert_eq!(
        id.to_string(),
        format!("b3:{}", blake3::hash(&bytes).to_hex())
    );
    assert_eq!(
        id.to_string(),
        paw_format::hash_file(&path).expect("hashes")
    );
    assert_eq!(program.id().expect("id"), id);
}

#[test]
fn tampered_byte_is_detected() {
    // Changing any byte either fails to read or changes the id. Beyond that, only two kinds of
    // change are ever accepted: the minor version (compatible by design) and a zstd stream edit
    // that still decompresses to the hashed content, so the program read is unchanged.
    for name in [PROMPT_ONLY, ADAPTER] {
        let (program, bytes) = fixture(name);
        let original = ProgramId::of_bytes(&bytes);
        let compressed: Vec<_> = ProgramView::parse(&bytes)
            .expect("parses")
            .sections
            .iter()
            .filter(|s| s.compression_code != 0)
            .map(|s| s.offset as usize..(s.offset + s.stored_len) as usize)
            .collect();
        for pos in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut tampered = bytes.clone();
                tampered[pos] ^= mask;
                if let Ok((read, id)) = Program::from_bytes(&tampered) {
                    assert_ne!(id, original, "{name}: byte {pos}");
                    let in_stream = compressed.iter().any(|r| r.contains(&pos));
                    assert!(
                        (10..12).contains(&pos) || (in_stream && read == program),
                        "{name}: flipping byte {pos} with {mask:#x} went unnoticed"
                    );
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let (_, bytes) = fixture(ADAPTER);
    for len in 0..bytes.len() {
        assert!(
            Program::from_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    assert!(matches!(
        read_err(&bytes[..bytes.len() - 1]),
        FormatError::Truncated { .. }
    ));
}

#[test]
fn appended_bytes_are_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes.push(0);
    assert!(matches!(
        read_err(&bytes),
        FormatError::TrailingBytes { found: 1, .. }
    ));
}

#[test]
fn write_replaces_the_target_atomically_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.paw");
    std::fs::write(&path, b"old contents").expect("seed");
    let (program, bytes) = fixture(PROMPT_ONLY);
    program.write_to(&path).expect("writes");
    assert_eq!(std::fs::read(&path).expect("reads"), bytes);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("p.paw")]);
}

#[test]
fn failed_write_keeps_the_previous_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.paw");
    std::fs::write(&path, b"old contents").expect("seed");
    let (mut program, _) = fixture(PROMPT_ONLY);
    program.prompt_template.clear();
    assert!(program.write_to(&path).is_err());
    assert_eq!(std::fs::read(&path).expect("reads"), b"old contents");
}

#[test]
fn tensors_and_sections_are_64_byte_aligned() {
    let (_, bytes) = fixture(ADAPTER);
    let view = ProgramView::parse(&bytes).expect("parses");
    assert!(view.sections.iter().all(|s| s.offset % ALIGNMENT == 0));
    let adapter = view.adapter.expect("has adapter");
    assert_eq!(adapter.tensors.len(), 8);
    for t in &adapter.tensors {
        assert_eq!(t.file_offset % ALIGNMENT, 0, "{}", t.name);
        let start = t.file_offset as usize;
        assert_eq!(
            &bytes[start..start + t.bytes.len()],
            t.bytes,
            "{} borrows the file bytes",
            t.name
        );
    }
}

#[test]
fn mixed_dtype_adapter_dequantizes_close_to_its_source() {
    let (program, _) = fixture(ADAPTER);
    let adapter = program.adapter.expect("adapter");
    let dtypes: Vec<_> = adapter
        .pairs
        .iter()
        .flat_map(|p| [p.a.dtype, p.b.dtype])
        .collect();
    for d in [
        TensorDtype::F32,
        TensorDtype::F16,
        TensorDtype::Q8_0,
        TensorDtype::Q4_0,
    ] {
        assert!(dtypes.contains(&d), "fixture covers {d}");
    }
    for pair in &adapter.pairs {
        for t in [&pair.a, &pair.b] {
            let values = t.to_f32().expect("decodes");
            assert_eq!(values.len() as u64, t.shape[0] * t.shape[1]);
            // Fixture values are in [-0.05, 0.05); Q4_0 is the coarsest at 1/8 of the block max.
            assert!(values.iter().all(|v| v.abs() <= 0.051), "{:?}", t.dtype);
        }
    }
}

#[test]
fn verify_checks_the_expected_id() {
    let (_, bytes) = fixture(PROMPT_ONLY);
    let id = ProgramId::of_bytes(&bytes);
    assert_eq!(verify_bytes(&bytes, Some(&id)).expect("verifies"), id);
    let other = ProgramId::of_bytes(b"something else");
    assert!(matches!(
        verify_bytes(&bytes, Some(&other)),
        Err(FormatError::IdMismatch { .. })
    ));
}

#[test]
fn bad_magic_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[1] = b'Z';
    assert!(matches!(read_err(&bytes), FormatError::BadMagic { .. }));
    assert!(matches!(
        read_err(b"PK\x03\x04 a zip file"),
        FormatError::BadMagic { .. }
    ));
}

#[test]
fn future_major_version_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    assert!(matches!(
        read_err(&bytes),
        FormatError::UnsupportedMajorVersion {
            found: 2,
            supported: 1
        }
    ));
}

#[test]
fn newer_minor_version_is_accepted() {
    let (program, mut bytes) = fixture(PROMPT_ONLY);
    bytes[10..12].copy_from_slice(&7u16.to_le_bytes());
    let (read, _) = Program::from_bytes(&bytes).expect("minor versions are compatible");
    assert_eq!(read, program);
}

#[test]
fn oversized_header_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[12..16].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
    assert!(matches!(
        read_err(&bytes),
        FormatError::HeaderTooLarge { .. }
    ));
}

#[test]
fn too_many_sections_are_rejected_before_reading_the_table() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[16..20].copy_from_slice(&(MAX_SECTIONS + 1).to_le_bytes());
    assert!(matches!(
        read_err(&bytes),
        FormatError::TooManySections { .. }
    ));
}

#[test]
fn unknown_header_flags_are_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[20] = 1;
    assert!(matches!(
        read_err(&bytes),
        FormatError::UnknownHeaderFlags { found: 1 }
    ));
}

#[test]
fn overlapping_sections_are_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    let first = get_u64(&bytes, entry_field(0, 8));
    put_u64(&mut bytes, entry_field(1, 8), first);
    assert!(matches!(
        read_err(&bytes),
        FormatError::OverlappingSections { .. }
    ));
}

#[test]
fn out_of_range_section_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    put_u64(&mut bytes, entry_field(1, 16), u64::MAX - 10);
    assert!(matches!(
        read_err(&bytes),
        FormatError::SectionOutOfRange { .. }
    ));
    put_u64(&mut bytes, entry_field(1, 8), u64::MAX);
    assert!(matches!(
        read_err(&bytes),
        FormatError::SectionOutOfRange { .. }
    ));
}

#[test]
fn misaligned_section_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    let first = get_u64(&bytes, entry_field(0, 8));
    put_u64(&mut bytes, entry_field(0, 8), first + 1);
    let stored = get_u64(&bytes, entry_field(0, 16));
    put_u64(&mut bytes, entry_field(0, 16), stored - 1);
    assert!(matches!(
        read_err(&bytes),
        FormatError::MisalignedSection { .. }
    ));
}

#[test]
fn nonzero_padding_is_rejected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    // Two 64-byte entries end at 160; the first section starts at 192.
    bytes[170] = 1;
    assert!(matches!(
        read_err(&bytes),
        FormatError::NonzeroPadding {
            offset: 170,
            value: 1
        }
    ));
}

#[test]
fn section_hash_mismatch_is_detected() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    let meta = get_u64(&bytes, entry_field(0, 8)) as usize;
    bytes[meta + 9] ^= 0x20; // a letter of the architecture name
    assert!(matches!(
        read_err(&bytes),
        FormatError::SectionHashMismatch {
            kind: SectionKind::METADATA,
            ..
        }
    ));
}

#[test]
fn unknown_must_understand_section_is_refused() {
    let (_, bytes) = fixture(PROMPT_ONLY);
    let mut sections = sections_of(&bytes);
    sections.push(RawSection::plain(99, 1, b"future feature".to_vec()));
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::UnknownRequiredSection {
            kind: SectionKind(99)
        }
    ));
}

#[test]
fn unknown_optional_section_is_skipped() {
    let (program, bytes) = fixture(PROMPT_ONLY);
    let mut sections = sections_of(&bytes);
    sections.push(RawSection::plain(99, 0, b"optional extra".to_vec()));
    let extended = assemble(&sections);
    let (read, id) = Program::from_bytes(&extended).expect("optional sections are skipped");
    assert_eq!(read, program);
    assert_ne!(id, ProgramId::of_bytes(&bytes));
}

#[test]
fn raw_assembler_reproduces_writer_bytes() {
    // Guards the crafted-file tests: the spec-derived assembler agrees with the writer.
    for (name, program) in fixtures::all() {
        let bytes = program.to_bytes().expect("valid");
        assert!(assemble(&sections_of(&bytes)) == bytes, "{name}");
    }
}

#[test]
fn compressed_tensor_data_is_rejected() {
    let (_, bytes) = fixture(ADAPTER);
    let mut sections = sections_of(&bytes);
    let data = &mut sections[3];
    data.compression = 1;
    data.stored = zstd::bulk::compress(&data.content, 3).expect("compresses");
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::CompressedTensorData { .. }
    ));
}

#[test]
fn texts_with_bad_utf8_are_rejected() {
    let (_, bytes) = fixture(PROMPT_ONLY);
    let mut sections = sections_of(&bytes);
    let texts = &mut sections[1];
    texts.content[8] = 0xff; // first byte of the spec, after its u64 length
    *texts = RawSection::plain(2, 1, texts.content.clone());
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::BadUtf8 {
            kind: SectionKind::TEXTS,
            ..
        }
    ));
}

/// Rewrites one tensor-index row field (row `row`, byte `field` within the 40-byte row).
fn with_index_u64(row: usize, field: usize, value: u64) -> Vec<u8> {
    let (_, bytes) = fixture(ADAPTER);
    let mut sections = sections_of(&bytes);
    let index = &mut sections[2];
    put_u64(&mut index.content, row * 40 + field, value);
    index.stored = index.content.clone();
    assemble(&sections)
}

#[test]
fn misaligned_tensor_is_rejected() {
    let bytes = with_index_u64(0, 24, 1);
    assert!(matches!(
        read_err(&bytes),
        FormatError::MisalignedTensor { offset: 1, .. }
    ));
}

#[test]
fn tensor_with_wrong_byte_size_for_dtype_and_shape_is_rejected() {
    let (program, _) = fixture(ADAPTER);
    let len = program.adapter.expect("adapter").pairs[0].a.bytes.len() as u64;
    let bytes = with_index_u64(0, 32, len - 34);
    assert!(matches!(
        read_err(&bytes),
        FormatError::TensorByteSizeMismatch {
            dtype: TensorDtype::Q8_0,
            shape: [32, 64],
            ..
        }
    ));
}

#[test]
fn tensor_beyond_the_data_section_is_rejected() {
    let bytes = with_index_u64(7, 24, u64::MAX - 63);
    assert!(matches!(
        read_err(&bytes),
        FormatError::TensorOutOfRange { .. }
    ));
}

#[test]
fn overlapping_tensors_are_rejected() {
    let bytes = with_index_u64(1, 24, 0);
    assert!(matches!(
        read_err(&bytes),
        FormatError::OverlappingTensors { .. }
    ));
}

#[test]
fn duplicate_layer_module_pair_is_rejected_by_reader_and_writer() {
    let (_, bytes) = fixture(ADAPTER);
    let mut sections = sections_of(&bytes);
    let index = &mut sections[2];
    // Pair 1 (rows 2, 3) becomes a second (layer 0, q) pair.
    for row in [2, 3] {
        index.content[row * 40 + 4] = 0;
    }
    index.stored = index.content.clone();
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::DuplicateLoraPair {
            layer: 0,
            module: TargetModule::Q
        }
    ));

    let (mut program, _) = fixture(ADAPTER);
    let adapter = program.adapter.as_mut().expect("adapter");
    adapter.pairs[1].module = TargetModule::Q;
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::DuplicateLoraPair {
            layer: 0,
            module: TargetModule::Q
        })
    ));
}

#[test]
fn unsorted_lora_pairs_are_rejected() {
    let (mut program, _) = fixture(ADAPTER);
    program.adapter.as_mut().expect("adapter").pairs.swap(0, 1);
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::LoraPairsOutOfOrder { .. })
    ));
}

#[test]
fn prompt_template_needs_exactly_one_placeholder() {
    let (original, bytes) = fixture(PROMPT_ONLY);
    let mut program = original.clone();
    program.prompt_template = program.prompt_template.replace(INPUT_PLACEHOLDER, "");
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::PlaceholderCount { found: 0, .. })
    ));

    // The template is the last string of the texts section: grow it by a second placeholder.
    let mut sections = sections_of(&bytes);
    let texts = &mut sections[1];
    let len_at = texts.content.len() - original.prompt_template.len() - 8;
    let new_len = original.prompt_template.len() + INPUT_PLACEHOLDER.len();
    put_u64(&mut texts.content, len_at, new_len as u64);
    texts
        .content
        .extend_from_slice(INPUT_PLACEHOLDER.as_bytes());
    *texts = RawSection::plain(2, 1, texts.content.clone());
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::PlaceholderCount { found: 2, .. }
    ));
}

#[test]
fn adapter_tensor_shapes_must_match_rank() {
    let (mut program, _) = fixture(ADAPTER);
    program.adapter.as_mut().expect("adapter").rank = 16;
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::RankMismatch { .. })
    ));
}

#[test]
fn negative_temperature_is_rejected() {
    let (mut program, _) = fixture(PROMPT_ONLY);
    program.generation.temperature = -0.0;
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::InvalidTemperature { .. })
    ));
}

#[test]
fn section_table_must_be_sorted_by_kind() {
    let (_, bytes) = fixture(PROMPT_ONLY);
    let mut sections = sections_of(&bytes);
    sections.swap(0, 1);
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::SectionsOutOfOrder { .. }
    ));
    let mut sections = sections_of(&bytes);
    sections.push(sections[1].clone());
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::DuplicateSection { .. }
    ));
}

#[test]
fn missing_required_section_is_reported() {
    let (_, bytes) = fixture(PROMPT_ONLY);
    let sections = sections_of(&bytes);
    assert!(matches!(
        read_err(&assemble(&sections[..1])),
        FormatError::MissingSection {
            kind: SectionKind::TEXTS
        }
    ));
}

#[test]
fn errors_read_as_actionable_sentences() {
    let (_, mut bytes) = fixture(PROMPT_ONLY);
    bytes[8..10].copy_from_slice(&9u16.to_le_bytes());
    let message = read_err(&bytes).to_string();
    assert_eq!(message, "this program uses .paw format version 9.x but this build only reads 1.x; upgrade paw to run it");
}

#[test]
fn metadata_bytes_follow_the_spec_encoding_rules() {
    for (name, program) in fixtures::all() {
        let bytes = program.to_bytes().expect("valid");
        let hyper: Vec<_> = program
            .provenance
            .hyperparameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            sections_of(&bytes)[0].content == encode_metadata(&program, &hyper),
            "{name}"
        );
    }
}

#[test]
fn unsorted_metadata_map_is_rejected() {
    let (program, bytes) = fixture(ADAPTER);
    let mut sections = sections_of(&bytes);
    let swapped = [("rank", "32"), ("learning_rate", "2e-4"), ("steps", "300")];
    sections[0] = RawSection::plain(1, 1, encode_metadata(&program, &swapped));
    assert!(matches!(
        read_err(&assemble(&sections)),
        FormatError::UnsortedMap {
            field: "hyperparameters",
            ..
        }
    ));
}

#[test]
fn adapter_flag_must_agree_with_tensor_sections() {
    let (_, bytes) = fixture(ADAPTER);
    let sections = sections_of(&bytes);
    assert!(matches!(
        read_err(&assemble(&sections[..3])),
        FormatError::MissingSection {
            kind: SectionKind::TENSOR_DATA
        }
    ));
    let (prompt_only, _) = fixture(PROMPT_ONLY);
    let mut mixed = sections.clone();
    let hyper: Vec<_> = prompt_only
        .provenance
        .hyperparameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    mixed[0] = RawSection::plain(1, 1, encode_metadata(&prompt_only, &hyper));
    assert!(matches!(
        read_err(&assemble(&mixed)),
        FormatError::AdapterSectionMismatch { has_adapter: false }
    ));
}

const LABELS_CONTRACT: &str = "labels-contract.paw";

fn with_contract(contract: paw_format::OutputContract) -> Program {
    let (program, _) = fixture(PROMPT_ONLY);
    Program {
        contract: Some(contract),
        ..program
    }
}

#[test]
fn every_contract_kind_round_trips_and_changes_the_id() {
    use paw_format::OutputContract as C;
    let (plain, plain_bytes) = fixture(PROMPT_ONLY);
    let kinds = [
        C::Labels {
            labels: vec!["yes".into(), "no".into(), "☃".into()],
        },
        C::JsonSchema {
            schema: r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#.into(),
        },
        C::Pattern {
            regex: r"\+[0-9]{7,15}".into(),
        },
        C::Grammar {
            lark: "start: \"a\" | \"b\"".into(),
        },
        C::Free { max_chars: 200 },
    ];
    for contract in kinds {
        let program = with_contract(contract.clone());
        let bytes = program.to_bytes().expect("valid");
        let (read, id) = Program::from_bytes(&bytes).expect("reads back");
        assert_eq!(read, program, "{}", contract.kind());
        assert_ne!(id, ProgramId::of_bytes(&plain_bytes));
        assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 1, "format 1.1");
        assert_eq!(
            sections_of(&bytes).last().map(|s| s.kind),
            Some(SectionKind::CONTRACT.0)
        );
        assert_eq!(read.contract, Some(contract));
    }
    // A program without a contract is written as format 1.0, byte for byte as before.
    assert_eq!(u16::from_le_bytes([plain_bytes[10], plain_bytes[11]]), 0);
    assert_eq!(plain.contract, None);
}

#[test]
fn contract_bytes_follow_the_spec_encoding_rules() {
    let (program, bytes) = fixture(LABELS_CONTRACT);
    let Some(paw_format::OutputContract::Labels { labels }) = &program.contract else {
        panic!("the fixture has a label set");
    };
    // u32 tag 0 (labels), u64 count, then each label as u64 length + UTF-8.
    let mut expected = 0u32.to_le_bytes().to_vec();
    expected.extend_from_slice(&(labels.len() as u64).to_le_bytes());
    for l in labels {
        expected.extend_from_slice(&(l.len() as u64).to_le_bytes());
        expected.extend_from_slice(l.as_bytes());
    }
    let section = sections_of(&bytes).pop().expect("has sections");
    assert_eq!(section.kind, 5);
    assert_eq!(
        section.flags, 1,
        "must-understand: an older reader refuses the file"
    );
    assert_eq!(section.content, expected);
}

/// The fixture with its contract section's content replaced (hashes recomputed).
fn with_contract_bytes(content: Vec<u8>) -> Vec<u8> {
    let (_, bytes) = fixture(LABELS_CONTRACT);
    let mut sections = sections_of(&bytes);
    let last = sections.len() - 1;
    sections[last] = RawSection::plain(5, 1, content);
    assemble(&sections)
}

fn encode_labels(labels: &[&str]) -> Vec<u8> {
    let mut out = 0u32.to_le_bytes().to_vec();
    out.extend_from_slice(&(labels.len() as u64).to_le_bytes());
    for l in labels {
        out.extend_from_slice(&(l.len() as u64).to_le_bytes());
        out.extend_from_slice(l.as_bytes());
    }
    out
}

#[test]
fn contracts_that_no_answer_could_satisfy_are_rejected_on_read() {
    assert!(matches!(
        read_err(&with_contract_bytes(encode_labels(&["a", "b", "a"]))),
        FormatError::DuplicateLabel { .. }
    ));
    assert!(matches!(
        read_err(&with_contract_bytes(encode_labels(&["a", ""]))),
        FormatError::EmptyLabel { index: 1 }
    ));
    assert!(matches!(
        read_err(&with_contract_bytes(encode_labels(&[]))),
        FormatError::EmptyContract { .. }
    ));
    let mut zero_free = 4u32.to_le_bytes().to_vec();
    zero_free.extend_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        read_err(&with_contract_bytes(zero_free)),
        FormatError::EmptyContract { .. }
    ));
}

#[test]
fn unknown_contract_tags_and_trailing_bytes_are_rejected() {
    let mut unknown = 9u32.to_le_bytes().to_vec();
    unknown.extend_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        read_err(&with_contract_bytes(unknown)),
        FormatError::Decode { .. }
    ));
    let mut trailing = encode_labels(&["a"]);
    trailing.push(0);
    assert!(matches!(
        read_err(&with_contract_bytes(trailing)),
        FormatError::TrailingBytes { .. }
    ));
    // A hostile label count fails before any allocation (the section's byte limit).
    let mut huge = 0u32.to_le_bytes().to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        read_err(&with_contract_bytes(huge)),
        FormatError::Decode { .. }
    ));
}

#[test]
fn writer_refuses_an_invalid_contract() {
    let program = with_contract(paw_format::OutputContract::Labels {
        labels: vec!["x".into(), "x".into()],
    });
    assert!(matches!(
        program.to_bytes(),
        Err(FormatError::DuplicateLabel { .. })
    ));
}
