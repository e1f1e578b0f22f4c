//! Stage 4: run programs through paw-rt on the held-out split and score exact match.

use paw_rt::{CallOptions, Function};

use crate::error::Result;
use crate::synth::Example;

/// Greedy outputs of `f` for each example's input, in batches.
pub(crate) fn outputs(f: &Function, data: &[Example], max_tokens: u32) -> Result<Vec<String>> {
    let opts = CallOptions {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..CallOptions::default()
    };
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(8) {
        let inputs: Vec<&str> = chunk.iter().map(|e| e.input.as_str()).collect();
        out.extend(f.call_batch(&inputs, &opts)?.into_iter().map(|o| o.text));
    }
    Ok(out)
}

/// How many `answers` equal the expected outputs byte for byte (paw-eval's metric).
pub(crate) fn hits(data: &[Example], answers: &[String]) -> usize {
    data.iter()
        .zip(answers)
        .filter(|(e, a)| paw_eval::exact_match(&e.output, a))
        .count()
}
