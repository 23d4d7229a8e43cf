//! The crate's shape, checked: every module imports only modules of lower
//! layers (the table in `docs/ARCHITECTURE.md`), no two files import each
//! other (directly or around a loop), and no source file passes 1,000
//! lines. Imports are read from `crate::` and `super::` paths outside
//! `#[cfg(test)]` blocks, as a reader of the file would see them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, as its path relative to `src/`.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("readable src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).expect("under src/");
                let text = std::fs::read_to_string(&path).expect("readable source");
                out.insert(rel.to_string_lossy().replace('\\', "/"), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    let src = root().join("src");
    walk(&src, &src, &mut out);
    out
}

/// The module path of a file: `hub/frames/join.rs` → `[hub, frames, join]`,
/// `hub/mod.rs` → `[hub]`, `lib.rs` → `[]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code a reader sees outside test modules.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The crate paths a file uses, with `super::` resolved against it.
fn used_paths(file: &str, text: &str) -> Vec<Vec<String>> {
    let module = module_of(file);
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let mut paths = Vec::new();
    let text = without_tests(text);
    for (start, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            // `super::` inside a longer word (e.g. `self_super::`) is not one.
            let boundary = rest[..i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            rest = &rest[i + start.len()..];
            if !boundary {
                continue;
            }
            let mut path = base.clone();
            path.extend(
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            // `use crate::x::{a, b::c}`: each item is a path of its own.
            let after =
                rest.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            if rest.len() > after.len() && after.starts_with('{') {
                let close = after.find('}').unwrap_or(after.len());
                for item in after[1..close].split(',') {
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    let mut p = path.clone();
                    p.extend(
                        item.split("::")
                            .map(|s| s.trim_matches(|c: char| c == '{' || c.is_whitespace()))
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    );
                    paths.push(p);
                }
            } else {
                paths.push(path);
            }
        }
    }
    paths
}

/// The file a path lands in: the longest module prefix that is a file.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .find_map(|k| modules.get(&path[..k]).cloned())
}

/// File → files it imports.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeMap<Vec<String>, String> =
        files.keys().map(|f| (module_of(f), f.clone())).collect();
    files
        .iter()
        .map(|(file, text)| {
            let deps = used_paths(file, text)
                .iter()
                .filter_map(|p| resolve(p, &modules))
                .filter(|d| d != file)
                .collect();
            (file.clone(), deps)
        })
        .collect()
}

/// Module → layer, from the table under "## Layers" in the architecture
/// document.
fn documented_layers() -> BTreeMap<String, u32> {
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let section = doc
        .split("## Layers")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a Layers section");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue;
        };
        for module in cells[2].split(',') {
            layers.insert(module.trim().to_owned(), layer);
        }
    }
    assert!(!layers.is_empty(), "no layer table found");
    layers
}

fn top_module(file: &str) -> String {
    module_of(file)
        .first()
        .cloned()
        .unwrap_or_else(|| "lib".into())
}

#[test]
fn modules_import_only_lower_layers() {
    let layers = documented_layers();
    let mut problems = Vec::new();
    for (file, deps) in import_graph() {
        let from = top_module(&file);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(&own) = layers.get(&from) else {
            problems.push(format!(
                "{file}: module `{from}` has no layer in docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in deps {
            let to = top_module(&dep);
            if to == from {
                continue;
            }
            match layers.get(&to) {
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => problems.push(format!(
                    "{file} (layer {own}) imports {dep} (`{to}`, layer {theirs})"
                )),
                None => problems.push(format!("{dep}: module `{to}` has no layer")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let graph = import_graph();
    // Tarjan's strongly connected components, iteratively small enough to
    // recurse: the crate has a few hundred files at most.
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        circles: Vec<Vec<&'a str>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.circles.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        circles: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    assert!(
        walk.circles.is_empty(),
        "files that import each other: {:?}",
        walk.circles
    );
}

#[test]
fn no_source_file_passes_a_thousand_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(file, text)| format!("{file}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn the_reader_sees_paths_as_written() {
    let paths = used_paths(
        "hub/frames/join.rs",
        "use crate::session::{Session, member_key};\nuse super::join_helpers::X;\n",
    );
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(paths.contains(&p(&["session", "Session"])));
    assert!(paths.contains(&p(&["session", "member_key"])));
    assert!(paths.contains(&p(&["hub", "frames", "join_helpers", "X"])));
    let in_mod_rs = used_paths("hub/mod.rs", "use super::session::Session;\n");
    assert_eq!(in_mod_rs, vec![p(&["session", "Session"])]);
}
