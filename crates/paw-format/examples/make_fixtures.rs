//! Regenerates `fixtures/programs/*.paw` from `tests/common/fixtures.rs`.
//!
//! Run from the repository root: `cargo run -p paw-format --example make_fixtures`.
//! The `committed_fixtures_match_their_generator` test fails until the output is committed.

#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::path::Path;

fn main() -> Result<(), paw_format::FormatError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/programs");
    std::fs::create_dir_all(&dir).map_err(|source| paw_format::FormatError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    for (name, program) in fixtures::all() {
        let id = program.write_to(&dir.join(name))?;
        #[allow(clippy::print_stdout)] // a developer tool reporting what it wrote
        {
            println!("{name} {id}");
        }
    }
    Ok(())
}
