//! Log set-up: `tracing` to stderr; -q warnings only, default info, -v debug, -vv trace; text,
//! or one JSON object per line (`--log-format json`) for log shippers.

use tracing::Level;

use crate::proxy::accesslog::LogFormat;

pub fn init(verbosity: u8, format: LogFormat) {
    let level = match verbosity {
        0 => Level::WARN,
        1 => Level::INFO,
        2 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
