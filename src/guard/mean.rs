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
        if self.sum.len() != state.len() {
            self.sum = vec![0.0; state.len()];
            self.n = 0;
        }
        for (a, &v) in self.sum.iter_mut().zip(state) {
            *a += v as f64;
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
}
