//! `.env` files read the way Laravel reads them. Laravel loads `.env` with phpdotenv 5, whose
//! grammar differs from the shell-like one of most dotenv libraries: an unquoted `#` starts a
//! comment even inside a word (`abc#def` is `abc`), `$` is literal except in `${NAME}` (and an
//! unknown `${NAME}` stays as written), a backslash or quote inside an unquoted value is
//! literal, a quoted value may be followed by a comment with no space (`'abc'#note`), and
//! double quotes take only the escapes `\"`, `\\`, `\$`, `\f`, `\n`, `\r`, `\t` and `\v`.
//! resound must see the same secret, port and password in the same file as the Laravel app,
//! or signatures stop matching; and a file Laravel accepts must not stop resound.
//!
//! What a file sets is resolved as Laravel's immutable repository does: a `${NAME}` reference
//! reads the process environment first, then the file's earlier values; a name given with no
//! `=` unsets what the file set before.

use std::collections::HashMap;

/// The file's variables (all of them, not only resound's), or the phpdotenv-style reason
/// it cannot be read, with the number of the line the failing entry starts on.
pub(super) fn parse(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, String> {
    let mut values: HashMap<String, String> = HashMap::new();
    for (line_no, raw) in entries(text) {
        let fail = |e: String| format!("line {line_no}: {e}");
        let (name, value) = entry(&raw).map_err(fail)?;
        match value {
            Some(v) => {
                let resolved = resolve(&v, |n| env(n).or_else(|| values.get(n).cloned()));
                values.insert(name, resolved);
            }
            None => {
                values.remove(&name);
            }
        }
    }
    Ok(values)
}

/// PHP's `trim` set: phpdotenv trims names and values with it.
const PHP_TRIM: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0B'];

/// PHP's `ctype_space` set.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// The raw entries, one per variable, with the line each starts on: lines split at `\r\n`,
/// `\n` or `\r`, a double-quoted value that spans lines joined back with `\n`, blank and
/// comment lines left out. A multi-line value never closed is dropped, as phpdotenv does.
fn entries(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut buffer: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, line) in split_lines(text).into_iter().enumerate() {
        let entry = if buffer.is_empty() && multiline_start(line) {
            buffer.push(line);
            start = i + 1;
            None
        } else if !buffer.is_empty() {
            buffer.push(line);
            multiline_stop(line, false).then(|| (start, std::mem::take(&mut buffer).join("\n")))
        } else {
            Some((i + 1, line.to_owned()))
        };
        if let Some((n, e)) = entry {
            let t = e.trim_matches(PHP_TRIM);
            if !t.is_empty() && !t.starts_with('#') {
                out.push((n, e));
            }
        }
    }
    out
}

fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    lines.push(rest);
    lines
}

/// A line that opens a double-quoted value it does not close.
fn multiline_start(line: &str) -> bool {
    line.contains("=\"") && !multiline_stop(line, true)
}

/// Whether `line` closes a multi-line value: it holds a `"` that follows a character other
/// than a backslash (two, when the value opened on this line).
fn multiline_stop(line: &str, started: bool) -> bool {
    if line == "\"" {
        return true;
    }
    let s = line.replace("\\\\", "");
    let b = s.as_bytes();
    let quotes = (1..b.len())
        .filter(|&i| b[i] == b'"' && b[i - 1] != b'\\')
        .count();
    if started {
        quotes > 1
    } else {
        quotes >= 1
    }
}

/// A value as parsed: its text, and where a `$` that may start `${NAME}` stands in it.
struct Value {
    chars: String,
    vars: Vec<usize>,
}

/// One entry's name and value (`None`: the name alone, no `=`).
fn entry(raw: &str) -> Result<(String, Option<Value>), String> {
    let first_line = raw.split('\n').next().unwrap_or(raw);
    let (name, value) = match raw.split_once('=') {
        Some((n, v)) => (n.trim_matches(PHP_TRIM), Some(v.trim_matches(PHP_TRIM))),
        None => (raw, None),
    };
    if name.is_empty() {
        return Err(format!(
            "Encountered an unexpected equals at [{first_line}]"
        ));
    }
    let name = parse_name(name)?;
    match value {
        None => Ok((name, None)),
        Some(v) => parse_value(v)
            .map(|v| (name, Some(v)))
            .map_err(|cause| format!("{cause} at [{}]", v.split('\n').next().unwrap_or(v))),
    }
}

/// The name without an `export ` prefix or surrounding quotes; letters, digits, `_` and `.`.
fn parse_name(name: &str) -> Result<String, String> {
    let mut name = name;
    let chars: Vec<char> = name.chars().collect();
    if chars.len() > 8 && name.starts_with("export") && chars.get(6).is_some_and(|c| is_space(*c)) {
        name = name[6..].trim_start_matches(PHP_TRIM);
    }
    let chars: Vec<char> = name.chars().collect();
    if chars.len() >= 3 {
        let (first, last) = (chars[0], chars[chars.len() - 1]);
        if first == last && (first == '"' || first == '\'') {
            name = &name[1..name.len() - 1];
        }
    }
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!("Encountered an invalid name at [{name}]"))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Initial,
    Unquoted,
    SingleQuoted,
    DoubleQuoted,
    Escape,
    Whitespace,
    Comment,
}

/// phpdotenv's value automaton, token by token.
fn parse_value(value: &str) -> Result<Value, &'static str> {
    use State::*;
    let mut out = Value {
        chars: String::new(),
        vars: Vec::new(),
    };
    if value.trim_matches(PHP_TRIM).is_empty() {
        return Ok(out);
    }
    let mut state = Initial;
    for token in lex(value) {
        let space = token.chars().all(is_space);
        let mut var = false;
        let (text, next): (&str, State) = match (state, token) {
            (Initial | Unquoted, "#") => ("", Comment),
            (Initial, "'") => ("", SingleQuoted),
            (Initial, "\"") => ("", DoubleQuoted),
            (Initial | Unquoted, "$") => {
                var = true;
                (token, Unquoted)
            }
            (Unquoted, _) if space => ("", Whitespace),
            (Initial | Unquoted, _) => (token, Unquoted),
            (SingleQuoted, "'") => ("", Whitespace),
            (SingleQuoted, _) => (token, SingleQuoted),
            (DoubleQuoted, "\"") => ("", Whitespace),
            (DoubleQuoted, "\\") => ("", Escape),
            (DoubleQuoted, "$") => {
                var = true;
                (token, DoubleQuoted)
            }
            (DoubleQuoted, _) => (token, DoubleQuoted),
            (Escape, "\"" | "\\" | "$") => (token, DoubleQuoted),
            (Escape, _) => {
                let control = match token.as_bytes()[0] {
                    b'f' => '\x0C',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'v' => '\x0B',
                    _ => return Err("Encountered an unexpected escape sequence"),
                };
                out.chars.push(control);
                (&token[1..], DoubleQuoted)
            }
            (Whitespace, "#") => ("", Comment),
            (Whitespace, _) if space => ("", Whitespace),
            (Whitespace, _) => return Err("Encountered unexpected whitespace"),
            (Comment, _) => ("", Comment),
        };
        if var {
            out.vars.push(out.chars.len());
        }
        out.chars.push_str(text);
        state = next;
    }
    if matches!(state, SingleQuoted | DoubleQuoted | Escape) {
        return Err("Encountered a missing closing quote");
    }
    Ok(out)
}

/// phpdotenv's tokens: a run of line breaks, a run of other white space, each of `\ ' " # $`
/// on its own, and a run of anything else.
fn lex(value: &str) -> Vec<&str> {
    fn class(c: char) -> u8 {
        match c {
            '\r' | '\n' => 0,
            ' ' | '\t' | '\x0B' | '\x0C' => 1,
            '\\' | '\'' | '"' | '#' | '$' => 2,
            _ => 3,
        }
    }
    let mut tokens = Vec::new();
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let k = class(c);
        if k != 2 {
            while let Some(&(_, d)) = chars.peek() {
                if class(d) != k {
                    break;
                }
                chars.next();
            }
        }
        let end = chars.peek().map_or(value.len(), |&(j, _)| j);
        tokens.push(&value[i..end]);
    }
    tokens
}

/// The value with each `${NAME}` whose name `lookup` knows replaced, last first; anything
/// else after a `$` stays as written.
fn resolve(value: &Value, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut s = value.chars.clone();
    let mut positions = value.vars.clone();
    positions.sort_unstable_by(|a, b| b.cmp(a));
    for i in positions {
        let Some(rest) = s[i..].strip_prefix("${") else {
            continue;
        };
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if len == 0 || !rest[len..].starts_with('}') {
            continue;
        }
        if let Some(found) = lookup(&rest[..len]) {
            s = format!("{}{found}{}", &s[..i], &rest[len + 1..]);
        }
    }
    s
}
