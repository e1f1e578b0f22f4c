//! Results of an evaluation run: one [`CaseResult`] per case and a
//! [`Summary`] with match rates, throughput and latency percentiles. All types
//! serialise to JSON for `--json` output.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::cases::Case;
use crate::score::score;

/// Which verdict a threshold or rate refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Exact,
    Normalised,
}

/// The outcome of running one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// 0-based position of the case in its file (blank lines not counted).
    pub index: usize,
    pub input: String,
    pub expected: String,
    /// The program's answer; `None` when the call failed.
    pub actual: Option<String>,
    /// The call's error message when it failed.
    pub error: Option<String>,
    pub exact: bool,
    pub normalised: bool,
    pub latency_ms: f64,
}

impl CaseResult {
    /// Score one answer. A failed call (`Err(message)`) counts as a miss on both metrics.
    pub fn new(
        index: usize,
        case: &Case,
        answer: Result<String, String>,
        latency: Duration,
    ) -> Self {
        let latency_ms = latency.as_secs_f64() * 1e3;
        match answer {
            Ok(actual) => {
                let s = score(&case.output, &actual);
                CaseResult {
                    index,
                    input: case.input.clone(),
                    expected: case.output.clone(),
                    actual: Some(actual),
                    error: None,
                    exact: s.exact,
                    normalised: s.normalised,
                    latency_ms,
                }
            }
            Err(message) => CaseResult {
                index,
                input: case.input.clone(),
                expected: case.output.clone(),
                actual: None,
                error: Some(message),
                exact: false,
                normalised: false,
                latency_ms,
            },
        }
    }

    pub fn passed(&self, metric: Metric) -> bool {
        match metric {
            Metric::Exact => self.exact,
            Metric::Normalised => self.normalised,
        }
    }
}

/// Latency distribution over all cases, in milliseconds. Percentiles use the
/// nearest-rank method (the smallest value with at least p% of samples at or
/// below it), so every reported value is a latency that actually occurred.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LatencyStats {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Statistics of `samples_ms`; all zero when there are none.
    pub fn from_samples(samples_ms: &[f64]) -> Self {
        if samples_ms.is_empty() {
            return LatencyStats::default();
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |p: f64| -> f64 {
            let r = (p * n as f64 / 100.0).ceil() as usize;
            sorted[r.clamp(1, n) - 1]
        };
        LatencyStats {
            mean_ms: sorted.iter().sum::<f64>() / n as f64,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: sorted[n - 1],
        }
    }
}

/// Aggregate figures for a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub exact: usize,
    pub normalised: usize,
    /// Cases whose call failed (counted as misses).
    pub errors: usize,
    /// `exact / total`, 0 when there are no cases.
    pub exact_rate: f64,
    pub normalised_rate: f64,
    /// Wall-clock time of the whole run (may be less than the latency sum when
    /// calls are batched or concurrent).
    pub wall_seconds: f64,
    /// Cases per second of wall-clock time; 0 when no time was measured.
    pub cases_per_second: f64,
    pub latency: LatencyStats,
}

impl Summary {
    pub fn rate(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Exact => self.exact_rate,
            Metric::Normalised => self.normalised_rate,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exact {}/{} ({:.1}%), normalised {}/{} ({:.1}%), errors {}",
            self.exact,
            self.total,
            self.exact_rate * 100.0,
            self.normalised,
            self.total,
            self.normalised_rate * 100.0,
            self.errors
        )?;
        write!(
            f,
            "{:.2} cases/s over {:.2}s; latency ms mean {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            self.cases_per_second,
            self.wall_seconds,
            self.latency.mean_ms,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms
        )
    }
}

/// A full run: summary first (it is what readers of `--json` look for), then cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Summarise `cases`, which took `wall` of wall-clock time in total.
    pub fn new(cases: Vec<CaseResult>, wall: Duration) -> Self {
        let total = cases.len();
        let exact = cases.iter().filter(|c| c.exact).count();
        let normalised = cases.iter().filter(|c| c.normalised).count();
        let errors = cases.iter().filter(|c| c.error.is_some()).count();
        let rate = |k: usize| {
            if total == 0 {
                0.0
            } else {
                k as f64 / total as f64
            }
        };
        let wall_seconds = wall.as_secs_f64();
        let latencies: Vec<f64> = cases.iter().map(|c| c.latency_ms).collect();
        let summary = Summary {
            total,
            exact,
            normalised,
            errors,
            exact_rate: rate(exact),
            normalised_rate: rate(normalised),
            wall_seconds,
            cases_per_second: if wall_seconds > 0.0 {
                total as f64 / wall_seconds
            } else {
                0.0
            },
            latency: LatencyStats::from_samples(&latencies),
        };
        Report { summary, cases }
    }

    /// Cases that missed under `metric`, in file order.
    pub fn failures(&self, metric: Metric) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(move |c| !c.passed(metric))
    }

    /// Whether the run reaches `threshold` (a rate in 0..=1) under `metric`.
    pub fn meets(&self, metric: Metric, threshold: f64) -> bool {
        self.summary.rate(metric) >= threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(input: &str, output: &str) -> Case {
        Case {
            input: input.into(),
            output: output.into(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample_report() -> Report {
        let results = vec![
            CaseResult::new(0, &case("a", "x"), Ok("x".into()), ms(10)),
            CaseResult::new(
                1,
                &case("b", "{\"k\":1,\"j\":2}"),
                Ok("{\"j\":2, \"k\":1}\n".into()),
                ms(20),
            ),
            CaseResult::new(2, &case("c", "y"), Ok("z".into()), ms(30)),
            CaseResult::new(3, &case("d", "y"), Err("input too long".into()), ms(40)),
        ];
        Report::new(results, Duration::from_secs(2))
    }

    #[test]
    fn summary_counts_exact_normalised_and_errors_separately() {
        let s = sample_report().summary;
        assert_eq!((s.total, s.exact, s.normalised, s.errors), (4, 1, 2, 1));
        assert_eq!(s.exact_rate, 0.25);
        assert_eq!(s.normalised_rate, 0.5);
        assert_eq!(s.rate(Metric::Normalised), 0.5);
    }

    #[test]
    fn failed_call_is_a_miss_with_its_message_kept() {
        let r = &sample_report().cases[3];
        assert!(!r.exact && !r.normalised);
        assert_eq!(r.actual, None);
        assert_eq!(r.error.as_deref(), Some("input too long"));
    }

    #[test]
    fn throughput_is_cases_per_wall_second() {
        let s = sample_report().summary;
        assert_eq!(s.wall_seconds, 2.0);
        assert_eq!(s.cases_per_second, 2.0);
        let empty = Report::new(vec![], Duration::ZERO).summary;
        assert_eq!((empty.exact_rate, empty.cases_per_second), (0.0, 0.0));
        assert_eq!(empty.latency, LatencyStats::default());
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = LatencyStats::from_samples(&samples);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(l.mean_ms, 50.5);
        let l = LatencyStats::from_samples(&[40.0, 10.0, 30.0, 20.0]);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (20.0, 40.0, 40.0, 40.0)
        );
        let one = LatencyStats::from_samples(&[7.0]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
    }

    #[test]
    fn failures_and_threshold_follow_the_chosen_metric() {
        let r = sample_report();
        let exact_misses: Vec<usize> = r.failures(Metric::Exact).map(|c| c.index).collect();
        let norm_misses: Vec<usize> = r.failures(Metric::Normalised).map(|c| c.index).collect();
        assert_eq!(exact_misses, vec![1, 2, 3]);
        assert_eq!(norm_misses, vec![2, 3]);
        assert!(r.meets(Metric::Normalised, 0.5));
        assert!(!r.meets(Metric::Exact, 0.5));
    }

    #[test]
    fn report_serialises_summary_and_cases_for_json_output() {
        let v = serde_json::to_value(sample_report()).expect("serialisable");
        assert_eq!(v["summary"]["total"], 4);
        assert_eq!(v["summary"]["exact"], 1);
        assert_eq!(v["summary"]["normalised"], 2);
        assert_eq!(v["summary"]["latency"]["p50_ms"], 20.0);
        assert_eq!(v["cases"][3]["error"], "input too long");
        assert_eq!(v["cases"][3]["actual"], serde_json::Value::Null);
        assert_eq!(v["cases"][1]["normalised"], true);
        assert_eq!(
            serde_json::to_value(Metric::Normalised).expect("ok"),
            "normalised"
        );
    }

    #[test]
    fn summary_displays_both_rates() {
        let text = sample_report().summary.to_string();
        assert!(text.contains("exact 1/4 (25.0%)"), "{text}");
        assert!(text.contains("normalised 2/4 (50.0%)"), "{text}");
    }
}
