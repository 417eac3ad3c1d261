//! The HTTP side: routes, the API-key check, request counting, and the answers (one JSON
//! object, or server-sent events in OpenAI's chunk format ending with `data: [DONE]`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{self, ApiContext, Endpoint, LogprobEntry, Prepared, ResponseMeta};
use super::error::ApiError;
use super::metrics::Metrics;
use super::scheduler::{Event, Job, Queue, SubmitError};
use super::tools::{self, Part, ToolStream};
use crate::tokenizer::Tokenizer;

/// What every handler shares.
pub struct Shared {
    pub model_id: String,
    /// Unix time the server started (the model's `created`).
    pub started: u64,
    pub tokenizer: Arc<Tokenizer>,
    pub vocab_size: usize,
    /// KV capacity of each slot.
    pub capacity: usize,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the API key: requests are checked by comparing digests in constant time.
    pub api_key_digest: Option<[u8; 32]>,
    pub timeout: Duration,
    /// Largest request body taken (bytes).
    pub body_limit: usize,
    /// Set once shutdown has begun (`/health` answers 503).
    pub draining: Arc<AtomicBool>,
    pub next_id: AtomicU64,
}

type AppState = Arc<Shared>;

/// The routes over `shared`.
pub fn router(shared: AppState) -> Router {
    let body_limit = shared.body_limit;
    Router::new()
        .route("/", get(chat_page))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// The label a path is counted under: the route, or `other`.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// The API key (every route but `/health` and the chat page, which is static: the calls it
/// makes carry the key), then the request, then its count.
async fn gate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let label = endpoint_label(req.uri().path());
    let response = match (&s.api_key_digest, label) {
        (Some(digest), l) if l != "/health" && l != "/" => match bearer(&req) {
            Some(token) if bool::from(Sha256::digest(token.as_bytes()).ct_eq(digest)) => {
                next.run(req).await
            }
            Some(_) => ApiError::unauthorized("incorrect API key").into_response(),
            None => ApiError::unauthorized(
                "this server needs an API key: send the header `Authorization: Bearer KEY`",
            )
            .into_response(),
        },
        _ => next.run(req).await,
    };
    s.metrics.count_request(label, response.status().as_u16());
    response
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()))
        .with_code("not_found")
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "{} does not take {}",
        req.uri().path(),
        req.method()
    ))
    .with_code("method_not_allowed")
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// The chat page (`chat.html`): one static file whose script talks to `/v1/chat/completions`.
const CHAT_PAGE: &str = include_str!("chat.html");

/// The chat page, with a content security policy that lets it load nothing but itself and
/// connect to nothing but this server.
async fn chat_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        CHAT_PAGE,
    )
        .into_response()
}

async fn health(State(s): State<AppState>) -> Response {
    if s.draining.load(Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn models(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.model_id,
            "object": "model",
            "created": s.started,
            "owned_by": "wavefront",
        }],
    }))
}

async fn chat(State(s): State<AppState>, req: Request) -> Response {
    generate(s, Endpoint::Chat, req).await
}

async fn completions(State(s): State<AppState>, req: Request) -> Response {
    generate(s, Endpoint::Completion, req).await
}

/// Parses (off the runtime's thread: tokenizing and templating a long prompt takes a while),
/// queues, and answers as one object or as a stream.
async fn generate(s: AppState, endpoint: Endpoint, req: Request) -> Response {
    let body = match read_body(req, s.body_limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let shared = s.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let ctx = ApiContext {
            model_id: &shared.model_id,
            tokenizer: &shared.tokenizer,
            vocab_size: shared.vocab_size,
            capacity: shared.capacity,
        };
        match endpoint {
            Endpoint::Chat => api::parse_chat(&body, &ctx),
            Endpoint::Completion => api::parse_completion(&body, &ctx),
        }
    })
    .await;
    let prepared = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal(format!("parsing the request: {e}")).into_response(),
    };
    let Prepared {
        endpoint,
        request,
        stream,
        include_usage,
        tools,
    } = prepared;
    let logprobs = request.logprobs.is_some();
    let (job, events) = Job::new(request, s.timeout);
    match s.queue.submit(job, &s.metrics) {
        Ok(()) => {}
        Err(SubmitError::Full { capacity }) => {
            return ApiError::queue_full(capacity).into_response()
        }
        Err(SubmitError::Closed) => {
            return ApiError::unavailable("the server is shutting down").into_response()
        }
    }
    let meta = ResponseMeta {
        endpoint,
        id: response_id(&s, endpoint),
        created: unix_now(),
        model: s.model_id.clone(),
        logprobs,
        tools,
    };
    if stream {
        Sse::new(ChunkStream::new(events, meta, include_usage)).into_response()
    } else {
        whole(events, meta).await
    }
}

/// The body, at most `limit` bytes. A `Content-Length` past the limit is refused before any
/// of the body is read (so a client that sent `Expect: 100-continue` never sends it).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::bad_body(format!(
            "the request body is larger than the server's limit of {limit} bytes"
        ))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_code("body_too_large")
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // The router's body limit (`DefaultBodyLimit`) holds a body without a length to it.
    Bytes::from_request(req, &()).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_body(format!("reading the request body: {}", r.body_text()))
                .with_status(r.status())
        }
    })
}

/// Collects the events into one response.
async fn whole(mut events: UnboundedReceiver<Event>, meta: ResponseMeta) -> Response {
    let mut text = String::new();
    let mut entries = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            Event::Piece { text: t, logprobs } => {
                text.push_str(&t);
                entries.extend(logprobs);
            }
            Event::Done { finish, usage } => {
                return Json(meta.response(&text, &finish, usage, &entries)).into_response()
            }
            Event::Failed(e) => return e.into_response(),
        }
    }
    ApiError::unavailable("the engine stopped before the request finished").into_response()
}

/// `chatcmpl-…` / `cmpl-…`: the start time and a counter, in hex.
fn response_id(s: &Shared, endpoint: Endpoint) -> String {
    let n = s.next_id.fetch_add(1, Relaxed);
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    format!("{prefix}-{:x}{n:08x}", s.started)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The events of one request as server-sent events: a first chunk with the role (chat), one
/// chunk per piece of text, a last chunk with `finish_reason`, the usage chunk when asked for,
/// then `data: [DONE]`. A chat read for tool calls passes its text through a [`ToolStream`]:
/// text that may begin a call is held back until the call is whole, then comes as two
/// `delta.tool_calls` chunks (the call's index, id, type and name; its arguments), or as the
/// text it was if it is no valid call; log-probabilities of held tokens come with the next
/// chunk. A failure is one `data: {"error": …}` event, and the stream ends
/// without `[DONE]`. Dropping the stream (the client went away) drops the receiver, which the
/// engine thread sees at its next round and frees the slot.
struct ChunkStream {
    events: UnboundedReceiver<Event>,
    meta: ResponseMeta,
    include_usage: bool,
    out: std::collections::VecDeque<SseEvent>,
    done: bool,
    /// Characters of the generated text the chunks so far reported logprobs for (completions'
    /// `text_offset`).
    offset: usize,
    /// The tool-call reader of a chat with tools.
    tools: Option<ToolStream>,
    /// Calls streamed so far.
    calls: usize,
    /// Log-probabilities of tokens whose text the tool-call reader holds.
    held: Vec<LogprobEntry>,
}

impl ChunkStream {
    fn new(events: UnboundedReceiver<Event>, meta: ResponseMeta, include_usage: bool) -> Self {
        let mut out = std::collections::VecDeque::new();
        if meta.endpoint == Endpoint::Chat {
            out.push_back(data(&meta.chunk(
                true,
                Some(""),
                None,
                include_usage,
                &[],
                0,
            )));
        }
        let tools = meta.tools.clone().map(ToolStream::new);
        ChunkStream {
            events,
            meta,
            include_usage,
            out,
            done: false,
            offset: 0,
            tools,
            calls: 0,
            held: Vec::new(),
        }
    }

    /// The chunks of what the tool-call reader passed on.
    fn push_parts(&mut self, parts: Vec<Part>) {
        let (m, u) = (&self.meta, self.include_usage);
        for part in parts {
            let entries = std::mem::take(&mut self.held);
            match part {
                Part::Text(t) => {
                    self.out
                        .push_back(data(&m.chunk(false, Some(&t), None, u, &entries, 0)))
                }
                Part::Call(c) => {
                    let Some(p) = &m.tools else { continue };
                    let id = tools::call_id(&p.format, &m.id, self.calls, &c);
                    let [open, arguments] = tools::call_deltas(self.calls, &id, &c);
                    self.out
                        .push_back(data(&m.tool_call_chunk(open, u, &entries)));
                    self.out
                        .push_back(data(&m.tool_call_chunk(arguments, u, &[])));
                    self.calls += 1;
                }
            }
        }
    }

    fn push(&mut self, e: Event) {
        match e {
            Event::Piece { text, logprobs } => {
                if let Some(ts) = self.tools.as_mut() {
                    let parts = ts.push(&text);
                    self.held.extend(logprobs);
                    self.push_parts(parts);
                    return;
                }
                let entries: Vec<_> = logprobs.into_iter().collect();
                let (m, u) = (&self.meta, self.include_usage);
                let chunk = m.chunk(false, Some(&text), None, u, &entries, self.offset);
                self.offset += entries
                    .iter()
                    .map(|e| e.token.chars().count())
                    .sum::<usize>();
                self.out.push_back(data(&chunk));
            }
            Event::Done { finish, usage } => {
                if let Some(ts) = self.tools.as_mut() {
                    let parts = ts.finish();
                    self.push_parts(parts);
                }
                let (m, u) = (&self.meta, self.include_usage);
                let text = (m.endpoint == Endpoint::Completion).then_some("");
                let entries = std::mem::take(&mut self.held);
                let reason = api::finish_reason_with_calls(&finish, self.calls > 0);
                self.out
                    .push_back(data(&m.chunk(false, text, Some(reason), u, &entries, 0)));
                if u {
                    self.out.push_back(data(&m.usage_chunk(usage)));
                }
                self.out.push_back(SseEvent::default().data("[DONE]"));
                self.done = true;
            }
            Event::Failed(e) => {
                self.out.push_back(data(&e.body()));
                self.done = true;
            }
        }
    }
}

fn data(v: &serde_json::Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(e) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.events.poll_recv(cx) {
                Poll::Ready(Some(e)) => this.push(e),
                Poll::Ready(None) => this.push(Event::Failed(ApiError::unavailable(
                    "the engine stopped before the request finished",
                ))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
