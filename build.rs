//! Embeds `templates/` and `static/` into the binary, so the one `countersign` file is all a
//! deployment needs.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn table(name: &str, dir: &str) -> String {
    let mut files = Vec::new();
    walk(Path::new(dir), &mut files);
    files.sort();
    let mut code = format!("pub static {name}: &[(&str, &str)] = &[\n");
    for f in files {
        let rel = f.to_string_lossy().replace('\\', "/");
        let key = rel.trim_start_matches(&format!("{dir}/")).to_string();
        code.push_str(&format!(
            "    ({key:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{rel}\"))),\n"
        ));
    }
    code.push_str("];\n");
    code
}

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("embedded.rs");
    let code = table("TEMPLATES", "templates") + &table("STATIC", "static");
    if let Err(e) = fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=static");
}
