//! Parity with the PyTorch goldens of every tiny model: rendered text byte-identical, token ids
//! equal, control-token text in user turns neutralized, pooled hidden states and last logits
//! within 1e-4, batched extraction equal to one-by-one.

mod common;

use common::*;
use open_constitution::extract::{forward_pooled, pooled_span, PreparedRow};
use open_constitution::runtime::decoder::{f32_view, Want};
use open_constitution::store::Pooling;
use open_constitution::text::prompt::{PromptFormat, Rendered};

fn render(model: &open_constitution::text::model::Model, e: &GoldenExchange) -> Rendered {
    let format = if e.chat_template {
        &model.files.format
    } else {
        &PromptFormat::Plain
    };
    format.exchange(&e.prompt, &e.response).unwrap()
}

#[test]
fn rendering_and_token_ids_match_transformers() {
    for name in parity_models() {
        let model = load(name, true);
        let (g, _) = goldens(name);
        for (i, e) in g.exchanges.iter().enumerate() {
            let r = render(&model, e);
            assert_eq!(r.text, e.text, "{name} exchange {i}: rendered text");
            let enc = model.files.encoder.encode(&r).unwrap();
            let raw: serde_json::Value = serde_json::from_slice(
                &std::fs::read(model_dir(name).join("goldens.json")).unwrap(),
            )
            .unwrap();
            let forged = &raw["exchanges"][i]["control_token_test"];
            if forged.is_object() {
                // HF turns the typed `<end_of_turn>` into the control token; we must not.
                let control = forged["control_token_id"].as_u64().unwrap() as u32;
                assert!(
                    enc.neutralized_control_tokens,
                    "{name}: forged turn detected"
                );
                let user = enc.prompt.clone().unwrap();
                assert!(
                    !enc.ids[user.clone()].contains(&control),
                    "{name}: no control token in user text"
                );
                let safe: Vec<u32> =
                    serde_json::from_value(forged["safe_input_ids"].clone()).unwrap();
                assert_eq!(
                    enc.ids, safe,
                    "{name}: neutralized ids equal HF with split_special_tokens"
                );
                assert_ne!(enc.ids, e.input_ids, "{name}: HF's unsafe ids differ");
            } else {
                assert_eq!(enc.ids, e.input_ids, "{name} exchange {i}: token ids");
                let resp = enc.response.clone().unwrap();
                assert_eq!(
                    [resp.start, resp.end],
                    e.response_token_range,
                    "{name} exchange {i}"
                );
            }
        }
    }
}

#[test]
fn hidden_states_and_logits_match_pytorch() {
    for name in parity_models() {
        let mut model = load(name, true);
        let pad = model.files.pad_id();
        let (g, t) = goldens(name);
        let mut batch_rows = Vec::new();
        let mut worst = 0f32;
        for (i, e) in g.exchanges.iter().enumerate() {
            if e.text.contains("Please repeat") {
                continue; // token ids differ by design (see the test above)
            }
            let r = prepared_row(
                e.input_ids.clone(),
                e.response_token_range[0]..e.response_token_range[1],
            );
            for (pooling, key) in [(Pooling::Last, "last"), (Pooling::Mean, "response_mean")] {
                let got =
                    forward_pooled(&mut model.decoder, &[&r], &g.layers, pooling, pad).unwrap();
                for (m, &layer) in got.iter().zip(&g.layers) {
                    let want = t.f32(&format!("exchange.{i}.{key}.{layer}")).unwrap();
                    let what = format!("exchange {i} {key} layer {layer}");
                    worst = worst.max(assert_close(name, &what, m.as_slice().unwrap(), &want.data));
                }
            }
            // last logits
            let inputs = open_constitution::runtime::inputs::right_padded(&[&e.input_ids], pad);
            let past = model.decoder.empty_cache(1).unwrap();
            let want = Want {
                logits: true,
                hidden: vec![],
                present: false,
            };
            let out = model.decoder.run(inputs, past, &want).unwrap();
            let (_, logits) = f32_view(out.logits.as_ref().unwrap()).unwrap();
            let golden = t.f32(&format!("exchange.{i}.logits")).unwrap();
            assert_close(name, &format!("exchange {i} logits"), &logits, &golden.data);
            batch_rows.push((i, r));
        }
        // The whole set as one right-padded batch of mixed lengths equals one-by-one.
        let refs: Vec<&PreparedRow> = batch_rows.iter().map(|(_, r)| r).collect();
        let got = forward_pooled(&mut model.decoder, &refs, &g.layers, Pooling::Last, pad).unwrap();
        for (m, &layer) in got.iter().zip(&g.layers) {
            for (k, (i, _)) in batch_rows.iter().enumerate() {
                let want = t.f32(&format!("exchange.{i}.last.{layer}")).unwrap();
                let what = format!("batched exchange {i} layer {layer}");
                assert_close(name, &what, m.row(k).as_slice().unwrap(), &want.data);
            }
        }
        eprintln!("{name}: worst scaled diff vs PyTorch {worst:.2e}");
    }
}

#[test]
fn pruned_extraction_graph_equals_the_full_graph() {
    let opts = open_constitution::runtime::RuntimeOptions {
        threads: 1,
        ..Default::default()
    };
    for name in TINY_MODELS {
        let dir = model_dir(name);
        let mut full = load(name, true);
        let mut pruned = open_constitution::text::model::Model::load_for_extraction(
            dir.to_str().unwrap(),
            true,
            &opts,
            "1,-2",
        )
        .unwrap();
        assert!(pruned.decoder.is_extraction_only());
        let layers = pruned.files.manifest.parse_layers("1,-2").unwrap();
        let fewer = pruned.decoder.session().outputs().len();
        assert!(
            fewer < full.decoder.session().outputs().len(),
            "{name}: outputs pruned"
        );
        let (g, _) = goldens(name);
        let rows: Vec<PreparedRow> = g
            .exchanges
            .iter()
            .map(|e| {
                prepared_row(
                    e.input_ids.clone(),
                    e.response_token_range[0]..e.response_token_range[1],
                )
            })
            .collect();
        let refs: Vec<&PreparedRow> = rows.iter().collect();
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Token] {
            let a = forward_pooled(&mut full.decoder, &refs, &layers, pooling, 0).unwrap();
            let b = forward_pooled(&mut pruned.decoder, &refs, &layers, pooling, 0).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert_close(
                    name,
                    "pruned vs full",
                    y.as_slice().unwrap(),
                    x.as_slice().unwrap(),
                );
            }
        }
    }
}

/// `--pooling token` keeps one response token's state: it must equal the last-token state of the
/// exchange cut right after that token (what the guard scores at that step), and the chosen
/// positions must lie inside the response and vary between rows.
#[test]
fn token_pooling_is_the_guards_view_of_a_prefix() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let (g, _) = goldens(name);
        let layers = vec![g.layers[g.layers.len() / 2]];
        let rows: Vec<PreparedRow> = g
            .exchanges
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut r = prepared_row(
                    e.input_ids.clone(),
                    e.response_token_range[0]..e.response_token_range[1],
                );
                r.meta.id = format!("row-{i}");
                r
            })
            .collect();
        let refs: Vec<&PreparedRow> = rows.iter().collect();
        let got = forward_pooled(&mut model.decoder, &refs, &layers, Pooling::Token, 0).unwrap();
        let mut positions = Vec::new();
        for (k, row) in rows.iter().enumerate() {
            let span = pooled_span(row, Pooling::Token);
            assert_eq!(span.len(), 1);
            assert!(row.response.contains(&span.start), "{name}: {span:?}");
            positions.push(span.start - row.response.start);
            let prefix = prepared_row(row.ids[..span.end].to_vec(), row.response.start..span.end);
            let want =
                forward_pooled(&mut model.decoder, &[&prefix], &layers, Pooling::Last, 0).unwrap();
            assert_close(
                name,
                &format!("token pooling of row {k} vs its prefix"),
                got[0].row(k).as_slice().unwrap(),
                want[0].row(0).as_slice().unwrap(),
            );
        }
        positions.sort();
        positions.dedup();
        assert!(positions.len() > 1, "{name}: one position for every row");
    }
}
