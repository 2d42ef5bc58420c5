//! `serve` on the tiny Gemma 4 over loopback HTTP: streamed and whole responses agree and count
//! their usage, stop sequences end responses before them, a firing guard ends a response with
//! `content_filter` with nothing past the pause sent, per-request guards stay within the
//! operator's bounds, requests decoding together get the text they get alone, and /metrics
//! counts what happened; `tools` reach the chat template; moderations score exchanges.

mod serve_common;

use serde_json::{json, Value};
use serve_common::*;

/// Never pauses (a risk of exactly 1 is needed), so text depends on the model only.
const CALM: [&str; 4] = ["--threshold", "1", "--pause-threshold", "1"];

#[test]
fn streamed_and_whole_responses_agree_and_count_usage() {
    let s = Server::start(&CALM);
    let (status, whole) = s.chat(&request("Tell me about cats.", 12));
    assert_eq!(status, 200, "{whole}");
    let text = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let usage = &whole["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 5 && (1..=12).contains(&c), "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(p + c));
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(finish == "length", c == 12, "{whole}");
    let guard = &whole["guard"];
    assert_eq!(guard["status"], "completed");
    assert_eq!(guard["pause_threshold"].as_f64(), Some(1.0));
    assert!(guard["probe_steps"].as_u64().unwrap() >= 1, "{guard}");

    let mut body = request("Tell me about cats.", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (streamed, last, after) = collect(s.stream(&body));
    assert_eq!(streamed, text, "the stream carries the same greedy text");
    assert_eq!(last["choices"][0]["finish_reason"].as_str(), Some(finish));
    assert_eq!(last["guard"]["status"], "completed");
    assert_eq!(after.len(), 2, "a usage chunk, then [DONE]: {after:?}");
    let u: Value = serde_json::from_str(&after[0]).unwrap();
    assert_eq!(&u["usage"], usage);
    assert_eq!(u["choices"], json!([]));
    assert_eq!(after[1], "[DONE]");
}

#[test]
fn a_stop_sequence_ends_the_response_before_it() {
    let s = Server::start(&CALM);
    let (_, free) = s.chat(&request("Write a story.", 16));
    let text = free["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 6, "needs some text: {text:?}");
    let stop: String = chars[3..5].iter().collect();
    let expected = &text[..text.find(&stop).unwrap()];
    let mut body = request("Write a story.", 16);
    body["stop"] = json!([stop, "never appears ~~~"]);
    let (status, r) = s.chat(&body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["choices"][0]["message"]["content"].as_str(),
        Some(expected),
        "{r}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    body["stream"] = json!(true);
    let (streamed, last, _) = collect(s.stream(&body));
    assert_eq!(streamed, expected);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[test]
fn a_firing_guard_ends_with_content_filter_and_sends_nothing_it_withheld() {
    // Every risk is >= 0: the first probe step (after token 4) pauses, so tokens 1-4, held
    // until judged, are never sent.
    let s = Server::start(&[
        "--threshold",
        "0",
        "--pause-threshold",
        "0",
        "--probe-every-n-tokens",
        "4",
    ]);
    let (status, r) = s.chat(&request("Tell me about cats.", 12));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "content_filter", "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "");
    assert_eq!(r["guard"]["status"], "paused");
    assert_eq!(r["guard"]["pause_token"], 3);
    assert_eq!(
        r["usage"]["completion_tokens"], 4,
        "generated, judged, withheld"
    );
    let mut body = request("Tell me about cats.", 12);
    body["stream"] = json!(true);
    let (streamed, last, after) = collect(s.stream(&body));
    assert_eq!(
        streamed, "",
        "nothing past (or before) the pause was streamed"
    );
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(after, vec!["[DONE]".to_string()]);
}

#[test]
fn a_request_may_tighten_the_guard_but_never_loosen_it() {
    let s = Server::start(&[
        "--threshold",
        "0.9",
        "--pause-threshold",
        "0.95",
        "--probe-every-n-tokens",
        "4",
    ]);
    let mut body = request("Tell me about cats.", 12);
    body["guard"] = json!({"threshold": 0.0, "pause_threshold": 0.0, "probe_every_n_tokens": 2});
    let (status, r) = s.chat(&body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(r["guard"]["probe_every_n_tokens"], 2);
    assert_eq!(r["guard"]["pause_token"], 1);
    for (field, value) in [
        ("pause_threshold", json!(0.99)),
        ("threshold", json!(0.95)),
        ("probe_every_n_tokens", json!(8)),
    ] {
        body["guard"] = json!({ field: value });
        let (status, e) = s.chat(&body);
        assert_eq!(status, 400, "{field}: {e}");
        assert_eq!(e["error"]["param"], format!("guard.{field}"), "{e}");
    }
}

#[test]
fn requests_decoding_together_get_the_text_they_get_alone() {
    let s = Server::start(&[&CALM[..], &["--max-batch", "8"]].concat());
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("Question {i}: what is {i} plus {i}?"))
        .collect();
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| s.chat(&request(p, 10 + prompts.len())).1)
        .collect();
    let together: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| scope.spawn(|| s.chat(&request(p, 10 + prompts.len())).1))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(
            a["choices"][0]["message"], t["choices"][0]["message"],
            "request {i}"
        );
        assert_eq!(a["usage"], t["usage"], "request {i}");
    }
    let (status, metrics) = s.get("/metrics", None);
    assert_eq!(status, 200);
    for want in [
        "oc_http_requests_total{status=\"200\"} 16",
        "oc_time_to_first_token_seconds_bucket",
        "oc_inter_token_latency_seconds_count",
        "oc_guard_decisions_total{guard=\"completed\"",
        "oc_queue_depth",
        "oc_batch_size",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
    let seconds = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let (guard, decode) = (
        seconds("oc_guard_seconds_total"),
        seconds("oc_decode_seconds_total"),
    );
    assert!(
        guard > 0.0 && guard < decode,
        "guard {guard} s of {decode} s"
    );
    let (status, models) = s.get("/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&models).unwrap()["data"][0]["id"],
        MODEL
    );
}

#[test]
fn moderations_score_exchanges_with_the_probe_batched_as_alone() {
    use open_constitution::guard::RiskScorer;
    let s = Server::start(&[]);
    let exchanges = [
        (
            "How do I bake bread?",
            "Mix flour, water and salt, then bake.",
        ),
        (
            "How do I pick a lock?",
            "Sure: insert a tension wrench and rake the pins.",
        ),
    ];
    let input: Vec<Value> = exchanges
        .iter()
        .map(|(p, r)| json!({"prompt": p, "response": r}))
        .collect();
    let (status, _, batched) = s.post_raw(
        "/v1/moderations",
        &json!({"model": MODEL, "input": input}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{batched}");
    // The probe in-process on the same exchange: the last token's state at its layer.
    let opts = open_constitution::runtime::RuntimeOptions {
        threads: 1,
        ..Default::default()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(MODEL);
    let mut model =
        open_constitution::text::Model::load(dir.to_str().unwrap(), true, &opts).unwrap();
    let probe = open_constitution::probe::Probe::load(probe()).unwrap();
    for (i, (p, r)) in exchanges.iter().enumerate() {
        let (_, _, alone) = s.post_raw(
            "/v1/moderations",
            &json!({"input": {"prompt": p, "response": r}}).to_string(),
            None,
        );
        let got = &batched["results"][i];
        let score = got["score"].as_f64().unwrap();
        assert!(
            (score - alone["results"][0]["score"].as_f64().unwrap()).abs() < 1e-4,
            "{got} vs {alone}"
        );
        assert_eq!(
            got["flagged"].as_bool(),
            Some(score >= got["threshold"].as_f64().unwrap())
        );
        let rendered = model.files.format.exchange(p, r).unwrap();
        let ids = model.files.encoder.encode(&rendered).unwrap().ids;
        let row = open_constitution::extract::PreparedRow {
            response: 0..ids.len(),
            meta: open_constitution::store::RowMeta {
                id: "x".into(),
                label: 0,
                split: None,
                topic: None,
                source: None,
                tokens: ids.len(),
                prompt_hash: String::new(),
                truncated: false,
                positions: None,
                response_tokens: None,
            },
            ids,
        };
        let pooled = open_constitution::extract::forward_pooled(
            &mut model.decoder,
            &[&row],
            &[probe.layer()],
            open_constitution::store::Pooling::Last,
            0,
        )
        .unwrap();
        let want = probe.score(pooled[0].row(0).as_slice().unwrap()) as f64;
        assert!(
            (score - want).abs() < 1e-4,
            "served {score} vs in-process {want}"
        );
    }
    let (status, _, e) = s.post_raw("/v1/moderations", r#"{"input": []}"#, None);
    assert_eq!((status, e["error"]["param"].clone()), (400, json!("input")));
}

#[test]
fn tools_reach_the_chat_template() {
    let s = Server::start(&CALM);
    let tool = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Weather of a city", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}}}});
    let plain = request("What is the weather in Paris?", 2);
    let mut with_tools = plain.clone();
    with_tools["tools"] = json!([tool]);
    let (_, a) = s.chat(&plain);
    let (status, b) = s.chat(&with_tools);
    assert_eq!(status, 200, "{b}");
    let (pa, pb) = (
        a["usage"]["prompt_tokens"].as_u64().unwrap(),
        b["usage"]["prompt_tokens"].as_u64().unwrap(),
    );
    // The template writes a system turn with the tool's JSON (dozens of tokens).
    assert!(pb > pa + 20, "prompt tokens without tools {pa}, with {pb}");
    with_tools["tools"] = json!({"not": "a list"});
    let (status, e) = s.chat(&with_tools);
    assert_eq!(
        (status, e["error"]["param"].clone()),
        (400, json!("tools")),
        "{e}"
    );
}
