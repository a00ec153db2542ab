//! The `resound` binary: read the configuration, set up logging, bind, serve until a signal.

mod json_log;

use std::process::ExitCode;

use resound::config::{self, LogFormat, DEV_APP};
use tracing_subscriber::EnvFilter;

/// mimalloc, chosen on measurement: see docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut matches = config::command().get_matches();
    let is_health = matches.subcommand_matches("health").is_some();
    let mut cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    // `resound health` alone, in a container whose main process is resound started with
    // flags: check the server those flags describe.
    #[cfg(target_os = "linux")]
    if is_health && std::env::args_os().len() == 2 {
        if let Some((args, dir)) = resound::health::main_process_args() {
            if let Ok(main) = config::command().try_get_matches_from(args) {
                (matches, cwd) = (main, dir);
            }
        }
    }
    let config = match config::load(&matches, &cwd) {
        Ok(c) => c,
        // A container health check reserves exit code 2: `resound health` says unhealthy.
        Err(e) if is_health => {
            eprintln!("resound health: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("resound: {e}");
            return ExitCode::from(2);
        }
    };
    if is_health {
        return health(&config);
    }
    let level = if config.debug {
        "resound=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The WebSocket library's debug and trace lines print whole frames (signatures, event
    // data): kept at `info` whatever RUST_LOG asks, so no level logs a secret.
    let filter = filter.add_directive("tungstenite=info".parse().expect("a valid directive"));
    // Logs on stderr, as documented (docs/operations.md); stdout holds only the banner.
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    match config.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One object a line, the connection's fields (`socket_id`, `app_id`) beside the
        // event's (see json_log.rs).
        LogFormat::Json => logs
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_log::JsonLines)
            .init(),
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }

    let runtime = match config.workers {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    let tls = match config.tls.as_ref().map(resound::tls::Tls::new).transpose() {
        Ok(tls) => tls.map(std::sync::Arc::new),
        Err(e) => {
            eprintln!("resound: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let (shutdown, again) = resound::shutdown::signals();
        let addr = format!("{}:{}", config.host, config.port);
        let listener = match resound::server::bind(&addr, config.reuse_port).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("resound: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        let (http, ws) = match config.tls {
            Some(_) => ("https", "wss"),
            None => ("http", "ws"),
        };
        println!(
            "resound {} listening on {http}://{local}{}",
            env!("CARGO_PKG_VERSION"),
            config.path
        );
        println!(
            "  WebSocket: {ws}://{local}{}/app/{{key}}   HTTP API: {http}://{local}{}/apps/{{id}}/...",
            config.path, config.path
        );
        if config.dev_app {
            println!(
                "  WARNING: no app configured; using the development app (not for production):"
            );
            println!(
                "    REVERB_APP_ID={}  REVERB_APP_KEY={}  REVERB_APP_SECRET={}",
                DEV_APP.0, DEV_APP.1, DEV_APP.2
            );
        } else {
            for app in &config.apps {
                println!("  app id={} key={}", app.id, app.key);
            }
        }
        if let Some(s) = &config.scaling {
            println!(
                "  scaling: Redis {} on channel {:?}",
                resound::config::redact(&s.url),
                s.channel
            );
        }
        if config.console.is_some() {
            println!("  debug console: {http}://{local}{}/console", config.path);
        }
        match &config.metrics {
            resound::config::Metrics::Off => {}
            resound::config::Metrics::MainPort => {
                println!("  metrics: {http}://{local}{}/metrics", config.path);
            }
            resound::config::Metrics::Own(addr) => println!("  metrics: http://{addr}/metrics"),
        }
        let state = match resound::server::try_state(config) {
            Ok(state) => state,
            Err(e) => {
                eprintln!("resound: {e}");
                return ExitCode::from(1);
            }
        };
        // A second SIGINT/SIGTERM (Ctrl-C again) closes what the drain has not reached yet.
        let hurry = state.clone();
        tokio::spawn(async move {
            again.await;
            tracing::info!("second signal: closing the remaining connections now");
            hurry.close_all();
        });
        resound::server::serve_with(listener, state, tls, shutdown).await;
        println!("resound stopped");
        ExitCode::SUCCESS
    })
}

/// `resound health`: exit 0 when the configured server answers `/up` with 200, 1 otherwise
/// (also when the settings are refused, above).
fn health(config: &resound::Config) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(resound::health::check(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resound health: {e}");
            ExitCode::from(1)
        }
    }
}
