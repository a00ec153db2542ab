//! Per-app settings as Reverb reads them.

use super::{load_args, tmpdir};
use crate::config::DEV_APP;

#[test]
fn client_events_follow_reverb_every_other_value_is_off() {
    use crate::apps::ClientEvents::{All, Members, None as Off};
    let d = tmpdir("client-events");
    let from_dotenv = |line: &str| {
        std::fs::write(d.path().join(".env"), format!("{line}\n")).unwrap();
        let c = load_args(&[], d.path()).unwrap();
        (c.apps[0].client_events, c.warnings)
    };
    // Unset takes config/reverb.php's default; null reaches Reverb as PHP null, which its
    // app provider turns into `all`.
    assert_eq!(from_dotenv("# nothing").0, Members);
    assert_eq!(
        from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=null").0,
        All
    );
    assert_eq!(
        from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=ALL").0,
        All
    );
    // Laravel reads `X=` as an empty string, which Reverb's check turns into "off".
    for off in ["", "none", "false", "off", "(empty)"] {
        let (mode, warnings) = from_dotenv(&format!("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM={off}"));
        assert_eq!((mode, warnings.len()), (Off, 0), "{off:?}");
    }
    // A typo starts, with client events off as in Reverb, and is named in a warning.
    let (mode, warnings) = from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=memebrs");
    assert_eq!(mode, Off);
    assert!(
        warnings.len() == 1
            && warnings[0].contains("'memebrs'")
            && warnings[0].starts_with(&format!("app {}: ", DEV_APP.0))
            && warnings[0].contains("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM in .env"),
        "{warnings:?}"
    );
    // The flag's empty value beats .env, and an app table's empty value counts too.
    std::fs::write(
        d.path().join(".env"),
        "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=all\n",
    )
    .unwrap();
    let c = load_args(&["--accept-client-events-from", ""], d.path()).unwrap();
    assert_eq!(c.apps[0].client_events, Off);
    let file = d.path().join("apps.toml");
    std::fs::write(
        &file,
        "[[apps]]\napp_id = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\n\n[[apps]]\napp_id = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\naccept_client_events_from = \"\"\n",
    )
    .unwrap();
    let c = load_args(&["--config", file.to_str().unwrap()], d.path()).unwrap();
    assert_eq!(c.apps[1].client_events, Off);
}
