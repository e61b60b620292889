//! The house rules that the compiler does not check, checked on the source tree: the library's
//! top-level modules form no circle, and libtorch's `cfg` stays in its few places.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

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

/// Top-level module → the top-level modules its code uses, with a file that does.
fn module_graph() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let module_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(&root).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let m = first.trim_end_matches(".rs");
        // The binary's own files are not the library.
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
    let g = module_graph();
    assert!(
        g.len() > 20 && g["assembly"].contains_key("pipeline"),
        "the scan found too little: {g:?}"
    );
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
            if let Some(c) = visit(m, &g, &mut state, &mut Vec::new()) {
                let steps: Vec<String> = c
                    .windows(2)
                    .map(|w| {
                        format!(
                            "{} -> {} ({})",
                            w[0],
                            w[1],
                            g[&w[0]][&w[1]].strip_prefix(src()).unwrap().display()
                        )
                    })
                    .collect();
                panic!("module circle:\n  {}", steps.join("\n  "));
            }
        }
    }
}

#[test]
fn libtorch_is_configured_in_its_few_places() {
    // The runtime choice (backend), the trainer (train), the module itself (lib, torch/).
    let allowed = ["lib.rs", "backend.rs", "train/mod.rs"];
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("torch/") || rel == "train/libtorch.rs" {
            continue;
        }
        if code(f).contains("feature = \"torch\"") {
            found.push(rel);
        }
    }
    found.sort();
    let stray: Vec<_> = found.iter().filter(|f| !allowed.contains(&f.as_str())).collect();
    assert!(
        stray.is_empty(),
        "cfg(feature = \"torch\") outside its places: {stray:?}"
    );
    assert!(
        found.iter().any(|f| f == "backend.rs"),
        "the scan found no cfg at all: {found:?}"
    );
}
