//! Evaluation harness for paw programs: read `{"input","output"}` test cases,
//! score a program's answers against them, and summarise the results.
//!
//! - [`cases`]: JSONL test-case files, with line-numbered errors.
//! - [`mod@score`]: exact match and a normalised match (surrounding whitespace,
//!   JSON key order and number spelling), reported side by side.
//! - [`report`]: per-case results, summary rates, throughput and latency
//!   percentiles; everything is `Serialize` for `--json` output.
//! - [`runner`]: runs a compiled program (`paw_rt::Function`) or any other
//!   [`Target`] over cases, batched or one by one, with progress callbacks.

pub mod cases;
pub mod report;
pub mod runner;
pub mod score;

pub use cases::{load_cases, parse_cases, read_cases, Case, CasesError, MAX_LINE_BYTES};
pub use report::{CaseResult, LatencyStats, Metric, Report, Summary};
pub use runner::{evaluate, PawTarget, Progress, RunOptions, Target};
pub use score::{exact_match, normalised_match, score, Score};
