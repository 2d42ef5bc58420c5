//! Data hygiene: exact duplicates and contradicting labels, prompts that would sit in two splits,
//! training prompts that also appear in the evaluation set, and the deterministic, label- and
//! topic-balanced per-source cap.

use crate::data::adapters::{Draft, SourceKind};
use crate::data::schema::{Record, Split};
use crate::data::split::normalize_prompt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A finished record and the kind of source it came from (caps are per kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub kind: SourceKind,
    pub record: Record,
}

/// What [`dedup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DedupReport {
    /// Extra copies of a prompt+response pair that all agree on the label.
    pub duplicates_dropped: usize,
    /// Distinct prompt+response pairs that occur with both labels.
    pub conflicting_pairs: usize,
    /// Records removed because their pair is conflicting (every copy goes).
    pub conflict_records_dropped: usize,
    /// Dropped duplicate copies by their source, then by the source whose copy was kept: shows
    /// how much the sources overlap (`{"beavertails": {"pku_saferlhf": 129}}`).
    pub duplicates_by_source: BTreeMap<String, BTreeMap<String, usize>>,
    /// Conflict-dropped records by source: where the label disagreements come from.
    pub conflict_records_by_source: BTreeMap<String, usize>,
}

/// Keeps the first copy of every exact prompt+response pair and drops every copy of a pair that
/// occurs with both labels: a contradicting pair cannot teach the probe anything but noise, and
/// keeping either copy would pick a label arbitrarily.
pub fn dedup(drafts: Vec<Draft>) -> (Vec<Draft>, DedupReport) {
    struct Group {
        first: usize,
        labels: u8,
    }
    let mut groups: HashMap<(&str, &str), Group> = HashMap::with_capacity(drafts.len());
    for (i, d) in drafts.iter().enumerate() {
        let g = groups
            .entry((d.prompt.as_str(), d.response.as_str()))
            .or_insert(Group {
                first: i,
                labels: 0,
            });
        g.labels |= 1 << d.label.min(1);
    }
    let mut report = DedupReport::default();
    let keep: Vec<bool> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let g = &groups[&(d.prompt.as_str(), d.response.as_str())];
            if g.labels == 0b11 {
                report.conflict_records_dropped += 1;
                report.conflicting_pairs += usize::from(g.first == i);
                *report
                    .conflict_records_by_source
                    .entry(d.source.clone())
                    .or_default() += 1;
                false
            } else if g.first != i {
                report.duplicates_dropped += 1;
                *report
                    .duplicates_by_source
                    .entry(d.source.clone())
                    .or_default()
                    .entry(drafts[g.first].source.clone())
                    .or_default() += 1;
                false
            } else {
                true
            }
        })
        .collect();
    drop(groups);
    let kept = drafts
        .into_iter()
        .zip(keep)
        .filter_map(|(d, k)| k.then_some(d))
        .collect();
    (kept, report)
}

/// Moves every record of a normalized prompt into the most held-out split any of its records
/// has (test over validation over train), so no prompt straddles splits even when sources bring
/// their own, disagreeing, splits. Returns how many records moved.
pub fn reconcile_splits(records: &mut [Staged]) -> usize {
    let mut strictest: HashMap<String, Split> = HashMap::new();
    for s in records.iter() {
        let e = strictest
            .entry(normalize_prompt(&s.record.prompt))
            .or_insert(s.record.split);
        *e = (*e).max(s.record.split);
    }
    let mut moved = 0;
    for s in records.iter_mut() {
        let want = strictest[&normalize_prompt(&s.record.prompt)];
        if s.record.split != want {
            s.record.split = want;
            moved += 1;
        }
    }
    moved
}

/// Drops records whose normalized prompt is in `prompts` (the evaluation set's), so evaluation
/// never measures prompts the probe trained on. Returns the kept records and the dropped count.
pub fn drop_prompts(records: Vec<Staged>, prompts: &HashSet<String>) -> (Vec<Staged>, usize) {
    let before = records.len();
    let kept: Vec<Staged> = records
        .into_iter()
        .filter(|s| !prompts.contains(&normalize_prompt(&s.record.prompt)))
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

/// Caps each source kind at `cap(kind)` records with a deterministic sample balanced first over
/// labels, then over topics within a label: records are ranked by sha256(seed, id) inside their
/// (label, topic) stratum and taken round-robin, so small strata are kept whole and large ones
/// thinned evenly. Returns the kept records (input order) and the number dropped per kind.
pub fn cap_balanced(
    records: Vec<Staged>,
    cap: impl Fn(SourceKind) -> Option<usize>,
    seed: u64,
) -> (Vec<Staged>, BTreeMap<String, usize>) {
    let mut by_kind: BTreeMap<SourceKind, Vec<usize>> = BTreeMap::new();
    for (i, s) in records.iter().enumerate() {
        by_kind.entry(s.kind).or_default().push(i);
    }
    let mut keep = vec![true; records.len()];
    let mut dropped = BTreeMap::new();
    for (kind, indices) in by_kind {
        let Some(n) = cap(kind).filter(|&n| n < indices.len()) else {
            continue;
        };
        indices.iter().for_each(|&i| keep[i] = false);
        for i in balanced_order(&records, &indices, seed).into_iter().take(n) {
            keep[i] = true;
        }
        dropped.insert(kind.as_str().to_string(), indices.len() - n);
    }
    let kept = records
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect();
    (kept, dropped)
}

/// A record index with its seeded rank.
type Ranked = ([u8; 32], usize);

/// The indices in sampling order: round-robin over labels of round-robin over topics of the
/// seeded rank order.
fn balanced_order(records: &[Staged], indices: &[usize], seed: u64) -> Vec<usize> {
    let mut strata: BTreeMap<u8, BTreeMap<&str, Vec<Ranked>>> = BTreeMap::new();
    for &i in indices {
        let r = &records[i].record;
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(r.id.as_bytes());
        let rank: [u8; 32] = h.finalize().into();
        strata
            .entry(r.label)
            .or_default()
            .entry(r.topic.as_str())
            .or_default()
            .push((rank, i));
    }
    let per_label: Vec<Vec<usize>> = strata
        .into_values()
        .map(|topics| {
            let lists = topics
                .into_values()
                .map(|mut v| {
                    v.sort_unstable();
                    v.into_iter().map(|(_, i)| i).collect()
                })
                .collect();
            interleave(lists)
        })
        .collect();
    interleave(per_label)
}

/// Round-robin merge: first of each list, then second of each, and so on.
fn interleave<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let total = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for it in iters.iter_mut() {
            out.extend(it.next());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(p: &str, r: &str, label: u8) -> Draft {
        Draft::new(SourceKind::Jsonl, p, r, label)
    }

    #[test]
    fn dedup_drops_copies_and_conflicts() {
        let drafts = vec![
            draft("p", "a", 0),
            draft("p", "a", 0),
            draft("p", "b", 0),
            draft("p", "b", 1),
            draft("p", "b", 1),
            draft("q", "a", 1),
        ];
        let (kept, report) = dedup(drafts);
        let pairs: Vec<_> = kept
            .iter()
            .map(|d| (d.prompt.as_str(), d.response.as_str()))
            .collect();
        assert_eq!(pairs, [("p", "a"), ("q", "a")]);
        assert_eq!(report.duplicates_dropped, 1);
        assert_eq!(report.conflicting_pairs, 1);
        assert_eq!(report.conflict_records_dropped, 3);
        let jsonl = |n| BTreeMap::from([("jsonl".to_string(), n)]);
        assert_eq!(
            report.duplicates_by_source,
            BTreeMap::from([("jsonl".to_string(), jsonl(1))])
        );
        assert_eq!(report.conflict_records_by_source, jsonl(3));
    }

    #[test]
    fn interleave_round_robins() {
        assert_eq!(
            interleave(vec![vec![1, 2, 3], vec![10], vec![20, 21]]),
            [1, 10, 20, 2, 21, 3]
        );
    }
}
