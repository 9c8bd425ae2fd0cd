//! The architecture, checked: the folders under `src/` are layers, pure at
//! the bottom (`docs/design.md`, "Layers"). A module may import from its
//! own layer and the layers below it, never from one above; the pure layers
//! use no runtime, Kubernetes or async crate; no two files import each
//! other, directly or round a circle; no file outside `cli/` imports `cli`;
//! `src/` holds at most six files of its own and no file is longer than 900
//! lines before its test module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer; a module may import only from
/// layers at or below its own. The binary's modules sit on top.
const LAYERS: &[(&str, u32)] = &[
    ("clock", 0),
    ("sql", 1),
    ("model", 2),
    ("source", 3),
    ("ledger", 4),
    ("plan", 5),
    ("authoring", 6),
    ("config", 7),
    ("runtime", 8),
    ("engine", 9),
    ("k8s", 10),
    ("operator", 11),
    ("cli", 12),
    ("main", 13),
];

/// Layers at or below this one do no I/O of their own.
const PURE_TOP: u32 = 7;

/// Crates the pure layers must not use.
const IMPURE_CRATES: &[&str] = &[
    "tokio",
    "kube",
    "k8s_openapi",
    "hyper",
    "hyper_util",
    "clickhouse",
    "rustls",
    "kube_lease_manager",
];

/// The binary's own modules (the rest of `src/` is the library).
const BINARY: &[&str] = &["operator", "cli", "main"];

struct File {
    /// Relative to `src/`, e.g. `engine/migrate.rs`.
    rel: String,
    /// Module path, e.g. `["engine", "migrate"]`; `[]` for the crate root.
    module: Vec<String>,
    /// The code before its test module, without comment lines.
    code: String,
    /// Lines before its test module.
    lines: usize,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(rel: &str) -> Vec<String> {
    let no_ext = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = no_ext.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") || no_ext == "lib" || no_ext == "main" {
        parts.pop();
    }
    parts
}

fn read(path: &Path) -> File {
    let rel = path
        .strip_prefix(src())
        .expect("under src/")
        .to_string_lossy()
        .replace('\\', "/");
    let text = std::fs::read_to_string(path).expect("readable source");
    let all: Vec<&str> = text.lines().collect();
    // The test module: `#[cfg(test)]` followed by `mod …`.
    let end = (0..all.len())
        .find(|&i| {
            all[i].trim() == "#[cfg(test)]"
                && all
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start().starts_with("mod "))
        })
        .unwrap_or(all.len());
    let code = all[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    File {
        module: module_of(&rel),
        rel,
        code,
        lines: end,
    }
}

fn layer(top: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

/// The top-level module a file belongs to (`main` for `main.rs`).
fn top_of(f: &File) -> String {
    match f.module.first() {
        Some(m) => m.clone(),
        None if f.rel == "main.rs" => "main".into(),
        None => "lib".into(),
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts with `root::` in `code`, expanded over `{…}`
/// groups: `crate::a::{b, c::d}` gives `[a, b]` and `[a, c, d]`.
fn paths_after(code: &str, root: &str) -> Vec<Vec<String>> {
    let needle = format!("{root}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find(&needle) {
        let start = from + pos;
        from = start + needle.len();
        if code[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        expand(&code[from..], Vec::new(), &mut out);
    }
    out
}

fn expand(rest: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut s = rest;
    loop {
        let ident: String = s.chars().take_while(|c| is_ident(*c)).collect();
        if !ident.is_empty() {
            s = &s[ident.len()..];
            path.push(ident);
            match s.strip_prefix("::") {
                Some(r) => s = r,
                None => break,
            }
        } else if let Some(r) = s.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = 0;
            let mut items = Vec::new();
            for (i, c) in r.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => {
                        items.push(&r[item_start..i]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        items.push(&r[item_start..i]);
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            for item in items {
                let item = item.trim();
                if item == "self" || item.is_empty() {
                    out.push(path.clone());
                } else {
                    expand(item, path.clone(), out);
                }
            }
            return;
        } else {
            break;
        }
    }
    out.push(path);
}

fn files() -> Vec<File> {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    paths.iter().map(|p| read(p)).collect()
}

fn in_binary(f: &File) -> bool {
    BINARY.contains(&top_of(f).as_str())
}

/// The file that defines the longest prefix of `path` among `modules`.
fn resolve<'a>(path: &[String], modules: &'a BTreeMap<Vec<String>, String>) -> Option<&'a String> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n].to_vec()))
}

/// Every module path another file of the same crate reaches from `f`.
fn imports(f: &File) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = paths_after(&f.code, "crate");
    // `super::` from `a/b.rs` (module a::b) is module a; from `a/mod.rs`
    // (module a) it is the crate root.
    let parent: Vec<String> = f.module[..f.module.len().saturating_sub(1)].to_vec();
    for p in paths_after(&f.code, "super") {
        let mut full = parent.clone();
        full.extend(p);
        out.push(full);
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let mut wrong = Vec::new();
    for f in files() {
        let top = top_of(&f);
        if top == "lib" {
            continue;
        }
        let own = layer(&top).unwrap_or_else(|| {
            panic!(
                "src/{}: module `{top}` has no layer in tests/layers.rs (add it, and to docs/design.md)",
                f.rel
            )
        });
        let mut reached: Vec<Vec<String>> = imports(&f);
        if in_binary(&f) {
            // The binary reaches the library as `chmigrate::…`.
            reached.extend(paths_after(&f.code, "chmigrate"));
        }
        for path in reached {
            let Some(target) = path.first() else { continue };
            let Some(their) = layer(target) else { continue };
            if their > own {
                wrong.push(format!(
                    "src/{} (layer {own}, {top}) imports {} (layer {their})",
                    f.rel,
                    path.join("::")
                ));
            }
        }
        if own <= PURE_TOP {
            for c in IMPURE_CRATES {
                if !paths_after(&f.code, c).is_empty() {
                    wrong.push(format!(
                        "src/{} is in a pure layer ({top}) but uses the `{c}` crate",
                        f.rel
                    ));
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that run up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn nothing_outside_cli_imports_cli() {
    let offenders: Vec<String> = files()
        .into_iter()
        .filter(|f| !matches!(top_of(f).as_str(), "cli" | "main"))
        .filter(|f| {
            imports(f)
                .iter()
                .chain(paths_after(&f.code, "chmigrate").iter())
                .any(|p| p.first().is_some_and(|m| m == "cli"))
        })
        .map(|f| format!("src/{}", f.rel))
        .collect();
    assert!(offenders.is_empty(), "import cli: {offenders:?}");
}

#[test]
fn no_two_files_import_each_other_even_round_a_circle() {
    let all = files();
    for binary in [false, true] {
        let crate_files: Vec<&File> = all.iter().filter(|f| in_binary(f) == binary).collect();
        let modules: BTreeMap<Vec<String>, String> = crate_files
            .iter()
            .map(|f| (f.module.clone(), f.rel.clone()))
            .collect();
        let module_of_file: BTreeMap<&str, &Vec<String>> = crate_files
            .iter()
            .map(|f| (f.rel.as_str(), &f.module))
            .collect();
        // A folder's mod.rs and the files inside it (it declares them; they
        // read what it re-exports) are one unit: edges between a file and
        // its own ancestors do not count.
        let ancestor = |a: &[String], b: &[String]| b.len() > a.len() && b.starts_with(a);
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for f in &crate_files {
            for path in imports(f) {
                let Some(to) = resolve(&path, &modules) else {
                    continue;
                };
                let to_mod = module_of_file[to.as_str()];
                if to == &f.rel || ancestor(to_mod, &f.module) || ancestor(&f.module, to_mod) {
                    continue;
                }
                edges.entry(f.rel.as_str()).or_default().insert(to.as_str());
            }
        }
        // Depth-first search for a back edge, naming the circle.
        fn visit<'a>(
            n: &'a str,
            edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
            circles: &mut Vec<String>,
        ) {
            if let Some(i) = stack.iter().position(|s| *s == n) {
                let mut c: Vec<&str> = stack[i..].to_vec();
                c.push(n);
                circles.push(c.join(" -> "));
                return;
            }
            if !done.insert(n) {
                return;
            }
            stack.push(n);
            for next in edges.get(n).into_iter().flatten() {
                visit(next, edges, stack, done, circles);
            }
            stack.pop();
        }
        let mut circles = Vec::new();
        let mut done = BTreeSet::new();
        for f in &crate_files {
            visit(&f.rel, &edges, &mut Vec::new(), &mut done, &mut circles);
        }
        assert!(
            circles.is_empty(),
            "import circles in the {}:\n{}",
            if binary { "binary" } else { "library" },
            circles.join("\n")
        );
    }
}

#[test]
fn the_tree_stays_small_enough_to_read() {
    let all = files();
    let top_level: Vec<&str> = all
        .iter()
        .filter(|f| !f.rel.contains('/'))
        .map(|f| f.rel.as_str())
        .collect();
    assert!(
        top_level.len() <= 6,
        "src/ holds {} files of its own (at most 6): {top_level:?}",
        top_level.len()
    );
    let long: Vec<String> = all
        .iter()
        .filter(|f| f.lines > 900)
        .map(|f| format!("src/{}: {} lines before its tests", f.rel, f.lines))
        .collect();
    assert!(long.is_empty(), "files over 900 lines: {long:?}");
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    assert!(
        lib.contains("pub mod engine;"),
        "the library exposes the engine"
    );
}

#[test]
fn the_checker_reads_paths_the_way_rust_writes_them() {
    let code =
        "use crate::a::{b, c::{d, e}};\nlet x = crate::f::g(1); my_crate::h::i; super::j::k;";
    assert_eq!(
        paths_after(code, "crate"),
        vec![
            vec!["a", "b"],
            vec!["a", "c", "d"],
            vec!["a", "c", "e"],
            vec!["f", "g"],
        ]
    );
    assert_eq!(paths_after(code, "super"), vec![vec!["j", "k"]]);
    assert_eq!(
        module_of("engine/mod.rs"),
        Vec::<String>::new()
            .into_iter()
            .chain(["engine".to_string()])
            .collect::<Vec<_>>()
    );
    assert_eq!(module_of("engine/migrate.rs"), vec!["engine", "migrate"]);
    assert!(module_of("lib.rs").is_empty());
}
