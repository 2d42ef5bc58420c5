//! Helpers of the `serve` tests: a probe trained once on the tiny Gemma 4 (extract + train
//! through the binary), a server process on a loopback port, and raw HTTP with `ureq`.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub const MODEL: &str = "tiny-gemma4";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_open-constitution"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A probe for the tiny Gemma 4, trained once per test binary.
pub fn probe() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let (store, probe) = (dir.join("store"), dir.join("probe"));
        let model = root().join("models").join(MODEL);
        let run = |args: &[&str]| {
            let o = Command::new(bin())
                .args(args)
                .arg("-q")
                .current_dir(root())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        let (m, st, pr) = (
            model.to_str().unwrap(),
            store.to_str().unwrap(),
            probe.to_str().unwrap(),
        );
        run(&[
            "extract",
            "--model",
            m,
            "--data",
            "data/examples/examples.jsonl",
            "--out",
            st,
            "--layers",
            "-2",
        ]);
        run(&[
            "train",
            "--activations",
            st,
            "--layer",
            "-2",
            "--out",
            pr,
            "--alphas",
            "1",
        ]);
        probe
    })
}

/// A running `serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `serve` on the tiny model and the probe with `extra` flags, on a free port.
    pub fn start(extra: &[&str]) -> Server {
        let log = tempfile::NamedTempFile::new()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let model = root().join("models").join(MODEL);
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--port",
                "0",
                "--threads",
                "1",
            ])
            .args(["--probe", probe().to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no address printed: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap()
                )
            })
            .to_string();
        Server { child, url, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = agent().get(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let r = req.call().unwrap();
        (r.status().as_u16(), r.into_body().read_to_string().unwrap())
    }

    /// POST a raw body to `path`: status, headers and body (JSON when it parses).
    pub fn post_raw(
        &self,
        path: &str,
        body: &str,
        key: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut req = agent()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let r = req.send(body).unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.into_body().read_to_string().unwrap();
        (
            status,
            retry,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST a chat completion (non-streaming): status and JSON body.
    pub fn chat(&self, body: &Value) -> (u16, Value) {
        let (s, _, v) = self.post_raw("/v1/chat/completions", &body.to_string(), None);
        (s, v)
    }

    /// Opens a streaming chat completion: the SSE events as they come.
    pub fn stream(&self, body: &Value) -> Events {
        let r = agent()
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        Events {
            lines: BufReader::new(Box::new(r.into_body().into_reader())),
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The `data:` payloads of an SSE stream.
pub struct Events {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Iterator for Events {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                return Some(data.to_string());
            }
        }
    }
}

/// A one-message greedy request.
pub fn request(content: &str, max_tokens: usize) -> Value {
    serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// Streamed text, the final chunk (with finish_reason) and everything after it, of a stream.
pub fn collect(events: Events) -> (String, Value, Vec<String>) {
    let (mut text, mut last, mut after) = (String::new(), Value::Null, Vec::new());
    for e in events {
        if !last.is_null() {
            after.push(e);
            continue;
        }
        let v: Value = serde_json::from_str(&e).unwrap_or_else(|_| panic!("not JSON: {e}"));
        let choice = &v["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        if !choice["finish_reason"].is_null() {
            last = v;
        }
    }
    (text, last, after)
}
