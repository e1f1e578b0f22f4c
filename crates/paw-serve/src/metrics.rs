//! Counters and histograms for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the batch size histogram, in inputs.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What the server counts. Shared by the handlers and the batch worker.
#[derive(Debug)]
pub struct Metrics {
    /// Requests answered, by (endpoint, HTTP status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Latency of answered requests, by endpoint.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    batch_sizes: Mutex<Histogram>,
    pub(crate) queue_depth: AtomicU64,
    inputs: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            batch_sizes: Mutex::new(Histogram::new(&BATCH_BUCKETS)),
            queue_depth: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint, status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(endpoint)
                .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                .observe(seconds);
        }
    }

    pub(crate) fn batch(&self, inputs: usize, prompt_tokens: u64, generated_tokens: u64) {
        if let Ok(mut b) = self.batch_sizes.lock() {
            b.observe(inputs as f64);
        }
        self.inputs.fetch_add(inputs as u64, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated_tokens, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP paw_requests_total Requests answered, by endpoint and status.\n");
        out.push_str("# TYPE paw_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((endpoint, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "paw_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP paw_errors_total Requests answered with an error status.\n");
        out.push_str("# TYPE paw_errors_total counter\n");
        let errors: u64 = self.requests.lock().map_or(0, |r| {
            r.iter()
                .filter(|((_, status), _)| *status >= 400)
                .map(|(_, n)| n)
                .sum()
        });
        let _ = writeln!(out, "paw_errors_total {errors}");
        out.push_str("# HELP paw_request_seconds Request latency, by endpoint.\n");
        out.push_str("# TYPE paw_request_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (endpoint, h) in l.iter() {
                h.render(
                    &mut out,
                    "paw_request_seconds",
                    &format!("endpoint=\"{endpoint}\""),
                );
            }
        }
        out.push_str("# HELP paw_queue_depth Requests waiting for the model.\n");
        out.push_str("# TYPE paw_queue_depth gauge\n");
        let _ = writeln!(
            out,
            "paw_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        out.push_str("# HELP paw_batch_inputs Inputs decoded together per model call.\n");
        out.push_str("# TYPE paw_batch_inputs histogram\n");
        if let Ok(b) = self.batch_sizes.lock() {
            b.render(&mut out, "paw_batch_inputs", "");
        }
        for (name, help, value) in [
            ("paw_inputs_total", "Inputs run.", &self.inputs),
            (
                "paw_prompt_tokens_total",
                "Prompt tokens (prefix, input, suffix) of the inputs run.",
                &self.prompt_tokens,
            ),
            (
                "paw_generated_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::default();
        m.request("function", 200, 0.03);
        m.request("function", 200, 0.2);
        m.request("function", 404, 0.001);
        m.batch(3, 30, 6);
        let text = m.render();
        assert!(text.contains("paw_requests_total{endpoint=\"function\",status=\"200\"} 2"));
        assert!(text.contains("paw_errors_total 1"));
        assert!(text.contains("paw_request_seconds_bucket{endpoint=\"function\",le=\"0.05\"} 2"));
        assert!(text.contains("paw_request_seconds_bucket{endpoint=\"function\",le=\"+Inf\"} 3"));
        assert!(text.contains("paw_batch_inputs_bucket{le=\"2\"} 0"));
        assert!(text.contains("paw_batch_inputs_bucket{le=\"4\"} 1"));
        assert!(text.contains("paw_generated_tokens_total 6"));
    }
}
