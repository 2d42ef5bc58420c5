//! The IoBinding paths (the ones CUDA uses) run on CPU: decode steps give identical logits,
//! hidden states and tokens to plain runs on every tiny model (fp32 and fp16), `present.*` stay
//! where the device allocates, no code path copies the KV cache through host buffers, and
//! extraction pooled on the device equals pooling on the host.

mod common;

use common::*;
use open_constitution::extract::{forward_pooled, PreparedRow};
use open_constitution::guard::generate::{
    generate_batch, GenerateOptions, GenerationResult, OnPause,
};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::runtime::{DecodeState, StepOutput};
use open_constitution::store::Pooling;
use open_constitution::text::model::Model;
use ort::value::DynTensorValueType;

/// Every tiny model, plus the fp16 export of tiny-gemma3.
const MODELS: [&str; 4] = [
    "tiny-gemma4",
    "tiny-gemma3",
    "tiny-qwen3",
    "tiny-gemma3-fp16",
];

fn logits_and_hidden(out: &StepOutput, hidden_size: usize) -> (Vec<f32>, Vec<f32>) {
    let l = out.logits().unwrap().into_owned();
    let h = out.hidden(0, hidden_size).unwrap().into_owned();
    (l, h)
}

/// Prefill two left-padded prompts, then `steps` decode steps feeding fixed tokens; returns the
/// logits and hidden state of every call.
fn decode(model: &mut Model, bound: bool, steps: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let prompts: [&[u32]; 2] = [&[2, 10, 11, 12, 13, 14, 15], &[2, 20, 21, 22]];
    let layer = vec![model.files.manifest.num_layers / 2];
    let hidden_size = model.files.manifest.hidden_size;
    let d = &mut model.decoder;
    d.set_io_binding(bound);
    let (mut state, out) = DecodeState::prefill(d, &prompts, &layer).unwrap();
    let mut seen = vec![logits_and_hidden(&out, hidden_size)];
    for step in 0..steps {
        let next = [7 + step as u32 * 13 % 200, 9 + step as u32 * 7 % 200];
        if bound {
            let device = d.kv_memory().unwrap();
            for v in state.cache().unwrap().values() {
                let t = v.view().downcast::<DynTensorValueType>().unwrap();
                assert_eq!(
                    t.memory_info().allocation_device(),
                    device.allocation_device()
                );
            }
        }
        let out = state.step(d, &next, &layer).unwrap();
        seen.push(logits_and_hidden(&out, hidden_size));
    }
    seen
}

#[test]
fn bound_decode_steps_equal_plain_steps_on_every_tiny_model() {
    for name in MODELS {
        let mut model = load(name, true);
        // Past the sliding window (16) of the Gemma models.
        let plain = decode(&mut model, false, 20);
        let bound = decode(&mut model, true, 20);
        for (i, ((pl, ph), (bl, bh))) in plain.iter().zip(&bound).enumerate() {
            let dl = max_scaled_diff(bl, pl);
            let dh = max_scaled_diff(bh, ph);
            assert!(
                dl <= 1e-6 && dh <= 1e-6,
                "{name} call {i}: logits {dl:e}, hidden {dh:e}"
            );
        }
    }
}

fn generate(model: &mut Model, bound: bool) -> Vec<GenerationResult> {
    model.decoder.set_io_binding(bound);
    let prompts: Vec<String> = [
        "Tell me a short story.",
        "Hi",
        "What is the capital of France?",
    ]
    .map(String::from)
    .to_vec();
    let opts = GenerateOptions {
        max_new_tokens: 24,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        ignore_eos: false,
        keep_withheld: false,
    };
    let sinks = prompts
        .iter()
        .map(|_| Box::new(|_: &str| {}) as Box<dyn FnMut(&str)>)
        .collect();
    generate_batch(model, &prompts, None, &opts, sinks).unwrap()
}

#[test]
fn bound_generation_gives_the_same_tokens_as_plain_generation() {
    for name in MODELS {
        let mut model = load(name, true);
        let plain = generate(&mut model, false);
        let bound = generate(&mut model, true);
        for (p, b) in plain.iter().zip(&bound) {
            assert_eq!(p.token_ids, b.token_ids, "{name}: {:?}", p.prompt);
            assert_eq!(p.status, b.status);
        }
    }
}

#[test]
fn device_pooling_equals_host_pooling_on_every_tiny_model() {
    for name in MODELS {
        let mut model = load(name, true);
        let n = model.files.manifest.num_layers;
        let layers: Vec<usize> = vec![0, n / 2, n];
        // Mixed lengths in one right-padded batch, responses in the middle of each row.
        let rows: Vec<PreparedRow> = [9usize, 30, 4, 17]
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let ids: Vec<u32> = (0..len as u32)
                    .map(|t| 2 + (t * 7 + k as u32 * 5) % 300)
                    .collect();
                prepared_row(ids, len / 3..len - 1)
            })
            .collect();
        let refs: Vec<&PreparedRow> = rows.iter().collect();
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Token] {
            model.decoder.set_io_binding(false);
            let host = forward_pooled(&mut model.decoder, &refs, &layers, pooling, 0).unwrap();
            model.decoder.set_io_binding(true);
            let device = forward_pooled(&mut model.decoder, &refs, &layers, pooling, 0).unwrap();
            for (l, (h, d)) in host.iter().zip(&device).enumerate() {
                assert_eq!(h.dim(), d.dim());
                assert!(
                    d.iter().all(|x| x.is_finite()),
                    "{name}: non-finite pooled value"
                );
                let diff = max_scaled_diff(d.as_slice().unwrap(), h.as_slice().unwrap());
                let tol = if pooling == Pooling::Last { 0.0 } else { 1e-6 };
                assert!(
                    diff <= tol,
                    "{name} {pooling:?} layer {}: {diff:e}",
                    layers[l]
                );
            }
        }
    }
}

#[test]
fn io_binding_is_off_on_cpu_unless_asked() {
    let model = load("tiny-qwen3", true);
    assert!(!model.decoder.uses_io_binding(), "auto means off on CPU");
    let opts = open_constitution::runtime::RuntimeOptions {
        threads: 1,
        io_binding: open_constitution::runtime::IoBindingMode::On,
        ..Default::default()
    };
    let model = Model::load(model_dir("tiny-qwen3").to_str().unwrap(), true, &opts).unwrap();
    assert!(model.decoder.uses_io_binding());
}

/// Structural: the cache code moves ONNX values and never reads them into host buffers. The
/// whole of kv_cache.rs is cache code; elsewhere, the lines that handle `past`/`present`/cache
/// values. (kv_cache/reshape.rs copies on purpose: it cuts a cache when rows leave a batch or it
/// rewinds, never in a decode step.)
#[test]
fn kv_cache_code_never_copies_values_through_the_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let banned = [
        "to_owned(",
        "to_vec(",
        "try_extract",
        "extract_tensor",
        "from_array",
        ".clone()",
        "f32_view",
        "float_view",
    ];
    let kv_words = ["past", "present", "cache", "kv"];
    for (file, all_lines) in [
        ("runtime/kv_cache.rs", true),
        ("runtime/decoder/binding.rs", false),
        ("runtime/decoder.rs", false),
        ("runtime/decode_state.rs", false),
        ("guard/generate.rs", false),
        ("guard/generate/batch.rs", false),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| all_lines || kv_words.iter().any(|w| l.contains(w)))
            // Elsewhere `.clone()` on these lines clones names (strings), not values.
            .filter(|l| {
                banned
                    .iter()
                    .any(|b| l.contains(b) && (all_lines || *b != ".clone()"))
            })
            .collect();
        assert!(hits.is_empty(), "{file} copies cache values: {hits:?}");
    }
}
