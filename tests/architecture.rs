//! The library's modules import one way: no cycles among the top-level modules, and no
//! component imports `config` (the composition imports the components' config types, never the
//! other way round). Read from the sources, so a new `use` that breaks it fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules `src/lib.rs` declares.
fn modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').to_string())
        .collect()
}

/// The `.rs` files of module `name`: `src/name.rs`, or everything under `src/name/`.
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut found = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The top-level modules `text` names as `crate::<module>`, outside comments.
fn imports(text: &str, modules: &[String]) -> BTreeSet<String> {
    let code = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    code.match_indices("crate::")
        .filter_map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            modules.contains(&name).then_some(name)
        })
        .collect()
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(modules.len() > 5, "lib.rs declares the modules: {modules:?}");
    modules
        .iter()
        .map(|module| {
            let mut used = BTreeSet::new();
            for file in files(&src, module) {
                used.extend(imports(&std::fs::read_to_string(file).unwrap(), &modules));
            }
            used.remove(module);
            (module.clone(), used)
        })
        .collect()
}

/// A cycle through `module`, if its imports lead back to it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
    let last = path.last().unwrap().clone();
    for next in &graph[&last] {
        if next == &path[0] {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn top_level_modules_import_without_cycles() {
    let graph = import_graph();
    for module in graph.keys() {
        let cycle = cycle_from(&graph, &mut vec![module.clone()]);
        assert!(cycle.is_none(), "import cycle: {}", cycle.unwrap().join(" -> "));
    }
}

#[test]
fn no_component_imports_the_composition() {
    let graph = import_graph();
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(_, used)| used.contains("config"))
        .map(|(module, _)| module)
        .collect();
    assert!(importers.is_empty(), "these import crate::config: {importers:?}");
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(m, used)| (m.to_string(), used.into_iter().map(String::from).collect()))
    .collect();
    let cycle = cycle_from(&graph, &mut vec!["a".to_string()]).unwrap();
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert!(cycle_from(&graph, &mut vec!["d".to_string()]).is_none());
    let code = "use crate::sink::X; // crate::repl\nlet y = crate::lake::Lake::new();";
    let modules = ["sink", "repl", "lake"].map(String::from);
    assert_eq!(imports(code, &modules), ["lake", "sink"].map(String::from).into());
}
