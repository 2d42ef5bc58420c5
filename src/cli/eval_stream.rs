//! `eval --stream`: replay labelled exchanges through the guard (see
//! [`open_constitution::guard::replay`]) and report how it behaves as deployed.

use super::eval::Args;
use open_constitution::extract::prepare_rows;
use open_constitution::extract::select_rows;
use open_constitution::guard::replay::{
    decide_cascade, replay, summarize, ReplayOutcome, ReplaySummary,
};
use open_constitution::probe::stream::curve::{pause_curves, CurvePoint};
use open_constitution::probe::stream::replay::{self as stream_replay, StoreStream};
use open_constitution::probe::stream::StreamThresholds;
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
        Some(fpr) => {
            let (t, report) = calibrate(&prepared, &outcomes, fpr, second.is_some())?;
            Some((t, fpr, report))
        }
        None => None,
    };
    if let (true, Some((t, fpr, _))) = (args.write_thresholds, &calibration) {
        write_thresholds(args, probe, data, (t, *fpr), &outcomes)?;
    }
    let calibration = calibration.map(|(_, _, report)| report);
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
    pause_curves(&streams_of(outcomes), cascade)
}

/// The replayed trajectories as streams, for the calibration and curves that judge any
/// thresholds on them (a step's second-stage score is 0 without a cascade).
fn streams_of(outcomes: &[ReplayOutcome]) -> Vec<StoreStream> {
    outcomes
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
        .collect()
}

/// Writes the stream-calibrated thresholds of `cal` into the probe's config.json.
fn write_thresholds(
    args: &Args,
    probe: &Probe,
    data: &Path,
    (t, (flag_fpr, pause_fpr)): (&StreamThresholds, (f64, f64)),
    outcomes: &[ReplayOutcome],
) -> anyhow::Result<()> {
    if args.split == Some(open_constitution::probe::Split::Test) {
        tracing::warn!(
            "--write-thresholds on the test split: the test numbers reported later are no longer held out"
        );
    }
    let record = StreamCalibration {
        data: data.display().to_string(),
        split: args.split.map(|s| s.as_str().to_string()),
        flag_fpr,
        pause_fpr,
        safe_streams: outcomes.iter().filter(|o| o.label == 0).count(),
        per_state_threshold: 0.0,
        per_state_pause_threshold: 0.0,
    };
    let mut updated = probe.clone();
    updated.config_mut().set_stream_thresholds(t, record);
    updated.config().guard_config().validate()?;
    updated.write(&args.probe)?;
    let second = match (&probe.config().cascade, t.second) {
        (None, _) => String::new(),
        (Some(_), Some(c)) => format!(" and second-stage threshold {c:.6}"),
        (Some(_), None) => " (and removed the cascade: it paused no more unsafe streams)".into(),
    };
    println!(
        "wrote threshold {:.6} and pause threshold {:.6}{second} into {}",
        t.flag,
        t.pause,
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

/// Stream-level thresholds for the target rates (with a cascade, its second-stage threshold
/// too, chosen jointly: [`stream_replay::calibrate`], the rule `train` uses on the store), and
/// what the guard does with them on these rows.
fn calibrate(
    rows: &[open_constitution::extract::PreparedRow],
    outcomes: &[ReplayOutcome],
    (flag_fpr, pause_fpr): (f64, f64),
    cascade: bool,
) -> anyhow::Result<(StreamThresholds, serde_json::Value)> {
    let t = stream_replay::calibrate(&streams_of(outcomes), flag_fpr, pause_fpr, cascade)
        .ok_or_else(|| anyhow::anyhow!("--stream-fpr needs safe (label 0) rows to calibrate on"))?;
    let judged: Vec<ReplayOutcome> = rows
        .iter()
        .zip(outcomes)
        .map(|(r, o)| decide_cascade(r, &o.trajectory, t.flag, t.pause, t.second))
        .collect();
    let (u, s) = (summarize(&judged, 1), summarize(&judged, 0));
    let second = match (cascade, t.second) {
        (false, _) => String::new(),
        (true, Some(c)) => format!(", second stage {c:.6}"),
        (true, None) => ", no second stage (it paused no more unsafe streams)".into(),
    };
    println!(
        "stream-calibrated for {flag_fpr} / {pause_fpr} of safe streams: threshold {:.6}, pause {:.6}{second}",
        t.flag, t.pause
    );
    print_line("unsafe responses (label 1)", &u);
    print_line("safe responses (label 0)", &s);
    if !cascade {
        println!(
            "use with: generate --threshold {:.6} --pause-threshold {:.6}",
            t.flag, t.pause
        );
    }
    let report = serde_json::json!({
        "flag_fpr": flag_fpr, "pause_fpr": pause_fpr,
        "threshold": t.flag, "pause_threshold": t.pause,
        "cascade": cascade, "second_threshold": t.second,
        "unsafe": u, "safe": s,
    });
    Ok((t, report))
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
