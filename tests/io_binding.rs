//! The IoBinding decode path (the one CUDA uses) run on CPU: identical logits, hidden states and
//! tokens to plain runs on every tiny model (fp32 and fp16), `present.*` left where the device
//! allocates, and no code path that copies the KV cache through host buffers.

mod common;

use common::*;
use open_constitution::batch::{decode_step, left_padded};
use open_constitution::decoder::{f32_view, Outputs, Want};
use open_constitution::generate::{generate_batch, GenerateOptions, GenerationResult, OnPause};
use open_constitution::model::Model;
use open_constitution::sampling::SamplingConfig;
use ort::value::DynTensorValueType;

/// Every tiny model, plus the fp16 export of tiny-gemma3.
const MODELS: [&str; 4] = [
    "tiny-gemma4",
    "tiny-gemma3",
    "tiny-qwen3",
    "tiny-gemma3-fp16",
];

fn logits_and_hidden(out: &Outputs) -> (Vec<f32>, Vec<f32>) {
    let l = f32_view(out.logits.as_ref().unwrap())
        .unwrap()
        .1
        .into_owned();
    let h = f32_view(&out.hidden[0]).unwrap().1.into_owned();
    (l, h)
}

/// Prefill two left-padded prompts, then `steps` decode steps feeding fixed tokens; returns the
/// logits and hidden state of every call.
fn decode(model: &mut Model, bound: bool, steps: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let prompts: [&[u32]; 2] = [&[2, 10, 11, 12, 13, 14, 15], &[2, 20, 21, 22]];
    let layer = model.files.manifest.num_layers / 2;
    let want = Want {
        logits: true,
        hidden: vec![layer],
        present: true,
    };
    let inputs = left_padded(&prompts, 0);
    let mut mask = inputs.attention_mask.clone();
    let d = &mut model.decoder;
    d.set_io_binding(bound);
    let cache = d.empty_cache(2).unwrap();
    let mut out = d.run_step(inputs, cache, &want).unwrap();
    let mut seen = vec![logits_and_hidden(&out)];
    for step in 0..steps {
        let next = [7 + step as u32 * 13 % 200, 9 + step as u32 * 7 % 200];
        let s = decode_step(&next, &mask);
        mask = s.attention_mask.clone();
        let cache = out.present.take().unwrap();
        if bound {
            let device = d.kv_memory().unwrap();
            for v in cache.values() {
                let t = v.view().downcast::<DynTensorValueType>().unwrap();
                assert_eq!(
                    t.memory_info().allocation_device(),
                    device.allocation_device()
                );
            }
        }
        out = d.run_step(s, cache, &want).unwrap();
        seen.push(logits_and_hidden(&out));
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

/// Structural: the cache code moves ONNX values and never reads them into host buffers.
#[test]
fn kv_cache_code_never_copies_values_through_the_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["kv_cache.rs", "decoder/binding.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for banned in [
            "to_owned(",
            "to_vec(",
            "try_extract",
            "extract_tensor",
            "from_array",
            ".clone()",
            "f32_view",
            "float_view",
        ] {
            let hits: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//") && l.contains(banned))
                .collect();
            assert!(hits.is_empty(), "{file} uses `{banned}`: {hits:?}");
        }
    }
    let decoder = std::fs::read_to_string(root.join("decoder.rs")).unwrap();
    for line in decoder
        .lines()
        .filter(|l| l.contains("past") || l.contains("present"))
    {
        assert!(
            !line.contains("to_owned") && !line.contains("extract"),
            "decoder.rs copies the cache: {line}"
        );
    }
}
