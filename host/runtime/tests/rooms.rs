//! The runtime's files import each other without cycles, except inside
//! `sandbox/` (the code that touches wasmtime, which may be one knot): a
//! file that imports another is never imported back by it, directly or
//! through others (docs/architecture.md).
//!
//! Read from the source: every `crate::…`, `super::…`, `self::…` path and
//! every path through a child module is resolved to the file that defines
//! it. Comments, and unit tests at the end of a file (`#[cfg(test)]`), are
//! left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Source files, relative to `src/`, and their text without unit tests.
fn sources() -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                // Comments name paths without importing them.
                let text: String = text
                    .lines()
                    .map(|l| l.split("//").next().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = path.strip_prefix(SRC).expect("under src").to_path_buf();
                out.insert(rel, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new(SRC), &mut out);
    out
}

/// The directory holding a file's child modules, and its module's file.
fn module_dir(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match name {
        "mod.rs" | "lib.rs" => file.parent().unwrap_or(Path::new("")).to_path_buf(),
        _ => file.with_extension(""),
    }
}

/// Follows `segments` from the module whose children live in `dir`: the
/// deepest file they name.
fn resolve(
    files: &BTreeMap<PathBuf, String>,
    mut dir: PathBuf,
    segments: &[&str],
) -> Option<PathBuf> {
    let mut found = None;
    for seg in segments {
        let as_file = dir.join(format!("{seg}.rs"));
        let as_dir = dir.join(seg).join("mod.rs");
        if files.contains_key(&as_file) {
            found = Some(as_file.clone());
            dir = as_file.with_extension("");
        } else if files.contains_key(&as_dir) {
            found = Some(as_dir);
            dir = dir.join(seg);
        } else {
            break;
        }
    }
    found
}

/// The files `file` imports.
fn imports(files: &BTreeMap<PathBuf, String>, file: &Path, text: &str) -> BTreeSet<PathBuf> {
    let here = module_dir(file);
    let parent_dir = |f: &Path| -> PathBuf {
        // `super` of a file is its parent module; its children live in the
        // directory that holds this file (or, for mod.rs, one up).
        let dir = f.parent().unwrap_or(Path::new("")).to_path_buf();
        match f.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs") => dir.parent().unwrap_or(Path::new("")).to_path_buf(),
            _ => dir,
        }
    };
    let children: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let l = l
                .trim_start()
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            l.strip_prefix("mod ")
                .map(|m| m.trim_end_matches(';').trim().to_string())
        })
        .collect();
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let words: String = bytes
        .iter()
        .map(|c| {
            if c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{' || *c == ',' || *c == '}'
            {
                *c
            } else {
                ' '
            }
        })
        .collect();
    for token in words.split_whitespace() {
        let path = token.split('{').next().unwrap_or_default();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segments.first() else {
            continue;
        };
        if segments.len() < 2 && !token.contains('{') {
            continue;
        }
        let target = match *first {
            "crate" => resolve(files, PathBuf::new(), &segments[1..]),
            "super" => resolve(files, parent_dir(file), &segments[1..])
                .or_else(|| Some(parent_module_file(file))),
            "self" => resolve(files, here.clone(), &segments[1..]),
            m if children.contains(m) => resolve(files, here.clone(), &segments),
            _ => None,
        };
        if let Some(t) = target
            && t != file
        {
            out.insert(t);
        }
    }
    out
}

/// The file of a file's parent module.
fn parent_module_file(file: &Path) -> PathBuf {
    let dir = match file.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") => file.parent().and_then(Path::parent),
        _ => file.parent(),
    }
    .unwrap_or(Path::new(""));
    if dir.as_os_str().is_empty() {
        PathBuf::from("lib.rs")
    } else {
        dir.join("mod.rs")
    }
}

fn in_sandbox(f: &Path) -> bool {
    f.starts_with("sandbox")
}

#[test]
fn outside_the_sandbox_no_file_imports_one_that_imports_it_back() {
    let files = sources();
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = files
        .iter()
        .map(|(f, text)| (f.clone(), imports(&files, f, text)))
        .collect();
    // The checker itself: it must see the imports that are there.
    let mod_rs = &graph[Path::new("database/mod.rs")];
    assert!(
        mod_rs.contains(Path::new("database/commit.rs")),
        "{mod_rs:?}"
    );
    assert!(graph[Path::new("database/call.rs")].contains(Path::new("database/commit.rs")));
    assert!(graph[Path::new("replay.rs")].contains(Path::new("record.rs")));
    // lib.rs re-exports everything; it is the root, not a room.
    let mut cycles = Vec::new();
    for start in graph.keys().filter(|f| *f != Path::new("lib.rs")) {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in &graph[&at] {
                if next == Path::new("lib.rs") || (in_sandbox(&at) && in_sandbox(next)) {
                    continue;
                }
                if next == start {
                    cycles.push(path.clone());
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn nothing_outside_the_sandbox_names_wasmtime() {
    for (file, text) in sources() {
        if in_sandbox(&file) {
            continue;
        }
        assert!(
            !text.contains("wasmtime::") && !text.contains("use wasmtime"),
            "{} names wasmtime",
            file.display()
        );
    }
}
