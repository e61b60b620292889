//! The house rules that the compiler does not check, checked on the source tree: each crate's
//! top-level modules form no circle, libtorch's `cfg` stays in its few places, and the lower
//! crates depend on nothing their role does not need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Each crate's source directory.
const CRATES: [&str; 4] = ["src", "crates/core/src", "crates/nn/src", "crates/torch/src"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's code: comment lines dropped, and everything from its unit tests on (they sit at
/// the end of each file by house rule, and may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if !t.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Names `crate::NAME` refers to, including `crate::{a, b::c}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())).filter(|n| !n.is_empty()));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// Top-level module → the top-level modules of the same crate its code uses, with a file that
/// does. (The `steadyface` crate re-exports the core's modules under the same names; those are
/// another crate, so never part of a circle here.)
fn module_graph(src: &str) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let root = root().join(src);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let module_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(&root).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let m = first.trim_end_matches(".rs");
        // The crate root and the binary's own files are not library modules.
        (!matches!(m, "lib" | "main" | "cmd")).then(|| m.to_string())
    };
    let mods: BTreeSet<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> =
        mods.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        for r in crate_refs(&code(f)) {
            if r != m && mods.contains(&r) {
                g.get_mut(&m).unwrap().entry(r).or_insert_with(|| f.clone());
            }
        }
    }
    g
}

#[test]
fn the_library_modules_form_no_circle() {
    for src in CRATES {
        no_circle(src, &module_graph(src));
    }
    // The scan sees real edges.
    assert!(module_graph("crates/core/src")["pipeline"].contains_key("backbone"));
    assert!(module_graph("src")["track"].contains_key("assembly"));
}

fn no_circle(src: &str, g: &BTreeMap<String, BTreeMap<String, PathBuf>>) {
    // Depth-first search for a back edge; report the circle it closes, file by file.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.into(), 1);
        path.push(m.into());
        for d in g[m].keys() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == d).unwrap();
                    let mut c = path[start..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.into(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(m, g, &mut state, &mut Vec::new()) {
                let steps: Vec<String> = c
                    .windows(2)
                    .map(|w| {
                        format!(
                            "{} -> {} ({})",
                            w[0],
                            w[1],
                            g[&w[0]][&w[1]].strip_prefix(root()).unwrap().display()
                        )
                    })
                    .collect();
                panic!("module circle in {src}:\n  {}", steps.join("\n  "));
            }
        }
    }
}

#[test]
fn libtorch_is_configured_in_its_few_places() {
    // Where models run (backend), the trainer's entry (tune), the re-export (lib), and the
    // core's "this build has libtorch" flag (runtime); `crates/torch` is libtorch itself.
    let allowed = [
        "src/lib.rs",
        "src/backend.rs",
        "src/tune.rs",
        "crates/core/src/runtime.rs",
    ];
    let mut found = Vec::new();
    for src in ["src", "crates/core/src", "crates/nn/src"] {
        let mut files = Vec::new();
        rust_files(&root().join(src), &mut files);
        for f in files {
            if code(&f).contains("feature = \"torch\"") {
                found.push(f.strip_prefix(root()).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    let stray: Vec<_> = found.iter().filter(|f| !allowed.contains(&f.as_str())).collect();
    assert!(
        stray.is_empty(),
        "cfg(feature = \"torch\") outside its places: {stray:?}"
    );
    assert!(
        found.iter().any(|f| f == "src/backend.rs"),
        "the scan found no cfg at all: {found:?}"
    );
}

/// What each lower crate may not pull in, directly or not: the core has no async runtime,
/// MQTT, plotting, libtorch, command-line parsing or V4L2 (whose bindgen needs libclang); its
/// TLS is ureq's, for fetching models over HTTPS. The engine has not even tract.
#[test]
fn lower_crates_depend_only_on_what_their_role_needs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |krate: &str| -> BTreeSet<String> {
        let out = std::process::Command::new(&cargo)
            .current_dir(root())
            .args([
                "tree",
                "--offline",
                "--locked",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                krate,
            ])
            .output()
            .expect("cargo tree runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let services = [
        "tokio",
        "rumqttc",
        "plotters",
        "tch",
        "torch-sys",
        "v4l",
        "bindgen",
        "clap",
    ];
    let core = tree("steadyface-core");
    assert!(
        core.contains("tract-onnx") && core.contains("steadyface-nn"),
        "{core:?}"
    );
    let bad: Vec<_> = services.iter().filter(|c| core.contains(**c)).collect();
    assert!(bad.is_empty(), "steadyface-core depends on {bad:?}");
    let nn = tree("steadyface-nn");
    assert!(nn.contains("prost"), "{nn:?}");
    let bad: Vec<_> = nn
        .iter()
        .filter(|c| c.starts_with("tract") || c.starts_with("steadyface-core"))
        .collect();
    assert!(bad.is_empty(), "steadyface-nn depends on {bad:?}");
}
