//! The layers of `shared/` (lib.rs) and the rule that holds them apart:
//! a module imports only from its own layer or the layers below it. Every
//! `crate::<layer>` path in every source file is checked, grouped imports
//! (`use crate::{a, b}`) included, so a cycle between layers cannot come back.

use std::path::{Path, PathBuf};

/// Bottom first. A module may use its own layer and those before it.
const LAYERS: &[&str] = &["platform", "store", "audit", "identity", "domain", "http"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers a source file's text refers to through `crate::`.
fn referenced_layers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{store::Item, audit::Actor}`: the first segment of each item.
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.push(name);
            }
        } else {
            found.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    found
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
        if first == "lib.rs" {
            continue;
        }
        let own = rank(first).unwrap_or_else(|| panic!("{} is outside every layer (lib.rs lists them)", relative.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for layer in referenced_layers(&text) {
            match rank(&layer) {
                Some(r) if r > own => violations.push(format!("{} ({first}) imports from {layer}, a layer above it", relative.display())),
                Some(_) => {}
                // Root re-exports (`crate::Error`, `crate::Result`) are the platform's.
                None if matches!(layer.as_str(), "Error" | "Result" | "FieldError") => {}
                None => violations.push(format!("{}: crate::{layer} is not a layer", relative.display())),
            }
        }
    }
    assert!(violations.is_empty(), "layer violations:\n{}", violations.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_inline_paths() {
    let text = "use crate::{http::Principal, store::Item};\nlet x = crate::domain::jobs::Job::pk(id);";
    assert_eq!(referenced_layers(text), ["http", "store", "domain"]);
}
