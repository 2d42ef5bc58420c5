//! `serve`'s refusals and lifecycle over loopback HTTP: every bad request gets OpenAI's error
//! JSON with the right status and parameter, the API key is required when set, a full queue
//! answers 429 with Retry-After, a client that disconnects frees its batch slot, and SIGTERM
//! lets the in-flight stream finish and exits 0.

mod serve_common;

use serde_json::{json, Value};
use serve_common::*;

fn error_of(s: &Server, body: &str) -> (u16, Value) {
    let (status, _, v) = s.post_raw("/v1/chat/completions", body, None);
    (status, v["error"].clone())
}

#[test]
fn bad_requests_get_openai_errors_naming_the_field() {
    let s = Server::start(&["--max-body-bytes", "4000", "--max-tokens-cap", "64"]);
    let msg = |role: &str| json!([{"role": role, "content": "hi"}]);
    let with = |k: &str, v: Value| {
        let mut b = request("hi", 4);
        b[k] = v;
        b.to_string()
    };
    let long = "word ".repeat(900);
    let cases: Vec<(String, u16, Value, &str)> = vec![
        ("{not json".into(), 400, Value::Null, "invalid_json"),
        (
            with("messages", msg("wizard")),
            400,
            json!("messages[0].role"),
            "invalid_value",
        ),
        (
            with("messages", json!([])),
            400,
            json!("messages"),
            "invalid_value",
        ),
        (
            with("messages", json!([{"role": "user", "content": 5}])),
            400,
            json!("messages[0].content"),
            "invalid_value",
        ),
        (
            with("temperature", json!(3)),
            400,
            json!("temperature"),
            "invalid_value",
        ),
        (
            with("temperature", json!("hot")),
            400,
            Value::Null,
            "invalid_json",
        ),
        (
            with("top_p", json!(0)),
            400,
            json!("top_p"),
            "invalid_value",
        ),
        (
            with("max_tokens", json!(65)),
            400,
            json!("max_tokens"),
            "invalid_value",
        ),
        (
            with("max_tokens", json!(0)),
            400,
            json!("max_tokens"),
            "invalid_value",
        ),
        (with("n", json!(2)), 400, json!("n"), "invalid_value"),
        (
            with("stop", json!(["a", "b", "c", "d", "e"])),
            400,
            json!("stop"),
            "invalid_value",
        ),
        (
            with("model", json!("gpt-4")),
            404,
            json!("model"),
            "model_not_found",
        ),
        (
            with("messages", json!([{"role": "user", "content": long}])),
            413,
            Value::Null,
            "request_too_large",
        ),
    ];
    for (body, status, param, code) in cases {
        let (got, e) = error_of(&s, &body);
        let shown = &body[..body.len().min(120)];
        assert_eq!(got, status, "{shown}: {e}");
        assert_eq!(e["param"], param, "{shown}: {e}");
        assert_eq!(e["code"], code, "{shown}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| m.len() > 10), "{e}");
        assert!(e["type"].is_string(), "{e}");
    }
    let (status, _, v) = s.post_raw("/v1/nothing", "{}", None);
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("unknown_url"))
    );
    let (status, body) = s.get("/health", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        s.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        s.log()
    );
}

#[test]
fn a_prompt_over_the_context_is_refused() {
    // 8192 positions: ~9000 tokens of text do not fit, whatever max_tokens.
    let s = Server::start(&["--max-body-bytes", "200000"]);
    let (status, e) = error_of(&s, &request(&"cat ".repeat(9000), 4).to_string());
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["code"], "context_length_exceeded", "{e}");
    assert_eq!(e["param"], "messages");
}

#[test]
fn the_api_key_is_required_when_set() {
    let s = Server::start(&["--api-key", "s3cret"]);
    let body = request("hi", 2).to_string();
    for key in [None, Some("wrong"), Some("s3cret-and-more"), Some("")] {
        let (status, _, v) = s.post_raw("/v1/chat/completions", &body, key);
        assert_eq!(status, 401, "{key:?}: {v}");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    let (status, _, v) = s.post_raw("/v1/chat/completions", &body, Some("s3cret"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.get("/v1/models", None).0, 401);
    assert_eq!(s.get("/v1/models", Some("s3cret")).0, 200);
    assert_eq!(s.get("/health", None).0, 200, "probes need no key");
    assert_eq!(s.get("/ready", None).0, 200);
}

#[test]
fn a_full_queue_gets_429_and_a_disconnect_frees_the_slot() {
    let s = Server::start(&[
        "--threshold",
        "1",
        "--pause-threshold",
        "1",
        "--max-batch",
        "1",
        "--max-queue",
        "1",
        "--max-tokens-cap",
        "8000",
    ]);
    let mut long = request("Tell me a very long story.", 8000);
    long["stream"] = json!(true);
    let mut first = s.stream(&long);
    first.next().expect("the role chunk");
    first.next().expect("some text: the request is decoding");
    // The batch (1 row) is busy: the next request waits in the queue (1 slot), the one after
    // is refused.
    let waiting = std::thread::scope(|scope| {
        let queued = scope.spawn(|| s.chat(&request("hi", 3)));
        // Wait (bounded) until the queued request is in the queue.
        let in_queue = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            s.get("/metrics", None).1.contains("oc_queue_depth 1")
        });
        assert!(in_queue, "the second request waits in the queue");
        let (status, retry, v) =
            s.post_raw("/v1/chat/completions", &request("hi", 3).to_string(), None);
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "queue_full", "{v}");
        assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
        // The client of the long stream goes away: its row leaves at the next step and the
        // queued request gets the slot.
        drop(first);
        queued.join().unwrap()
    });
    assert_eq!(waiting.0, 200, "{}", waiting.1);
    let (_, metrics) = s.get("/metrics", None);
    let cancelled = metrics
        .lines()
        .find(|l| l.contains("finish_reason=\"cancelled\""))
        .unwrap_or_else(|| panic!("the disconnect is counted:\n{metrics}"));
    assert!(cancelled.ends_with(" 1"), "{cancelled}");
    let generated: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oc_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        generated < 8000,
        "the long request stopped early: {generated} tokens"
    );
    assert!(
        metrics.contains("oc_http_requests_total{status=\"429\"}"),
        "{metrics}"
    );
}

#[test]
fn sigterm_finishes_the_in_flight_stream_then_exits_0() {
    let s = Server::start(&["--threshold", "1", "--pause-threshold", "1"]);
    let mut body = request("Tell me a story.", 300);
    body["stream"] = json!(true);
    let mut events = s.stream(&body);
    events.next().expect("the role chunk");
    let pid = s.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (_, last, after) = collect(events);
    assert!(
        !last["choices"][0]["finish_reason"].is_null(),
        "the stream finished: {last}"
    );
    assert_eq!(after.last().map(String::as_str), Some("[DONE]"));
    let log = s.log();
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
}
