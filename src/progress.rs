//! How long-running library work reports progress: one small trait, so the library draws
//! nothing itself. The binary shows bars on a terminal; tests and libraries pass [`Silent`].
//! Calls may come from several threads at once (probe fits run in parallel).

/// Receives progress of one piece of work (fits, rows, replayed exchanges).
pub trait Progress: Sync {
    /// The work has `total` units (known only once it starts, e.g. rows after selection).
    fn start(&self, _total: u64) {}
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// `done` units are done in all.
    fn set_position(&self, done: u64);
    /// What is running now, or a rate (`layer 8`, `1200 tok/s`).
    fn message(&self, _text: &str) {}
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn advance(&self, _n: u64) {}
    fn set_position(&self, _done: u64) {}
}
