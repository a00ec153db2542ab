//! `resound health`: exit 0 when the configured server answers `/up`, 1 otherwise; over TLS
//! when the configuration names a certificate.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Runs `resound [args] health` off the runtime's thread (the server under test runs on it).
async fn health(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    resound(dir, &[args, &["health"]].concat()).await
}

/// Runs the binary in `dir` with exactly `args`: its exit code and stderr.
async fn resound(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || resound_command(&dir).args(args).output())
        .await
        .unwrap()
        .unwrap();
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
    // Plain HTTP to the TLS port is no answer, and the check says why.
    let (code, err) = health(dir.path(), &["--port", &port]).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains("answered with TLS") && err.contains("RESOUND_TLS_CERT"),
        "{err}"
    );
}

/// The server's flags may follow `health` too, as an operator writes a Dockerfile's
/// `HEALTHCHECK CMD resound health --port 9000`: they used to be a usage error, exit 2, which
/// Docker reserves.
#[tokio::test]
async fn health_takes_the_servers_flags_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(resound::Config {
        path: "/reverb".into(),
        ..config_with(app())
    })
    .await;
    let port = server.addr.port().to_string();
    let (code, err) = resound(
        dir.path(),
        &["health", "--port", &port, "--path", "/reverb"],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = resound(dir.path(), &["health", "--port", &port]).await;
    assert_eq!(code, Some(1), "/up without the prefix is not served: {err}");
    // Given on both sides, the one after `health` is used, as the last flag wins.
    let closed = free_port().to_string();
    let both = [
        "--port", &closed, "health", "--port", &port, "--path", "/reverb",
    ];
    let (code, err) = resound(dir.path(), &both).await;
    assert_eq!(code, Some(0), "{err}");
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

/// What the Dockerfile says about running the image: its `ENV` settings, and its
/// `HEALTHCHECK`'s command (exec form) without the binary's path.
fn dockerfile() -> (Vec<(String, String)>, Vec<String>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    // Continuation lines joined, as Docker reads them.
    let text = text.replace("\\\n", " ");
    let mut env = Vec::new();
    let mut check = None;
    let mut stage = 0;
    for line in text.lines().map(str::trim) {
        if line.starts_with("FROM ") {
            stage += 1;
        }
        if stage < 2 {
            continue; // the build stage's settings are not the image's
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV key=value");
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        if let Some(rest) = line.strip_prefix("HEALTHCHECK ") {
            let cmd = &rest[rest.find("CMD ").expect("HEALTHCHECK ... CMD") + 4..];
            let argv: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
            check = Some(argv);
        }
    }
    let check = check.expect("the image has a HEALTHCHECK");
    assert_eq!(
        check[0], "/usr/local/bin/resound",
        "the checked binary is the image's"
    );
    (env, check[1..].to_vec())
}

#[tokio::test]
async fn the_dockerfiles_health_check_passes_against_the_images_settings() {
    // No container runtime on the test machines: the image's own settings (its ENV, with the
    // port moved to a free one) and its HEALTHCHECK command, run as the container would.
    let (env, check) = dockerfile();
    assert!(
        env.iter()
            .any(|(k, v)| k == "REVERB_SERVER_HOST" && v == "0.0.0.0"),
        "the image binds every address: {env:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let settings: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "REVERB_SERVER_PORT" => (k, port.clone()),
            _ => (k, v),
        })
        .chain([
            ("REVERB_APP_ID".into(), APP_ID.into()),
            ("REVERB_APP_KEY".into(), KEY.into()),
            ("REVERB_APP_SECRET".into(), SECRET.into()),
        ])
        .collect();
    let run_check =
        |settings: Vec<(String, String)>, check: Vec<String>, dir: std::path::PathBuf| {
            tokio::task::spawn_blocking(move || {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_resound"));
                cmd.current_dir(dir)
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap());
                cmd.envs(settings).args(check);
                let out = cmd.output().unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
        };
    let mut server = Command::new(env!("CARGO_BIN_EXE_resound"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(settings.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_until(
        async || tokio::net::TcpStream::connect(addr).await.is_ok(),
        WAIT,
    )
    .await;
    assert!(up, "the server did not start with the image's settings");
    let (code, err) = run_check(settings.clone(), check.clone(), dir.path().to_owned())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "healthy server reported unhealthy: {err}");
    let _ = server.kill();
    let _ = server.wait();
    let (code, _) = run_check(settings, check, dir.path().to_owned())
        .await
        .unwrap();
    assert_eq!(
        code,
        Some(1),
        "a stopped server is unhealthy (1, never 2: Docker reserves 2)"
    );
}

#[test]
fn the_docker_build_context_keeps_what_the_dockerfile_copies() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ignore = std::fs::read_to_string(format!("{root}/.dockerignore")).unwrap();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    let sources: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .flat_map(|rest| {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    assert!(sources.contains(&"src"), "{sources:?}");
    for source in sources {
        let top = source.trim_end_matches('/');
        assert!(
            std::path::Path::new(root).join(top).exists(),
            "COPY {source}: no such path"
        );
        for p in &patterns {
            let p = p.trim_end_matches('/');
            let excluded = top == p
                || top.starts_with(&format!("{p}/"))
                || (p.starts_with("**/") && top.split('/').any(|seg| seg == &p[3..]))
                || (p.starts_with("*.") && top.ends_with(&p[1..]));
            assert!(
                !excluded,
                ".dockerignore pattern {p:?} excludes COPY {source}"
            );
        }
    }
}
