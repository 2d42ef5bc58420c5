//! Stop sequences on released text, as OpenAI applies `stop`: the response ends before the first
//! occurrence of any stop string, which is never sent. Text that could still become the start of
//! a stop string is held until the next chunk shows whether it does.

/// Splits released chunks into text to send and a stop.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Released text not sent yet: a suffix that is a prefix of some stop string.
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    /// Feeds a released chunk; returns the text that may be sent now. After a stop, nothing.
    pub fn push(&mut self, chunk: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.push_str(chunk);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            self.stopped = true;
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return out;
        }
        let keep = self.held_suffix();
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        out
    }

    /// Whether a stop string matched (the response is over).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The response ended without a stop: whatever was held is text after all.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest suffix of `pending` that begins some stop string.
    fn held_suffix(&self) -> usize {
        let p = &self.pending;
        (1..=p.len())
            .rev()
            .filter(|&n| p.is_char_boundary(p.len() - n))
            .find(|&n| self.stops.iter().any(|s| s.starts_with(&p[p.len() - n..])))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_split_across_chunks_is_never_sent() {
        let mut m = StopMatcher::new(vec!["END".into(), String::new()]);
        assert_eq!(m.push("hello E"), "hello ");
        assert_eq!(m.push("N"), "");
        assert_eq!(m.push("D and more"), "");
        assert!(m.stopped());
        assert_eq!(m.push("later"), "");
    }

    #[test]
    fn a_false_start_is_released_and_flush_returns_the_tail() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("a E"), "a ");
        assert_eq!(m.push("x é\n"), "Ex é");
        assert!(!m.stopped());
        assert_eq!(m.flush(), "\n");
        let mut none = StopMatcher::new(vec![]);
        assert_eq!(none.push("anything END"), "anything END");
    }

    #[test]
    fn the_earliest_stop_wins() {
        let mut m = StopMatcher::new(vec!["cd".into(), "b".into()]);
        assert_eq!(m.push("abcd"), "a");
    }
}
