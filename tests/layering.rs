//! The architecture rules of `ARCHITECTURE.md`, checked against the sources: the host never
//! depends on a plugin crate, every import in `gateway/src` points down the module order that
//! `gateway/src/lib.rs` declares, and no group of sibling modules (in the gateway or in
//! `yjs-core`) imports each other in a cycle.
//!
//! Imports are read from the text: `crate::a::b`, `super::x` and `self::x` paths, with braces
//! expanded. `mod` and `pub use` lines are declarations, not dependencies, and a module may
//! always use what its ancestors define.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Every library source file of a crate with its module path (`plugin/host/mod.rs` is
/// `plugin::host`). `skip` names top-level entries that are not part of the library.
fn modules(src: &Path, skip: &[&str]) -> BTreeMap<ModPath, PathBuf> {
    fn walk(dir: &Path, prefix: &ModPath, skip: &[&str], out: &mut BTreeMap<ModPath, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            if prefix.is_empty() && skip.contains(&name.as_str()) {
                continue;
            }
            let mut path = prefix.clone();
            if p.is_dir() {
                path.push(name);
                walk(&p, &path, skip, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    path.push(name);
                }
                out.insert(path, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &Vec::new(), skip, &mut out);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Expands the path that starts at `s` (just after `crate::`, `super::` or `self::`) into
/// module paths: `a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`.
fn expand(s: &str, base: &[String], out: &mut Vec<ModPath>) {
    let mut path = base.to_vec();
    let mut rest = s;
    loop {
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        expand(inner[start..i].trim(), &path, out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(inner[start..i].trim(), &path, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let id = ident_at(rest);
        if id.is_empty() {
            break;
        }
        path.push(id.to_string());
        rest = &rest[id.len()..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    out.push(path);
}

/// The module paths a file refers to, resolved against the file's own path `me`.
fn references(text: &str, me: &ModPath) -> Vec<ModPath> {
    let mut out = Vec::new();
    // Join `use` statements spread over several lines, without comments and declarations.
    let code: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with("pub use") && !l.starts_with("pub mod"))
        .filter(|l| !l.starts_with("mod ") && !l.starts_with("pub(crate) use"))
        .collect::<Vec<_>>()
        .join(" ");
    let parent: ModPath = me[..me.len().saturating_sub(1)].to_vec();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", parent),
        ("self::", me.clone()),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let at = from + i;
            from = at + anchor.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(&code[from..], &base, &mut out);
        }
    }
    out
}

/// The longest prefix of `path` that is a known module.
fn resolve(path: &[String], known: &BTreeMap<ModPath, PathBuf>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains_key(p))
        .unwrap_or_default()
}

/// One import between two sibling modules (children of `parent`), with the file it is in.
struct Edge {
    parent: ModPath,
    from: String,
    to: String,
    file: PathBuf,
}

fn sibling_edges(known: &BTreeMap<ModPath, PathBuf>) -> Vec<Edge> {
    let mut edges = Vec::new();
    for (me, file) in known {
        let text = std::fs::read_to_string(file).unwrap();
        for r in references(&text, me) {
            let target = resolve(&r, known);
            // Ancestors (shared definitions) and descendants (a module's own parts) are fine.
            if me.starts_with(&target) || target.starts_with(me) {
                continue;
            }
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            edges.push(Edge {
                parent: me[..common].to_vec(),
                from: me[common].clone(),
                to: target[common].clone(),
                file: file.clone(),
            });
        }
    }
    edges
}

/// The sibling imports that take part in a cycle, one line each.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut graphs: BTreeMap<&ModPath, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for e in edges {
        graphs
            .entry(&e.parent)
            .or_default()
            .entry(&e.from)
            .or_default()
            .insert(&e.to);
    }
    let mut bad = Vec::new();
    for (parent, g) in &graphs {
        // A node is on a cycle when it can reach itself.
        for start in g.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&str> = g[start].iter().copied().collect();
            while let Some(n) = stack.pop() {
                if n == *start {
                    bad.push(format!(
                        "{}: {start} is on an import cycle",
                        parent.join("::")
                    ));
                    break;
                }
                if seen.insert(n) {
                    stack.extend(g.get(n).into_iter().flatten().copied());
                }
            }
        }
    }
    bad
}

#[test]
fn the_host_depends_on_no_plugin_crate() {
    let manifest = std::fs::read_to_string(repo_root().join("gateway/Cargo.toml")).unwrap();
    for line in manifest.lines() {
        assert!(
            !line.contains("plugins/") && !line.contains("plugin-sdk"),
            "gateway/Cargo.toml depends on a plugin crate: {line}"
        );
    }
}

#[test]
fn gateway_imports_point_down_the_declared_order() {
    let src = repo_root().join("gateway/src");
    let known = modules(&src, &["main", "cli"]);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    for m in known.keys().filter(|m| m.len() == 1) {
        assert!(
            order.contains(&m[0].as_str()),
            "{} is not declared in lib.rs",
            m[0]
        );
    }
    let rank = |m: &str| order.iter().position(|o| *o == m).unwrap();
    let edges = sibling_edges(&known);
    let upward: Vec<String> = edges
        .iter()
        .filter(|e| e.parent.is_empty() && rank(&e.from) > rank(&e.to))
        .map(|e| {
            format!(
                "{}: {} imports {}, declared above it",
                e.file.display(),
                e.from,
                e.to
            )
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
    let cyc = cycles(&edges);
    assert!(cyc.is_empty(), "{}", cyc.join("\n"));
    // The rule is not vacuous: the server does import lower modules.
    assert!(edges.iter().any(|e| e.from == "server" && e.to == "plugin"));
}

#[test]
fn yjs_core_has_no_import_cycles() {
    let known = modules(&repo_root().join("yjs-core/src"), &[]);
    let edges = sibling_edges(&known);
    let cyc = cycles(&edges);
    assert!(cyc.is_empty(), "{}", cyc.join("\n"));
    assert!(
        edges.iter().any(|e| e.from == "doc"),
        "doc imports nothing?"
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let mk = |from: &str, to: &str| Edge {
        parent: Vec::new(),
        from: from.into(),
        to: to.into(),
        file: PathBuf::new(),
    };
    assert!(cycles(&[mk("a", "b"), mk("b", "c")]).is_empty());
    assert_eq!(cycles(&[mk("a", "b"), mk("b", "c"), mk("c", "a")]).len(), 3);
    let me: ModPath = vec!["plugin".into(), "host".into(), "core".into()];
    let refs = references(
        "use super::{HostState, limits::X};\nuse crate::hub::{Conn, HubError};\nlet a = crate::clock::now_ms();",
        &me,
    );
    assert!(refs.contains(&vec![
        "plugin".into(),
        "host".into(),
        "limits".into(),
        "X".into()
    ]));
    assert!(refs.contains(&vec!["hub".into(), "Conn".into()]));
    assert!(refs.contains(&vec!["clock".into(), "now_ms".into()]));
}
