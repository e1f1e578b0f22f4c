//! Structure-aware companion to `read_program`: replaces the content of one section of a valid
//! fixture with fuzz bytes and re-hashes it, so the fuzzer reaches the bincode, texts and tensor
//! index decoders instead of stopping at the BLAKE3 check.
//!
//! Input: byte 0 picks the fixture, byte 1 the section, the rest is the new section content.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/paw-format/tests/common/raw.rs"]
mod raw;

use libfuzzer_sys::fuzz_target;
use paw_format::{inspect, Program};

const FIXTURES: [&[u8]; 4] = [
    include_bytes!("../../fixtures/programs/prompt-only.paw"),
    include_bytes!("../../fixtures/programs/adapter-mixed.paw"),
    include_bytes!("../../fixtures/programs/multilingual.paw"),
    include_bytes!("../../fixtures/programs/labels-contract.paw"),
];

fuzz_target!(|data: &[u8]| {
    let [fixture, section, content @ ..] = data else {
        return;
    };
    let mut sections = raw::sections_of(FIXTURES[usize::from(*fixture) % FIXTURES.len()]);
    let i = usize::from(*section) % sections.len();
    sections[i] = raw::RawSection::plain(sections[i].kind, sections[i].flags, content.to_vec());
    let bytes = raw::assemble(&sections);
    let Ok((program, _id)) = Program::from_bytes(&bytes) else {
        return;
    };
    let _ = inspect(&bytes)
        .expect("inspect accepts what from_bytes accepts")
        .to_string();
    let canonical = program.to_bytes().expect("an accepted program re-encodes");
    let (again, _) = Program::from_bytes(&canonical).expect("canonical bytes read back");
    assert_eq!(again, program);
});
