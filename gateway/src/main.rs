//! `alertmesh`: sets up logging, parses the command line and runs the command.

use std::process::ExitCode;

use alertmesh_gateway::cli::{self, Cli, Command};
use alertmesh_gateway::config::{Config, EXIT_CONFIG};
use clap::Parser;
use tokio_util::sync::CancellationToken;

// Serving alerts allocates and frees many small buffers per alert on several threads
// (librdkafka's, the readers', tokio's); mimalloc does this with less CPU than glibc and
// returns memory instead of holding it in per-thread arenas.
// Built without transparent huge pages (`no_thp`: mimalloc no longer asks the kernel for
// them on the memory it maps): the first touch of such memory zeroes 2 MiB at once, and
// the readers' record batches, allocated on reader threads and freed on others, kept
// landing on fresh memory. Zeroing it was a tenth of the gateway's CPU for a stream of
// 1 KB alerts (bench_subscribe under `perf`: `clear_page_erms` under
// `do_huge_pmd_anonymous_page`); with 4 KiB pages only what is written is zeroed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything decodes Avro: apache-avro keeps the first limit set in the process.
    alertmesh_alert::limit_avro_allocations();
    // Header names that are not UTF-8 are left out and reported where records are read.
    alertmesh_mirror::kafka_headers::quiet_header_name_panics();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    init_tracing(if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            config,
            check,
            skip_files,
        } => {
            let loaded = if skip_files {
                Config::load(&config)
            } else {
                Config::load_checked(&config)
            };
            let config = match loaded {
                Ok(c) => c,
                Err(problems) => {
                    eprintln!("error: invalid configuration {}:", config.display());
                    for p in problems {
                        eprintln!("  {p}");
                    }
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            if check {
                println!(
                    "configuration ok: gateway {}, {} topic(s), {} mirror(s)",
                    config.gateway.name,
                    config.topics.len(),
                    config.mirrors.len()
                );
                for line in config.mirror_summary() {
                    println!("  {line}");
                }
                for q in &config.queries {
                    println!("  query {}: database {}", q.name, q.database);
                }
                return ExitCode::SUCCESS;
            }
            for line in config.unserved_mirrors() {
                tracing::warn!("{line}");
            }
            // Errors are checked to hold no property value; this catches any that would.
            let secrets = config.secrets();
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(on_signal(shutdown.clone()));
                match alertmesh_gateway::run(config, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {}", secrets.redact(&format!("{e:#}")));
                        ExitCode::FAILURE
                    }
                }
            })
        }
        other => runtime.block_on(cli::run_client(other)),
    }
}

/// Logs go to stderr; `RUST_LOG` (or `ALERTMESH_LOG`) filters them. Colours only on a
/// terminal: a log file or pipe gets plain text.
fn init_tracing(default: &str) {
    let filter = std::env::var("ALERTMESH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| format!("{default},librdkafka=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received");
    shutdown.cancel();
}
