//! Tokenizer goldens written by the fixture scripts (`fixtures/gen/*_goldens.py`, transformers):
//! every case's ids from `encode(text, true)`, and its ids decoded with and without the special
//! tokens.
#![allow(dead_code)]

use wavefront::Tokenizer;

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every mismatch of `tok` against the `cases` of a `tokenizer_goldens.json`, one line each.
pub fn mismatches(tok: &Tokenizer, goldens: &serde_json::Value) -> Vec<String> {
    let mut failures = Vec::new();
    for case in goldens["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = tok.encode(text, true).unwrap();
        if got != want {
            failures.push(format!("encode {text:?}: {got:?} != {want:?}"));
        }
        for (skip, key) in [(false, "decoded"), (true, "decoded_skip_special")] {
            let decoded = tok.decode(&want, skip).unwrap();
            if decoded != case[key].as_str().unwrap() {
                failures.push(format!("{key} {text:?}: {decoded:?} != {:?}", case[key]));
            }
        }
    }
    failures
}
