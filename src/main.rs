//! Wiring only: parse, log, run, exit code (0 ok, 1 runtime failure, 2 bad configuration).

use std::process::ExitCode;

use tern::cli::Command;
use tern::config::Config;
use tern::control::{self, RunError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tune_allocator();
    // Before any thread exists, so that every thread inherits the blocked set.
    control::block_signals();
    let cli = match tern::cli::parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tern: {}", tern::cli::one_line_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Some(Command::Check(args)) => {
            let checked = tern::config::client_auth_from_flags(&args.client_cert)
                .and_then(|auth| tern::config::file::load_with(&args.config, auth.as_ref()));
            return match checked {
                Ok(t) => {
                    println!(
                        "{}: ok ({})",
                        args.config.display(),
                        tern::config::file::summary(&t)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tern: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Demo(args)) => {
            tern::logging::init(args.tuning.verbosity(), args.tuning.log_format);
            tern::demo::run(args)
        }
        None => {
            tern::logging::init(cli.run.tuning.verbosity(), cli.run.tuning.log_format);
            let args = &cli.run;
            Config::from_args(args)
                .map_err(|e| RunError::Config(e.0))
                .and_then(|cfg| {
                    control::run(
                        cfg,
                        &mut |current| Config::reload(args, current).map_err(|e| e.0),
                        |_| {},
                    )
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// mimalloc (v3) commits its arenas eagerly on Linux, and then purging freed pages does not
/// give them back, so memory touched in a burst (handshakes, busy connections) stays resident.
/// Committing on demand lets the workers' periodic `mi_collect` return it. Set before the
/// workers start, so their arenas are made this way.
fn tune_allocator() {
    const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: setting a mimalloc option is always allowed; it affects arenas made afterwards.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}
