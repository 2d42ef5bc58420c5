//! Hold-back streamer tests: the engine protocol is simulated over a byte-level vocabulary whose
//! emoji is split across two tokens, and every push and emission is logged in order.

use super::*;

/// A byte-level vocabulary: id -> bytes. Ids 7 and 8 are the two halves of U+1F600.
const VOCAB: [&[u8]; 10] = [
    b"The",
    b" cat",
    b" sat",
    b" on",
    b" the",
    b" mat",
    b".",
    b"\xF0\x9F",
    b"\x98\x80",
    b" ok",
];

/// Decodes like `DecodeStream`: text is returned once the bytes so far form valid UTF-8, and
/// held (`None`) while they end in an incomplete sequence.
#[derive(Default)]
struct ByteDecoder {
    pending: Vec<u8>,
}

impl TokenDecoder for ByteDecoder {
    fn step(&mut self, id: u32) -> Result<Option<String>> {
        let bytes = VOCAB
            .get(id as usize)
            .ok_or_else(|| Error::Tokenize(format!("id {id}")))?;
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(text) => {
                let text = text.to_owned();
                self.pending.clear();
                Ok(Some(text))
            }
            Err(e) if e.error_len().is_none() => Ok(None),
            Err(e) => Err(Error::Tokenize(e.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Push(u32),
    Emit(String),
}
use Event::{Emit, Push};

type Log = Rc<RefCell<Vec<Event>>>;

fn logging_stream(log: &Log) -> HeldStream<ByteDecoder, impl FnMut(&str)> {
    let sink_log = Rc::clone(log);
    let sink = move |text: &str| sink_log.borrow_mut().push(Emit(text.to_owned()));
    HeldStream::new(ByteDecoder::default(), sink)
}

/// Runs the engine protocol of the module docs: `risks[i]` is what the probe returns when it
/// looks at generated token `i`. Returns the event log, the guard and `finish`'s result.
fn generate(cfg: GuardConfig, ids: &[u32], risks: &[f32]) -> (Vec<Event>, Guard, Result<String>) {
    let log = Log::default();
    let mut stream = logging_stream(&log);
    let mut guard = guard(cfg);
    let mut n = 0;
    for &id in ids {
        log.borrow_mut().push(Push(id));
        stream.push(id).unwrap();
        n += 1;
        if guard.should_probe(n) {
            let step = guard.observe(n, risks[n - 1]).unwrap();
            stream.apply(&step).unwrap();
            if step.decision == Decision::Pause {
                break;
            }
        }
    }
    if guard.needs_final_probe(n) {
        let step = guard.observe(n, risks[n - 1]).unwrap();
        stream.apply(&step).unwrap();
    }
    let response = stream.finish();
    let events = log.borrow().clone();
    (events, guard, response)
}

const CFG3: GuardConfig = GuardConfig {
    threshold: 0.5,
    pause_threshold: 0.8,
    probe_every_n_tokens: 3,
    smoothing: RAW,
};

fn emit(text: &str) -> Event {
    Emit(text.to_owned())
}

#[test]
fn pause_withholds_the_judged_window_and_everything_after() {
    let ids = [0, 1, 2, 3, 4, 5, 6, 9, 1, 2];
    let risks = [0.1, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1, 0.9, 0.1];
    let (events, g, response) = generate(CFG3, &ids, &risks);
    let want = [
        Push(0),
        Push(1),
        Push(2),
        emit("The cat sat"),
        Push(3),
        Push(4),
        Push(5),
        emit(" on the mat"),
        Push(6),
        Push(9),
        Push(1),
    ];
    assert_eq!(events, want);
    assert_eq!(response.unwrap(), "The cat sat on the mat");
    assert_eq!(g.status(), GuardStatus::Paused);
    let decisions: Vec<Decision> = g.steps().iter().map(|s| s.decision).collect();
    assert_eq!(
        decisions,
        [Decision::Continue, Decision::Flag, Decision::Pause]
    );
}

#[test]
fn probe_every_token_releases_each_token_after_its_probe() {
    let cfg = GuardConfig {
        probe_every_n_tokens: 1,
        ..CFG3
    };
    let (events, g, response) = generate(cfg, &[0, 1, 2, 3], &[0.1, 0.1, 0.85, 0.1]);
    assert_eq!(
        events,
        [Push(0), emit("The"), Push(1), emit(" cat"), Push(2)]
    );
    assert_eq!(response.unwrap(), "The cat");
    assert_eq!(g.steps().len(), 3);
}

#[test]
fn last_partial_window_is_judged_before_release() {
    let (events, g, response) = generate(CFG3, &[0, 1, 2, 3, 4, 5, 6], &[0.1; 7]);
    let tail = &events[events.len() - 2..];
    assert_eq!(tail, [Push(6), emit(".")]);
    assert_eq!(response.unwrap(), "The cat sat on the mat.");
    assert_eq!(g.status(), GuardStatus::Completed);
    let probed: Vec<usize> = g.steps().iter().map(|s| s.token_index).collect();
    assert_eq!(probed, [2, 5, 6]);
}

#[test]
fn risky_last_partial_window_is_withheld() {
    let risks = [0.1, 0.1, 0.1, 0.1, 0.9];
    let (events, g, response) = generate(CFG3, &[0, 1, 2, 3, 4], &risks);
    assert_eq!(events.last(), Some(&Push(4)));
    assert_eq!(response.unwrap(), "The cat sat");
    assert_eq!(g.status(), GuardStatus::Paused);
}

#[test]
fn finishing_with_unjudged_tokens_is_an_error() {
    let log = Log::default();
    let mut stream = logging_stream(&log);
    for id in [0, 1, 2, 3] {
        stream.push(id).unwrap();
    }
    stream.release(3).unwrap();
    let err = stream.finish().unwrap_err().to_string();
    assert!(
        err.contains("1 generated tokens were never judged"),
        "{err}"
    );
    assert_eq!(*log.borrow(), [emit("The cat sat")]);
}

#[test]
fn split_emoji_is_emitted_only_when_complete() {
    let cfg = GuardConfig {
        probe_every_n_tokens: 1,
        ..CFG3
    };
    let (events, _, response) = generate(cfg, &[0, 7, 8, 9], &[0.1; 4]);
    let want = [
        Push(0),
        emit("The"),
        Push(7),
        Push(8),
        emit("😀"),
        Push(9),
        emit(" ok"),
    ];
    assert_eq!(events, want);
    assert_eq!(response.unwrap(), "The😀 ok");
}

#[test]
fn emoji_split_across_a_paused_window_never_leaks_a_byte() {
    let cfg = GuardConfig {
        probe_every_n_tokens: 2,
        ..CFG3
    };
    // Window [The, F0 9F] is released; window [98 80, ok] pauses.
    let (events, _, response) = generate(cfg, &[0, 7, 8, 9], &[0.1, 0.1, 0.1, 0.9]);
    assert_eq!(events, [Push(0), Push(7), emit("The"), Push(8), Push(9)]);
    assert_eq!(response.unwrap(), "The");
}

#[test]
fn release_is_bounded_by_what_was_judged() {
    let log = Log::default();
    let mut stream = logging_stream(&log);
    for id in [0, 1, 2] {
        stream.push(id).unwrap();
    }
    assert_eq!(stream.release(2).unwrap(), "The cat");
    assert_eq!((stream.held_tokens(), stream.released_tokens()), (1, 2));
    assert_eq!(stream.release(1).unwrap(), "", "already released: a no-op");
    assert!(stream.release(4).is_err(), "only 3 tokens exist");
    assert_eq!(stream.withhold(), 1);
    assert!(stream.is_withheld());
    assert!(stream.push(3).is_err());
    assert!(stream.release(3).is_err());
    assert_eq!(stream.partial_response(), "The cat");
    assert_eq!((stream.pushed_tokens(), stream.held_tokens()), (3, 0));
    assert_eq!(*log.borrow(), [emit("The cat")]);
}

/// The time a slow sink takes is counted as delivery, apart from the guard's own time.
#[test]
fn time_inside_the_sink_is_counted_apart() {
    let slow = |_: &str| std::thread::sleep(std::time::Duration::from_millis(20));
    let mut stream = HeldStream::new(ByteDecoder::default(), slow);
    for id in [0, 1] {
        stream.push(id).unwrap();
    }
    assert_eq!(stream.emit_time(), std::time::Duration::ZERO);
    stream.release(1).unwrap();
    let once = stream.emit_time();
    assert!(once >= std::time::Duration::from_millis(20), "{once:?}");
    stream.release(1).unwrap(); // nothing new: the sink is not called
    assert_eq!(stream.emit_time(), once);
    stream.release(2).unwrap();
    assert!(stream.emit_time() >= once + std::time::Duration::from_millis(20));
}

#[test]
fn write_sink_streams_into_a_writer() {
    let mut stream = HeldStream::new(ByteDecoder::default(), WriteSink(Vec::new()));
    for id in [0, 7, 8] {
        stream.push(id).unwrap();
    }
    stream.release(2).unwrap();
    assert_eq!(stream.sink().0, b"The");
    stream.release(3).unwrap();
    assert_eq!(String::from_utf8(stream.sink().0.clone()).unwrap(), "The😀");
}

#[test]
fn decoder_errors_surface_from_push() {
    let mut stream = HeldStream::new(ByteDecoder::default(), |_: &str| {});
    assert!(stream.push(99).is_err());
}

/// tokenizers' `DecodeStream` behind a byte-fallback BPE (as in Gemma's tokenizer) built in memory.
#[test]
fn tokenizers_decode_stream_holds_back_incomplete_utf8() {
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::models::bpe::BPE;
    use tokenizers::Tokenizer;
    let vocab = [
        ("<0xF0>", 0),
        ("<0x9F>", 1),
        ("<0x98>", 2),
        ("<0x80>", 3),
        ("hi", 4),
    ];
    let vocab = vocab.map(|(t, id)| (t.to_owned(), id));
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .byte_fallback(true)
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(ByteFallback::default()));

    let log = Log::default();
    let sink_log = Rc::clone(&log);
    let sink = move |text: &str| sink_log.borrow_mut().push(emit(text));
    let mut stream = HeldStream::new(tokenizer.decode_stream(true), sink);
    for (n, id) in [4, 0, 1, 2, 3, 4].into_iter().enumerate() {
        stream.push(id).unwrap();
        stream.release(n + 1).unwrap();
    }
    assert_eq!(*log.borrow(), [emit("hi"), emit("😀"), emit("hi")]);
    assert_eq!(stream.finish().unwrap(), "hi😀hi");
}
