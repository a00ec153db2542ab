//! The binary reads a Laravel `.env` as Laravel does (phpdotenv 5), so that both sides of a
//! signature use the same secret: an unquoted `#` starts a comment, `$` and backslashes are
//! literal, and lines the old shell-style reader refused (`"pa$word"`, `s3cr\et`) are fine.
//! Values in the process environment lose one pair of surrounding quotes, as `env()` does,
//! so `docker run --env-file .env` (which keeps quotes) reads the same values.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::support::{free_port, resound_command, Api, Client, APP_ID, KEY, SECRET, WAIT};

/// Stops the server when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary in `dir` and waits for its banner (its stdout kept open, read to the
/// end by a thread); the exit status and stderr if it stops instead.
fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Running, String> {
    let mut cmd = resound_command(dir);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while let Ok(line) = rx.recv_timeout(WAIT) {
        if line.contains("listening") {
            return Ok(Running(child));
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    Err(format!("exited {status}: {err}"))
}

async fn connect(port: u16) -> Value {
    let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut c = Client {
        ws,
        socket_id: String::new(),
    };
    let hello = c.recv().await;
    serde_json::from_str(hello["data"].as_str().unwrap()).unwrap()
}

fn api(port: u16, secret: &str) -> Api {
    Api {
        addr: ([127, 0, 0, 1], port).into(),
        app_id: APP_ID.to_owned(),
        key: KEY.to_owned(),
        secret: secret.to_owned(),
        prefix: String::new(),
    }
}

#[tokio::test]
async fn a_laravel_dotenv_gives_the_values_laravel_reads() {
    let dir = tempfile::Builder::new()
        .prefix("resound-dotenv-")
        .tempdir()
        .unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "APP_NAME=\"My App\"\nDB_PASSWORD=\"pa$word\"\nMAIL_PASSWORD=s3cr\\et\n\
             MAIL_FROM_NAME=\"${{APP_NAME}}\"\nREVERB_APP_ID={APP_ID}\nREVERB_APP_KEY={KEY}\n\
             REVERB_APP_SECRET={SECRET}#rotated-by-ops\nREVERB_SERVER_HOST=127.0.0.1\n\
             REVERB_SERVER_PORT={port}\n"
        ),
    )
    .unwrap();
    // As `docker run --env-file` passes a quoted line: the quotes are part of the value.
    let _server = start(dir.path(), &[("REVERB_APP_ACTIVITY_TIMEOUT", "\"45\"")])
        .unwrap_or_else(|e| panic!("a .env Laravel accepts stopped resound: {e}"));

    // Laravel signs with the secret before the `#`; resound checks with the same one.
    let ok = api(port, SECRET).get("/channels", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let with_comment = format!("{SECRET}#rotated-by-ops");
    let refused = api(port, &with_comment).get("/channels", &[]).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    let hello = connect(port).await;
    assert_eq!(hello["activity_timeout"], 45, "{hello}");
}

#[test]
fn a_dotenv_laravel_refuses_stops_resound_naming_the_line() {
    let dir = tempfile::Builder::new()
        .prefix("resound-dotenv-bad-")
        .tempdir()
        .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "REVERB_APP_ID=1\nREVERB_APP_KEY=k\nREVERB_APP_SECRET=two words\n",
    )
    .unwrap();
    let port = free_port().to_string();
    let err = match start(dir.path(), &[("REVERB_SERVER_PORT", &port)]) {
        Ok(_) => panic!("started with a .env Laravel refuses"),
        Err(e) => e,
    };
    assert!(err.contains("exit status: 2"), "{err}");
    assert!(
        err.contains(".env") && err.contains("line 3") && err.contains("two words"),
        "{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line of error: {err}"
    );
}
