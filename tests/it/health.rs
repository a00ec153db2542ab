//! `resound health`: exit 0 when the configured server answers `/up`, 1 otherwise; over TLS
//! when the configuration names a certificate.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Runs `resound [args] health` off the runtime's thread (the server under test runs on it).
async fn health(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || run_health(&dir, &args))
        .await
        .unwrap()
}

fn run_health(dir: &Path, args: &[String]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resound"));
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("REVERB_") || k.starts_with("RESOUND_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(args).arg("health").output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn health_exits_0_for_a_running_server_and_1_for_a_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    let (code, err) = health(dir.path(), &["--host", "127.0.0.1", "--port", &port]).await;
    assert_eq!(code, Some(0), "{err}");
    // Bound to every address, the server is asked on loopback.
    let (code, err) = health(dir.path(), &["--host", "0.0.0.0", "--port", &port]).await;
    assert_eq!(code, Some(0), "{err}");
    let closed = free_port().to_string();
    let (code, err) = health(dir.path(), &["--host", "127.0.0.1", "--port", &closed]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
    // A server under a path prefix answers /up there only.
    let (code, _) = health(
        dir.path(),
        &["--host", "127.0.0.1", "--port", &port, "--path", "/ws"],
    )
    .await;
    assert_eq!(code, Some(1), "/ws/up is not this server's");
}

#[tokio::test]
async fn health_speaks_tls_when_the_configuration_has_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::tls::pki("health CA");
    let (cert, key) = crate::tls::install(dir.path(), &pki);
    let server = TestServer::start_with(resound::Config {
        tls: Some(resound::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            poll_every: std::time::Duration::from_secs(60),
        }),
        ..config_with(app())
    })
    .await;
    let port = server.addr.port().to_string();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls_args = ["--port", &port, "--tls-cert", cert, "--tls-key", key];
    let (code, err) = health(dir.path(), &tls_args).await;
    assert_eq!(code, Some(0), "{err}");
    // Plain HTTP to the TLS port is no answer.
    let (code, _) = health(dir.path(), &["--port", &port]).await;
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn health_asks_under_the_path_prefix_and_a_bad_setting_is_unhealthy_not_2() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(resound::Config {
        path: "/reverb".into(),
        ..config_with(app())
    })
    .await;
    let port = server.addr.port().to_string();
    // Written as a Laravel .env writes it: no leading slash, a trailing one.
    let (code, err) = health(dir.path(), &["--port", &port, "--path", "reverb/"]).await;
    assert_eq!(code, Some(0), "{err}");
    // A setting the configuration refuses: Docker reserves exit code 2 in a HEALTHCHECK,
    // so the check says unhealthy (1), with the reason.
    let (code, err) = health(dir.path(), &["--port", &port, "--tls-cert", "missing.pem"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("RESOUND_TLS_KEY"), "{err}");
}
