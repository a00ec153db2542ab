//! `.env` values as Laravel (phpdotenv 5) reads them. Each expectation is what phpdotenv's
//! `EntryParser`, `Lines` and `Resolver` give for the line; the cases are the ones where a
//! shell-style dotenv reader (the one resound used before) read another value or refused a
//! file Laravel accepts.

use std::collections::HashMap;

use super::super::dotenv::parse;

fn read(text: &str) -> Result<HashMap<String, String>, String> {
    parse(text, |name| {
        (name == "FROM_PROCESS").then(|| "proc".to_owned())
    })
}

fn value(line: &str) -> String {
    let vars = read(&format!("{line}\n")).unwrap_or_else(|e| panic!("{line}: {e}"));
    vars.get("X")
        .cloned()
        .unwrap_or_else(|| panic!("{line}: no X"))
}

#[test]
fn values_are_read_as_laravel_reads_them() {
    let cases = [
        // An unquoted `#` starts a comment wherever it is (phpdotenv 3.3 and later).
        ("X=abc#def", "abc"),
        ("X=abc #def", "abc"),
        ("X='abc'#note", "abc"),
        ("X=\"abc\"  # note", "abc"),
        ("X=\"a#b\"", "a#b"),
        ("X='a#b'", "a#b"),
        // `$` is literal unless it starts `${NAME}` of a known variable.
        ("X=pa$word", "pa$word"),
        ("X=\"pa$word\"", "pa$word"),
        ("X=a$", "a$"),
        ("X='pa${FROM_PROCESS}'", "pa${FROM_PROCESS}"),
        ("X=pa${FROM_PROCESS}x", "paprocx"),
        ("X=\"${FROM_PROCESS}\"", "proc"),
        ("X=${NOT_SET_ANYWHERE}", "${NOT_SET_ANYWHERE}"),
        ("X=${A:-default}", "${A:-default}"),
        // Backslashes and quotes inside an unquoted value are kept as they are.
        ("X=a\\b", "a\\b"),
        ("X=abc\\\\", "abc\\\\"),
        ("X=foo\"bar", "foo\"bar"),
        ("X=it's", "it's"),
        // Double quotes take these escapes, and no others.
        ("X=\"a\\tb\"", "a\tb"),
        ("X=\"a\\nb\"", "a\nb"),
        ("X=\"say \\\"hi\\\"\"", "say \"hi\""),
        ("X=\"\\$5 \\\\ x\"", "$5 \\ x"),
        ("X='a\\nb'", "a\\nb"),
        // Names and spacing.
        ("export  X=1", "1"),
        ("X = spaced ", "spaced"),
        ("\"X\"=quoted-name", "quoted-name"),
        ("X=", ""),
        ("X=\"\"", ""),
        (
            "X=base64:2fl+Ktvkfl+Fuz4Qp/A75G2RTiWVA/ZoKZvp6fiiM10=",
            "base64:2fl+Ktvkfl+Fuz4Qp/A75G2RTiWVA/ZoKZvp6fiiM10=",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(value(line), want, "{line}");
    }
}

#[test]
fn what_laravel_refuses_is_refused_with_the_line() {
    for (text, why) in [
        (
            "A=1\nX=bar baz\n",
            "line 2: Encountered unexpected whitespace at [bar baz]",
        ),
        ("X=\"a\\qb\"\n", "unexpected escape sequence"),
        ("X='open\n", "missing closing quote"),
        ("=x\n", "unexpected equals"),
        ("SOME-KEY=1\n", "invalid name at [SOME-KEY]"),
        ("\u{feff}X=1\n", "invalid name"),
    ] {
        let err = read(text)
            .err()
            .unwrap_or_else(|| panic!("{text:?} accepted"));
        assert!(err.contains(why), "{text:?}: {err}");
    }
}

#[test]
fn files_are_split_joined_and_resolved_in_order() {
    let text = "# comment\r\n  # indented comment\r\nAPP_NAME=Laravel\r\n\r\n\
                MAIL_FROM_NAME=\"${APP_NAME}\"\rKEY=\"-----BEGIN\nabc\n-----END\"\n\
                GONE=1\nGONE\nLATER=${EARLIER}\nEARLIER=e\nTWICE=1\nTWICE=2\nFROM_PROCESS=file\n\
                SEES=${FROM_PROCESS}\nUNCLOSED=\"never\nclosed\n";
    let vars = read(text).unwrap();
    assert_eq!(vars["APP_NAME"], "Laravel");
    assert_eq!(vars["MAIL_FROM_NAME"], "Laravel");
    assert_eq!(vars["KEY"], "-----BEGIN\nabc\n-----END");
    assert!(!vars.contains_key("GONE"), "a name alone unsets it");
    assert_eq!(vars["LATER"], "${EARLIER}", "only earlier values resolve");
    assert_eq!(vars["TWICE"], "2");
    assert_eq!(
        vars["SEES"], "proc",
        "the process environment wins, as in Laravel"
    );
    assert!(!vars.contains_key("UNCLOSED"), "{vars:?}");
}

/// `env()` drops one pair of matching quotes from a value, after phpdotenv has taken the
/// file's own quoting off: `"'k'"` in `.env` and `"9001"` in a flag or variable (as
/// `docker run --env-file` passes a quoted line) read as `k` and `9001`. A TOML string keeps
/// its quotes: they are part of what the file says.
#[test]
fn env_values_lose_one_pair_of_quotes_as_laravels_env_gives_them() {
    let d = super::tmpdir("unquote");
    let env = "REVERB_APP_ID=1\nREVERB_APP_KEY=\"'k'\"\nREVERB_APP_SECRET='\"s\"'\n";
    std::fs::write(d.path().join(".env"), env).unwrap();
    let c = super::load_args(&["--port", "\"9001\"", "--path", "'/ws'"], d.path()).unwrap();
    assert_eq!((c.port, c.path.as_str()), (9001, "/ws"));
    assert_eq!(
        (c.apps[0].key.as_str(), c.apps[0].secret.as_str()),
        ("k", "s")
    );
    let toml = "[[apps]]\napp_id = \"2\"\nkey = \"'quoted'\"\nsecret = \"s\"\n";
    std::fs::write(d.path().join("c.toml"), toml).unwrap();
    let cfg = d.path().join("c.toml");
    let c = super::load_args(&["--config", cfg.to_str().unwrap()], d.path()).unwrap();
    assert_eq!(c.apps[0].key, "'quoted'");
}

/// A `.env` saved in Latin-1 (an editor's default on some systems) holds bytes that are not
/// UTF-8; Laravel reads it, and so must resound, whatever line they are on.
#[test]
fn a_dotenv_with_bytes_that_are_not_utf8_is_read() {
    let d = super::tmpdir("latin1");
    let env = b"APP_NAME=Caf\xe9\nREVERB_APP_ID=1\nREVERB_APP_KEY=k\nREVERB_APP_SECRET=s\n";
    std::fs::write(d.path().join(".env"), env).unwrap();
    let c = super::load_args(&[], d.path()).unwrap();
    assert_eq!(c.apps[0].key, "k");
}
