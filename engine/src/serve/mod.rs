//! `wavefront serve`: OpenAI's HTTP API over the engine (axum on a current-thread tokio
//! runtime, server-sent events for streams).
//!
//! Two threads: the caller's runs the engine ([`scheduler`]: up to `slots` sequences, one
//! token each per round, admitted from a bounded queue between rounds), and an HTTP thread
//! parses, checks and queues requests and streams their events back ([`http`]). The engine
//! never leaves the caller's thread, so any backend serves, `Send` or not.
//!
//! Tools go into the prompt through the chat template, and calls come back out of the reply in
//! the template's format ([`tools`]), as OpenAI's `tool_calls`.

pub mod api;
pub mod error;
pub mod http;
pub mod metrics;
pub mod scheduler;
pub mod tools;

use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use error::{ApiError, ServeError};
pub use scheduler::Speculate;

use crate::backend::Backend;
use crate::context::{ContextBudget, ContextPlan};
use crate::model::Engine;
use crate::tokenizer::Tokenizer;

/// Largest request body taken (bytes): far more text than any context holds.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How the server listens and schedules.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: IpAddr,
    /// 0 = an ephemeral port (the bound address goes to `on_ready`).
    pub port: u16,
    /// Requests (all but `/health` and the chat page at `/`) must carry
    /// `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Allows a non-loopback host without an API key.
    pub insecure_public: bool,
    /// Sequences generating at once (each with its own KV cache).
    pub slots: usize,
    /// Requests waiting for a slot before the server answers 429.
    pub queue: usize,
    /// From a request's arrival to its end, waiting included; past it the request is
    /// cancelled (504, or an error event in a stream).
    pub timeout: Duration,
    /// The id `/v1/models` lists and requests name.
    pub model_id: String,
}

impl ServeOptions {
    /// Defaults: 127.0.0.1:8080, 4 slots, a queue of 16, a 10-minute timeout.
    pub fn new(model_id: impl Into<String>) -> Self {
        ServeOptions {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            api_key: None,
            insecure_public: false,
            slots: 4,
            queue: 16,
            timeout: Duration::from_secs(600),
            model_id: model_id.into(),
        }
    }

    /// Every check that needs no model: ranges, and no public bind without a key.
    pub fn check(&self) -> Result<(), ServeError> {
        let bad = |option, value: &dyn std::fmt::Display, expected| ServeError::InvalidOption {
            option,
            value: value.to_string(),
            expected,
        };
        if self.slots == 0 {
            return Err(bad("slots", &self.slots, "at least 1"));
        }
        if self.queue == 0 {
            return Err(bad("queue", &self.queue, "at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout", &0, "more than 0 seconds"));
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(bad("api-key", &"\"\"", "a non-empty key"));
        }
        if !self.host.is_loopback() && self.api_key.is_none() && !self.insecure_public {
            return Err(ServeError::PublicWithoutKey { host: self.host });
        }
        Ok(())
    }
}

/// Parses `--host`: an IP address, or `localhost` (127.0.0.1). Names are not resolved, so
/// that which interface is bound (and whether it is loopback) is never in doubt.
pub fn parse_host(s: &str) -> Result<IpAddr, ServeError> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    s.parse().map_err(|_| ServeError::InvalidOption {
        option: "host",
        value: s.to_string(),
        expected: "an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost",
    })
}

/// The id a server gives a model: its file name without `.gguf`, or its directory's name.
pub fn model_id(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    name.strip_suffix(".gguf")
        .map(str::to_string)
        .unwrap_or(name)
}

/// Each slot's KV capacity: `requested`, or the model's context capped to what `slots`
/// caches fit in the backend's free memory (after the weights, each slot's working memory and
/// the reserve). Refused, before any allocation, when `slots` caches of it cannot fit. With a
/// `draft` engine (`serve --draft`, on the same device) a slot holds the draft model's cache
/// and working memory too, of the same capacity, within the shorter of the two contexts.
pub fn slot_context<B: Backend>(
    engine: &Engine<B>,
    draft: Option<&Engine<B>>,
    requested: Option<usize>,
    slots: usize,
) -> crate::Result<ContextPlan> {
    let mut b = engine.context_plan(requested)?.budget;
    if let Some(d) = draft {
        let d = d.context_plan(None)?.budget;
        b.model_context = b.model_context.min(d.model_context);
        b.kv_bytes_per_position += d.kv_bytes_per_position;
        b.scratch_bytes += d.scratch_bytes;
    }
    let slots = slots.max(1);
    // The free memory shared out: a slot's share of what is left after the reserve.
    let budget = ContextBudget {
        free_bytes: b
            .free_bytes
            .map(|f| f.saturating_sub(b.reserve_bytes) / slots + b.reserve_bytes),
        ..b
    };
    budget.plan(requested)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Serves `engine` until `shutdown` resolves, then stops accepting connections, lets the
/// requests in flight finish (each within the timeout) and returns. The engine runs on the
/// calling thread; `capacity` is each slot's KV capacity ([`slot_context`]); every request
/// speculates as `spec` says; `on_ready` gets the bound address once the server accepts
/// connections.
pub fn run<'e, B: Backend>(
    engine: &'e Engine<B>,
    spec: Option<Speculate<'e, B>>,
    tokenizer: Arc<Tokenizer>,
    capacity: usize,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    opts.check()?;
    let addr = SocketAddr::new(opts.host, opts.port);
    let bind = |error| ServeError::Bind { addr, error };
    let listener = TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;

    let metrics = Arc::new(metrics::Metrics::new(opts.slots));
    let (queue, jobs) = scheduler::Queue::bounded(opts.queue);
    let draining = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(http::Shared {
        model_id: opts.model_id.clone(),
        started: http::unix_now(),
        tokenizer: tokenizer.clone(),
        vocab_size: engine.config().vocab_size,
        capacity,
        queue,
        metrics: metrics.clone(),
        api_key_digest: opts
            .api_key
            .as_ref()
            .map(|k| Sha256::digest(k.as_bytes()).into()),
        timeout: opts.timeout,
        body_limit: MAX_BODY_BYTES,
        draining: draining.clone(),
        next_id: AtomicU64::new(0),
    });
    let app = http::router(shared);
    // The HTTP thread owns the only handles on the queue's sending side (in `app`): when it
    // has served its last connection they are dropped, and the engine loop below ends.
    let http = std::thread::Builder::new()
        .name("wavefront-http".into())
        .spawn(move || -> Result<(), ServeError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Http)?;
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(ServeError::Http)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        shutdown.await;
                        draining.store(true, Relaxed);
                    })
                    .await
                    .map_err(ServeError::Http)
            })
        })
        .map_err(ServeError::Http)?;
    on_ready(local);
    scheduler::run(
        engine,
        &tokenizer,
        jobs,
        opts.slots,
        spec.as_ref(),
        &metrics,
    );
    http.join().map_err(|_| ServeError::HttpPanicked)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_host_needs_a_key_or_the_insecure_flag() {
        let mut o = ServeOptions::new("m");
        assert!(o.check().is_ok());
        o.host = parse_host("0.0.0.0").unwrap();
        let e = o.check().unwrap_err();
        assert!(matches!(e, ServeError::PublicWithoutKey { .. }), "{e}");
        assert!(e.to_string().contains("--api-key"), "{e}");
        o.api_key = Some("k".into());
        assert!(o.check().is_ok());
        o.api_key = None;
        o.insecure_public = true;
        assert!(o.check().is_ok());
        assert!(parse_host("::1").unwrap().is_loopback());
        assert!(parse_host("localhost").unwrap().is_loopback());
        assert!(parse_host("example.com").is_err());
    }

    #[test]
    fn options_out_of_range_name_the_flag() {
        for (o, flag) in [
            (
                ServeOptions {
                    slots: 0,
                    ..ServeOptions::new("m")
                },
                "--slots",
            ),
            (
                ServeOptions {
                    queue: 0,
                    ..ServeOptions::new("m")
                },
                "--queue",
            ),
            (
                ServeOptions {
                    timeout: Duration::ZERO,
                    ..ServeOptions::new("m")
                },
                "--timeout",
            ),
            (
                ServeOptions {
                    api_key: Some(" ".into()),
                    ..ServeOptions::new("m")
                },
                "--api-key",
            ),
        ] {
            let e = o.check().unwrap_err().to_string();
            assert!(e.starts_with(flag), "{e}");
        }
    }
}
