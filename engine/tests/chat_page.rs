//! The chat page at `GET /`: served self-contained (no asset from elsewhere, a content security
//! policy that allows none), and without the API key while the API it calls still needs it.

mod common;

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
