//! The guard: everything between a probe score and the text a user sees. Probe risks come in every N tokens, are
//! smoothed, and turn into continue / flag / pause decisions ([`GuardConfig::decide`]); probe risks come in every N tokens, are
//! smoothed, and turn into continue / flag / pause decisions; [`HeldStream`] holds generated text
//! back until the probe window containing it has been judged.
//!
//! Pure and ORT-free: the decode engine feeds it raw risks and token ids. Engine protocol, per
//! generated token (count `n` after it, 1-based):
//! 1. `stream.push(id)`; run the forward pass that feeds `id`, giving its hidden state;
//! 2. if `guard.should_probe(n)`: `let step = guard.observe(n, probe(hidden))?;`
//!    `stream.apply(&step)?;` and stop generating when `step.decision == Decision::Pause`;
//! 3. when generation stops for any other reason (stop token, length limit): if
//!    `guard.needs_final_probe(n)`, probe the last pushed token the same way, so the last
//!    partial window is judged before it is released; then `stream.finish()?`.
//!
//! A stop token is not pushed: it is not part of the response and has no hidden state of its own
//! until it is fed, which a stopping engine never does.

pub mod generate;
pub mod replay;
pub mod sampling;

mod config;
mod detok;
mod mean;
mod scorer;
mod state;
mod stream;

pub use config::{Decision, GuardConfig, GuardStatus, Smoothing};
pub use detok::IncrementalDecoder;
pub use mean::RunningMean;
pub use scorer::{GuardSetup, RiskScorer, Scorers, SecondStage};
pub use state::{Guard, ProbeStep};
pub use stream::{HeldStream, TextSink, TokenDecoder, WriteSink};

#[cfg(test)]
mod tests;
