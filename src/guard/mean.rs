//! The running mean of a response's hidden states, which a cascade's second stage scores: one
//! rule for the decode loop, the model replay and the store replay. States are summed in f64 as
//! they arrive; the mean is formed only when a probe step asks for it.

/// A sum of states and their count.
#[derive(Debug, Clone, Default)]
pub struct RunningMean {
    sum: Vec<f64>,
    n: usize,
    mean: Vec<f32>,
}

impl RunningMean {
    /// Adds one state (the first fixes the width).
    pub fn push(&mut self, state: &[f32]) {
        self.push_parts(&[state]);
    }

    /// Adds one state given in consecutive parts (the states of several layers at one token,
    /// concatenated as a multi-layer probe reads them), without building the concatenation.
    pub fn push_parts(&mut self, parts: &[&[f32]]) {
        let width: usize = parts.iter().map(|p| p.len()).sum();
        if self.sum.len() != width {
            self.sum = vec![0.0; width];
            self.n = 0;
        }
        let mut sums = self.sum.iter_mut();
        for part in parts {
            // The part first: zip stops on it without taking a sum that belongs to the next.
            for (&v, a) in part.iter().zip(&mut sums) {
                *a += v as f64;
            }
        }
        self.n += 1;
    }

    /// The mean of the states pushed so far (zeros before the first).
    pub fn mean(&mut self) -> &[f32] {
        let n = self.n.max(1) as f64;
        self.mean.clear();
        self.mean.extend(self.sum.iter().map(|a| (a / n) as f32));
        &self.mean
    }

    /// States pushed so far.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_what_was_pushed() {
        let mut m = RunningMean::default();
        m.push(&[1.0, 2.0]);
        m.push(&[3.0, 6.0]);
        assert_eq!(m.mean(), &[2.0, 4.0]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn parts_are_the_mean_of_the_concatenation() {
        let (mut parts, mut whole) = (RunningMean::default(), RunningMean::default());
        for (a, b) in [([1.0, 2.0], [5.0]), ([3.0, -2.0], [7.0])] {
            parts.push_parts(&[&a, &b]);
            whole.push(&[a.as_slice(), b.as_slice()].concat());
        }
        assert_eq!(parts.mean(), &[2.0, 0.0, 6.0]);
        assert_eq!(parts.mean(), whole.mean());
    }
}
