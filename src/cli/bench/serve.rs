//! `bench serve`: the server under concurrent streaming clients against sequential `generate`
//! of the same prompts, measured in the same run. Starts `serve` (this binary) on a loopback
//! port, runs the prompts at each concurrency, and reports aggregate tokens/s, time to first
//! released text and the time between released chunks (p50/p99), with the ratio of each
//! concurrency's throughput to sequential guarded `generate` (measured before and after the
//! server's runs; the faster of the two is the baseline).

use super::generate::PROMPTS;
use crate::cli::common::Target;
use crate::cli::generate::load_probe;
use anyhow::Context;
use open_constitution::guard::generate::{generate_batch, GenerateOptions, OnPause, Sink};
use open_constitution::guard::sampling::SamplingConfig;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Arguments of `bench serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Trained probe directory (thresholds are set to 1, so nothing pauses; every token is
    /// still scored).
    #[arg(long, default_value = crate::cli::generate::DEFAULT_PROBE)]
    pub probe: PathBuf,
    /// Requests per concurrency level (the bench prompts, cycled); a level with more clients
    /// runs one request per client, so every client is in flight at once.
    #[arg(long, default_value_t = 16)]
    pub requests: usize,
    /// New tokens per request (end-of-turn ignored, so every request generates exactly this).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Concurrency levels (streaming clients at once); the server's --max-batch is the largest.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
}

/// One streamed response: tokens generated, seconds to its first text, gaps between chunks.
type Timed = (usize, f64, Vec<f64>);

/// One measured configuration.
struct Run {
    name: String,
    tokens: usize,
    seconds: f64,
    ttft: Vec<f64>,
    itl: Vec<f64>,
    /// Seconds the guard took and seconds of decoding, where measured (its overhead).
    guard: Option<(f64, f64)>,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.requests >= 1 && a.new_tokens >= 1,
        "--requests and --new-tokens must be >= 1"
    );
    let prompts: Vec<String> = PROMPTS
        .iter()
        .cycle()
        .take(a.requests)
        .map(|s| s.to_string())
        .collect();
    // Sequential runs before and after the server's bracket it: on a shared machine the load
    // drifts, and the ratios are taken against the faster of the two.
    let mut runs = vec![sequential(&a, &prompts, "before")?];
    let max_batch = a.concurrency.iter().copied().max().unwrap_or(1);
    let server = Server::start(&a, max_batch)?;
    client_run(&server.url, &prompts[..1], 1, a.new_tokens)?; // warm-up
    for &c in &a.concurrency {
        let level: Vec<String> = prompts
            .iter()
            .cycle()
            .take(a.requests.max(c))
            .cloned()
            .collect();
        let before = guard_counters(&server.url)?;
        let mut r = client_run(&server.url, &level, c.max(1), a.new_tokens)?;
        let after = guard_counters(&server.url)?;
        r.guard = Some((after.0 - before.0, after.1 - before.1));
        r.name = format!("serve, concurrency {c}");
        runs.push(r);
    }
    drop(server);
    runs.push(sequential(&a, &prompts, "after")?);
    print(&mut runs);
    Ok(())
}

/// Guarded `generate` of each prompt, one after another, in this process.
fn sequential(a: &Args, prompts: &[String], when: &str) -> anyhow::Result<Run> {
    let mut model = a.target.load(&a.target.runtime.options())?;
    let probe = load_probe(&a.probe, &model)?;
    let mut config = probe.config().guard_config();
    (config.threshold, config.pause_threshold) = (1.0, 1.0);
    let second = probe.load_second_stage()?;
    let setup = probe.guard_setup(second.as_ref(), config);
    let opts = GenerateOptions {
        max_new_tokens: a.new_tokens,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        ignore_eos: true,
        keep_withheld: false,
    };
    let one = |model: &mut _, p: &String| {
        let sink: Sink<'_> = Box::new(|_: &str| {});
        generate_batch(
            model,
            std::slice::from_ref(p),
            Some(&setup),
            &opts,
            vec![sink],
        )
        .map(|mut r| r.remove(0))
    };
    one(&mut model, &prompts[0])?; // warm-up
    let t = Instant::now();
    let mut run = Run {
        name: format!("sequential generate (guarded), {when}"),
        tokens: 0,
        seconds: 0.0,
        ttft: vec![],
        itl: vec![],
        guard: Some((0.0, 0.0)),
    };
    for p in prompts {
        let r = one(&mut model, p)?;
        run.tokens += r.tokens_generated;
        if let Some((g, d)) = run.guard.as_mut() {
            *g += r.timings.guard_ms / 1e3;
            *d += r.timings.decode_ms() / 1e3;
        }
        let first = r
            .timings
            .time_to_first_release_ms
            .unwrap_or(r.timings.total_ms)
            / 1e3;
        run.ttft.push(first);
        if r.tokens_generated > 1 {
            run.itl
                .push((r.timings.total_ms / 1e3 - first) / (r.tokens_generated - 1) as f64);
        }
    }
    run.seconds = t.elapsed().as_secs_f64();
    Ok(run)
}

/// `serve` as a child process on a free loopback port.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(a: &Args, max_batch: usize) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("finding this binary to start `serve`")?;
        let device = clap::ValueEnum::to_possible_value(&a.target.runtime.device)
            .map(|v| v.get_name().to_string());
        let mut cmd = Command::new(exe);
        cmd.args([
            "serve",
            "--model",
            &a.target.model.model,
            "--port",
            "0",
            "--threshold",
            "1",
            "--pause-threshold",
            "1",
        ])
        .args([
            "--max-batch",
            &max_batch.to_string(),
            "--max-queue",
            &(a.requests + 1).to_string(),
        ])
        .args([
            "--max-tokens-cap",
            &a.new_tokens.to_string(),
            "--threads",
            &a.target.runtime.threads.to_string(),
        ])
        .args(["--device", device.as_deref().unwrap_or("cpu")])
        .arg("--probe")
        .arg(&a.probe)
        .stdout(Stdio::piped());
        if a.target.model.no_chat_template {
            cmd.arg("--no-chat-template");
        }
        let mut child = cmd.spawn().context("starting `serve`")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("serve's stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string);
        match url {
            Some(url) => Ok(Server { child, url }),
            None => {
                let _ = child.kill();
                anyhow::bail!("`serve` did not start (printed {line:?}); its error is above")
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Streams every prompt through `c` clients at once; times each response.
fn client_run(url: &str, prompts: &[String], c: usize, new_tokens: usize) -> anyhow::Result<Run> {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    let results: Vec<anyhow::Result<Vec<Timed>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..c)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(p) = prompts.get(next.fetch_add(1, Ordering::SeqCst)) {
                        out.push(stream_one(url, p, new_tokens)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect()
    });
    let seconds = t.elapsed().as_secs_f64();
    let mut run = Run {
        name: String::new(),
        tokens: 0,
        seconds,
        ttft: vec![],
        itl: vec![],
        guard: None,
    };
    for r in results {
        for (tokens, ttft, gaps) in r? {
            // ignore_eos: a response of another length lost tokens or was cut.
            anyhow::ensure!(
                tokens == new_tokens,
                "a response had {tokens} tokens, not the {new_tokens} asked for"
            );
            run.tokens += tokens;
            run.ttft.push(ttft);
            run.itl.extend(gaps);
        }
    }
    anyhow::ensure!(
        run.ttft.len() == prompts.len(),
        "{} of {} responses came back",
        run.ttft.len(),
        prompts.len()
    );
    Ok(run)
}

/// One streamed request: tokens generated, seconds to the first text, gaps between chunks.
fn stream_one(
    url: &str,
    prompt: &str,
    new_tokens: usize,
) -> anyhow::Result<(usize, f64, Vec<f64>)> {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": prompt}], "max_tokens": new_tokens, "temperature": 0,
        "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    });
    let t = Instant::now();
    let r = ureq::post(format!("{url}/v1/chat/completions"))
        .send_json(&body)
        .context("a bench request")?;
    let (mut first, mut last, mut gaps, mut tokens) = (None, t, Vec::new(), None);
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let Some(data) = line?.strip_prefix("data: ").map(str::to_string) else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: serde_json::Value =
            serde_json::from_str(&data).with_context(|| format!("a malformed event: {data}"))?;
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n as usize);
        }
        if v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            let now = Instant::now();
            match first {
                None => first = Some(now.duration_since(t).as_secs_f64()),
                Some(_) => gaps.push(now.duration_since(last).as_secs_f64()),
            }
            last = now;
        }
    }
    let tokens = tokens.context("the stream ended without a usage chunk")?;
    Ok((tokens, first.unwrap_or(f64::NAN), gaps))
}

/// The server's `oc_guard_seconds_total` and `oc_decode_seconds_total`.
fn guard_counters(url: &str) -> anyhow::Result<(f64, f64)> {
    let text = ureq::get(format!("{url}/metrics"))
        .call()
        .context("reading /metrics")?
        .into_body()
        .read_to_string()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .with_context(|| format!("/metrics has no {name}"))
    };
    Ok((
        value("oc_guard_seconds_total")?,
        value("oc_decode_seconds_total")?,
    ))
}

fn print(runs: &mut [Run]) {
    let rate = |r: &Run| r.tokens as f64 / r.seconds;
    let base = rate(&runs[0]).max(rate(&runs[runs.len() - 1]));
    println!("| run | tokens | seconds | tokens/s | x vs sequential | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | guard % of decode |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in runs.iter_mut() {
        let rate = rate(r);
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            r.name,
            r.tokens,
            r.seconds,
            rate,
            rate / base,
            pct(&mut r.ttft, 50.0) * 1e3,
            pct(&mut r.ttft, 99.0) * 1e3,
            pct(&mut r.itl, 50.0) * 1e3,
            pct(&mut r.itl, 99.0) * 1e3,
            r.guard
                .filter(|g| g.1 > 0.0)
                .map_or("-".into(), |(g, d)| format!("{:.3}", 100.0 * g / d)),
        );
    }
    println!("(TTFT: request sent to its first released text; ITL: time between released chunks; sequential ITL is the mean per token; guard %: time in the guard's own code (scoring, smoothing, deciding, holding text back; not delivering released text, which unguarded serving does too) over decode time, from the server's /metrics)");
}
