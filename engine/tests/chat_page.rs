//! The chat page at `GET /`: served self-contained (no asset from elsewhere, a content security
//! policy that allows none), without the API key while the API it calls still needs it, and
//! driven in headless Chromium (`tests/browser/chat_page.py`: a reply streams in, a second is
//! stopped mid-stream and kept, the page sends again). The browser test skips, saying so, where
//! Chromium, chromedriver or Python's selenium is missing, and fails instead where
//! `WAVEFRONT_EXPECT_BROWSER=1` (as `.ci/run` sets).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::*;
use serde_json::json;

/// GET `url`: the status, content type, content security policy and body.
fn fetch_page(url: &str) -> (u16, String, String, String) {
    let r = agent().get(url).call().expect("GET / answers");
    let header = |name: &str| r.header(name).unwrap_or_default().to_string();
    let (content_type, csp) = (header("content-type"), header("content-security-policy"));
    (r.status(), content_type, csp, r.into_string().unwrap())
}

/// Every value of `attr="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').expect("a closed attribute")]
        })
        .collect()
}

#[test]
fn the_page_is_served_self_contained() {
    let s = Server::start(&[]);
    let (status, content_type, csp, html) = fetch_page(&s.url("/"));
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..80]);
    assert!(
        html.contains("fetch(\"/v1/chat/completions\""),
        "it calls the API"
    );
    assert!(html.contains("stream: true") && html.contains("include_usage: true"));
    // Nothing from another host: no absolute URL at all, every src/href inline or local.
    assert!(!html.contains("http://") && !html.contains("https://"));
    for attr in ["src", "href"] {
        for v in attribute_values(&html, attr) {
            assert!(
                v.starts_with("data:") || (v.starts_with('/') && !v.starts_with("//")),
                "{attr}=\"{v}\" loads from elsewhere"
            );
        }
    }
    assert!(!html.contains("<script src"), "the script is inline");
    // Model text goes in as text, never as markup.
    assert!(!html.contains("innerHTML") && !html.contains("insertAdjacentHTML"));
    // And the browser is told to load nothing else and connect only here.
    for directive in ["default-src 'none'", "connect-src 'self'"] {
        assert!(csp.contains(directive), "{directive} in {csp:?}");
    }
    // Counted under its own label.
    assert_eq!(
        s.metric("wavefront_requests_total{endpoint=\"/\",status=\"200\"}"),
        1.0
    );
}

#[test]
fn the_page_needs_no_key_but_the_api_it_calls_does() {
    let s = Server::start(&["--api-key", "s3cret"]);
    let (status, _, _, html) = fetch_page(&s.url("/"));
    assert_eq!(status, 200);
    assert!(html.contains("Authorization"), "the page sends the key");
    let body = json!({"messages": user("Hi"), "max_tokens": 2}).to_string();
    let chat = s.url("/v1/chat/completions");
    assert_eq!(post_raw(&chat, &body, None).status, 401);
    assert_eq!(post_raw(&chat, &body, Some("s3cret")).status, 200);
    // Only `/` is exempt: another path still needs the key before it is even routed.
    assert_eq!(get(&s.url("/index.html"), None).status, 401);
}

/// What the browser test needs and is missing, or a Python that can import selenium.
fn browser_tools() -> Result<String, Vec<&'static str>> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    let mut missing = Vec::new();
    if !on_path("chromium") && !on_path("chromium-browser") {
        missing.push("chromium");
    }
    if !on_path("chromedriver") {
        missing.push("chromium-driver (chromedriver)");
    }
    // Debian's python3-selenium is in the system Python, which a PATH's python3 may not be.
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import selenium"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if python.is_none() {
        missing.push("python3-selenium");
    }
    match python {
        Some(py) if missing.is_empty() => Ok(py.to_string()),
        _ => Err(missing),
    }
}

#[test]
fn the_page_streams_and_stops_in_headless_chromium() {
    let python = match browser_tools() {
        Ok(py) => py,
        Err(missing) => {
            let what = format!(
                "the browser test needs {} (Debian: apt-get install chromium chromium-driver \
                 python3-selenium)",
                missing.join(", ")
            );
            assert!(
                std::env::var("WAVEFRONT_EXPECT_BROWSER").as_deref() != Ok("1"),
                "WAVEFRONT_EXPECT_BROWSER=1 but {what}"
            );
            eprintln!("skipped: {what}");
            return;
        }
    };
    let s = Server::start(&["--api-key", "browser-key"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/chat_page.py");
    let out_path = std::env::temp_dir().join(format!("wavefront-chat-page-{}.log", s.child.id()));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(s.url("/"))
        .args(["--api-key", "browser-key"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    println!("{output}");
    if status.is_some_and(|s| s.success()) {
        // The Stop reached the server as a disconnect, which cancelled the generation.
        let cancelled = || {
            let metrics = get(&s.url("/metrics"), Some("browser-key")).text;
            metric_in(&metrics, "wavefront_requests_cancelled_total")
        };
        let start = Instant::now();
        while cancelled() != 1.0 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            cancelled(),
            1.0,
            "the stopped stream was cancelled on the server"
        );
    }
    let server_log = s.stderr.lock().unwrap().clone();
    let status =
        status.unwrap_or_else(|| panic!("the browser test ran past 240 s; server:\n{server_log}"));
    assert!(
        status.success(),
        "the browser test failed ({status}); server:\n{server_log}"
    );
}
