//! Embeds the kernel sources of `kernels/` (the workspace root's) into the engine: writes
//! `$OUT_DIR/kernel_sources.rs` with one `include_str!` per `*.hip` file and one for
//! `common.h`. A checkout without `kernels/` still builds (the list is empty and the GPU backend
//! reports the missing sources at run time); the build script then reruns on every build until
//! the directory appears.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let kernels = manifest.join("..").join("kernels");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=build.rs");
    // A directory is scanned recursively; a missing path makes cargo rerun this script.
    println!("cargo:rerun-if-changed={}", kernels.display());

    let mut files: Vec<PathBuf> = std::fs::read_dir(&kernels)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hip"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let common = kernels.join("common.h");
    let include = |p: &Path| format!("include_str!({:?})", p.display().to_string());
    let mut code = String::from(
        "/// `(file name, text)` of every `kernels/*.hip`, sorted by name.\n\
         pub const KERNEL_SOURCES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        code.push_str(&format!("    ({name:?}, {}),\n", include(f)));
    }
    code.push_str("];\n/// `kernels/common.h`, `None` when the checkout has none.\n");
    code.push_str(&format!(
        "pub const COMMON_H: Option<&str> = {};\n",
        if common.is_file() {
            format!("Some({})", include(&common))
        } else {
            "None".to_string()
        }
    ));
    std::fs::write(out.join("kernel_sources.rs"), code).expect("OUT_DIR is writable");
}
