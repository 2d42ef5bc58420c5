//! The HTTP endpoints: chat completions (streamed as SSE or whole), the model list, health,
//! readiness and metrics, behind the API-key check and the per-status request counter.

use super::api::{self, Prepared};
use super::engine::{Event, Finished, Job, Work};
use super::error::ApiError;
use super::moderation;
use super::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as JsonValue};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::wrappers::ReceiverStream;

/// `GET /health`: the process is up.
pub async fn health() -> Json<JsonValue> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: the model is loaded, the decode loop runs, and the server is not draining.
pub async fn ready(State(app): State<AppState>) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready", "model": app.model_name})).into_response()
    } else {
        ApiError::unavailable("not ready: the decode loop stopped or the server is shutting down")
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let waiting = app.queue.max_capacity() - app.queue.capacity();
    app.metrics.queue_depth.set(waiting as i64);
    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, ct)], app.metrics.render()).into_response()
}

/// `GET /v1/models`: the one served model.
pub async fn models(State(app): State<AppState>) -> Json<JsonValue> {
    Json(json!({"object": "list", "data": [{
        "id": app.model_name, "object": "model", "created": app.created, "owned_by": "open-constitution",
    }]}))
}

/// Unknown paths: OpenAI's 404 shape.
pub async fn not_found(req: Request) -> ApiError {
    let mut e = ApiError::invalid(
        "path",
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    );
    e.status = StatusCode::NOT_FOUND;
    e.code = Some("unknown_url");
    e
}

/// Counts every response by status.
pub async fn count(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    app.metrics.request(r.status().as_u16());
    r
}

/// Requires `Authorization: Bearer <key>` when the server has a key (compared in constant time).
pub async fn auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !super::key_matches(key, given) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// The body, or the error for one over the cap / unreadable.
pub fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(limit),
        _ => ApiError::malformed(format!(
            "the request body could not be read: {}",
            r.body_text()
        )),
    })
}

/// Hands a job to the decode loop, or says why not (429 when the queue is full).
pub fn submit(app: &AppState, job: Work) -> Result<(), ApiError> {
    match app.queue.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(ApiError::queue_full(app.limits.max_queue, 1)),
        Err(TrySendError::Closed(_)) => Err(ApiError::unavailable(
            "the decode loop stopped; the server is shutting down",
        )),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, app.limits.max_body_bytes)?;
    let req = api::parse(&body)?;
    if let Some(m) = req.model.as_deref().filter(|m| *m != app.model_name) {
        return Err(ApiError::model_not_found(m, &app.model_name));
    }
    let p = api::prepare(req, &app.files, &app.limits, &app.guard)?;
    let (events, rx) = mpsc::unbounded_channel();
    let submitted = Instant::now();
    let Prepared {
        ids,
        opts,
        guard,
        stop,
        stream,
        include_usage,
    } = p;
    let job = Job {
        ids,
        opts,
        guard,
        stop,
        events,
        submitted,
    };
    submit(&app, Work::Chat(job))?;
    let id = format!("chatcmpl-{}", app.next_id.fetch_add(1, Ordering::Relaxed));
    if stream {
        Ok(streamed(app, rx, id, include_usage, submitted))
    } else {
        whole(&app, rx, &id, submitted).await
    }
}

/// The deadline of a request submitted at `t`.
fn deadline(app: &AppState, t: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(t + app.limits.request_timeout)
}

async fn whole(
    app: &AppState,
    mut rx: mpsc::UnboundedReceiver<Event>,
    id: &str,
    t: Instant,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        let ev = tokio::time::timeout_at(deadline(app, t), rx.recv()).await;
        match ev {
            Err(_) => return Err(ApiError::timeout(app.limits.request_timeout.as_secs_f64())),
            Ok(None) => return Err(ApiError::internal("the decode loop stopped before the response ended")),
            Ok(Some(Event::Text(s))) => text.push_str(&s),
            Ok(Some(Event::Failed(m))) => return Err(ApiError::internal(m)),
            Ok(Some(Event::Done(f))) => {
                return Ok(Json(json!({
                    "id": id, "object": "chat.completion", "created": app.created, "model": app.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": f.finish_reason, "logprobs": null}],
                    "usage": usage(&f), "guard": f.guard,
                }))
                .into_response())
            }
        }
    }
}

fn usage(f: &Finished) -> JsonValue {
    json!({"prompt_tokens": f.prompt_tokens, "completion_tokens": f.completion_tokens,
           "total_tokens": f.prompt_tokens + f.completion_tokens})
}

/// An SSE response fed by a task that turns decode events into OpenAI chunks; when the client
/// goes, the task ends and drops the receiver, which frees the row at the next step.
fn streamed(
    app: AppState,
    rx: mpsc::UnboundedReceiver<Event>,
    id: String,
    include_usage: bool,
    t: Instant,
) -> Response {
    let (tx, out) = mpsc::channel::<Result<Sse, Infallible>>(64);
    tokio::spawn(forward(app, rx, tx, id, include_usage, t));
    SseBody::new(ReceiverStream::new(out)).into_response()
}

async fn forward(
    app: AppState,
    mut rx: mpsc::UnboundedReceiver<Event>,
    tx: mpsc::Sender<Result<Sse, Infallible>>,
    id: String,
    include_usage: bool,
    t: Instant,
) {
    let chunk = |delta: JsonValue, finish: Option<&str>, extra: Option<(&str, JsonValue)>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": app.created,
            "model": app.model_name, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]});
        if let Some((k, v)) = extra {
            c[k] = v;
        }
        Sse::default().data(c.to_string())
    };
    let mut sends = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        None,
        None,
    )];
    loop {
        for s in sends.drain(..) {
            if tx.send(Ok(s)).await.is_err() {
                return;
            }
        }
        let ev = tokio::select! {
            _ = tx.closed() => return,
            ev = tokio::time::timeout_at(deadline(&app, t), rx.recv()) => ev,
        };
        match ev {
            Ok(Some(Event::Text(s))) => sends.push(chunk(json!({"content": s}), None, None)),
            Ok(Some(Event::Done(f))) => {
                sends.push(chunk(
                    json!({}),
                    Some(f.finish_reason),
                    Some(("guard", json!(f.guard))),
                ));
                if include_usage {
                    let u = json!({"id": id, "object": "chat.completion.chunk", "created": app.created,
                        "model": app.model_name, "choices": [], "usage": usage(&f)});
                    sends.push(Sse::default().data(u.to_string()));
                }
                sends.push(Sse::default().data("[DONE]"));
                break;
            }
            Ok(Some(Event::Failed(m))) => {
                sends.push(Sse::default().data(ApiError::internal(m).body().to_string()));
                break;
            }
            Ok(None) => {
                sends.push(
                    Sse::default().data(
                        ApiError::internal("the decode loop stopped")
                            .body()
                            .to_string(),
                    ),
                );
                break;
            }
            Err(_) => {
                let e = ApiError::timeout(app.limits.request_timeout.as_secs_f64());
                sends.push(Sse::default().data(e.body().to_string()));
                break;
            }
        }
    }
    for s in sends {
        if tx.send(Ok(s)).await.is_err() {
            return;
        }
    }
}

/// `POST /v1/moderations`: finished exchanges scored by the probe, batched in one forward pass.
pub async fn moderations(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, app.limits.max_body_bytes)?;
    let req: moderation::ModerationRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::malformed(format!("the request body is not a moderation request: {e}"))
    })?;
    if let Some(m) = req.model.as_deref().filter(|m| *m != app.model_name) {
        return Err(ApiError::model_not_found(m, &app.model_name));
    }
    let rows = moderation::prepare(req, &app.files)?;
    let (reply, risks) = tokio::sync::oneshot::channel();
    submit(
        &app,
        Work::Score(moderation::ScoreJob {
            rows,
            pooling: app.pooling,
            reply,
        }),
    )?;
    let t = Instant::now();
    let risks = match tokio::time::timeout_at(deadline(&app, t), risks).await {
        Err(_) => return Err(ApiError::timeout(app.limits.request_timeout.as_secs_f64())),
        Ok(Err(_)) => return Err(ApiError::internal("the decode loop stopped before scoring")),
        Ok(Ok(Err(m))) => return Err(ApiError::internal(m)),
        Ok(Ok(Ok(r))) => r,
    };
    let id = format!("modr-{}", app.next_id.fetch_add(1, Ordering::Relaxed));
    Ok(Json(moderation::response(
        &id,
        &app.model_name,
        &risks,
        app.guard.threshold,
    ))
    .into_response())
}
