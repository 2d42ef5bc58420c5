//! Train/validation/test row assignment (from the store's split labels, or deterministically from
//! each row's prompt hash), class balance per split, and seeded minority oversampling.

use crate::error::{Error, Result};
use crate::store::RowMeta;
use serde::{Deserialize, Serialize};

pub use crate::data::Split;

/// Split of a row whose store carries no split labels, from its `prompt_hash` (the first 16 hex
/// digits of sha256 of the normalized prompt, as `extract` writes it): exactly the 80/10/10
/// assignment `prepare-data` makes with `data::split_for_hash`, so every row of one prompt lands
/// in the same split and no prompt leaks from train into test. Needs no seed and no other row.
pub fn split_from_prompt_hash(prompt_hash: &str) -> Result<Split> {
    let value = prompt_hash
        .get(..16)
        .filter(|h| h.len() == 16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            Error::Probe(format!(
                "prompt_hash `{prompt_hash}` is not 16+ hex digits, so the row cannot be split by \
                 prompt; re-extract with this version, or give rows a `split` field"
            ))
        })?;
    Ok(crate::data::split::split_for_hash(
        value,
        &crate::data::SplitFractions::default(),
    ))
}

/// Where the split assignment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSource {
    /// The `split` field of every row.
    StoreLabels,
    /// [`split_from_prompt_hash`] (the store has no split labels).
    PromptHash,
}

impl SplitSource {
    /// How the rows were split, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SplitSource::StoreLabels => "the rows' split labels",
            SplitSource::PromptHash => "prompt hash (0.8/0.1/0.1)",
        }
    }
}

/// Row indices of each split, in store order.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitIndices {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    pub source: SplitSource,
}

impl SplitIndices {
    /// Assigns every row: by its `split` field when every row has one, by prompt hash when none
    /// has. A mix is refused, since hashing only the unlabelled rows could put a prompt in two
    /// splits. Labels other than 0 and 1 are refused too.
    pub fn assign(rows: &[RowMeta]) -> Result<Self> {
        if let Some(r) = rows.iter().find(|r| r.label > 1) {
            return Err(Error::Probe(format!(
                "row `{}` has label {}; probes need 0 (safe) or 1 (unsafe)",
                r.id, r.label
            )));
        }
        let labelled = rows.iter().filter(|r| r.split.is_some()).count();
        let source = match labelled {
            0 => SplitSource::PromptHash,
            n if n == rows.len() => SplitSource::StoreLabels,
            n => {
                let r = rows
                    .iter()
                    .find(|r| r.split.is_none())
                    .expect("some unlabelled");
                return Err(Error::Probe(format!(
                    "{n} of {} rows have a `split` label but row `{}` has none; label every \
                     row or none (then rows are split by prompt hash)",
                    rows.len(),
                    r.id
                )));
            }
        };
        let mut out = SplitIndices {
            train: Vec::new(),
            validation: Vec::new(),
            test: Vec::new(),
            source,
        };
        for (i, r) in rows.iter().enumerate() {
            let split = match r.split {
                Some(s) => s,
                None => split_from_prompt_hash(&r.prompt_hash)?,
            };
            out.indices_mut(split).push(i);
        }
        Ok(out)
    }

    /// The rows of `split`.
    pub fn indices(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    fn indices_mut(&mut self, split: Split) -> &mut Vec<usize> {
        match split {
            Split::Train => &mut self.train,
            Split::Validation => &mut self.validation,
            Split::Test => &mut self.test,
        }
    }

    /// Refuses an empty or single-class split: the fit, the selection and the calibration each
    /// need both classes.
    pub fn require_both_classes(&self, rows: &[RowMeta]) -> Result<()> {
        for split in [Split::Train, Split::Validation, Split::Test] {
            let b = ClassBalance::of(rows, self.indices(split));
            if b.n == 0 {
                return Err(Error::Probe(format!(
                    "the {} split is empty ({} train / {} validation / {} test rows, split by \
                     {}); give the store more rows or rows of every split",
                    split.as_str(),
                    self.train.len(),
                    self.validation.len(),
                    self.test.len(),
                    self.source_text()
                )));
            }
            if b.positives == 0 || b.negatives == 0 {
                return Err(Error::Probe(format!(
                    "the {} split has only label {} ({} rows); every split needs safe (0) and \
                     unsafe (1) rows",
                    split.as_str(),
                    u8::from(b.positives > 0),
                    b.n
                )));
            }
        }
        Ok(())
    }

    fn source_text(&self) -> &'static str {
        self.source.describe()
    }
}

/// Class counts of a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassBalance {
    pub n: usize,
    pub positives: usize,
    pub negatives: usize,
    /// Share of label-1 rows (0 when empty).
    pub positive_rate: f64,
}

impl ClassBalance {
    /// Counts the labels of `rows[idx]`.
    pub fn of(rows: &[RowMeta], idx: &[usize]) -> Self {
        let positives = idx.iter().filter(|&&i| rows[i].label == 1).count();
        Self::from_counts(idx.len(), positives)
    }

    fn from_counts(n: usize, positives: usize) -> Self {
        ClassBalance {
            n,
            positives,
            negatives: n - positives,
            positive_rate: if n == 0 {
                0.0
            } else {
                positives as f64 / n as f64
            },
        }
    }
}

pub use crate::guard::sampling::SplitMix64;

/// Balances classes by oversampling: the minority rows of `idx` are repeated until both classes
/// have as many rows as the majority, whole copies first, then a seeded choice without
/// replacement for the remainder. Returns the new index list (original order, then the copies).
///
/// Why oversampling: smartcore's logistic regression has no sample weights, and its objective is
/// a sum over rows, so a row present k times weighs exactly k times. With an integer ratio this
/// equals weighting each class by n_majority / n_class; otherwise the remainder rows get one
/// extra copy each, which is the closest integer weighting.
pub fn oversample_minority(rows: &[RowMeta], idx: &[usize], seed: u64) -> Vec<usize> {
    let (pos, neg): (Vec<usize>, Vec<usize>) = idx.iter().partition(|&&i| rows[i].label == 1);
    let (minority, majority) = if pos.len() < neg.len() {
        (pos, neg)
    } else {
        (neg, pos)
    };
    let mut out = idx.to_vec();
    if minority.is_empty() || minority.len() == majority.len() {
        return out;
    }
    let missing = majority.len() - minority.len();
    for _ in 0..missing / minority.len() {
        out.extend_from_slice(&minority);
    }
    // Partial Fisher-Yates: the first `rest` entries become a uniform sample without replacement.
    let rest = missing % minority.len();
    let mut pool = minority;
    let mut rng = SplitMix64::new(seed);
    for k in 0..rest {
        let j = k + rng.below(pool.len() - k);
        pool.swap(k, j);
    }
    out.extend_from_slice(&pool[..rest]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::sha256_bytes;

    fn row(i: usize, label: u8, split: Option<&str>) -> RowMeta {
        RowMeta {
            id: format!("r{i}"),
            label,
            split: split.map(|s| Split::parse(s).expect("a split name")),
            topic: None,
            source: None,
            tokens: 1,
            prompt_hash: sha256_bytes(format!("prompt {}", i / 2).as_bytes()),
            truncated: false,
            positions: None,
            response_tokens: None,
        }
    }

    #[test]
    fn hash_split_is_deterministic_grouped_and_near_fractions() {
        let rows: Vec<RowMeta> = (0..20_000)
            .map(|i| row(i, (i % 3 == 0) as u8, None))
            .collect();
        let s = SplitIndices::assign(&rows).unwrap();
        assert_eq!(s.source, SplitSource::PromptHash);
        assert_eq!(s, SplitIndices::assign(&rows).unwrap());
        let frac = |v: &[usize]| v.len() as f64 / rows.len() as f64;
        assert!((frac(&s.train) - 0.8).abs() < 0.02, "{}", frac(&s.train));
        assert!((frac(&s.validation) - 0.1).abs() < 0.02);
        assert!((frac(&s.test) - 0.1).abs() < 0.02);
        // rows 2k and 2k+1 share a prompt: always the same split
        for i in &s.test {
            let twin = i ^ 1;
            assert!(s.test.contains(&twin));
        }
        assert_eq!(
            split_from_prompt_hash(&"0".repeat(64)).unwrap(),
            Split::Train
        );
        assert_eq!(
            split_from_prompt_hash(&"f".repeat(64)).unwrap(),
            Split::Test
        );
        assert_eq!(
            split_from_prompt_hash(&format!("e{}", "0".repeat(63))).unwrap(),
            Split::Validation
        );
        assert!(split_from_prompt_hash("p1").is_err());
    }

    #[test]
    fn labelled_mixed_and_bad_splits() {
        let rows = vec![row(0, 0, Some("train")), row(1, 1, Some("val"))];
        let s = SplitIndices::assign(&rows).unwrap();
        assert_eq!((s.train.clone(), s.validation.clone()), (vec![0], vec![1]));
        let mixed = vec![row(0, 0, Some("train")), row(1, 1, None)];
        let err = SplitIndices::assign(&mixed).unwrap_err().to_string();
        assert!(err.contains("row `r1` has none"), "{err}");
        // A split name that is none of the three cannot reach a RowMeta: reading it fails.
        let bad =
            r#"{"id": "r0", "label": 0, "split": "holdout", "tokens": 1, "prompt_hash": "p"}"#;
        assert!(serde_json::from_str::<RowMeta>(bad).is_err());
        let label = vec![row(0, 2, Some("train"))];
        assert!(SplitIndices::assign(&label)
            .unwrap_err()
            .to_string()
            .contains("label 2"));
    }

    #[test]
    fn oversampling_balances_deterministically() {
        let rows: Vec<RowMeta> = (0..23).map(|i| row(i, (i < 5) as u8, None)).collect();
        let idx: Vec<usize> = (0..23).collect();
        let a = oversample_minority(&rows, &idx, 7);
        assert_eq!(a, oversample_minority(&rows, &idx, 7));
        let b = ClassBalance::of(&rows, &a);
        assert_eq!((b.positives, b.negatives), (18, 18));
        assert_eq!(&a[..23], &idx[..]);
        // 13 extra = 2 whole copies of the 5 positives + 3 distinct ones
        let tail: std::collections::BTreeSet<usize> = a[33..].iter().copied().collect();
        assert_eq!(tail.len(), 3);
        assert_ne!(a, oversample_minority(&rows, &idx, 8), "seed matters");
    }
}
