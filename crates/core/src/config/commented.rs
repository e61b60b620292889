//! The commented default configuration (`config/steadyface.yaml`, `generate-config`) is made
//! from one source: the config structs' doc comments and `Default` values. This test rebuilds
//! it from the sources and compares; `STEADYFACE_BLESS=1` rewrites the file instead.

use super::Config;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which struct holds each section, and the source file it is declared in.
const SECTIONS: [(&str, &str, &str); 13] = [
    ("models", "ModelsConfig", "config.rs"),
    ("detector", "DetectorConfig", "config.rs"),
    ("tracker", "TrackerConfig", "config.rs"),
    ("decoder", "DecoderConfig", "config.rs"),
    ("decoder.pdc", "PdcConfig", "config.rs"),
    ("stabilizer", "StabilizerConfig", "config.rs"),
    ("stabilizer.one_euro", "OneEuroParams", "stabilizer.rs"),
    ("source", "SourceConfig", "config.rs"),
    ("daemon", "DaemonConfig", "config.rs"),
    ("mqtt", "MqttConfig", "config.rs"),
    ("mqtt.tls", "TlsConfig", "config.rs"),
    ("signals", "SignalsConfig", "signals.rs"),
    ("clips", "ClipsConfig", "config.rs"),
];

const HEADER: &str = "\
# steadyface configuration. Every key is optional; these are the built-in defaults.
# Check a file with `steadyface validate --config FILE`; override any key with
# `--set section.key=value`. Made from the config structs' doc comments
# (`STEADYFACE_BLESS=1 cargo test -p steadyface-core commented` rewrites it).
";

/// A struct's own doc comment, and its fields' by name.
type Docs = (Vec<String>, HashMap<String, Vec<String>>);

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A struct's doc comment and its fields' doc comments, from its source text.
fn docs(file: &str, name: &str) -> Docs {
    let text = std::fs::read_to_string(src().join(file)).unwrap();
    let start = text
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name} in {file}"));
    let doc_of = |before: &str| -> Vec<String> {
        let mut lines: Vec<String> = before
            .lines()
            .rev()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| {
                let t = l.trim_start();
                t.starts_with("///") || t.starts_with("#[")
            })
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix("///")
                    .map(|d| d.strip_prefix(' ').unwrap_or(d).to_string())
            })
            .collect();
        lines.reverse();
        lines
    };
    let own = doc_of(&text[..start]);
    let body_start = start + text[start..].find('{').unwrap() + 1;
    let body_end = body_start + text[body_start..].find("\n}").unwrap();
    let body = &text[body_start..body_end];
    let mut fields = HashMap::new();
    let mut pending = String::new();
    for line in body.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("pub ") {
            let field = rest.split(':').next().unwrap().trim().to_string();
            fields.insert(field, doc_of(&pending));
            pending.clear();
        } else {
            pending.push_str(line);
            pending.push('\n');
        }
    }
    (own, fields)
}

/// Doc-comment markdown as YAML comment text: links keep their text, intra-doc links their
/// code span.
fn plain(line: &str) -> String {
    let mut s = line.to_string();
    while let Some(a) = s.find("](") {
        let (Some(close), Some(open)) = (s[a..].find(')'), s[..a].rfind('[')) else {
            break;
        };
        s = format!("{}{}{}", &s[..open], &s[open + 1..a], &s[a + close + 1..]);
    }
    s.replace("[`", "`").replace("`]", "`")
}

/// A default as YAML. An `f32` default reaches the tree widened to `f64` (0.3 becomes
/// 0.30000001192092896), so a float that is exactly an `f32` is written as one.
fn scalar(v: &Value) -> String {
    if let Some(x) = v.as_f64().filter(|_| v.is_f64()) {
        let narrow = x as f32;
        if f64::from(narrow) == x && narrow.is_finite() {
            let t = narrow.to_string();
            return if t.contains(['.', 'e']) { t } else { format!("{t}.0") };
        }
    }
    serde_yaml::to_string(v).unwrap().trim_end().to_string()
}

fn emit(out: &mut String, path: &str, value: &Value, indent: usize, all: &HashMap<String, Docs>) {
    let (_, fields) = all.get(path).unwrap_or_else(|| panic!("no struct for section {path}"));
    let pad = " ".repeat(indent);
    for (k, v) in value.as_mapping().unwrap() {
        let key = k.as_str().unwrap();
        let sub = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        let doc = fields
            .get(key)
            .unwrap_or_else(|| panic!("{sub}: not a field of its struct"));
        if let (Value::Mapping(_), Some((own, _))) = (v, all.get(&sub)) {
            let lines = if doc.is_empty() { own } else { doc };
            assert!(!lines.is_empty(), "{sub}: no doc comment on the field or its struct");
            for l in lines {
                out.push_str(&format!("{pad}# {}\n", plain(l)).replace("# \n", "#\n"));
            }
            out.push_str(&format!("{pad}{key}:\n"));
            emit(out, &sub, v, indent + 2, all);
        } else {
            assert!(!doc.is_empty(), "{sub}: no doc comment");
            for l in doc {
                out.push_str(&format!("{pad}# {}\n", plain(l)).replace("# \n", "#\n"));
            }
            out.push_str(&format!("{pad}{key}: {}\n", scalar(v)));
        }
    }
}

/// The commented YAML the sources say.
fn generate() -> String {
    let mut all = HashMap::new();
    let mut top = HashMap::new();
    for (path, name, file) in SECTIONS {
        let d = docs(file, name);
        if !path.contains('.') {
            top.insert(path.to_string(), d.0.clone());
        }
        all.insert(path.to_string(), d);
    }
    all.insert(String::new(), (Vec::new(), top));
    let tree = serde_yaml::to_value(Config::default()).unwrap();
    let mut out = String::from(HEADER);
    for (k, v) in tree.as_mapping().unwrap() {
        let key = k.as_str().unwrap();
        out.push('\n');
        for l in &all[key].0 {
            out.push_str(&format!("# {}\n", plain(l)).replace("# \n", "#\n"));
        }
        out.push_str(&format!("{key}:\n"));
        emit(&mut out, key, v, 2, &all);
    }
    out
}

#[test]
fn the_commented_config_is_made_from_the_doc_comments() {
    let want = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/steadyface.yaml");
    if std::env::var_os("STEADYFACE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == want,
        "config/steadyface.yaml differs from the doc comments; rerun with STEADYFACE_BLESS=1. Made:\n{want}"
    );
    // And it is the defaults.
    assert_eq!(Config::from_yaml(&want).unwrap(), Config::default());
}
