//! Replays the committed fuzz corpora (`fixtures/fuzz-corpus/<target>/`) through the reader, so
//! inputs that once crashed it stay fixed under a plain `cargo test`.

mod common;

use std::path::PathBuf;

use common::raw::{assemble, sections_of, RawSection};
use paw_format::{inspect, Program};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = common::repo_root()
        .join("fixtures/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory exists")
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file reads");
            (path, data)
        })
        .collect();
    files.sort();
    files
}

/// The checks both fuzz targets make; a panic fails the test. Returns whether the input was accepted.
fn check(bytes: &[u8]) -> bool {
    let Ok((program, _)) = Program::from_bytes(bytes) else {
        return false;
    };
    let _ = inspect(bytes)
        .expect("inspect accepts what from_bytes accepts")
        .to_string();
    let canonical = program.to_bytes().expect("an accepted program re-encodes");
    assert_eq!(
        Program::from_bytes(&canonical).expect("reads back").0,
        program
    );
    true
}

#[test]
fn reader_survives_every_read_program_corpus_input() {
    let files = corpus("read_program");
    let accepted = files.iter().filter(|(_, data)| check(data)).count();
    assert!(
        files.len() >= 3,
        "the corpus holds at least the fixture seeds"
    );
    assert!(
        accepted >= 3,
        "the valid fixture seeds are accepted, found {accepted}"
    );
}

#[test]
fn reader_survives_every_read_sections_corpus_input() {
    // Same input encoding as fuzz/fuzz_targets/read_sections.rs.
    let fixtures: Vec<Vec<u8>> = ["prompt-only.paw", "adapter-mixed.paw", "multilingual.paw"]
        .iter()
        .map(|n| {
            std::fs::read(common::repo_root().join("fixtures/programs").join(n)).expect("fixture")
        })
        .collect();
    let files = corpus("read_sections");
    let mut accepted = 0;
    for (_, data) in &files {
        let [fixture, section, content @ ..] = data.as_slice() else {
            continue;
        };
        let mut sections = sections_of(&fixtures[usize::from(*fixture) % fixtures.len()]);
        let i = usize::from(*section) % sections.len();
        sections[i] = RawSection::plain(sections[i].kind, sections[i].flags, content.to_vec());
        accepted += usize::from(check(&assemble(&sections)));
    }
    assert!(
        files.len() >= 8,
        "the corpus holds at least one seed per fixture section"
    );
    assert!(
        accepted >= 6,
        "seeds of uncompressed sections reproduce valid files, found {accepted}"
    );
}
