//! The `sluice` binary: parse the command line as kafka-server-start does
//! (`[--config FILE] [--override key=value]...`), set up logging, run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::config::BrokerConfig;

const USAGE: &str = "usage: sluice [--config FILE] [--override key=value]...\n\
With no arguments the broker starts with embedded defaults: PLAINTEXT://127.0.0.1:9092, data under ./data, node id 1.";

fn parse_args() -> Result<(Option<PathBuf>, Vec<String>), String> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut overrides = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => file = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "--override" => overrides.push(args.next().ok_or("--override needs key=value")?),
            "-h" | "--help" => return Err(String::new()),
            // kafka-server-start takes the properties file as a bare argument.
            other if !other.starts_with('-') && file.is_none() => file = Some(PathBuf::from(other)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((file, overrides))
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    // Colour only for a terminal: log files and CI captures stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// SIGTERM or SIGINT. The handlers are installed when this is called (not when the future is
/// first polled), so a signal during startup (log recovery) still ends in a clean shutdown
/// once the broker is up, instead of killing the process mid-recovery.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn main() -> ExitCode {
    let (file, overrides) = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match BrokerConfig::load(file.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format_json);
    sluice::alloc::tune_system_allocator();
    // A partition holds a descriptor (its active segment), so many partitions need many: the
    // soft limit goes up to the hard one, as Kafka's service setup does.
    let fd_limit = sluice::storage::segment_file::raise_descriptor_limit();
    tracing::debug!(fd_limit, "file descriptor limit");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { sluice::broker::run(config, shutdown_signal()).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
