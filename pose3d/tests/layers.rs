//! The layer folders of `src/` import one way (README, Layout): each layer only from the layers it builds
//! on, so the runtime pipeline never depends on training code and no import cycle can form between layers.

use std::collections::BTreeSet;
use std::path::Path;

/// Each layer and the layers it may import from.
const ALLOWED: &[(&str, &[&str])] = &[
    ("geometry", &[]),
    ("formats", &["geometry"]),
    ("pipeline", &["geometry"]),
    ("model", &["geometry", "pipeline"]),
    ("eval", &["geometry", "formats", "pipeline", "model"]),
    ("train", &["geometry", "formats", "pipeline", "model", "eval"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layers a source file imports (`crate::<layer>`), comments left out.
fn imported_layers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
        for part in line.split("crate::").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if ALLOWED.iter().any(|(l, _)| *l == name) {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for (layer, allowed) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer} has sources");
        for f in files {
            for used in imported_layers(&std::fs::read_to_string(&f).unwrap()) {
                assert!(
                    used == *layer || allowed.contains(&used.as_str()),
                    "{} imports crate::{used}; {layer} may import only {allowed:?}",
                    f.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} files checked");
}

#[test]
fn the_check_sees_imports() {
    let t = "use crate::model::vae::Vae; // crate::train in a comment\nlet x = crate::eval::metrics::mpjpe;";
    assert_eq!(imported_layers(t), BTreeSet::from(["eval".to_string(), "model".to_string()]));
}
