//! Running a program over test cases and collecting a [`Report`].
//!
//! The runner talks to a [`Target`]: a bound paw program ([`PawTarget`], over
//! `paw_rt::Function`) or anything else that maps inputs to answers (a
//! baseline, a cached transcript). Progress goes to a caller-supplied callback
//! and to `tracing`; the runner never prints.

use std::fmt;
use std::time::{Duration, Instant};

use paw_rt::{CallOptions, Function};

use crate::cases::Case;
use crate::report::{CaseResult, Report};

/// Something that answers inputs.
pub trait Target {
    type Error: fmt::Display;

    /// One answer per input, in order. An error fails the whole batch; the
    /// runner then retries its inputs one by one so that a single bad input
    /// (e.g. too long for the context window) only fails its own case.
    fn answer_batch(&self, inputs: &[&str]) -> Result<Vec<String>, Self::Error>;
}

/// A compiled program bound to an interpreter, with the call options to use.
#[derive(Debug, Clone)]
pub struct PawTarget<'a> {
    pub function: &'a Function,
    pub options: CallOptions,
}

impl<'a> PawTarget<'a> {
    pub fn new(function: &'a Function, options: CallOptions) -> Self {
        PawTarget { function, options }
    }
}

impl Target for PawTarget<'_> {
    type Error = paw_rt::Error;

    fn answer_batch(&self, inputs: &[&str]) -> Result<Vec<String>, paw_rt::Error> {
        match inputs {
            [one] => Ok(vec![self.function.call(one, &self.options)?.text]),
            many => Ok(self
                .function
                .call_batch(many, &self.options)?
                .into_iter()
                .map(|o| o.text)
                .collect()),
        }
    }
}

/// How to run an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Inputs sent to the target per call; 1 (the default) calls one by one.
    /// Batching raises throughput but each case's latency becomes the time of
    /// its whole batch.
    pub batch_size: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_size: 1 }
    }
}

/// Reported after every finished case.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Cases finished so far, including this one.
    pub done: usize,
    pub total: usize,
    /// Running counts over the finished cases.
    pub exact: usize,
    pub normalised: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// The case that just finished.
    pub result: &'a CaseResult,
}

/// Run `target` over `cases` and score every answer. Never fails: a failed
/// call becomes a case with an error (a miss on both metrics). `on_progress`
/// is called once per case, in case order.
pub fn evaluate<T: Target>(
    target: &T,
    cases: &[Case],
    options: &RunOptions,
    mut on_progress: impl FnMut(&Progress<'_>),
) -> Report {
    let start = Instant::now();
    let batch_size = options.batch_size.max(1);
    let total = cases.len();
    let mut results: Vec<CaseResult> = Vec::with_capacity(total);
    let (mut exact, mut normalised, mut errors) = (0, 0, 0);
    for (chunk_no, chunk) in cases.chunks(batch_size).enumerate() {
        let first = chunk_no * batch_size;
        for r in run_chunk(target, chunk, first) {
            exact += usize::from(r.exact);
            normalised += usize::from(r.normalised);
            errors += usize::from(r.error.is_some());
            results.push(r);
            if let Some(last) = results.last() {
                on_progress(&Progress {
                    done: results.len(),
                    total,
                    exact,
                    normalised,
                    errors,
                    elapsed: start.elapsed(),
                    result: last,
                });
            }
        }
        tracing::debug!(
            done = results.len(),
            total,
            exact,
            normalised,
            errors,
            "evaluation progress"
        );
    }
    let report = Report::new(results, start.elapsed());
    tracing::info!(
        total,
        exact = report.summary.exact,
        normalised = report.summary.normalised,
        errors = report.summary.errors,
        wall_s = report.summary.wall_seconds,
        "evaluation finished"
    );
    report
}

fn run_chunk<T: Target>(target: &T, chunk: &[Case], first: usize) -> Vec<CaseResult> {
    let inputs: Vec<&str> = chunk.iter().map(|c| c.input.as_str()).collect();
    let t0 = Instant::now();
    let outcome = target.answer_batch(&inputs);
    let elapsed = t0.elapsed();
    match outcome {
        Ok(answers) if answers.len() == chunk.len() => chunk
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(i, (case, answer))| CaseResult::new(first + i, case, Ok(answer), elapsed))
            .collect(),
        Ok(answers) => {
            let message = format!(
                "target returned {} answers for {} inputs",
                answers.len(),
                chunk.len()
            );
            chunk
                .iter()
                .enumerate()
                .map(|(i, case)| CaseResult::new(first + i, case, Err(message.clone()), elapsed))
                .collect()
        }
        Err(e) if chunk.len() == 1 => {
            vec![CaseResult::new(
                first,
                &chunk[0],
                Err(e.to_string()),
                elapsed,
            )]
        }
        Err(e) => {
            tracing::debug!(error = %e, size = chunk.len(), "batch failed, retrying its cases one by one");
            chunk
                .iter()
                .enumerate()
                .flat_map(|(i, case)| run_chunk(target, std::slice::from_ref(case), first + i))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Answers with the input upper-cased; fails on inputs containing "boom";
    /// records the size of every batch it receives.
    #[derive(Default)]
    struct Upper {
        batches: RefCell<Vec<usize>>,
    }

    impl Target for Upper {
        type Error = String;
        fn answer_batch(&self, inputs: &[&str]) -> Result<Vec<String>, String> {
            self.batches.borrow_mut().push(inputs.len());
            if inputs.iter().any(|i| i.contains("boom")) {
                return Err("input exploded".to_string());
            }
            Ok(inputs.iter().map(|i| i.to_uppercase()).collect())
        }
    }

    fn case(input: &str, output: &str) -> Case {
        Case {
            input: input.into(),
            output: output.into(),
        }
    }

    fn cases() -> Vec<Case> {
        vec![
            case("abc", "ABC"),
            case("x", "X\n"),
            case("boom", "BOOM"),
            case("q", "nope"),
            case("{\"a\":1}", "{\"A\":1}"),
        ]
    }

    #[test]
    fn scores_every_case_in_order() {
        let report = evaluate(&Upper::default(), &cases(), &RunOptions::default(), |_| {});
        let idx: Vec<usize> = report.cases.iter().map(|c| c.index).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        let s = &report.summary;
        assert_eq!((s.total, s.exact, s.normalised, s.errors), (5, 2, 3, 1));
        assert_eq!(report.cases[1].actual.as_deref(), Some("X"));
        assert!(!report.cases[1].exact && report.cases[1].normalised);
    }

    #[test]
    fn failing_input_only_fails_its_own_case_in_batch_mode() {
        let target = Upper::default();
        let report = evaluate(&target, &cases(), &RunOptions { batch_size: 4 }, |_| {});
        assert_eq!(report.summary.errors, 1);
        assert_eq!(report.cases[2].error.as_deref(), Some("input exploded"));
        assert!(report.cases[0].exact && report.cases[4].exact);
        // First batch of 4 fails, is retried one by one, then the last batch of 1.
        assert_eq!(*target.batches.borrow(), vec![4, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn batch_mode_gives_the_same_verdicts_as_single_calls() {
        let single = evaluate(
            &Upper::default(),
            &cases(),
            &RunOptions { batch_size: 1 },
            |_| {},
        );
        let batched = evaluate(
            &Upper::default(),
            &cases(),
            &RunOptions { batch_size: 3 },
            |_| {},
        );
        let verdicts = |r: &Report| -> Vec<(bool, bool, Option<String>)> {
            r.cases
                .iter()
                .map(|c| (c.exact, c.normalised, c.actual.clone()))
                .collect()
        };
        assert_eq!(verdicts(&single), verdicts(&batched));
    }

    #[test]
    fn progress_is_reported_once_per_case_with_running_counts() {
        let mut seen = Vec::new();
        evaluate(
            &Upper::default(),
            &cases(),
            &RunOptions { batch_size: 2 },
            |p| {
                seen.push((
                    p.done,
                    p.total,
                    p.exact,
                    p.normalised,
                    p.errors,
                    p.result.index,
                ));
            },
        );
        assert_eq!(
            seen,
            vec![
                (1, 5, 1, 1, 0, 0),
                (2, 5, 1, 2, 0, 1),
                (3, 5, 1, 2, 1, 2),
                (4, 5, 1, 2, 1, 3),
                (5, 5, 2, 3, 1, 4)
            ]
        );
    }

    #[test]
    fn wrong_number_of_answers_is_an_error_for_the_batch() {
        struct Short;
        impl Target for Short {
            type Error = String;
            fn answer_batch(&self, _inputs: &[&str]) -> Result<Vec<String>, String> {
                Ok(vec!["only one".to_string()])
            }
        }
        let report = evaluate(&Short, &cases()[..2], &RunOptions { batch_size: 2 }, |_| {});
        assert_eq!(report.summary.errors, 2);
        assert_eq!(
            report.cases[0].error.as_deref(),
            Some("target returned 1 answers for 2 inputs")
        );
    }

    #[test]
    fn zero_batch_size_means_one_and_no_cases_means_empty_report() {
        let target = Upper::default();
        let report = evaluate(
            &target,
            &cases()[..2],
            &RunOptions { batch_size: 0 },
            |_| {},
        );
        assert_eq!(report.summary.total, 2);
        assert_eq!(*target.batches.borrow(), vec![1, 1]);
        let empty = evaluate(&Upper::default(), &[], &RunOptions::default(), |_| {});
        assert_eq!(empty.summary.total, 0);
    }
}
