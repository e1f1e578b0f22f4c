//! The stage cache: the outputs of the expensive deterministic stages (the pseudo-program and the
//! training data, both written by the teacher) kept in the store as derived data, under a key
//! that hashes exactly what the stage depends on. An interrupted or repeated compile resumes
//! from its last finished stage; a damaged entry is ignored with a warning and recomputed.
//!
//! Keys are BLAKE3 over canonical bytes (length-prefixed strings, little-endian integers, in a
//! fixed order): no time, randomness or map order. Each key's domain string carries a version
//! (`-v1`), bumped when that stage's stored encoding changes; the compiler version is hashed
//! into every key, so a compiler whose output changes never reads an older compiler's stages.

use paw_store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{CompileOptions, Stage, COMPILER_NAME, COMPILER_VERSION};

/// Canonical hashing of key inputs.
pub(crate) struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    /// A key in `domain`, over what every key depends on: the compiler and its version, the
    /// spec (and with it the label set it names) and the user's examples.
    pub(crate) fn new(domain: &str, opts: &CompileOptions) -> Self {
        let mut h = Self(blake3::Hasher::new());
        h.str(domain)
            .str(COMPILER_NAME)
            .str(COMPILER_VERSION)
            .str(&opts.spec)
            .pairs(&opts.examples);
        h
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.update(s.as_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(&v.to_le_bytes());
        self
    }

    fn pairs(&mut self, pairs: &[(String, String)]) -> &mut Self {
        self.u64(pairs.len() as u64);
        for (i, o) in pairs {
            self.str(i).str(o);
        }
        self
    }

    /// `b3:` and 64 hex digits.
    pub(crate) fn finish(&self) -> String {
        format!("b3:{}", self.0.finalize().to_hex())
    }
}

/// Stage 1 depends on the teacher (its weights hash, or `None`), the interpreter's tokenizer
/// (the token budget is counted with it: its hash, not the weights') and the budget. The teacher
/// answers greedily, so the seed plays no part.
pub(crate) fn pseudo_program_key(
    opts: &CompileOptions,
    teacher: Option<&str>,
    tokenizer: &str,
) -> String {
    KeyHasher::new("paw-stage-pseudo-program-v1", opts)
        .str(teacher.unwrap_or("none"))
        .str(tokenizer)
        .u64(opts.pseudo_program_budget as u64)
        .finish()
}

/// Stage 2 depends on the teacher, the pseudo-program's examples (shown to the teacher as the
/// format reference), the number of teacher requests, the agreement filter, the input kinds and
/// the seed; not on the interpreter.
pub(crate) fn data_key(
    opts: &CompileOptions,
    teacher: Option<&str>,
    reference: &[(String, String)],
    requests: usize,
) -> String {
    let mut key = KeyHasher::new("paw-stage-data-v4", opts);
    key.str(teacher.unwrap_or("none"))
        .pairs(reference)
        .u64(requests as u64)
        .u64(opts.held_out as u64)
        .u64(u64::from(opts.agreement_filter))
        .u64(u64::from(opts.relabel))
        .u64(opts.kinds as u64)
        .u64(opts.seed);
    // Only a top-up target enters the key, so that stages cached without one stay valid.
    if opts.train_items > 0 {
        key.str("train_items").u64(opts.train_items as u64);
    }
    if opts.inputs_per_request != 1 {
        key.str("inputs_per_request/styled")
            .u64(opts.inputs_per_request as u64);
    }
    for (name, value) in opts.labelling_settings() {
        key.str(&format!("{name}={value}"));
    }
    key.finish()
}

/// The cached output of `stage` under `key`, if the store holds a sound one.
pub(crate) fn load<T: DeserializeOwned>(store: &Store, stage: Stage, key: &str) -> Option<T> {
    let stage = stage.name();
    let bytes = match store.get_stage(stage, key) {
        Ok(found) => found?,
        Err(error) => {
            tracing::warn!(stage, key, %error, "ignoring an unreadable cached stage; recomputing it");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(stage, key, %error, "ignoring a cached stage that does not decode; recomputing it");
            None
        }
    }
}

/// Caches the output of `stage` under `key`. The cache only saves time, so a failure to write
/// it is a warning, not a failed compile.
pub(crate) fn save<T: Serialize>(store: &Store, stage: Stage, key: &str, value: &T) {
    let stage = stage.name();
    let written = serde_json::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            store
                .put_stage(stage, key, &bytes)
                .map_err(|e| e.to_string())
        });
    if let Err(error) = written {
        tracing::warn!(stage, key, %error, "could not cache the stage; the compile goes on");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts() -> CompileOptions {
        let mut o = CompileOptions::new("Return ONLY yes or no.", "/models/interp.gguf");
        o.examples = vec![("ab".into(), "yes".into())];
        o
    }

    fn pp(o: &CompileOptions) -> String {
        pseudo_program_key(o, Some("b3:teacher"), "b3:tokenizer")
    }

    fn data(o: &CompileOptions) -> String {
        data_key(o, Some("b3:teacher"), &[("x".into(), "no".into())], 8)
    }

    #[test]
    fn keys_are_store_keys_and_stable() {
        let o = opts();
        for key in [pp(&o), data(&o)] {
            let hex = key.strip_prefix("b3:").unwrap();
            assert_eq!(hex.len(), 64);
            assert!(hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_eq!(pp(&o), pp(&o.clone()));
        assert_eq!(data(&o), data(&o.clone()));
        assert_ne!(pp(&o), data(&o), "stages have separate domains");
    }

    #[test]
    fn keys_hash_exactly_the_inputs_their_stage_depends_on() {
        let o = opts();
        // Inputs of neither stage: interpreter file and name, training and packing options.
        let mut other = o.clone();
        other.interpreter = "/elsewhere/other.gguf".into();
        other.interpreter_name = Some("other".into());
        other.train.steps += 1;
        other.train.rank *= 2;
        other.adapter_dtype = Some(paw_format::TensorDtype::F16);
        assert_eq!(pp(&other), pp(&o));
        assert_eq!(data(&other), data(&o));

        // Seed, requests, the agreement filter, relabelling (how it reads labels, when it applies),
        // held-out requests and input kinds: the data only.
        let mut seeded = o.clone();
        seeded.seed = 1;
        let mut agree = o.clone();
        agree.agreement_filter = true;
        let mut relabel = o.clone();
        relabel.relabel = !o.relabel;
        let mut held = o.clone();
        held.held_out += 1;
        let mut kinds = o.clone();
        kinds.kinds += 1;
        let mut labelling = o.clone();
        labelling.labelling = crate::Labelling::Answer;
        let mut floor = o.clone();
        floor.relabel_min_per_label += 1;
        for changed in [&seeded, &agree, &relabel, &held, &kinds, &labelling, &floor] {
            assert_eq!(pp(changed), pp(&o));
            assert_ne!(data(changed), data(&o));
        }
        // Without relabelling or the agreement filter nothing is labelled by the teacher's
        // answers: how they would be read changes nothing.
        let mut plain = o.clone();
        plain.relabel = false;
        let mut plain_answer = plain.clone();
        plain_answer.labelling = crate::Labelling::Answer;
        plain_answer.relabel_min_per_label = 1;
        assert_eq!(data(&plain_answer), data(&plain));
        assert_ne!(
            data_key(&o, Some("b3:teacher"), &[("x".into(), "no".into())], 9),
            data(&o)
        );
        assert_ne!(
            data_key(&o, Some("b3:teacher"), &[("x".into(), "yes".into())], 8),
            data(&o)
        );
        // The budget and the interpreter's tokenizer: the pseudo-program only.
        let mut budget = o.clone();
        budget.pseudo_program_budget += 1;
        assert_ne!(pp(&budget), pp(&o));
        assert_eq!(data(&budget), data(&o));
        assert_ne!(
            pseudo_program_key(&o, Some("b3:teacher"), "b3:other"),
            pp(&o)
        );

        // Spec, examples and teacher: both.
        let mut spec = o.clone();
        spec.spec.push(' ');
        let mut examples = o.clone();
        examples.examples.push(("c".into(), "no".into()));
        for changed in [&spec, &examples] {
            assert_ne!(pp(changed), pp(&o));
            assert_ne!(data(changed), data(&o));
        }
        assert_ne!(pseudo_program_key(&o, None, "b3:tokenizer"), pp(&o));
        assert_ne!(
            data_key(&o, None, &[("x".into(), "no".into())], 8),
            data(&o)
        );
    }

    #[test]
    fn keys_are_length_prefixed() {
        let mut a = opts();
        a.examples = vec![("ab".into(), "c".into())];
        let mut b = opts();
        b.examples = vec![("a".into(), "bc".into())];
        assert_ne!(pp(&a), pp(&b));
        assert_ne!(data(&a), data(&b));
    }
}
