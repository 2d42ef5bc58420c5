//! Deterministic train/validation/test assignment by a hash of the normalized prompt, so every
//! response to one prompt lands in the same split (no prompt leaks from training into evaluation)
//! and a rerun, or another tool such as the probe trainer, reproduces the same assignment.

use crate::data::schema::Split;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::str::FromStr;

/// Fractions of prompts that go to train, validation and test; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SplitFractions {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    /// 80/10/10.
    fn default() -> Self {
        SplitFractions {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
        }
    }
}

impl SplitFractions {
    /// Checked constructor: each fraction finite and in [0, 1], and the sum within 1e-6 of 1.
    pub fn new(train: f64, validation: f64, test: f64) -> Result<Self> {
        let all = [train, validation, test];
        if all
            .iter()
            .any(|f| !f.is_finite() || !(0.0..=1.0).contains(f))
        {
            return Err(Error::Argument(format!(
                "split fractions must each be in [0, 1], got {train},{validation},{test}"
            )));
        }
        let sum: f64 = all.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(Error::Argument(format!(
                "split fractions must sum to 1, got {train}+{validation}+{test} = {sum}"
            )));
        }
        Ok(SplitFractions {
            train,
            validation,
            test,
        })
    }
}

impl FromStr for SplitFractions {
    type Err = Error;

    /// Parses `TRAIN,VALIDATION,TEST`, e.g. `0.8,0.1,0.1`.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || {
            Error::Argument(format!(
                "split fractions `{s}`: expected three numbers TRAIN,VALIDATION,TEST such as 0.8,0.1,0.1"
            ))
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut v = [0.0f64; 3];
        for (slot, part) in v.iter_mut().zip(&parts) {
            *slot = part.parse().map_err(|_| bad())?;
        }
        SplitFractions::new(v[0], v[1], v[2])
    }
}

/// The form of a prompt that decides its split: lowercase, runs of whitespace collapsed to one
/// space, trimmed. Prompts that differ only in case or spacing are the same prompt for leakage.
pub fn normalize_prompt(prompt: &str) -> String {
    prompt
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// First 8 bytes (big-endian) of sha256 of the normalized prompt.
pub fn prompt_hash(prompt: &str) -> u64 {
    let digest = Sha256::digest(normalize_prompt(prompt).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The split of a prompt: its hash mapped to [0, 1) and cut at the cumulative fractions.
pub fn assign_split(prompt: &str, fractions: &SplitFractions) -> Split {
    split_for_hash(prompt_hash(prompt), fractions)
}

/// [`assign_split`] for an already computed [`prompt_hash`].
pub fn split_for_hash(hash: u64, fractions: &SplitFractions) -> Split {
    // The top 53 bits convert to f64 exactly, so the mapping is the same on every platform.
    let u = (hash >> 11) as f64 / (1u64 << 53) as f64;
    if u < fractions.train {
        Split::Train
    } else if u < fractions.train + fractions.validation {
        Split::Validation
    } else {
        Split::Test
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_ignores_case_and_spacing() {
        assert_eq!(
            normalize_prompt("  How DO\tI\n bake  bread? "),
            "how do i bake bread?"
        );
        assert_eq!(prompt_hash("A  b"), prompt_hash("a b"));
        assert_ne!(prompt_hash("a b"), prompt_hash("ab"));
    }

    #[test]
    fn fractions_parse_and_validate() {
        let f: SplitFractions = "0.7, 0.2, 0.1".parse().unwrap();
        assert_eq!(f.validation, 0.2);
        assert!("0.8,0.1".parse::<SplitFractions>().is_err());
        assert!("0.8,0.1,0.2".parse::<SplitFractions>().is_err());
        assert!("1.2,-0.1,-0.1".parse::<SplitFractions>().is_err());
        assert!("x,0.1,0.1".parse::<SplitFractions>().is_err());
    }

    #[test]
    fn assignment_follows_fractions() {
        let f = SplitFractions::default();
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            let s = assign_split(&format!("prompt number {i}"), &f);
            counts[s as usize] += 1;
        }
        assert!((15_400..16_600).contains(&counts[0]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[1]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[2]), "{counts:?}");
        let all_train = SplitFractions::new(1.0, 0.0, 0.0).unwrap();
        assert_eq!(assign_split("anything", &all_train), Split::Train);
        let all_test = SplitFractions::new(0.0, 0.0, 1.0).unwrap();
        assert_eq!(assign_split("anything", &all_test), Split::Test);
    }

    #[test]
    fn assignment_is_pinned() {
        // Pinned so a change to the hashing (which would silently reshuffle every store without
        // split labels) fails here first.
        let f = SplitFractions::default();
        let got: Vec<Split> = ["a", "b", "g", "i", "5", "6"]
            .iter()
            .map(|p| assign_split(p, &f))
            .collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [Split; 6] = [
        Split::Train,
        Split::Train,
        Split::Validation,
        Split::Validation,
        Split::Test,
        Split::Test,
    ];
}
