//! Renewals as the tools that do them lay the files out: certbot's `live/` symlinks swapped to
//! new files in `archive/`, and a copy that keeps the old file's modification time and size
//! (`cp -p`, `install -p`, `rsync -a`). Either way new handshakes get the new certificate
//! while the connected clients stay.

use std::path::Path;
use std::time::{Duration, SystemTime};

use resound::tls::TlsFiles;

use crate::support::*;
use crate::tls::{connector, handshake, next_json, pki, subscribe, trigger, wss, Pki};

/// Pads the PEM texts of `a` and `b` with blank lines so each file of one is as long as the
/// same file of the other: a renewal the file size does not reveal.
fn same_sizes(a: &mut Pki, b: &mut Pki) {
    for (x, y) in [(&mut a.cert, &mut b.cert), (&mut a.key, &mut b.key)] {
        let len = x.len().max(y.len());
        for s in [x, y] {
            let pad = len - s.len();
            s.push_str(&"\n".repeat(pad));
        }
    }
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, to: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(to).unwrap();
}

/// Serves `cert`/`key`, with a client of `old`'s CA connected and subscribed; renews with
/// `renew`, then checks that new handshakes get `new`'s certificate (and `old`'s no more),
/// that the client still receives what is triggered, and that a new client subscribes.
pub(crate) async fn renewal_is_picked_up(
    cert: &Path,
    key: &Path,
    old: &Pki,
    new: &Pki,
    renew: impl FnOnce(),
) {
    let server = TestServer::start_with(resound::Config {
        tls: Some(TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            poll_every: Duration::from_millis(100),
        }),
        ..config_with(app())
    })
    .await;
    let port = server.addr.port();
    let (mut ws, _) = wss(port, &connector(&old.ca)).await;
    subscribe(&mut ws, "news").await;
    // Several polls go by before the renewal: nothing changes yet.
    tokio::time::sleep(QUIET).await;
    assert!(handshake(port, &connector(&new.ca)).await.is_err());

    renew();
    let renewed = wait_until(
        async || handshake(port, &connector(&new.ca)).await.is_ok(),
        WAIT,
    )
    .await;
    assert!(renewed, "a new handshake never saw the renewed certificate");
    assert!(
        handshake(port, &connector(&old.ca)).await.is_err(),
        "the old certificate is still served"
    );
    trigger(port, &connector(&new.ca), "news", "after renewal").await;
    assert_eq!(next_json(&mut ws).await["data"], "after renewal");
    let (mut late, _) = wss(port, &connector(&new.ca)).await;
    subscribe(&mut late, "news").await;
}

#[tokio::test]
async fn a_certbot_renewal_that_swaps_the_live_symlinks_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, live) = (dir.path().join("archive"), dir.path().join("live"));
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let (mut old, mut new) = (pki("old CA"), pki("new CA"));
    same_sizes(&mut old, &mut new);
    std::fs::write(archive.join("fullchain1.pem"), &old.cert).unwrap();
    std::fs::write(archive.join("privkey1.pem"), &old.key).unwrap();
    let (cert, key) = (live.join("fullchain.pem"), live.join("privkey.pem"));
    std::os::unix::fs::symlink("../archive/fullchain1.pem", &cert).unwrap();
    std::os::unix::fs::symlink("../archive/privkey1.pem", &key).unwrap();

    renewal_is_picked_up(&cert, &key, &old, &new, || {
        // certbot writes the next version into archive/, then points each link in live/ at
        // it (unlink, then symlink). The new files have the old ones' times and sizes here,
        // so only the links' targets tell the renewal apart.
        for (file, text, link) in [("fullchain", &new.cert, &cert), ("privkey", &new.key, &key)] {
            let (was, now) = (
                archive.join(format!("{file}1.pem")),
                archive.join(format!("{file}2.pem")),
            );
            std::fs::write(&now, text).unwrap();
            set_mtime(&now, mtime(&was));
            std::fs::remove_file(link).unwrap();
            std::os::unix::fs::symlink(format!("../archive/{file}2.pem"), link).unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_renewal_copied_in_with_the_old_time_and_size_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut old, mut new) = (pki("old CA"), pki("new CA"));
    same_sizes(&mut old, &mut new);
    let (cert, key) = crate::tls::install(dir.path(), &old);
    let when = [mtime(&cert), mtime(&key)];

    renewal_is_picked_up(&cert, &key, &old, &new, || {
        // As `install -p` or `rsync -a` deliver it: a new file renamed over the old path,
        // carrying a modification time that is not the time of the copy (here the old file's).
        for (path, text, at) in [(&cert, &new.cert, when[0]), (&key, &new.key, when[1])] {
            let tmp = path.with_extension("copy");
            std::fs::write(&tmp, text).unwrap();
            set_mtime(&tmp, at);
            std::fs::rename(&tmp, path).unwrap();
        }
        assert_eq!([mtime(&cert), mtime(&key)], when);
    })
    .await;
}

#[tokio::test]
async fn a_kubernetes_secret_update_that_swaps_the_data_symlink_is_picked_up() {
    // A Secret mounted as a volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`.
    // The kubelet updates it by writing a new timestamped folder, pointing a temporary link
    // at it, renaming that link over `..data` (one atomic step for both files) and removing
    // the old folder. The paths resound was given never change.
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let (mut old, mut new) = (pki("old CA"), pki("new CA"));
    same_sizes(&mut old, &mut new);
    let first = mount.join("..2026_12_07_00_00_00.000000001");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("tls.crt"), &old.cert).unwrap();
    std::fs::write(first.join("tls.key"), &old.key).unwrap();
    std::os::unix::fs::symlink("..2026_12_07_00_00_00.000000001", mount.join("..data")).unwrap();
    let (cert, key) = (mount.join("tls.crt"), mount.join("tls.key"));
    std::os::unix::fs::symlink("..data/tls.crt", &cert).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", &key).unwrap();
    let when = [mtime(&cert), mtime(&key)];

    renewal_is_picked_up(&cert, &key, &old, &new, || {
        let second = mount.join("..2026_12_07_01_00_00.000000002");
        std::fs::create_dir(&second).unwrap();
        for (name, text, at) in [
            ("tls.crt", &new.cert, when[0]),
            ("tls.key", &new.key, when[1]),
        ] {
            std::fs::write(second.join(name), text).unwrap();
            // Same times and sizes as before: only where `..data` points tells them apart.
            set_mtime(&second.join(name), at);
        }
        std::os::unix::fs::symlink("..2026_12_07_01_00_00.000000002", mount.join("..data_tmp"))
            .unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        std::fs::remove_dir_all(&first).unwrap();
        assert_eq!([mtime(&cert), mtime(&key)], when);
    })
    .await;
}
