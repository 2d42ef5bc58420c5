//! The `open-constitution` command line: one subcommand per step of the pipeline.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Exit quietly when stdout is closed early (`... | head`), like other Unix tools, instead of
    // panicking on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args.command, args.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear message, with its causes, and exit code 2 for every handled failure.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
