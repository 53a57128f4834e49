//! The sim CPI as an external CPI executable: `bosh-sim-cpi -configPath FILE`, one JSON
//! request on stdin, one JSON response on stdout (always valid JSON), logs on stderr.

use bosh_cpi::serve::response_for_bytes;
use bosh_cpi::sim::SimCpi;
use bosh_cpi_protocol::{CpiErrorKind, CpiResponse};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Go-style flags: `-configPath FILE`, `-configPath=FILE`, or with two dashes.
fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let flag = text.trim_start_matches('-');
        if flag == "configPath" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = flag.strip_prefix("configPath=") {
            return Some(PathBuf::from(value));
        }
    }
    None
}

fn write_response(response: &CpiResponse) {
    let body = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"result":null,"error":{"type":"Bosh::Clouds::CpiError","message":"Encoding response","ok_to_retry":false},"log":""}"#.to_vec()
    });
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&body);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOSH_SIM_CPI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // Even a bug must leave valid JSON on stdout for the director.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
        write_response(&CpiResponse::error(
            CpiErrorKind::CpiError,
            format!("Internal error: {info}"),
            false,
        ));
        std::process::exit(1);
    }));

    let fail = |message: String| {
        tracing::error!("{message}");
        write_response(&CpiResponse::error(CpiErrorKind::CpiError, message, false));
        std::process::exit(1);
    };
    let Some(path) = config_path() else {
        fail("Usage: bosh-sim-cpi -configPath FILE".to_owned());
        return;
    };
    let cpi = match SimCpi::from_config_file(&path) {
        Ok(cpi) => cpi,
        Err(e) => {
            fail(format!("Loading config: {}", error_chain(&e)));
            return;
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        fail(format!("Reading stdin: {e}"));
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(format!("Starting runtime: {e}"));
            return;
        }
    };
    let response = runtime.block_on(response_for_bytes(&cpi, &input));
    write_response(&response);
}
