//! The debug console: off unless enabled, its token from any source and never shown.

use super::{load_args, tmpdir};

#[test]
fn console_is_off_unless_enabled_and_its_token_is_hidden() {
    let d = tmpdir("console");
    let c = load_args(&["--console-token", "t0ken-of-the-console"], d.path()).unwrap();
    assert!(c.console.is_none(), "a token alone does not enable it");
    let c = load_args(&["--console"], d.path()).unwrap();
    assert_eq!(c.console.unwrap().token, None);
    let c = load_args(
        &["--console", "--console-token", "t0ken-of-the-console"],
        d.path(),
    )
    .unwrap();
    let console = c.console.unwrap();
    assert_eq!(console.token.as_deref(), Some("t0ken-of-the-console"));
    let shown = format!("{console:?}");
    assert!(
        !shown.contains("t0ken") && shown.contains("\"***\""),
        "{shown}"
    );
    let file = d.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nconsole_enabled = true\nconsole_token = \"from-the-file\"\n",
    )
    .unwrap();
    let c = load_args(&["--config", file.to_str().unwrap()], d.path()).unwrap();
    assert_eq!(c.console.unwrap().token.as_deref(), Some("from-the-file"));
    std::fs::write(d.path().join(".env"), "RESOUND_CONSOLE_ENABLED=maybe\n").unwrap();
    let e = load_args(&[], d.path()).unwrap_err().to_string();
    assert!(e.contains("RESOUND_CONSOLE_ENABLED"), "{e}");
}
