//! Bad input at the command line, as a new user would type it, through the real binary: every
//! out-of-range flag is refused before any model loads (the `--model` given does not exist, so
//! a load would say so instead), a bad path says what is wrong once, and a run that times
//! nothing prints no rate. Each case asserts the exit status and the exact message.

mod common;

use std::path::Path;

use common::cli::{default_model, wavefront};

/// Never read: a check that passes would make the load fail with this path in the message.
const NEVER_LOADED: &str = "/nonexistent/wavefront-test/never-loaded.gguf";

/// `run --model NEVER_LOADED <flags> hi` for each case: refused with exactly its message.
fn assert_run_refused(cases: &[(&[&str], &str)]) {
    for (flags, message) in cases {
        let mut args = vec!["run", "--model", NEVER_LOADED];
        args.extend_from_slice(flags);
        args.push("hi");
        assert_error(&args, message);
    }
}

/// Asserts exit status 1, nothing on stdout, and exactly `error: {message}` on stderr.
fn assert_error(args: &[&str], message: &str) {
    let o = wavefront(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err, format!("error: {message}\n"), "{args:?}");
    assert!(o.stdout.is_empty(), "{args:?}");
}

#[test]
fn sampling_flags_out_of_range_are_refused_before_loading() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--top-p", "2"],
            "top_p must be in (0, 1] (1 = off), got 2",
        ),
        (
            &["--top-p", "0"],
            "top_p must be in (0, 1] (1 = off), got 0",
        ),
        (
            &["--top-p", "nan"],
            "top_p must be in (0, 1] (1 = off), got NaN",
        ),
        (
            &["--min-p", "1.5"],
            "min_p must be in [0, 1] (0 = off), got 1.5",
        ),
        (
            &["--min-p", "-0.1"],
            "min_p must be in [0, 1] (0 = off), got -0.1",
        ),
        (
            &["--temperature", "-1"],
            "temperature must be finite and >= 0 (0 = greedy), got -1",
        ),
        (
            &["--temperature", "inf"],
            "temperature must be finite and >= 0 (0 = greedy), got inf",
        ),
        (
            &["--repeat-penalty", "0"],
            "repeat_penalty must be finite and > 0 (1 = off), got 0",
        ),
        (
            &["--repeat-penalty", "-2"],
            "repeat_penalty must be finite and > 0 (1 = off), got -2",
        ),
    ];
    assert_run_refused(cases);
}

#[test]
fn limits_out_of_range_are_refused_before_loading() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-tokens", "0"],
            "max_tokens must be at least 1, got 0",
        ),
        (
            &["--context", "0"],
            "context must be at least 2 (one prompt token and one generated), got 0",
        ),
        (
            &["--context", "1"],
            "context must be at least 2 (one prompt token and one generated), got 1",
        ),
        (&["--stop", ""], "stop must be a non-empty string, got \"\""),
        (
            &["--lookup", "0"],
            "lookup must be in 1..=64 (drafted tokens a verification scores), got 0",
        ),
        (
            &["--lookup", "18446744073709551615"],
            "lookup must be in 1..=64 (drafted tokens a verification scores), got 18446744073709551615",
        ),
        (
            &["--lookup", "4", "--lookup-ngram", "0"],
            "lookup_ngram must be in 1..=16, got 0",
        ),
        (
            &["--draft", NEVER_LOADED, "--draft-k", "0"],
            "draft_k must be in 1..=64 (drafted tokens a verification scores), got 0",
        ),
        (
            &["--draft", NEVER_LOADED, "--draft-k", "65"],
            "draft_k must be in 1..=64 (drafted tokens a verification scores), got 65",
        ),
    ];
    assert_run_refused(cases);
}

/// `--lookup` changes the speed, never the output: the same tokens and text as without, and
/// the JSON says what was drafted and accepted (a prompt that repeats itself, so drafts come).
#[test]
fn a_lookup_run_gives_the_plain_runs_tokens_and_reports_its_drafts() {
    let m = default_model();
    let prompt = "one two three four one two three four one two three";
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--model",
            &m,
            "--backend",
            "cpu",
            "--seed",
            "3",
            "--max-tokens",
            "12",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(prompt);
        let o = wavefront(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let plain = run(&[]);
    let spec = run(&["--lookup", "4", "--lookup-ngram", "2"]);
    assert_eq!(spec["generated_tokens"], plain["generated_tokens"]);
    assert_eq!(spec["text"], plain["text"]);
    assert!(plain["speculation"].is_null());
    let s = &spec["speculation"];
    assert!(s["verifications"].as_u64().is_some_and(|v| v >= 1), "{s}");
    assert!(s["drafted"].as_u64().is_some_and(|d| d >= 1), "{s}");
}

/// Greedy, `--draft` changes the speed, never the output; a model drafting for itself keeps
/// every draft (the JSON says so); a draft of another vocabulary is refused, naming both.
#[test]
fn a_greedy_draft_run_gives_the_plain_runs_tokens_and_a_foreign_draft_is_refused() {
    let m = default_model();
    let prompt = "The three primary colours are";
    let base = [
        "run",
        "--model",
        &m,
        "--backend",
        "cpu",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--format",
        "json",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args.push(prompt);
        let o = wavefront(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let plain = run(&[]);
    let spec = run(&["--draft", &m, "--draft-k", "3"]);
    assert_eq!(spec["generated_tokens"], plain["generated_tokens"]);
    assert_eq!(spec["text"], plain["text"]);
    let s = &spec["speculation"];
    assert_eq!(s["drafter"], "draft model", "{s}");
    assert!(s["drafted"].as_u64().is_some_and(|d| d >= 1), "{s}");
    assert_eq!(s["accepted"], s["drafted"], "{s}");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/llama_mha");
    let fixture = fixture.to_str().unwrap();
    let mut args = base.to_vec();
    args.extend_from_slice(&["--draft", fixture, prompt]);
    let o = wavefront(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("llama_mha cannot draft for")
            && err.contains("vocabulary size 256, the target's is 49152"),
        "{err}"
    );
    // Not with --lookup.
    let mut args = base.to_vec();
    args.extend_from_slice(&["--draft", &m, "--lookup", "3", prompt]);
    let o = wavefront(&args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

#[test]
fn bench_flags_out_of_range_are_refused_before_loading() {
    for (flag, field) in [("--reps", "reps"), ("--tg", "tg"), ("--pp", "pp")] {
        assert_error(
            &["bench", "--model", NEVER_LOADED, flag, "0"],
            &format!("{field} must be at least 1, got 0"),
        );
    }
    // Each prompt length of a list.
    assert_error(
        &["bench", "--model", NEVER_LOADED, "--pp", "512,0"],
        "pp must be at least 1, got 0",
    );
    // Cache sizes that do not fit in a number.
    assert_error(
        &[
            "bench",
            "--model",
            NEVER_LOADED,
            "--depth",
            "0,18446744073709551615",
        ],
        "depth must be such that depth + tg + 2 < 2^64 (tg is 128), got 18446744073709551615",
    );
    assert_error(
        &[
            "bench",
            "--model",
            NEVER_LOADED,
            "--pp",
            "18446744073709551615",
        ],
        "pp must be below 2^64 - 1, got 18446744073709551615",
    );
    // Before generating random weights, too.
    assert_error(
        &["bench", "--shape", "llama-3.1-8b", "--reps", "0"],
        "reps must be at least 1, got 0",
    );
}

#[test]
fn bench_gemv_refuses_the_cpu_and_unknown_shapes() {
    assert_error(
        &["bench", "--gemv", "--backend", "cpu"],
        "bench --gemv measures the GPU's GEMV kernels against its BLAS; the CPU backend has \
         neither (run it with a usable GPU, --backend gpu or auto)",
    );
    // The shape is checked before a backend starts.
    assert_error(
        &["bench", "--gemv", "--shape", "nope", "--backend", "gpu"],
        "invalid request: unknown model shape `nope`; known: smollm2-135m, llama-3.2-1b, \
         llama-3.1-8b",
    );
}

#[test]
fn bench_sync_refuses_the_cpu() {
    assert_error(
        &["bench", "--sync", "--backend", "cpu"],
        "bench --sync measures the GPU's grid barriers and launch transitions; the CPU backend \
         has neither (run it with a usable GPU, --backend gpu or auto)",
    );
}

#[test]
fn bench_attention_refuses_the_cpu_unknown_shapes_and_a_depth_past_the_context() {
    assert_error(
        &["bench", "--attention", "--backend", "cpu"],
        "bench --attention measures the GPU's decode attention kernels; the CPU backend has \
         none (run it with a usable GPU, --backend gpu or auto)",
    );
    assert_error(
        &[
            "bench",
            "--attention",
            "--shape",
            "nope",
            "--backend",
            "gpu",
        ],
        "invalid request: unknown model shape `nope`; known: smollm2-135m, llama-3.2-1b, \
         llama-3.1-8b",
    );
    assert_error(
        &[
            "bench",
            "--attention",
            "--shape",
            "smollm2-135m",
            "--depth",
            "8192",
            "--backend",
            "gpu",
        ],
        "invalid request: bench --attention: depth 8192 is past smollm2-135m's context of 8192 \
         positions",
    );
}

#[test]
fn a_context_beyond_the_models_is_refused() {
    let m = default_model();
    let trained = wavefront::load(Path::new(&m))
        .unwrap()
        .config
        .max_position_embeddings;
    let over = (trained + 1).to_string();
    assert_error(
        &[
            "run",
            "--model",
            &m,
            "--backend",
            "cpu",
            "--context",
            &over,
            "hi",
        ],
        &format!("context must be at most the model's context length, {trained}, got {over}"),
    );
}

#[test]
fn a_missing_path_is_named_once() {
    let missing = "/nonexistent/wavefront-test/model.gguf";
    let message = format!("{missing}: no such file or directory");
    assert_error(
        &["run", "--model", missing, "--backend", "cpu", "hi"],
        &message,
    );
    assert_error(&["info", missing], &message);
    assert_error(&["bench", "--model", missing, "--backend", "cpu"], &message);
}

#[test]
fn a_directory_without_config_json_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not read").unwrap();
    let d = dir.path().to_str().unwrap();
    assert_error(
        &["info", d],
        &format!("{d} is neither a GGUF file nor a Hugging Face model directory (no config.json)"),
    );
}

#[test]
fn a_file_that_is_not_gguf_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"hello, world").unwrap();
    let f = file.to_str().unwrap();
    assert_error(
        &["info", f],
        &format!(
            "{f} is neither a GGUF file nor a Hugging Face model directory \
             (it begins with [68, 65, 6c, 6c], not GGUF's magic \"GGUF\")"
        ),
    );
    // One file of a Hugging Face directory: the directory is what to pass.
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/llama_mha");
    let config = hf.join("config.json");
    let c = config.to_str().unwrap();
    assert_error(
        &["info", c],
        &format!(
            "{c} is neither a GGUF file nor a Hugging Face model directory \
             (it begins with [7b, 0a, 20, 20], not GGUF's magic \"GGUF\"; \
             for the Hugging Face model beside it, pass its directory {})",
            hf.display()
        ),
    );
}

/// One generated token comes from the prefill: there is no decode to time, and the rate says
/// so ("—" in text, null in JSON) instead of dividing by zero.
#[test]
fn a_run_with_no_decode_prints_no_decode_rate() {
    let m = default_model();
    let base = [
        "run",
        "--model",
        &m,
        "--backend",
        "cpu",
        "--temperature",
        "0",
        "--max-tokens",
        "1",
    ];
    let mut text = base.to_vec();
    text.push("Hello");
    let o = wavefront(&text);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(" 1 generated, — tok/s decode | finish: max_tokens"),
        "{err}"
    );
    assert!(!err.contains("e9") && !err.contains("inf"), "{err}");

    let mut json = base.to_vec();
    json.extend(["--format", "json", "Hello"]);
    let o = wavefront(&json);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &j["timings"];
    assert_eq!(t["generated_tokens"], 1);
    assert!(t["decode_tok_s"].is_null(), "{t}");
    assert!(t["prefill_tok_s"].as_f64().is_some_and(|r| r > 0.0), "{t}");
}
