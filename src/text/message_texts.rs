//! Which strings of a chat message are its *text*, the untrusted part a template prints: the
//! content (a string, or the `text` of list parts), reasoning fields (`reasoning_content`,
//! `reasoning`, which Gemma 4 and Qwen3 templates write into a thinking block) and a tool call's
//! function name and argument strings. Roles, types, ids and keys are structure a template
//! branches on, and stay as they are. `text::locate` replaces these strings with sentinels to
//! find where the template wrote them.

use serde_json::Value as Json;

/// Fields holding a model turn's reasoning, which templates write into a thinking block
/// (Gemma 4 for tool-calling turns, Qwen3): message text like the content.
const REASONING_FIELDS: [&str; 2] = ["reasoning_content", "reasoning"];

/// Every string inside `v` (values, not keys), in order.
fn string_leaves<'a>(v: &'a mut Json, out: &mut Vec<&'a mut String>) {
    match v {
        Json::String(s) => out.push(s),
        Json::Array(items) => items.iter_mut().for_each(|i| string_leaves(i, out)),
        Json::Object(map) => map.values_mut().for_each(|i| string_leaves(i, out)),
        _ => {}
    }
}

/// The texts of a message's tool calls: each function's name and the strings of its arguments
/// (a JSON string, or the string values of an object), which a model writes and templates
/// print.
fn tool_call_texts(calls: &mut Json) -> Vec<&mut String> {
    let mut out = Vec::new();
    for call in calls.as_array_mut().into_iter().flatten() {
        let Some(function) = call.get_mut("function").and_then(Json::as_object_mut) else {
            continue;
        };
        for (key, value) in function.iter_mut() {
            if key == "name" || key == "arguments" {
                string_leaves(value, &mut out);
            }
        }
    }
    out
}

/// Every message text, in order, with its message's role: per message its reasoning fields,
/// its tool calls' texts, then its content (a string, or the `text` of list parts), so that a
/// turn's last text is its content.
pub(crate) fn texts_mut(messages: &mut Json) -> Vec<(String, &mut String)> {
    let mut out = Vec::new();
    let Some(list) = messages.as_array_mut() else {
        return out;
    };
    for m in list {
        let role = m
            .get("role")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let Some(fields) = m.as_object_mut() else {
            continue;
        };
        let (mut content, mut calls) = (None, Vec::new());
        for (key, value) in fields.iter_mut() {
            match (key.as_str(), value) {
                ("content", v) => content = Some(v),
                ("tool_calls", v) => calls = tool_call_texts(v),
                (k, Json::String(s)) if REASONING_FIELDS.contains(&k) => {
                    out.push((role.clone(), s));
                }
                _ => {}
            }
        }
        out.extend(calls.into_iter().map(|s| (role.clone(), s)));
        match content {
            Some(Json::String(s)) => out.push((role, s)),
            Some(Json::Array(parts)) => {
                for p in parts {
                    if let Some(Json::String(s)) = p.get_mut("text") {
                        out.push((role.clone(), s));
                    }
                }
            }
            _ => {}
        }
    }
    out
}
