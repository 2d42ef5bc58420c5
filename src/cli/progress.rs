//! Progress bars: the binary's side of [`open_constitution::progress::Progress`] (the library
//! draws nothing itself).

use indicatif::{ProgressBar, ProgressStyle};
use open_constitution::progress::Progress;

/// An indicatif bar as the library's progress sink.
pub struct Bar(pub ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }
    fn message(&self, text: &str) {
        self.0.set_message(text.to_string());
    }
}

impl Bar {
    /// Clears the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A progress bar over `len` steps, hidden with --quiet (and when stderr is not a terminal).
pub fn bar(len: u64, what: &str) -> Bar {
    if !tracing::enabled!(tracing::Level::INFO) {
        return Bar(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {what} ({elapsed})")
            .expect("valid template")
            .with_key("what", {
                let w = what.to_string();
                move |_: &indicatif::ProgressState, f: &mut dyn std::fmt::Write| {
                    let _ = f.write_str(&w);
                }
            })
            .progress_chars("=> "),
    );
    Bar(bar)
}

/// Extraction's bar on a terminal (rows, rows/s, tok/s); hidden elsewhere, where the job logs a
/// line every 30 s instead. Returns the bar and whether the job should log.
pub fn extraction(visible: bool) -> (Bar, bool) {
    use std::io::IsTerminal;
    let terminal = visible && std::io::stderr().is_terminal();
    if !terminal {
        return (Bar(ProgressBar::hidden()), visible);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "extract {bar:30} {pos}/{len} rows  {per_sec} {msg}  eta {eta}",
        )
        .expect("valid template"),
    );
    (Bar(bar), false)
}
