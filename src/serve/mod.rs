//! `serve`: an OpenAI-compatible HTTP server whose every response is guarded by the probe, on the
//! same graph, decode state and per-row rule as `generate`. axum on tokio handles HTTP; one
//! decode thread owns the decoder and runs continuous batching ([`engine`]): requests wait in a
//! bounded queue (full: 429 with `Retry-After`), are prefilled and join the running batch at a
//! step boundary, and leave it when they finish or their client goes. Text reaches a client only
//! after the guard judged it; a pause ends the response with `finish_reason: "content_filter"`.
//! SIGTERM/SIGINT stop accepting, let in-flight responses finish within a drain deadline, and
//! return.

pub mod api;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod moderation;
pub mod routes;
pub mod stop;

use crate::error::{Error, Result};
use crate::guard::GuardConfig;
use crate::probe::Probe;
use crate::text::model::{Model, ModelFiles};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use engine::{Engine, Work};
use metrics::Metrics;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Caps the operator sets on every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `max_tokens` a request may ask for (also the default).
    pub max_tokens: usize,
    pub max_body_bytes: usize,
    pub max_queue: usize,
    pub request_timeout: Duration,
    /// Lowest threshold a request's `guard` may set (a stricter guard than the operator's is
    /// allowed down to here; a looser one never).
    pub min_guard_threshold: f32,
}

/// Everything `serve` needs besides the model and the probe.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// The name clients use in `model` (and `GET /v1/models` lists).
    pub model_name: String,
    pub max_batch: usize,
    pub api_key: Option<String>,
    pub guard: GuardConfig,
    pub limits: Limits,
    /// How long in-flight responses may take to finish after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
}

/// What every handler shares.
pub struct Shared {
    pub files: Arc<ModelFiles>,
    pub model_name: String,
    pub queue: mpsc::Sender<Work>,
    pub limits: Limits,
    pub guard: GuardConfig,
    /// How `/v1/moderations` pools an exchange for the probe.
    pub pooling: crate::store::Pooling,
    /// SHA-256 of the API key: keys of any length compare in constant time.
    pub api_key: Option<[u8; 32]>,
    pub metrics: Arc<Metrics>,
    /// Cleared when the decode loop ends or the server drains (`GET /ready` says 503).
    pub ready: Arc<AtomicBool>,
    pub created: u64,
    pub next_id: AtomicU64,
}

pub type AppState = Arc<Shared>;

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether `given` is the key whose digest is `key`, in time independent of where they differ.
pub fn key_matches(key: &[u8; 32], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(key.ct_eq(&digest(given)))
}

/// The router over `state` (every route, the body cap and the middlewares).
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/models", get(routes::models))
        .route("/v1/moderations", post(routes::moderations))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::auth,
        ));
    Router::new()
        .merge(v1)
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::count,
        ))
        .with_state(state)
}

/// Serves `model` guarded by `probe` until SIGTERM/SIGINT; `on_bound` gets the bound address
/// (the CLI prints it, so `--port 0` can be used). Returns when the drain is over.
pub fn serve(
    model: Model,
    probe: Probe,
    cfg: ServeConfig,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Serve(format!("cannot start the async runtime: {e}")))?;
    let second = probe.load_second_stage()?;
    let Model { files, decoder } = model;
    let files = Arc::new(files);
    let (queue, mut rx) = mpsc::channel::<Work>(cfg.limits.max_queue.max(1));
    let metrics = Arc::new(Metrics::new());
    let state: AppState = Arc::new(Shared {
        files: files.clone(),
        model_name: cfg.model_name.clone(),
        queue,
        limits: cfg.limits.clone(),
        guard: cfg.guard,
        pooling: moderation::pooling_for(probe.config().pooling),
        api_key: cfg.api_key.as_deref().map(digest),
        metrics: metrics.clone(),
        ready: Arc::new(AtomicBool::new(true)),
        created: chrono::Utc::now().timestamp().max(0) as u64,
        next_id: AtomicU64::new(1),
    });
    // The loop must not hold the state: its queue sender would keep the queue open forever.
    let ready = state.ready.clone();
    let max_batch = cfg.max_batch.max(1);
    let decode = std::thread::Builder::new()
        .name("decode".into())
        .spawn(move || {
            let engine = Engine {
                decoder,
                files: &files,
                scorers: crate::guard::Scorers {
                    scorer: &probe,
                    second: second.as_ref().map(|(p, t)| crate::guard::SecondStage {
                        scorer: p,
                        threshold: *t,
                    }),
                },
                max_batch,
                metrics,
            };
            engine.run(&mut rx);
            ready.store(false, std::sync::atomic::Ordering::SeqCst);
        })
        .map_err(|e| Error::Serve(format!("cannot start the decode thread: {e}")))?;
    let served = rt.block_on(run_http(state, &cfg, on_bound));
    // Dropping the runtime drops every task and with them the queue's senders and event
    // receivers: the loop ends its rows at the next step and returns.
    rt.shutdown_timeout(Duration::from_secs(1));
    let joined = decode.join();
    served?;
    joined.map_err(|_| Error::Serve("the decode thread panicked".into()))
}

async fn run_http(
    state: AppState,
    cfg: &ServeConfig,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        Error::Serve(format!(
            "cannot listen on {addr}: {e} (pick another --host/--port)"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Serve(format!("cannot read the bound address: {e}")))?;
    on_bound(bound);
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = state.clone();
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; finishing in-flight responses");
        draining
            .ready
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = drain_tx.send(());
    });
    let drain = cfg.drain_timeout;
    tokio::select! {
        r = server => r.map_err(|e| Error::Serve(format!("the HTTP server failed: {e}"))),
        _ = async { let _ = drain_rx.await; tokio::time::sleep(drain).await } => {
            tracing::warn!("drain deadline of {drain:?} passed: dropping the responses still running");
            Ok(())
        }
    }
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the server");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
