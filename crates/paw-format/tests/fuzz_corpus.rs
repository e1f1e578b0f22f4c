//! Replays the committed fuzz corpus (`fixtures/fuzz-corpus/read_program/`) through the reader,
//! so inputs that once crashed it stay fixed under a plain `cargo test`.

mod common;

use paw_format::{inspect, Program};

#[test]
fn reader_survives_every_corpus_input() {
    let dir = common::repo_root().join("fixtures/fuzz-corpus/read_program");
    let mut count = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file reads");
        // Any panic here fails the test; errors are the expected outcome for most inputs.
        if let Ok((program, _)) = Program::from_bytes(&data) {
            accepted += 1;
            inspect(&data).expect("inspect accepts what from_bytes accepts");
            let canonical = program.to_bytes().expect("an accepted program re-encodes");
            assert_eq!(Program::from_bytes(&canonical).expect("reads back").0, program, "{}", path.display());
        }
        count += 1;
    }
    assert!(count >= 3, "the corpus holds at least the fixture seeds, found {count}");
    assert!(accepted >= 3, "the valid fixture seeds are accepted, found {accepted}");
}
