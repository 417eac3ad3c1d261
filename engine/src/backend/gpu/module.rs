//! Kernel sources and their compiled code objects.
//!
//! The sources of `kernels/` are embedded at build time (`build.rs`): every `*.hip` file and
//! `common.h`, which the compiler gets as an in-memory header (`#include "common.h"`). Each file
//! is compiled at run time by NVRTC / hipRTC with `-DWAVE=32|64` for the device's architecture,
//! and the code object is cached on disk under `cache_dir()/kernels/`, keyed by
//! sha256(source, common.h, options), the architecture, the runtime version and WAVE.
//!
//! A cache entry carries a header (magic, the full key, the payload's sha256 and length); an
//! entry that fails any check is recompiled and rewritten, never loaded. Entries are written to
//! a temporary file and renamed into place, so a crash leaves no half-written entry.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));

const MAGIC: &[u8; 8] = b"WFKCODE1";
/// magic, key (32), payload sha256 (32), payload length (u64 LE).
const HEADER: usize = 8 + 32 + 32 + 8;

/// One file to compile for one device and wave size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileRequest {
    /// `rope.hip`.
    pub file: String,
    pub source: String,
    pub common_h: String,
    /// Options beyond the architecture (`-DWAVE=64`, ...).
    pub options: Vec<String>,
    /// `sm_90`, `gfx942:sramecc+:xnack-`.
    pub arch: String,
    pub runtime_version: String,
    pub wave: u32,
}

impl CompileRequest {
    /// The options for `wave`: the wave size define, nothing else (each vendor adds its
    /// architecture option).
    pub fn wave_options(wave: u32) -> Vec<String> {
        vec![format!("-DWAVE={wave}")]
    }

    /// sha256 over every input that changes the code object, each length-prefixed so that
    /// moving bytes between fields changes the key.
    pub fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(self.file.as_bytes());
        field(self.source.as_bytes());
        field(self.common_h.as_bytes());
        for o in &self.options {
            field(o.as_bytes());
        }
        field(self.arch.as_bytes());
        field(self.runtime_version.as_bytes());
        field(&self.wave.to_le_bytes());
        h.finalize().into()
    }

    /// `rope.wave64.sm_90.<hash>.bin`: readable parts first, the key last.
    pub fn cache_file_name(&self) -> String {
        let stem = self.file.strip_suffix(".hip").unwrap_or(&self.file);
        let key: String = self.key()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "{}.wave{}.{}.{key}.bin",
            sanitize(stem),
            self.wave,
            sanitize(&self.arch)
        )
    }
}

/// Keeps `[A-Za-z0-9_-]`, maps everything else (`:`, `+`, `/`, `.`) to `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a code object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A valid cache entry.
    Cache,
    /// Compiled: no entry (or no cache directory).
    Compiled,
    /// Compiled because the entry was corrupt or rejected; the entry was rewritten.
    Recompiled,
}

/// The on-disk code object cache. `dir: None` disables caching (every load compiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
}

/// The compiler, injectable so tests can count and fake compilations.
pub type Compiler<'a> = dyn Fn(&CompileRequest) -> Result<Vec<u8>> + 'a;

impl ModuleCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ModuleCache { dir }
    }

    /// `cache_dir()/kernels`, or no cache when `$WAVEFRONT_KERNEL_CACHE` is `off` or there is
    /// no cache directory.
    pub fn default_location() -> Self {
        if std::env::var("WAVEFRONT_KERNEL_CACHE").is_ok_and(|v| v == "off") {
            return ModuleCache { dir: None };
        }
        ModuleCache {
            dir: crate::fetch::cache_dir().ok().map(|d| d.join("kernels")),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn entry_path(&self, req: &CompileRequest) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(req.cache_file_name()))
    }

    /// The cached code object for `req` if a valid entry exists, else `compile(req)` (stored
    /// for next time; a cache that cannot be written is not an error, compiling is).
    pub fn load_or_compile(
        &self,
        req: &CompileRequest,
        compile: &Compiler<'_>,
    ) -> Result<(Vec<u8>, Origin)> {
        let Some(path) = self.entry_path(req) else {
            return Ok((compile(req)?, Origin::Compiled));
        };
        let origin = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes, &req.key()) {
                Some(payload) => return Ok((payload.to_vec(), Origin::Cache)),
                None => Origin::Recompiled,
            },
            Err(_) => Origin::Compiled,
        };
        let code = compile(req)?;
        // Best effort: a read-only or full disk only costs a recompile next time.
        let _ = write_atomic(&path, &encode(&code, &req.key()));
        Ok((code, origin))
    }

    /// Recompiles `req` and rewrites its entry: for an entry that decoded but that the runtime
    /// rejected (a code object from a different driver build, say).
    pub fn recompile(&self, req: &CompileRequest, compile: &Compiler<'_>) -> Result<Vec<u8>> {
        let code = compile(req)?;
        if let Some(path) = self.entry_path(req) {
            let _ = write_atomic(&path, &encode(&code, &req.key()));
        }
        Ok(code)
    }
}

fn encode(payload: &[u8], key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key);
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a well-formed entry for `key`; `None` for anything else.
fn decode<'a>(bytes: &'a [u8], key: &[u8; 32]) -> Option<&'a [u8]> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC || &bytes[8..40] != key {
        return None;
    }
    let len = u64::from_le_bytes(bytes[72..80].try_into().ok()?);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len || payload.is_empty() {
        return None;
    }
    (Sha256::digest(payload).as_slice() == &bytes[40..72]).then_some(payload)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Where the kernel sources come from: the ones embedded at build time, or a directory holding
/// a kernel author's edited copy (`--kernels DIR`, `$WAVEFRONT_KERNELS_DIR`), compiled at run
/// time instead, so that an edited kernel is checked without rebuilding the binaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KernelSources {
    #[default]
    Embedded,
    Dir(PathBuf),
}

/// The kernel sources of one build, ready to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSet {
    /// `(file name, text)` of every `*.hip`, sorted by name.
    pub files: Vec<(String, String)>,
    pub common_h: String,
}

impl KernelSources {
    /// `$WAVEFRONT_KERNELS_DIR` when set and not empty, else the embedded sources.
    pub fn from_env() -> Self {
        match std::env::var_os("WAVEFRONT_KERNELS_DIR") {
            Some(d) if !d.is_empty() => KernelSources::Dir(PathBuf::from(d)),
            _ => KernelSources::Embedded,
        }
    }

    /// The sources: the embedded ones, or `DIR/common.h` and every `DIR/*.hip`. A directory
    /// must hold `common.h` and every file the binary embeds (a kernel author's copy of
    /// `kernels/`); further `*.hip` files are compiled too.
    pub fn load(&self) -> Result<SourceSet> {
        let embedded = || SourceSet {
            files: KERNEL_SOURCES
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
            common_h: COMMON_H.unwrap_or_default().to_string(),
        };
        let dir = match self {
            KernelSources::Embedded => {
                common_h()?;
                if KERNEL_SOURCES.is_empty() {
                    return Err(sources_error(
                        "no kernels/*.hip were present when this binary was built".into(),
                    ));
                }
                return Ok(embedded());
            }
            KernelSources::Dir(d) => d,
        };
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files = Vec::new();
        for e in entries {
            let path = e.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|x| x == "hip") {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| sources_error(format!("{}: not UTF-8", path.display())))?
                    .to_string();
                files.push((name, read(&path)?));
            }
        }
        files.sort();
        let missing: Vec<&str> = KERNEL_SOURCES
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| !files.iter().any(|(g, _)| g == f))
            .collect();
        if !missing.is_empty() {
            return Err(sources_error(format!(
                "{} lacks {} (a kernel directory is a copy of kernels/ with every file)",
                dir.display(),
                missing.join(", ")
            )));
        }
        let common = dir.join("common.h");
        if !common.is_file() {
            return Err(sources_error(format!("{} lacks common.h", dir.display())));
        }
        Ok(SourceSet {
            files,
            common_h: read(&common)?,
        })
    }
}

impl SourceSet {
    /// Each file (every `*.hip`, then `common.h`) with its sha256 and whether it is the text
    /// this binary embeds: what reports record about the kernels that produced their numbers.
    pub fn provenance(&self) -> Vec<crate::backend::KernelSource> {
        let embedded = |name: &str, text: &str| {
            if name == "common.h" {
                COMMON_H == Some(text)
            } else {
                KERNEL_SOURCES.iter().any(|(f, t)| *f == name && *t == text)
            }
        };
        self.files
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .chain([("common.h", self.common_h.as_str())])
            .map(|(file, text)| crate::backend::KernelSource {
                file: file.to_string(),
                sha256: Sha256::digest(text.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                embedded: embedded(file, text),
            })
            .collect()
    }
}

fn sources_error(detail: String) -> Error {
    Error::Backend {
        backend: "gpu",
        op: "kernel sources".into(),
        detail,
    }
}

/// The embedded `common.h`, or an error saying the build had no `kernels/`.
pub fn common_h() -> Result<&'static str> {
    COMMON_H.ok_or_else(|| {
        sources_error("kernels/common.h was not present when this binary was built".into())
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn request(source: &str) -> CompileRequest {
        CompileRequest {
            file: "rope.hip".into(),
            source: source.into(),
            common_h: "#define X 1".into(),
            options: CompileRequest::wave_options(32),
            arch: "gfx942:sramecc+:xnack-".into(),
            runtime_version: "HIP runtime 60443, hipRTC 6.4".into(),
            wave: 32,
        }
    }

    /// A compiler that records how often it ran and returns the source bytes with a marker.
    fn fake(count: &Cell<u32>) -> impl Fn(&CompileRequest) -> Result<Vec<u8>> + '_ {
        move |r: &CompileRequest| {
            count.set(count.get() + 1);
            Ok(format!("code<{}|{}>", r.source, r.options.join(",")).into_bytes())
        }
    }

    #[test]
    fn a_kernel_directory_is_read_whole_and_its_edits_are_told_apart() {
        let embedded = KernelSources::Embedded.load().unwrap();
        assert!(embedded.provenance().iter().all(|k| k.embedded));
        assert_eq!(embedded.provenance().len(), KERNEL_SOURCES.len() + 1);
        let d = tempfile::tempdir().unwrap();
        for (f, t) in &embedded.files {
            std::fs::write(d.path().join(f), t).unwrap();
        }
        let dir = KernelSources::Dir(d.path().to_path_buf());
        let err = dir.load().unwrap_err().to_string();
        assert!(err.contains("lacks common.h"), "{err}");
        std::fs::write(d.path().join("common.h"), &embedded.common_h).unwrap();
        // An identical copy is the embedded sources.
        assert_eq!(dir.load().unwrap(), embedded);
        assert!(dir.load().unwrap().provenance().iter().all(|k| k.embedded));
        // An edited file is named as not embedded, with its own hash; the rest stay embedded.
        let (name, text) = &embedded.files[0];
        std::fs::write(d.path().join(name), format!("{text}\n// edited\n")).unwrap();
        let edited = dir.load().unwrap().provenance();
        let changed: Vec<&str> = edited
            .iter()
            .filter(|k| !k.embedded)
            .map(|k| k.file.as_str())
            .collect();
        assert_eq!(changed, [name.as_str()]);
        let before = &embedded.provenance()[0];
        assert_ne!(edited[0].sha256, before.sha256);
        assert_eq!(edited[0].sha256.len(), 64);
        // A directory missing a file, or missing altogether, is refused by name.
        std::fs::remove_file(d.path().join(name)).unwrap();
        let err = dir.load().unwrap_err().to_string();
        assert!(err.contains(&format!("lacks {name}")), "{err}");
        let gone = KernelSources::Dir(d.path().join("nope"));
        assert!(gone.load().unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn key_changes_with_every_input() {
        let base = request("k");
        let mut variants = vec![base.clone()];
        let mut v = base.clone();
        v.source.push(' ');
        variants.push(v);
        let mut v = base.clone();
        v.common_h.push(' ');
        variants.push(v);
        let mut v = base.clone();
        v.options = CompileRequest::wave_options(64);
        variants.push(v);
        let mut v = base.clone();
        v.wave = 64;
        variants.push(v);
        let mut v = base.clone();
        v.arch = "gfx90a".into();
        variants.push(v);
        let mut v = base.clone();
        v.runtime_version = "HIP runtime 70000, hipRTC 7.0".into();
        variants.push(v);
        let mut v = base.clone();
        // Same concatenation, different split: length prefixes keep the keys apart.
        v.source = "k#define X 1".into();
        v.common_h = String::new();
        variants.push(v);
        let keys: std::collections::HashSet<[u8; 32]> = variants.iter().map(|r| r.key()).collect();
        assert_eq!(keys.len(), variants.len());
        assert_eq!(base.key(), request("k").key(), "deterministic");
        let name = base.cache_file_name();
        assert!(
            name.starts_with("rope.wave32.gfx942_sramecc__xnack-."),
            "{name}"
        );
        assert!(name.ends_with(".bin") && !name.contains(':'), "{name}");
    }

    #[test]
    fn second_load_comes_from_the_cache_and_keys_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(Some(dir.path().join("kernels")));
        let count = Cell::new(0);
        let compile = fake(&count);
        let r = request("a");
        let (code, origin) = cache.load_or_compile(&r, &compile).unwrap();
        assert_eq!((origin, count.get()), (Origin::Compiled, 1));
        assert_eq!(code, b"code<a|-DWAVE=32>");
        let (again, origin) = cache.load_or_compile(&r, &compile).unwrap();
        assert_eq!((origin, count.get()), (Origin::Cache, 1));
        assert_eq!(again, code);
        // A wave64 build of the same file is its own entry.
        let mut r64 = r.clone();
        r64.wave = 64;
        r64.options = CompileRequest::wave_options(64);
        let (code64, origin) = cache.load_or_compile(&r64, &compile).unwrap();
        assert_eq!((origin, count.get()), (Origin::Compiled, 2));
        assert_eq!(code64, b"code<a|-DWAVE=64>");
        assert_eq!(std::fs::read_dir(cache.dir().unwrap()).unwrap().count(), 2);
    }

    #[test]
    fn corrupt_entries_are_recompiled_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
        let count = Cell::new(0);
        let compile = fake(&count);
        let r = request("b");
        cache.load_or_compile(&r, &compile).unwrap();
        let path = cache.entry_path(&r).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let corruptions: Vec<Vec<u8>> = vec![
            flipped,                       // payload bit flip: checksum mismatch
            good[..good.len() - 3].into(), // truncated payload
            good[..20].into(),             // truncated header
            Vec::new(),                    // empty file
            b"WFKCODE0".repeat(20),        // wrong magic
        ];
        for (i, bad) in corruptions.iter().enumerate() {
            std::fs::write(&path, bad).unwrap();
            let before = count.get();
            let (code, origin) = cache.load_or_compile(&r, &compile).unwrap();
            assert_eq!(origin, Origin::Recompiled, "corruption {i}");
            assert_eq!(count.get(), before + 1, "corruption {i}");
            assert_eq!(code, b"code<b|-DWAVE=32>", "corruption {i}");
            assert_eq!(std::fs::read(&path).unwrap(), good, "entry rewritten ({i})");
        }
        // An entry written for another key under this name is not trusted either.
        let other = request("other");
        std::fs::write(&path, encode(b"foreign", &other.key())).unwrap();
        let (code, origin) = cache.load_or_compile(&r, &compile).unwrap();
        assert_eq!(
            (origin, code.as_slice()),
            (Origin::Recompiled, &b"code<b|-DWAVE=32>"[..])
        );
    }

    #[test]
    fn compile_errors_propagate_and_leave_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
        let failing = |_: &CompileRequest| -> Result<Vec<u8>> {
            Err(Error::Backend {
                backend: "gpu",
                op: "nvrtcCompileProgram".into(),
                detail: "NVRTC_ERROR_COMPILATION (6): rope.hip".into(),
            })
        };
        let r = request("c");
        let err = cache.load_or_compile(&r, &failing).unwrap_err();
        assert!(matches!(&err, Error::Backend { op, .. } if op == "nvrtcCompileProgram"));
        assert!(!cache.entry_path(&r).unwrap().exists());
    }

    #[test]
    fn unwritable_or_disabled_cache_still_compiles() {
        let count = Cell::new(0);
        let compile = fake(&count);
        let none = ModuleCache::new(None);
        let r = request("d");
        assert_eq!(
            none.load_or_compile(&r, &compile).unwrap().1,
            Origin::Compiled
        );
        assert_eq!(
            none.load_or_compile(&r, &compile).unwrap().1,
            Origin::Compiled
        );
        assert_eq!(count.get(), 2);
        // A cache "directory" that is a file: writes fail, loads still succeed.
        let f = tempfile::NamedTempFile::new().unwrap();
        let bad = ModuleCache::new(Some(f.path().to_path_buf()));
        let (code, origin) = bad.load_or_compile(&r, &compile).unwrap();
        assert_eq!(
            (origin, code.as_slice()),
            (Origin::Compiled, &b"code<d|-DWAVE=32>"[..])
        );
    }

    #[test]
    fn recompile_replaces_an_entry_the_runtime_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
        let count = Cell::new(0);
        let compile = fake(&count);
        let r = request("e");
        cache.load_or_compile(&r, &compile).unwrap();
        let code = cache.recompile(&r, &compile).unwrap();
        assert_eq!(count.get(), 2);
        assert_eq!(
            cache.load_or_compile(&r, &compile).unwrap(),
            (code, Origin::Cache)
        );
    }
}
