//! The loaders under mutation: every GGUF and safetensors fixture under `fixtures/`, and the
//! JSON files of every Hugging Face model and tokenizer directory there, are fed to the
//! loaders a few hundred times each, mutated: byte flips, truncations at every structural
//! boundary and at random points, hostile values in every length, count, type, offset and
//! dimension field, and JSON edits (wrong types, huge and negative numbers, missing fields).
//!
//! Each case must give a model or a typed error whose message names the mutated file, must not
//! panic (`catch_unwind` per case), and must not allocate more than the file's size plus a
//! bound derived from the valid load of the same fixture (see [`bound`]), measured by a
//! counting global allocator that tracks the peak of live bytes. The cases run serially in
//! one test, so each measurement is of one case alone; this binary holds no other test.
//!
//! Deterministic: the cases come from a fixed seed (`LOADER_MUTATION_SEED` overrides it), and
//! every failure prints the fixture, the case number and the mutation in full.
//! `LOADER_MUTATION_ONLY=<fixture>#<case>` runs one case.

mod layout;
mod mutate;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mutate::{below, Mutation};
use wavefront::formats::gguf;
use wavefront::formats::hf::safetensors;
use wavefront::sampler::CoinRng;
use wavefront::{tokenizer, Error};

// ---- the counting allocator ----

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The case being run (a `String` the runner keeps alive), printed if an allocation is refused.
static CASE: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());
/// Live bytes past this are refused, after printing the case: a bug that asks for terabytes
/// then fails this test, with its case, instead of exhausting the machine. Far above any bound
/// below (the fixtures are under 1 MB).
const REFUSE_ABOVE: usize = 1 << 30;

fn admit(size: usize) -> bool {
    let live = LIVE.load(SeqCst);
    if live.saturating_add(size) <= REFUSE_ABOVE {
        return true;
    }
    let case = CASE.load(SeqCst);
    // SAFETY: the runner stores a pointer to a String that outlives the case, and clears it
    // before dropping the String.
    let case = unsafe { case.as_ref() }.map_or("(no case)", String::as_str);
    let _ = writeln!(
        std::io::stderr(),
        "loader_mutation: refusing {size} bytes ({live} live) in case: {case}"
    );
    false
}

fn counted(size: usize) {
    let live = LIVE.fetch_add(size, SeqCst) + size;
    PEAK.fetch_max(live, SeqCst);
}

// SAFETY: every call forwards to `System` with the same layout; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        if !admit(l.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(l);
        if !p.is_null() {
            counted(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        if !admit(l.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            counted(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), SeqCst);
    }

    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new: usize) -> *mut u8 {
        if new > l.size() && !admit(new - l.size()) {
            return std::ptr::null_mut();
        }
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), SeqCst);
            counted(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the peak of bytes live during it beyond those live
/// before it.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(SeqCst);
    PEAK.store(base, SeqCst);
    let out = f();
    (out, PEAK.load(SeqCst).saturating_sub(base))
}

// ---- the fixtures and their loaders ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Gguf,
    Safetensors,
    Json,
}

/// The loader entry points a fixture is fed to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    /// `wavefront::load(file)`, and `gguf::read` + `tokenizer::gguf::from_gguf` (a
    /// tokenizer-only GGUF never reaches the tokenizer through `load`).
    Gguf,
    /// `safetensors::open(file)` (golden outputs: safetensors files that are not models).
    Safetensors,
    /// `wavefront::load(dir)`: config, weights, validation.
    HfModel,
    /// `tokenizer::hf::from_dir(dir)`.
    HfTokenizer,
}

struct Target {
    /// The fixture, relative to the repository (as reported).
    name: String,
    format: Format,
    entry: Entry,
    original: Vec<u8>,
    /// Where the loader finds the (mutated) file: in a private copy of its directory.
    path: PathBuf,
    /// What the loader is given: the file, or its directory.
    load_path: PathBuf,
}

const SAMPLE: &str = "Hello <|im_start|> wörld 12345 ▁x";

/// Uses a tokenizer the way generation would (a tokenizer that loads must also encode or
/// refuse, not panic).
fn touch(t: Option<tokenizer::Tokenizer>) {
    if let Some(t) = t {
        if let Ok(ids) = t.encode(SAMPLE, true) {
            let _ = t.decode(&ids, false);
        }
    }
}

/// Every loader result of one case.
fn run_entry(t: &Target) -> Vec<Result<(), Error>> {
    match t.entry {
        Entry::Gguf => vec![
            wavefront::load(&t.load_path).map(|m| touch(m.tokenizer)),
            gguf::read(&t.path)
                .and_then(|f| tokenizer::gguf::from_gguf(&f))
                .map(touch),
        ],
        Entry::Safetensors => vec![safetensors::open(&t.path).map(drop)],
        Entry::HfModel => vec![wavefront::load(&t.load_path).map(|m| touch(m.tokenizer))],
        Entry::HfTokenizer => vec![tokenizer::hf::from_dir(&t.load_path).map(touch)],
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Copies `dir`'s files (not subdirectories) into `to`.
fn copy_dir(dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Every GGUF and safetensors file under `fixtures/`, and the JSON files of every Hugging Face
/// model directory (one with `config.json` and weights) and tokenizer directory (one with
/// `tokenizer.json`), each with a private working copy under `work`.
fn targets(work: &Path) -> Vec<Target> {
    let root = repo();
    let mut files = Vec::new();
    files_under(&root.join("fixtures"), &mut files);
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let fname = file.file_name().unwrap().to_str().unwrap();
        let dir = file.parent().unwrap();
        let model_dir = dir.join("config.json").is_file()
            && (dir.join("model.safetensors").is_file()
                || dir.join("model.safetensors.index.json").is_file());
        let tokenizer_dir = dir.join("tokenizer.json").is_file();
        let (format, entry) = match fname {
            f if f.ends_with(".gguf") => (Format::Gguf, Entry::Gguf),
            "model.safetensors" if model_dir => (Format::Safetensors, Entry::HfModel),
            f if f.ends_with(".safetensors") => (Format::Safetensors, Entry::Safetensors),
            "config.json" | "generation_config.json" if model_dir => (Format::Json, Entry::HfModel),
            "tokenizer.json" | "tokenizer_config.json" if tokenizer_dir => {
                (Format::Json, Entry::HfTokenizer)
            }
            _ => continue,
        };
        let copy = work.join(i.to_string());
        let (path, load_path) = match entry {
            Entry::HfModel | Entry::HfTokenizer => {
                copy_dir(dir, &copy);
                (copy.join(fname), copy.clone())
            }
            Entry::Gguf | Entry::Safetensors => {
                std::fs::create_dir_all(&copy).unwrap();
                (copy.join(fname), copy.join(fname))
            }
        };
        out.push(Target {
            name,
            format,
            entry,
            original: std::fs::read(file).unwrap(),
            path: path.clone(),
            load_path,
        });
    }
    out
}

// ---- the cases ----

/// Flips: two of three inside the structure (GGUF header, metadata and tensor infos; the
/// safetensors header), where they change what the loader does, the rest anywhere.
fn flips(rng: &mut CoinRng, n: usize, structure: usize, len: usize) -> Vec<Mutation> {
    (0..n)
        .map(|i| {
            let span = if i % 3 == 2 { len } else { structure.max(1) };
            mutate::random_flip(rng, span)
        })
        .collect()
}

fn cases(t: &Target, rng: &mut CoinRng) -> Vec<Mutation> {
    let len = t.original.len();
    let mut out = Vec::new();
    match t.format {
        Format::Gguf => {
            let l = layout::gguf(&t.original);
            out.extend(mutate::truncations(&l, len, 20, rng));
            // Every field, with two of its hostile values.
            for f in &l.fields {
                let mut values = mutate::hostile_values(f, len);
                for _ in 0..2.min(values.len()) {
                    let v = values.swap_remove(below(rng, values.len()));
                    out.push(Mutation::Field(vec![(f.clone(), v)]));
                }
            }
            out.extend(mutate::array_retypes(&l, len));
            let structure = l
                .boundaries
                .iter()
                .find(|b| b.1 == layout::DATA_START)
                .map_or(len, |b| b.0);
            out.extend(flips(rng, 150, structure, len));
        }
        Format::Safetensors => {
            let l = layout::safetensors(&t.original);
            out.extend(mutate::truncations(&l, len, 20, rng));
            let f = &l.fields[0];
            let mut values = mutate::hostile_values(f, len);
            values.push(100_000_001); // just past the format's header limit
            for v in values {
                out.push(Mutation::Field(vec![(f.clone(), v)]));
            }
            let header = &t.original[8..8 + f.value as usize];
            let header: serde_json::Value = serde_json::from_slice(header).unwrap();
            let mut paths = Vec::new();
            mutate::json_paths(&header, "", &mut paths);
            for _ in 0..150 {
                out.push(Mutation::Header {
                    path: paths[below(rng, paths.len())].clone(),
                    edit: mutate::random_edit(rng, &paths),
                });
            }
            out.extend(flips(rng, 100, 8 + f.value as usize, len));
        }
        Format::Json => {
            let l = mutate::json_boundaries(&t.original);
            out.extend(mutate::truncations(&l, len, 20, rng));
            let v: serde_json::Value = serde_json::from_slice(&t.original).unwrap();
            let mut paths = Vec::new();
            mutate::json_paths(&v, "", &mut paths);
            // Half the edits at the top two levels (the fields a loader reads by name), half
            // anywhere (vocabulary entries, merges).
            let shallow: Vec<&String> = paths
                .iter()
                .filter(|p| p.matches('/').count() <= 2)
                .collect();
            for i in 0..200 {
                let path = if i % 2 == 0 {
                    shallow[below(rng, shallow.len())].clone()
                } else {
                    paths[below(rng, paths.len())].clone()
                };
                out.push(Mutation::Json {
                    path,
                    edit: mutate::random_edit(rng, &paths),
                });
            }
            out.extend(flips(rng, 60, len, len));
        }
    }
    out
}

/// The mutated file's bytes.
fn apply(t: &Target, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Json { path, edit } => {
            let v: serde_json::Value = serde_json::from_slice(&t.original).unwrap();
            mutate::edit_json(&v, path, edit)
        }
        Mutation::Header { path, edit } => {
            let n = u64::from_le_bytes(t.original[..8].try_into().unwrap()) as usize;
            let v: serde_json::Value = serde_json::from_slice(&t.original[8..8 + n]).unwrap();
            let header = mutate::edit_json(&v, path, edit);
            let mut out = (header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&t.original[8 + n..]);
            out
        }
        m => mutate::apply_bytes(&t.original, m),
    }
}

// ---- the bound ----

/// What a mutated load may allocate beyond its file's size: twice the valid load's peak, plus
/// 64 KiB. A mutation can send a load down another path than the valid file's (an error
/// message formatted, a tensor copied), a vector's growth can double, and the file's size term
/// covers a length field that makes a string or an array take the rest of the file; nothing
/// legitimate allocates more. A length trusted before it is checked (`with_capacity(n)` from
/// the file, an `n_layers`-long list from the config) exceeds it by orders of magnitude.
fn bound(valid_peak: usize) -> usize {
    2 * valid_peak + (64 << 10)
}

// ---- the runner ----

static PANIC: Mutex<Option<String>> = Mutex::new(None);

#[derive(Default)]
struct Stats {
    cases: usize,
    by_kind: [usize; mutate::KINDS.len()],
    ok: usize,
    max_peak: usize,
    max_peak_case: String,
}

fn seed() -> u64 {
    std::env::var("LOADER_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005E_ED0F_10AD)
}

#[test]
fn loaders_survive_mutation() {
    let start = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let targets = targets(work.path());
    // The walk must find what the brief names: GGUF models and tokenizers, HF model weights,
    // golden safetensors, configs and tokenizer files.
    let count = |f: &dyn Fn(&Target) -> bool| targets.iter().filter(|t| f(t)).count();
    assert!(count(&|t| t.entry == Entry::Gguf) >= 5);
    assert!(count(&|t| t.entry == Entry::HfModel && t.format == Format::Safetensors) >= 7);
    assert!(count(&|t| t.entry == Entry::Safetensors) >= 7);
    assert!(count(&|t| t.name.ends_with("config.json")) >= 7);
    assert!(count(&|t| t.entry == Entry::HfTokenizer) >= 2);

    let only = std::env::var("LOADER_MUTATION_ONLY").ok();
    let seed = seed();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        *PANIC.lock().unwrap() = Some(format!("{msg} at {at}"));
    }));

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut totals = [0usize; mutate::KINDS.len()];
    let mut slowest = (Duration::ZERO, String::new());
    for (ti, t) in targets.iter().enumerate() {
        let mut rng = CoinRng::new(seed ^ (ti as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // The valid file first: its peak sets the bound.
        std::fs::write(&t.path, &t.original).unwrap();
        let (valid, valid_peak) = measured(|| run_entry(t));
        let valid_ok: Vec<bool> = valid.iter().map(Result::is_ok).collect();
        let limit = t.original.len() + bound(valid_peak);
        let mut stats = Stats::default();
        for (ci, m) in cases(t, &mut rng).into_iter().enumerate() {
            let label = format!("{}#{ci}", t.name);
            if only.as_ref().is_some_and(|o| *o != label) {
                continue;
            }
            let case = Box::new(format!("{label} (seed {seed:#x}): {m}"));
            std::fs::write(&t.path, apply(t, &m)).unwrap();
            CASE.store(&*case as *const String as *mut String, SeqCst);
            let began = Instant::now();
            let (result, peak) = measured(|| catch_unwind(AssertUnwindSafe(|| run_entry(t))));
            let took = began.elapsed();
            CASE.store(std::ptr::null_mut(), SeqCst);
            if took > slowest.0 {
                slowest = (took, case.to_string());
            }
            stats.cases += 1;
            stats.by_kind[mutate::KINDS.iter().position(|k| *k == m.kind()).unwrap()] += 1;
            if peak > stats.max_peak {
                stats.max_peak = peak;
                stats.max_peak_case = m.to_string();
            }
            if peak > limit {
                failures.push(format!(
                    "{case}: allocated {peak} bytes, over the bound {limit} (file {} + {})",
                    t.original.len(),
                    bound(valid_peak)
                ));
            }
            match result {
                Err(_) => {
                    let p = PANIC.lock().unwrap().take().unwrap_or_default();
                    failures.push(format!("{case}: PANIC {p}"));
                }
                Ok(results) => {
                    if results.iter().all(Result::is_ok) {
                        stats.ok += 1;
                    }
                    let named = t.path.display().to_string();
                    for e in results.iter().filter_map(|r| r.as_ref().err()) {
                        if !e.to_string().contains(&named) {
                            failures.push(format!("{case}: the error does not name {named}: {e}"));
                        }
                    }
                }
            }
        }
        for (t, n) in totals.iter_mut().zip(stats.by_kind) {
            *t += n;
        }
        // Leave the copy valid for the next target of the same directory.
        std::fs::write(&t.path, &t.original).unwrap();
        report.push(format!(
            "{:<46} {:>5} cases {:>4} loaded | {} | valid {:?}: peak {:>8} B | mutated max {:>8} B, limit {:>8} B (file {} + bound {}) | max at: {}",
            t.name,
            stats.cases,
            stats.ok,
            mutate::KINDS
                .iter()
                .zip(stats.by_kind)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            valid_ok,
            valid_peak,
            stats.max_peak,
            limit,
            t.original.len(),
            bound(valid_peak),
            stats.max_peak_case,
        ));
    }
    std::panic::set_hook(hook);
    println!(
        "loader mutation, seed {seed:#x}: {} fixtures, {} cases ({}), {:.1?}:",
        report.len(),
        totals.iter().sum::<usize>(),
        mutate::KINDS
            .iter()
            .zip(totals)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        start.elapsed()
    );
    for r in &report {
        println!("  {r}");
    }
    println!("slowest case: {:.1?}: {}", slowest.0, slowest.1);
    assert!(
        failures.is_empty(),
        "{} failures (first 40):\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
