//! Deterministic row selection: seeded label-balanced samples (`--max-examples`) and the shard a
//! row belongs to (`--shard K/N`, by a hash of its id, so adding rows never moves other rows).

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::str::FromStr;

pub(crate) fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The shard (0..count) that owns row `id`.
pub fn shard_of(id: &str, count: usize) -> usize {
    (hash64(&[b"oc-shard", id.as_bytes()]) % count.max(1) as u64) as usize
}

/// `K/N`: this process extracts shard K of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardArg {
    pub index: usize,
    pub count: usize,
}

impl FromStr for ShardArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Argument(format!(
                "--shard `{s}`: expected K/N with 0 <= K < N, e.g. 0/4 (Kubernetes: \
                 $JOB_COMPLETION_INDEX/N; Slurm: $SLURM_ARRAY_TASK_ID/N)"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// Indices of a seeded, label-balanced sample of at most `n` items: half from each label when
/// both have enough, the rest filled from the larger class. Returned ascending.
pub fn balanced_sample(ids: &[&str], labels: &[u8], n: usize, seed: u64) -> Vec<usize> {
    if n >= ids.len() {
        return (0..ids.len()).collect();
    }
    let seed = seed.to_le_bytes();
    let ranked = |label: u8| {
        let mut v: Vec<(u64, usize)> = (0..ids.len())
            .filter(|&i| labels[i] == label)
            .map(|i| (hash64(&[b"oc-sample", &seed, ids[i].as_bytes()]), i))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
    };
    let (neg, pos) = (ranked(0), ranked(1));
    let half = n / 2;
    let take_pos = pos.len().min(n - half.min(neg.len())).min(n);
    let take_neg = (n - take_pos).min(neg.len());
    let mut out: Vec<usize> = neg[..take_neg]
        .iter()
        .chain(&pos[..take_pos])
        .copied()
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_args() {
        assert_eq!(
            "1/4".parse::<ShardArg>().unwrap(),
            ShardArg { index: 1, count: 4 }
        );
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(bad.parse::<ShardArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_ids_stably() {
        let ids: Vec<String> = (0..1000).map(|i| format!("row-{i}")).collect();
        let counts = ids.iter().fold([0usize; 3], |mut c, id| {
            c[shard_of(id, 3)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| c > 250), "{counts:?}");
        assert_eq!(shard_of("row-7", 3), shard_of("row-7", 3));
    }

    #[test]
    fn balanced_and_seeded() {
        let ids: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let labels: Vec<u8> = (0..100).map(|i| u8::from(i < 20)).collect();
        let s = balanced_sample(&id_refs, &labels, 30, 7);
        assert_eq!(s.len(), 30);
        assert_eq!(s.iter().filter(|&&i| labels[i] == 1).count(), 15);
        assert_eq!(s, balanced_sample(&id_refs, &labels, 30, 7));
        assert_ne!(s, balanced_sample(&id_refs, &labels, 30, 8));
        let s = balanced_sample(&id_refs, &labels, 60, 7);
        assert_eq!(
            s.iter().filter(|&&i| labels[i] == 1).count(),
            20,
            "all positives, rest negatives"
        );
        assert_eq!(s.len(), 60);
    }
}
