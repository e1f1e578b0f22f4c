//! Feeds arbitrary bytes to the `.paw` reader. It must never panic or allocate without bound, and
//! anything it accepts must survive a canonical re-encode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paw_format::{inspect, Program};

fuzz_target!(|data: &[u8]| {
    let Ok((program, _id)) = Program::from_bytes(data) else {
        return;
    };
    let inspection = inspect(data).expect("inspect accepts what from_bytes accepts");
    let _ = inspection.to_string();
    let canonical = program.to_bytes().expect("an accepted program re-encodes");
    let (again, id) = Program::from_bytes(&canonical).expect("canonical bytes read back");
    assert_eq!(again, program);
    assert_eq!(again.to_bytes().expect("re-encodes"), canonical);
    assert_eq!(id, paw_format::ProgramId::of_bytes(&canonical));
});
