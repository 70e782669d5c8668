//! `aws-log-forwarder` binary: command dispatch, logging set-up, runtime and signals.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use aws_log_forwarder::{Config, LogFormat, LogSettings};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, EXIT_FAILURE};

/// Parsing allocates many small, short-lived strings per event; mimalloc handles that
/// pattern markedly faster than the system allocator (measured with `parse` on a
/// generated CloudFront file; see the README's performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (unless `MIMALLOC_ALLOW_THP` is
/// set, which mimalloc then honours itself).
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), so on the
/// common `madvise` and `always` kernel settings every 2 MiB region it touches at all
/// becomes resident whole. Measured with `parse` of the 10-line CloudFront sample:
/// 38 MB peak RSS with huge pages, 21 MB without, for the same CPU time (and the same
/// CPU time on a 200,000-record file); crates/alf-bench/README.md. A container limit
/// sees the resident figure. `PR_SET_THP_DISABLE` applies to the whole process,
/// including the arena mimalloc reserved before `main`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // One FFI call: see the SAFETY note.
fn without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes four integer arguments and only
        // sets a flag of this process; a failure (old kernel) leaves huge pages on.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(not(target_os = "linux"))]
fn without_transparent_huge_pages() {}

/// mimalloc keeps the pages a thread freed for `MIMALLOC_PURGE_DELAY` milliseconds
/// (1,000 by default) before giving them back to the system. The daemon frees whole
/// batches and request bodies (megabytes) on threads that do not reuse them at once,
/// so that delay is what a container limit sees. At 0 the freed pages went back at
/// once and were faulted in again for the next chunk: one 300,000-record CloudFront
/// object cost the daemon 9.9-10.4 CPU-s at 0 against 7.3-7.6 at 5 ms, for a peak RSS
/// of 68 against 86-91 MB (1,000 ms, mimalloc's default: 104 MB with request
/// compression off; crates/alf-bench/E2E.md, section 5). 5 ms keeps one object under
/// 100 MB and four under 150 MB for most of the CPU. A `MIMALLOC_PURGE_DELAY` in the
/// environment still wins. Only the long-running commands (`run`, `replay`) set it:
/// `parse` exits when done.
#[allow(unsafe_code)] // One FFI call: see the SAFETY note.
fn return_freed_memory_soon() {
    /// `mi_option_purge_delay` in `mimalloc.h` (v2 and v3; the Rust bindings do not
    /// name it).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const PURGE_DELAY_MS: std::ffi::c_long = 5;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores a number in mimalloc's option table (atomic);
        // any value of this option is valid, and it may be called at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. } | Command::Replay(_)) {
        return_freed_memory_soon();
    }
    let code = match cli.command {
        Command::Parse(args) => cli::parse_command(&args),
        Command::CheckConfig { config, output } => {
            cli::check_config_command(config.as_deref(), output)
        }
        Command::Replay(args) => match Config::load_without_queue(args.config.as_deref()) {
            Err(errors) => cli::config_errors(&errors),
            Ok(config) => {
                init_logging(&config.log);
                run_replay(config, &args)
            }
        },
        Command::Run { config } => match Config::load(config.as_deref()) {
            Err(errors) => cli::config_errors(&errors),
            Ok(config) => {
                init_logging(&config.log);
                match run_daemon(config) {
                    Ok(()) => 0,
                    Err(e) => {
                        // One line, in the configured log format (stderr either way).
                        tracing::error!("{e:#}");
                        EXIT_FAILURE
                    }
                }
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Logs go to stderr (stdout stays free for `parse` output and container conventions
/// treat both alike). `RUST_LOG`, when set, wins over `log.level`.
fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("cannot set up logging: {e}");
    }
}

fn run_daemon(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Parsing threads (object_concurrency) plus intake body encoding and the S3
        // bridges' headroom.
        .max_blocking_threads(config.processing.object_concurrency + 32)
        .thread_name("alf-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        aws_log_forwarder::run(config, shutdown).await
    });
    // A blocking thread still waiting on an S3 read must not keep the process alive:
    // its message was not deleted and will be redelivered.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result?;
    Ok(())
}

/// `replay`: the summary on stdout (text on a terminal, else one JSON object);
/// non-zero when an object failed or the replay was interrupted.
fn run_replay(config: Config, args: &cli::ReplayArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.processing.object_concurrency + 32)
        .thread_name("alf-worker")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let options = args.options();
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        aws_log_forwarder::run_replay(config, options, shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Err(e) => {
            eprintln!("replay: {e}");
            EXIT_FAILURE
        }
        Ok(summary) => {
            if std::io::stdout().is_terminal() {
                print!("{}", summary.to_text());
            } else {
                println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            }
            if summary.succeeded() { 0 } else { EXIT_FAILURE }
        }
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("signal received: shutting down (send again to exit at once)");
    shutdown.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now; unfinished messages will be redelivered");
    std::process::exit(130);
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
