//! `wavefront bench --serve`: a running `wavefront serve` under `n` concurrent streaming clients
//! (issue 11's serving benchmark). Every client sends the same greedy text completion
//! (`/v1/completions`, `stream: true`, `stream_options.include_usage`) `reps` times in a row;
//! a row reports, over the `n · reps` requests, the aggregate generated tokens a second (all
//! the requests' completion tokens over the wall time from the first request to the last
//! answer), each stream's own rate, the time to the first text and the gaps between
//! consecutive text chunks (p50, p99; a chunk carries the text of one token or, when a token
//! ends inside a character, of a few).
//!
//! It measures the server as a client sees it: HTTP, server-sent events, the queue and the
//! scheduler included. The binary starts the server (the same executable, `serve --port 0`);
//! this module only needs its base URL.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The prompt of every request: greedy decoding goes on counting, so it rarely ends early.
pub const PROMPT: &str = "1, 2, 3, 4, 5,";

#[derive(Debug, Clone, Serialize)]
pub struct ServeRow {
    pub streams: usize,
    pub requests: usize,
    /// Completion tokens of all the requests.
    pub tokens: usize,
    pub wall_s: f64,
    /// `tokens / wall_s`.
    pub aggregate_tok_s: f64,
    /// Median over the requests of each one's completion tokens over its own time.
    pub stream_tok_s: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    /// `aggregate_tok_s` over the one-stream row's (when there is one).
    pub scaling: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    pub model: String,
    pub backend: String,
    pub slots: usize,
    pub max_tokens: usize,
    pub reps: usize,
    pub rows: Vec<ServeRow>,
}

impl ServeReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "serving benchmark | model: {} | backend: {} | slots: {} | each request: greedy \
             /v1/completions of \"{PROMPT}\", max_tokens {}, streamed | {} request(s) per \
             stream, back to back | aggregate = all completion tokens / wall time; ITL = gap \
             between text chunks\n\n",
            self.model, self.backend, self.slots, self.max_tokens, self.reps
        );
        s.push_str(
            "| streams | requests | tokens | aggregate tok/s | × 1 stream | per-stream tok/s \
             (median) | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n",
        );
        s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let scaling = r.scaling.map_or("—".into(), |x| format!("{x:.2}"));
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |\n",
                r.streams,
                r.requests,
                r.tokens,
                r.aggregate_tok_s,
                scaling,
                r.stream_tok_s,
                r.ttft_p50_ms,
                r.ttft_p99_ms,
                r.itl_p50_ms,
                r.itl_p99_ms
            ));
        }
        s
    }
}

/// One streamed request as the client saw it.
struct Trace {
    tokens: usize,
    ttft: Duration,
    gaps: Vec<Duration>,
    total: Duration,
}

fn bench_error(detail: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("bench --serve: {detail}"))
}

/// One streamed completion of `max_tokens` against `base`.
fn one_request(agent: &ureq::Agent, base: &str, max_tokens: usize) -> Result<Trace> {
    let body = json!({
        "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true},
    });
    let start = Instant::now();
    let response = agent
        .post(&format!("{base}/v1/completions"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .map_err(|e| bench_error(format!("the request failed: {e}")))?;
    let mut last: Option<Instant> = None;
    let mut ttft = None;
    let mut gaps = Vec::new();
    let mut tokens = None;
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.map_err(|e| bench_error(format!("the stream broke: {e}")))?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| bench_error(format!("a chunk is not JSON ({e}): {data}")))?;
        if let Some(err) = v.get("error") {
            return Err(bench_error(format!("the server answered an error: {err}")));
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n as usize);
        }
        let has_text = v["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty());
        if has_text {
            let now = Instant::now();
            match last {
                None => ttft = Some(now - start),
                Some(t) => gaps.push(now - t),
            }
            last = Some(now);
        }
    }
    let total = start.elapsed();
    Ok(Trace {
        tokens: tokens.ok_or_else(|| bench_error("the stream ended without a usage chunk"))?,
        ttft: ttft.ok_or_else(|| bench_error("the stream carried no text"))?,
        gaps,
        total,
    })
}

/// The `q`-quantile (nearest rank) of `v` in milliseconds; 0 for no samples.
fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e3
}

/// `n` clients at once, each sending `reps` requests in a row.
pub fn measure(base: &str, n: usize, reps: usize, max_tokens: usize) -> Result<ServeRow> {
    let start = Instant::now();
    let traces: Vec<Result<Vec<Trace>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout_read(Duration::from_secs(600))
                        .build();
                    (0..reps)
                        .map(|_| one_request(&agent, base, max_tokens))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(bench_error("a client thread panicked")))
            })
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let traces: Vec<Trace> = traces
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let tokens: usize = traces.iter().map(|t| t.tokens).sum();
    let mut rates: Vec<f64> = traces
        .iter()
        .map(|t| t.tokens as f64 / t.total.as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    let mut ttft: Vec<Duration> = traces.iter().map(|t| t.ttft).collect();
    let mut gaps: Vec<Duration> = traces.iter().flat_map(|t| t.gaps.clone()).collect();
    Ok(ServeRow {
        streams: n,
        requests: traces.len(),
        tokens,
        wall_s: wall,
        aggregate_tok_s: tokens as f64 / wall,
        stream_tok_s: rates[rates.len() / 2],
        ttft_p50_ms: quantile_ms(&mut ttft, 0.5),
        ttft_p99_ms: quantile_ms(&mut ttft, 0.99),
        itl_p50_ms: quantile_ms(&mut gaps, 0.5),
        itl_p99_ms: quantile_ms(&mut gaps, 0.99),
        scaling: None,
    })
}

/// Every stream count of `streams` (each at least 1), after one warm-up request; `scaling`
/// filled in against the one-stream row when there is one.
pub fn run(base: &str, streams: &[usize], reps: usize, max_tokens: usize) -> Result<Vec<ServeRow>> {
    if streams.is_empty() || streams.contains(&0) {
        return Err(bench_error("--streams takes counts of at least 1"));
    }
    if reps == 0 || max_tokens == 0 {
        return Err(bench_error("--reps and --tg must be at least 1"));
    }
    measure(base, 1, 1, max_tokens.min(8))?; // warm-up
    let mut rows = streams
        .iter()
        .map(|&n| measure(base, n, reps, max_tokens))
        .collect::<Result<Vec<_>>>()?;
    if let Some(one) = rows
        .iter()
        .find(|r| r.streams == 1)
        .map(|r| r.aggregate_tok_s)
    {
        for r in &mut rows {
            r.scaling = Some(r.aggregate_tok_s / one);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 50.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(quantile_ms(&mut one, 0.99), 7.0);
        assert_eq!(quantile_ms(&mut [], 0.5), 0.0);
    }

    #[test]
    fn bad_counts_are_refused_before_any_request() {
        // No server at this address: the flags are checked first.
        let e = run("http://127.0.0.1:9", &[0, 4], 1, 8).unwrap_err();
        assert!(e.to_string().contains("--streams"), "{e}");
        let e = run("http://127.0.0.1:9", &[1], 0, 8).unwrap_err();
        assert!(e.to_string().contains("--reps"), "{e}");
    }
}
