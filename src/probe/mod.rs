//! Linear activation probes: training with a validated regularization grid, threshold
//! calibration for target false-positive rates, evaluation, layer sweeps, and the [`Probe`] type
//! the guard loads to score hidden states (label 1 = unsafe assistant behaviour).

pub mod calibrate;
pub mod config;
pub mod eval;
pub mod fit;
mod guard;
pub(crate) mod io;
pub mod metrics;
pub(crate) mod plot;
pub mod scorer;
pub mod split;
pub mod stream;
pub mod sweep;
pub mod train;

pub use config::{ClassWeight, ProbeConfig, StreamCalibration};
pub use eval::{evaluate, EvalReport};
pub use io::Probe;
pub use metrics::Metrics;
pub use split::{Split, SplitIndices};
pub use sweep::{sweep, SweepReport};
pub use train::{load_layer, train_layer, LayerInput, TrainOptions, TrainedProbe};
