//! The serving settings: TLS files, the drain window, SO_REUSEPORT.

use std::time::Duration;

use super::{load_args, tmpdir};

#[test]
fn drain_defaults_to_10_s_takes_fractions_and_zero_and_refuses_the_rest() {
    let d = tmpdir("drain");
    let drain = |args: &[&str]| load_args(args, d.path()).map(|c| c.drain);
    assert_eq!(drain(&[]).unwrap(), Duration::from_secs(10));
    assert_eq!(drain(&["--drain-seconds", "0"]).unwrap(), Duration::ZERO);
    assert_eq!(
        drain(&["--drain-seconds", "2.5"]).unwrap(),
        Duration::from_millis(2500)
    );
    for bad in ["-1", "soon", "3601", "NaN"] {
        let flag = format!("--drain-seconds={bad}");
        let e = drain(&[&flag]).unwrap_err().to_string();
        assert!(
            e.contains("RESOUND_DRAIN_SECONDS") && e.contains(bad),
            "{e}"
        );
    }
}

#[test]
fn reuse_port_is_on_unless_turned_off() {
    let d = tmpdir("reuse");
    assert!(load_args(&[], d.path()).unwrap().reuse_port);
    let off = load_args(&["--reuse-port=false"], d.path()).unwrap();
    assert!(!off.reuse_port);
}

#[test]
fn tls_needs_both_files_checked_at_load_and_takes_them_from_the_config_file() {
    let d = tmpdir("tls");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(d.path().join("key.pem"), key.serialize_pem()).unwrap();
    let (c, k) = (d.path().join("cert.pem"), d.path().join("key.pem"));
    let (c, k) = (c.to_str().unwrap(), k.to_str().unwrap());

    assert_eq!(load_args(&[], d.path()).unwrap().tls, None);
    let tls = load_args(&["--tls-cert", c, "--tls-key", k], d.path())
        .unwrap()
        .tls
        .unwrap();
    assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some(c), Some(k)));
    assert_eq!(tls.poll_every, Duration::from_secs(5));

    let e = load_args(&["--tls-key", k], d.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("RESOUND_TLS_CERT is not"), "{e}");
    // The files are read at load: a key in place of the certificate is refused now.
    let e = load_args(&["--tls-cert", k, "--tls-key", k], d.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no certificate in it"), "{e}");

    let file = d.path().join("resound.toml");
    std::fs::write(
        &file,
        format!("[server]\ntls_cert = {c:?}\ntls_key = {k:?}\ntls_reload_interval = 0.5\n"),
    )
    .unwrap();
    let tls = load_args(&["--config", file.to_str().unwrap()], d.path())
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(tls.poll_every, Duration::from_millis(500));
}
