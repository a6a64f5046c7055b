//! The module tree is the one docs/ARCHITECTURE.md describes: each top-level module of
//! `src/` imports only the modules listed before it, so there is no import cycle and data
//! flows one way. A new module goes into `LAYERS` (and the document) deliberately.

use std::path::{Path, PathBuf};

/// Bottom to top, as in docs/ARCHITECTURE.md's table.
const LAYERS: &[&str] = &[
    "vocab",
    "units",
    "private_file",
    "inventory",
    "s3",
    "store",
    "plan",
    "exec",
    "preflight",
    "verify",
    "batch_ops",
    "finish",
    "cli",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The top-level modules a file's code (not its comments) names as `crate::X`, or inside
/// `crate::{X, Y::z, …}` (possibly over several lines).
fn imports(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let Some(inner) = rest.strip_prefix('{') else {
            found.push(ident(rest));
            continue;
        };
        // The names at depth 0 of the braces: after `{` and after each top-level `,`.
        let (mut depth, mut at_name) = (0usize, true);
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_name = true,
                c if at_name && !c.is_whitespace() => {
                    found.push(ident(&inner[k..]));
                    at_name = false;
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')).collect();
    let mut sorted_layers: Vec<&str> = LAYERS.to_vec();
    sorted_layers.sort();
    let mut sorted_declared = declared.clone();
    sorted_declared.sort();
    assert_eq!(sorted_declared, sorted_layers, "src/lib.rs declares other modules than LAYERS lists");

    let mut wrong = Vec::new();
    for (level, module) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for f in files {
            for dep in imports(&f) {
                match LAYERS.iter().position(|l| *l == dep) {
                    Some(d) if d > level => wrong.push(format!("{} imports crate::{dep}", f.display())),
                    Some(_) => {}
                    None => wrong.push(format!("{} names crate::{dep}, which is no module of LAYERS", f.display())),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering of docs/ARCHITECTURE.md:\n{}", wrong.join("\n"));
}
