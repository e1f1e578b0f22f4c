//! FuzzyBench-style evaluation suite generator: writes `fixtures/fuzzybench/` (`cargo xtask
//! fuzzybench` calls [`generate`]).
//!
//! Every expected output is known by construction: a generator first picks the
//! answer (a label, a value, a JSON document) and then renders an input that
//! says it, with human noise on the parts the answer does not depend on. No model
//! labels anything, and a fixed-seed PRNG makes the suite byte-for-byte
//! reproducible.
//!
//! Cases are [`paw_eval::Case`], the type the evaluation harness reads back, so the JSONL files
//! are written and read by one definition.

mod classify;
mod extract;
mod generate_structured;
mod normalise;
mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

pub use paw_eval::Case;

use util::{seed_of, Rng};

/// Trusted demonstrations per task (go into the spec author's hands).
pub const EXAMPLES: usize = 4;
/// Held-out cases per task.
pub const TESTS: usize = 50;
/// Give up on a generator that cannot produce enough distinct inputs.
const MAX_ATTEMPTS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Classification,
    Extraction,
    Normalisation,
    Generation,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Classification => "classification",
            Category::Extraction => "extraction",
            Category::Normalisation => "normalisation/repair",
            Category::Generation => "structured generation",
        }
    }
}

/// Why the suite could not be generated: a generator bug, or the output directory.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("duplicate task name {0}")]
    DuplicateTask(&'static str),
    #[error("task {task}: no declared label set")]
    NoLabelSet { task: &'static str },
    #[error("task {task}: only {found} distinct inputs after {attempts} attempts")]
    TooFewInputs {
        task: &'static str,
        found: usize,
        attempts: usize,
    },
    #[error("task {task}: label {label:?} outside its declared set")]
    LabelOutsideSet { task: &'static str, label: String },
    #[error("task {task}: input {input:?} generated with two outputs {first:?} and {second:?}")]
    ConflictingOutputs {
        task: &'static str,
        input: String,
        first: String,
        second: String,
    },
    #[error("encoding a case as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> GenerateError {
    let path = path.to_path_buf();
    move |source| GenerateError::Io {
        action,
        path,
        source,
    }
}

/// The constructor the generators use (`paw_eval::Case` has only its two fields).
fn case(input: impl Into<String>, output: impl Into<String>) -> Case {
    Case {
        input: input.into(),
        output: output.into(),
    }
}

/// One task of the suite: its directory name, its spec and its case generator.
#[derive(Debug)]
pub struct Task {
    pub name: &'static str,
    pub category: Category,
    /// The task as a user would write it (`spec.txt`).
    pub spec: &'static str,
    gen: fn(&mut Rng) -> Case,
}

impl Task {
    /// The task's cases, exactly as [`generate`] writes them.
    pub fn split(&self) -> Result<Split, GenerateError> {
        build_split(self)
    }
}

/// Every task of the suite, in the order the README lists them.
pub fn tasks() -> Vec<Task> {
    let mut tasks = Vec::new();
    tasks.extend(classify::tasks());
    tasks.extend(extract::tasks());
    tasks.extend(normalise::tasks());
    tasks.extend(generate_structured::tasks());
    tasks
}

/// The cases of one task: examples first, then held-out tests; inputs are unique
/// across both, so the sets are disjoint.
#[derive(Debug)]
pub struct Split {
    pub examples: Vec<Case>,
    pub tests: Vec<Case>,
}

fn build_split(task: &Task) -> Result<Split, GenerateError> {
    let labels = match task.category {
        Category::Classification => {
            Some(classify::labels(task.name).ok_or(GenerateError::NoLabelSet { task: task.name })?)
        }
        _ => None,
    };
    let mut rng = Rng::new(seed_of(task.name));
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut pool = Vec::new();
    let want = EXAMPLES + TESTS + 16;
    let mut attempts = 0;
    while pool.len() < want {
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            return Err(GenerateError::TooFewInputs {
                task: task.name,
                found: pool.len(),
                attempts: MAX_ATTEMPTS,
            });
        }
        let case = (task.gen)(&mut rng);
        if case.input.trim().is_empty() {
            continue;
        }
        if let Some(labels) = labels {
            if !labels.contains(&case.output.as_str()) {
                return Err(GenerateError::LabelOutsideSet {
                    task: task.name,
                    label: case.output,
                });
            }
        }
        match seen.get(&case.input) {
            // The same input must always mean the same answer, else the generator is wrong.
            Some(prev) if *prev != case.output => {
                return Err(GenerateError::ConflictingOutputs {
                    task: task.name,
                    first: prev.clone(),
                    input: case.input,
                    second: case.output,
                })
            }
            Some(_) => continue,
            None => {
                seen.insert(case.input.clone(), case.output.clone());
                pool.push(case);
            }
        }
    }
    // Examples should show as many different answers as possible (one per label
    // for classification), so pick greedily by unseen output first.
    let mut chosen = Vec::new();
    let mut outputs = BTreeSet::new();
    for (i, c) in pool.iter().enumerate() {
        if chosen.len() == EXAMPLES {
            break;
        }
        if outputs.insert(c.output.clone()) {
            chosen.push(i);
        }
    }
    for i in 0..pool.len() {
        if chosen.len() == EXAMPLES {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    let mut examples = Vec::new();
    let mut tests = Vec::new();
    for (i, c) in pool.into_iter().enumerate() {
        if chosen.contains(&i) {
            examples.push(c);
        } else if tests.len() < TESTS {
            tests.push(c);
        }
    }
    Ok(Split { examples, tests })
}

fn jsonl(cases: &[Case]) -> Result<String, GenerateError> {
    let mut s = String::new();
    for c in cases {
        s.push_str(&serde_json::to_string(c)?);
        s.push('\n');
    }
    Ok(s)
}

/// Write the whole suite under `out`: one directory per task with `spec.txt`,
/// `examples.jsonl` and `tests.jsonl`, plus a `README.md` index.
pub fn generate(out: &Path) -> Result<(), GenerateError> {
    let tasks = tasks();
    let mut names = BTreeSet::new();
    for t in &tasks {
        if !names.insert(t.name) {
            return Err(GenerateError::DuplicateTask(t.name));
        }
    }
    std::fs::create_dir_all(out).map_err(io_error("creating", out))?;
    let mut rows = Vec::new();
    for task in &tasks {
        let split = build_split(task)?;
        let dir = out.join(task.name);
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let write = |file: &str, body: String| -> Result<(), GenerateError> {
            let p = dir.join(file);
            std::fs::write(&p, body).map_err(io_error("writing", &p))
        };
        write("spec.txt", format!("{}\n", task.spec.trim()))?;
        write("examples.jsonl", jsonl(&split.examples)?)?;
        write("tests.jsonl", jsonl(&split.tests)?)?;
        rows.push((task, split.examples.len(), split.tests.len()));
    }
    let p = out.join("README.md");
    std::fs::write(&p, readme(&rows)).map_err(io_error("writing", &p))?;
    Ok(())
}

fn readme(rows: &[(&Task, usize, usize)]) -> String {
    let mut s = String::new();
    s.push_str(
        "# FuzzyBench (paw edition)\n\n\
         Generated by `cargo xtask fuzzybench --out fixtures/fuzzybench` (source: the\n\
         unpublished crate `crates/paw-fuzzybench`), or equivalently\n\
         `cargo test -p paw-fuzzybench fuzzybench_write_committed_suite -- --ignored`. Do not edit\n\
         by hand; change the generators and regenerate. Generation is deterministic\n\
         (splitmix64 seeded from each task name), so regenerating without code changes\n\
         yields identical files.\n\n\
         Each task directory holds:\n\n\
         - `spec.txt`: the task as a user would write it, with the output set/format stated;\n\
         - `examples.jsonl`: trusted `{\"input\",\"output\"}` demonstrations;\n\
         - `tests.jsonl`: held-out cases, disjoint from the examples (no shared input).\n\n\
         Expected outputs are correct by construction: each generator picks the answer\n\
         first, then renders an input that expresses it (templates, phrase banks, known\n\
         corruptions of valid JSON, a date rendered in many formats...). Noise (casing,\n\
         typos, spacing, format drift) is applied only to parts the answer does not\n\
         depend on. Score with exact match; `paw-eval` also reports a normalised match\n\
         (surrounding whitespace, JSON key order).\n\n",
    );
    let mut by_cat: BTreeMap<Category, usize> = BTreeMap::new();
    for (t, _, _) in rows {
        *by_cat.entry(t.category).or_default() += 1;
    }
    let total_tests: usize = rows.iter().map(|r| r.2).sum();
    let _ = writeln!(
        s,
        "{} tasks, {} held-out tests in total: {}.\n",
        rows.len(),
        total_tests,
        by_cat
            .iter()
            .map(|(c, n)| format!("{n} {}", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s.push_str("| task | category | examples | tests |\n|---|---|---|---|\n");
    for (t, e, n) in rows {
        let _ = writeln!(s, "| `{}` | {} | {e} | {n} |", t.name, t.category.as_str());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{Context, Result};

    fn read_cases(path: &Path) -> Result<Vec<Case>> {
        let text = std::fs::read_to_string(path)?;
        let mut out = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let input = v["input"].as_str().context("input")?.to_string();
            let output = v["output"].as_str().context("output")?.to_string();
            out.push(case(input, output));
        }
        Ok(out)
    }

    fn cases_of(name: &str) -> Result<Vec<Case>> {
        let task = tasks()
            .into_iter()
            .find(|t| t.name == name)
            .context("no such task")?;
        let split = build_split(&task)?;
        Ok(split.examples.into_iter().chain(split.tests).collect())
    }

    fn dir_snapshot(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
                    out.insert(rel, std::fs::read(&p)?);
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn fuzzybench_generating_twice_gives_identical_files() -> Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        generate(a.path())?;
        generate(b.path())?;
        let sa = dir_snapshot(a.path())?;
        let sb = dir_snapshot(b.path())?;
        assert!(sa.len() > 90, "expected many files, got {}", sa.len());
        assert_eq!(sa, sb);
        Ok(())
    }

    #[test]
    fn fuzzybench_every_task_has_enough_disjoint_cases_and_a_stated_output_format() -> Result<()> {
        let dir = tempfile::tempdir()?;
        generate(dir.path())?;
        let tasks = super::tasks();
        assert!(tasks.len() >= 30, "only {} tasks", tasks.len());
        for cat in [
            Category::Classification,
            Category::Extraction,
            Category::Normalisation,
            Category::Generation,
        ] {
            assert!(
                tasks.iter().filter(|t| t.category == cat).count() >= 4,
                "{cat:?}"
            );
        }
        for t in &tasks {
            let d = dir.path().join(t.name);
            let ex = read_cases(&d.join("examples.jsonl"))?;
            let ts = read_cases(&d.join("tests.jsonl"))?;
            assert!((3..=5).contains(&ex.len()), "{}", t.name);
            assert!(ts.len() >= 40, "{}", t.name);
            let ex_inputs: BTreeSet<_> = ex.iter().map(|c| &c.input).collect();
            assert!(
                ts.iter().all(|c| !ex_inputs.contains(&c.input)),
                "{}",
                t.name
            );
            let spec = std::fs::read_to_string(d.join("spec.txt"))?;
            let lower = spec.to_lowercase();
            assert!(
                lower.contains("return") || lower.contains("output"),
                "{}: spec must state what to output",
                t.name
            );
            assert!(ts.iter().all(|c| !c.output.is_empty()), "{}", t.name);
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_classification_outputs_stay_in_the_declared_label_set() -> Result<()> {
        for t in tasks()
            .iter()
            .filter(|t| t.category == Category::Classification)
        {
            let labels = classify::labels(t.name).context("labels declared")?;
            for c in cases_of(t.name)? {
                assert!(labels.contains(&c.output.as_str()), "{}: {:?}", t.name, c);
                for l in labels {
                    assert!(t.spec.contains(l), "{}: spec omits label {l}", t.name);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_json_repair_expectations_parse_compact_and_inputs_are_broken() -> Result<()> {
        for c in cases_of("json-repair")? {
            let v: serde_json::Value = serde_json::from_str(&c.output)?;
            assert!(v.is_object());
            assert!(
                normalise::is_compact_json(&c.output),
                "not compact: {}",
                c.output
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&c.input).is_err(),
                "input already valid: {}",
                c.input
            );
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_iso_dates_are_valid_calendar_dates() -> Result<()> {
        for c in cases_of("date-iso")? {
            let parts: Vec<i64> = c
                .output
                .split('-')
                .map(|p| p.parse::<i64>())
                .collect::<Result<_, _>>()?;
            assert_eq!(parts.len(), 3, "{}", c.output);
            assert_eq!(c.output.len(), 10);
            let (y, m, d) = (parts[0], parts[1], parts[2]);
            assert!((1..=12).contains(&m) && d >= 1 && d <= util::days_in_month(y, m));
            // The year always appears in the input (every rendering keeps it).
            assert!(c.input.contains(&y.to_string()), "{c:?}");
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_weekday_and_ordinal_helpers_are_right() {
        assert_eq!(util::WEEKDAYS[util::weekday(2025, 3, 4)], "Tuesday");
        assert_eq!(util::WEEKDAYS[util::weekday(2000, 1, 1)], "Saturday");
        assert_eq!(util::WEEKDAYS[util::weekday(2024, 2, 29)], "Thursday");
        assert_eq!(util::ordinal(1), "1st");
        assert_eq!(util::ordinal(12), "12th");
        assert_eq!(util::ordinal(22), "22nd");
        assert_eq!(util::ordinal(23), "23rd");
    }

    #[test]
    fn fuzzybench_structured_json_outputs_parse() -> Result<()> {
        for name in ["filter-json", "event-json", "kv-json", "emails"] {
            for c in cases_of(name)? {
                serde_json::from_str::<serde_json::Value>(&c.output)
                    .with_context(|| format!("{name}: {}", c.output))?;
                assert!(
                    normalise::is_compact_json(&c.output),
                    "{name}: {}",
                    c.output
                );
            }
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_cron_outputs_have_five_fields() -> Result<()> {
        for c in cases_of("schedule-cron")? {
            assert_eq!(c.output.split(' ').count(), 5, "{c:?}");
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_phone_outputs_are_e164() -> Result<()> {
        for c in cases_of("phone-e164")? {
            let digits = &c.output[1..];
            assert!(c.output.starts_with('+'), "{c:?}");
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{c:?}");
            assert!((8..=15).contains(&digits.len()), "{c:?}");
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_extracted_values_appear_verbatim_in_their_inputs() -> Result<()> {
        for name in ["city", "person-name", "version", "error-lines"] {
            for c in cases_of(name)? {
                if c.output != "NONE" {
                    for line in c.output.lines() {
                        assert!(c.input.contains(line), "{name}: {c:?}");
                    }
                }
            }
        }
        for c in cases_of("ticker")? {
            assert!(c.input.to_uppercase().contains(&c.output), "{c:?}");
        }
        for name in ["emails", "urls"] {
            for c in cases_of(name)? {
                let found: Vec<String> = serde_json::from_str(&c.output)?;
                for item in found {
                    assert!(c.input.contains(&item), "{name}: {c:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_numeric_and_identifier_outputs_are_well_formed() -> Result<()> {
        for name in ["duration-seconds", "data-size-bytes", "number-words"] {
            for c in cases_of(name)? {
                c.output
                    .parse::<u64>()
                    .with_context(|| format!("{name}: {c:?}"))?;
            }
        }
        for c in cases_of("time-24h")? {
            let (h, m) = c.output.split_once(':').context("HH:MM")?;
            assert!(h.len() == 2 && m.len() == 2, "{c:?}");
            assert!(h.parse::<u32>()? < 24 && m.parse::<u32>()? < 60, "{c:?}");
        }
        for c in cases_of("snake-case")? {
            assert!(
                c.output
                    .split('_')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "{c:?}"
            );
        }
        for c in cases_of("amount")? {
            let (_, cents) = c.output.split_once('.').context("two decimals")?;
            assert_eq!(cents.len(), 2, "{c:?}");
            assert!(!c.output.contains(','), "{c:?}");
        }
        Ok(())
    }

    #[test]
    fn fuzzybench_known_renderings_map_to_known_answers() {
        let ws = normalise::WordStyle {
            and: true,
            hyphen: true,
            comma: false,
        };
        assert_eq!(
            normalise::number_to_words(98_102, ws),
            "ninety-eight thousand one hundred and two"
        );
        assert_eq!(
            normalise::number_to_words(1_005, ws),
            "one thousand and five"
        );
        assert_eq!(normalise::number_to_words(0, ws), "zero");
        let plain = normalise::WordStyle {
            and: false,
            hyphen: false,
            comma: true,
        };
        assert_eq!(
            normalise::number_to_words(12_401, plain),
            "twelve thousand, four hundred one"
        );
    }

    /// Writes the committed suite. Run with
    /// `cargo test -p paw-fuzzybench fuzzybench_write_committed_suite -- --ignored`.
    #[test]
    #[ignore]
    fn fuzzybench_write_committed_suite() -> Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzzybench");
        Ok(generate(&root)?)
    }
}
