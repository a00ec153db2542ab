//! A small reader of Prometheus' text exposition format, strict enough to catch a malformed
//! scrape: every sample belongs to a family declared once by `# TYPE` (with its `# HELP`)
//! before it, counters end in `_total`, label values are quoted, values are numbers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Family name to its type.
    pub types: HashMap<String, String>,
}

impl Scrape {
    /// Parses `text`, panicking on anything the format does not allow.
    pub fn parse(text: &str) -> Scrape {
        let mut types = HashMap::new();
        let mut helped = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helped.insert(name, ()).is_none(), "HELP twice: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type {kind}"
                );
                assert!(helped.contains_key(name), "TYPE before HELP: {line}");
                assert!(name.starts_with("resound_"), "prefix: {name}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter without _total: {name}");
                }
                let old = types.insert(name.to_owned(), kind.to_owned());
                assert!(old.is_none(), "family declared twice: {name}");
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let sample = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    let base = sample.name.strip_suffix(s)?;
                    (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(&sample.name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            samples.push(sample);
        }
        Scrape { samples, types }
    }

    /// The value of the one sample of `name` whose labels include `labels`; `None` if there
    /// is none, a panic if several match.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }

    /// Like [`Self::get`], 0 when there is no such sample (a counter not yet moved).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("series and value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels end with }");
            (name, parse_labels(body, line))
        }
    };
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "metric name {name:?}"
    );
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label in {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("escape at end in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "label twice in {line}"
        );
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// `GET path` on `addr`: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Scrapes `http://addr{path}` and parses it (it must answer 200 in the text format).
pub async fn scrape(addr: SocketAddr, path: &str) -> Scrape {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(&body)
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP resound_x_total X.\n# TYPE resound_x_total counter\nresound_x_total{app=\"a\\\"b\",k=\"v\"} 3\n";
    let s = Scrape::parse(good);
    assert_eq!(s.get("resound_x_total", &[("app", "a\"b")]), Some(3.0));
    for bad in [
        "resound_x_total 1\n",
        "# HELP resound_x X.\n# TYPE resound_x counter\nresound_x 1\n",
        "# HELP resound_x_total X.\n# TYPE resound_x_total counter\nresound_x_total{app=a} 1\n",
        "# HELP resound_x_total X.\n# TYPE resound_x_total counter\nresound_x_total one\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| Scrape::parse(bad)).is_err(),
            "{bad}"
        );
    }
}
