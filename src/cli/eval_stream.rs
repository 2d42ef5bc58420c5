//! `eval --stream`: replay labelled exchanges through the guard (see
//! [`open_constitution::guard::replay`]) and report how it behaves as deployed.

use super::eval::Args;
use open_constitution::extract::prepare_rows;
use open_constitution::extract::select_rows;
use open_constitution::guard::replay::{
    decide, replay, stream_threshold, summarize, ReplayOutcome, ReplaySummary,
};
use open_constitution::probe::stream::curve::{pause_curves, CurvePoint};
use open_constitution::probe::stream::replay::StoreStream;
use open_constitution::probe::{Probe, StreamCalibration};
use std::path::Path;
use std::time::Instant;

/// Replays `data` through the probe's guard and writes `out/stream.json`.
pub fn run(args: &Args, probe: &Probe, data: &Path, out: &Path) -> anyhow::Result<()> {
    // Checked before minutes of replay, not after.
    let rates = args.stream_fpr.as_deref().map(stream_rates).transpose()?;
    let mut model = super::eval::load_probe_model(args, probe)?;
    // Only the row selection and truncation of the job are used: nothing is stored.
    let job = super::eval::data_job(args, probe, data, out, false);
    let (mut rows, _) = select_rows(&job)?;
    if let Some(split) = args.split {
        // By the rows' own split labels (prepare-data writes them).
        rows.retain(|r| r.split == Some(split));
        anyhow::ensure!(
            !rows.is_empty(),
            "no rows of {} have split `{}`",
            data.display(),
            split.as_str()
        );
    }
    let prepared = prepare_rows(&model.files, &rows, job.max_tokens)?;
    let c = probe.config();
    let config = args.guard.apply(c.guard_config());
    let second = probe.load_second_stage()?;
    let setup = probe.guard_setup(second.as_ref(), config);
    let bar = super::progress::bar(prepared.len() as u64, "rows");
    let start = Instant::now();
    let pad = model.files.pad_id();
    let outcomes = replay(
        &mut model.decoder,
        pad,
        &prepared,
        &setup,
        (job.batch_tokens, job.max_batch),
        &bar,
    )?;
    bar.finish();
    let (unsafe_rows, safe_rows) = (summarize(&outcomes, 1), summarize(&outcomes, 0));
    println!(
        "guard replay of {} rows of {} in {:.1} s (threshold {:.3}, pause {:.3}, every {} tokens, {:?})",
        outcomes.len(),
        data.display(),
        start.elapsed().as_secs_f64(),
        config.threshold,
        config.pause_threshold,
        config.probe_every_n_tokens,
        config.smoothing
    );
    print_line("unsafe responses (label 1)", &unsafe_rows);
    print_line("safe responses (label 0)", &safe_rows);
    let calibration = match rates {
        Some((flag_fpr, pause_fpr)) => Some(calibrate(&prepared, &outcomes, flag_fpr, pause_fpr)?),
        None => None,
    };
    if let (true, Some(cal)) = (args.write_thresholds, &calibration) {
        write_thresholds(args, probe, data, cal, &outcomes)?;
    }
    std::fs::create_dir_all(out)?;
    let cascade = second.as_ref().map(|(_, t)| *t);
    let (alone, with_second) = curves(&outcomes, cascade);
    if !alone.is_empty() {
        super::eval_tokens::report_curves(out, &alone, &with_second)?;
    }
    let report = serde_json::json!({
        "data": data,
        "guard": config,
        "unsafe": unsafe_rows,
        "safe": safe_rows,
        "stream_calibration": calibration,
        "pause_curve": alone,
        "pause_curve_cascade": with_second,
        "rows": outcomes,
    });
    let path = out.join("stream.json");
    let bytes = serde_json::to_vec_pretty(&report)?;
    open_constitution::fsutil::write_atomic(&path, |w| std::io::Write::write_all(w, &bytes))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The pause curves of the replayed trajectories: the probe alone, and with the cascade's
/// second stage at threshold `cascade` (empty without one).
fn curves(outcomes: &[ReplayOutcome], cascade: Option<f32>) -> (Vec<CurvePoint>, Vec<CurvePoint>) {
    let streams: Vec<StoreStream> = outcomes
        .iter()
        .map(|o| StoreStream {
            label: o.label,
            tokens: o.trajectory.iter().map(|s| s.token_index).collect(),
            smoothed: o.trajectory.iter().map(|s| s.smoothed).collect(),
            second: o
                .trajectory
                .iter()
                .map(|s| s.second.unwrap_or(0.0))
                .collect(),
        })
        .collect();
    pause_curves(&streams, cascade)
}

/// Writes the stream-calibrated thresholds of `cal` into the probe's config.json.
fn write_thresholds(
    args: &Args,
    probe: &Probe,
    data: &Path,
    cal: &serde_json::Value,
    outcomes: &[ReplayOutcome],
) -> anyhow::Result<()> {
    if args.split == Some(open_constitution::probe::Split::Test) {
        tracing::warn!(
            "--write-thresholds on the test split: the test numbers reported later are no longer held out"
        );
    }
    let num = |k: &str| cal[k].as_f64().unwrap_or(f64::NAN);
    let record = StreamCalibration {
        data: data.display().to_string(),
        split: args.split.map(|s| s.as_str().to_string()),
        flag_fpr: num("flag_fpr"),
        pause_fpr: num("pause_fpr"),
        safe_streams: outcomes.iter().filter(|o| o.label == 0).count(),
        per_state_threshold: 0.0,
        per_state_pause_threshold: 0.0,
    };
    let mut updated = probe.clone();
    let (flag, pause) = (num("threshold") as f32, num("pause_threshold") as f32);
    updated
        .config_mut()
        .set_stream_thresholds(flag, pause, record);
    updated.config().guard_config().validate()?;
    updated.write(&args.probe)?;
    println!(
        "wrote threshold {flag:.6} and pause threshold {pause:.6} into {}",
        args.probe.join("config.json").display()
    );
    Ok(())
}

/// `--stream-fpr FLAG,PAUSE`, validated.
fn stream_rates(fpr: &[f64]) -> anyhow::Result<(f64, f64)> {
    let [flag_fpr, pause_fpr] = fpr else {
        anyhow::bail!("--stream-fpr takes two rates, FLAG,PAUSE (e.g. 0.05,0.01), got {fpr:?}");
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(flag_fpr) && (0.0..=1.0).contains(pause_fpr) && pause_fpr <= flag_fpr,
        "--stream-fpr FLAG,PAUSE: rates in [0, 1] with PAUSE <= FLAG, got {flag_fpr},{pause_fpr}"
    );
    Ok((*flag_fpr, *pause_fpr))
}

/// Stream-level thresholds for the target rates, and what they achieve on these rows.
fn calibrate(
    rows: &[open_constitution::extract::PreparedRow],
    outcomes: &[ReplayOutcome],
    flag_fpr: f64,
    pause_fpr: f64,
) -> anyhow::Result<serde_json::Value> {
    let (Some(flag), Some(pause)) = (
        stream_threshold(outcomes, flag_fpr),
        stream_threshold(outcomes, pause_fpr),
    ) else {
        anyhow::bail!("--stream-fpr needs safe (label 0) rows to calibrate on");
    };
    let judged: Vec<ReplayOutcome> = rows
        .iter()
        .zip(outcomes)
        .map(|(r, o)| decide(r, &o.trajectory, flag, pause))
        .collect();
    let (u, s) = (summarize(&judged, 1), summarize(&judged, 0));
    println!(
        "stream-calibrated for {flag_fpr} / {pause_fpr} of safe streams: threshold {flag:.6}, pause {pause:.6}"
    );
    print_line("unsafe responses (label 1)", &u);
    print_line("safe responses (label 0)", &s);
    println!("use with: generate --threshold {flag:.6} --pause-threshold {pause:.6}");
    Ok(serde_json::json!({
        "flag_fpr": flag_fpr, "pause_fpr": pause_fpr,
        "threshold": flag, "pause_threshold": pause,
        "unsafe": u, "safe": s,
    }))
}

fn print_line(what: &str, s: &ReplaySummary) {
    let median = s
        .median_pause_token
        .map_or("-".to_string(), |t| format!("token {t}"));
    println!(
        "  {what:<28} n {:>5}  paused {:.3}  flagged or paused {:.3}  median pause at {median}",
        s.rows, s.paused, s.flagged_or_paused
    );
}
