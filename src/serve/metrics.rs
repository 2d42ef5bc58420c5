//! Prometheus metrics of the server (`GET /metrics`, text exposition format via
//! `prometheus-client`): requests by HTTP status, prompt and generated tokens, queue depth,
//! running batch size, time to first released text, time between released chunks, and the
//! guard's outcome and finish reason of every response.

use crate::guard::generate::GenerationResult;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub guard: String,
    pub finish_reason: String,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<StatusLabel, Counter>,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    pub queue_depth: Gauge,
    pub batch_size: Gauge,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub outcomes: Family<OutcomeLabel, Counter>,
    /// Seconds in decode steps (graph run, sampling, judging), all rows together.
    pub decode_seconds: Counter<f64, AtomicU64>,
    /// Seconds the guard took inside those steps (scoring, smoothing, deciding, holding text
    /// back; not delivering released text to the client), summed over finished responses: with
    /// `decode_seconds`, the guard's overhead under load.
    pub guard_seconds: Counter<f64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("oc");
        let requests = Family::<StatusLabel, Counter>::default();
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let (prompt_tokens, generated_tokens) = (Counter::default(), Counter::default());
        let (queue_depth, batch_size) = (Gauge::default(), Gauge::default());
        let ttft = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let itl = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "http_requests",
            "HTTP requests by response status",
            requests.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens of admitted requests",
            prompt_tokens.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a batch slot",
            queue_depth.clone(),
        );
        registry.register(
            "batch_size",
            "Rows in the running decode batch",
            batch_size.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Request submitted to its first released (judged) text",
            ttft.clone(),
        );
        registry.register(
            "inter_token_latency_seconds",
            "Time between a response's consecutive released chunks",
            itl.clone(),
        );
        registry.register(
            "guard_decisions",
            "Responses by guard status (completed, flagged, paused) and finish reason",
            outcomes.clone(),
        );
        let decode_seconds = Counter::<f64, AtomicU64>::default();
        let guard_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "decode_seconds",
            "Time in decode steps (graph run, sampling, judging) of the running batch",
            decode_seconds.clone(),
        );
        registry.register(
            "guard_seconds",
            "Time the guard took inside decode steps (scoring, smoothing, deciding, holding text back; not delivering it), over finished responses",
            guard_seconds.clone(),
        );
        Metrics {
            registry,
            decode_seconds,
            guard_seconds,
            requests,
            prompt_tokens,
            generated_tokens,
            queue_depth,
            batch_size,
            ttft,
            itl,
            outcomes,
        }
    }

    /// Counts one finished response.
    pub fn finished(&self, r: &GenerationResult, finish_reason: &str) {
        self.prompt_tokens.inc_by(r.prompt_tokens as u64);
        self.generated_tokens.inc_by(r.tokens_generated as u64);
        self.guard_seconds.inc_by(r.timings.guard_ms / 1e3);
        let guard = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.outcomes
            .get_or_create(&OutcomeLabel {
                guard,
                finish_reason: finish_reason.to_string(),
            })
            .inc();
    }

    /// Counts one HTTP response.
    pub fn request(&self, status: u16) {
        self.requests
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
