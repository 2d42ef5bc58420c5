//! Chat templates: found as transformers finds them (`chat_template.jinja` first, then
//! `tokenizer_config.json`'s `chat_template`, then `chat_template.json`) and rendered with
//! minijinja set up like transformers' Jinja2 environment (trim/lstrip blocks, Python string
//! methods, `raise_exception`, `strftime_now`, a non-escaping `tojson`, the named special tokens).

use crate::error::{Error, IoContext, Result};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A loaded chat template plus the context transformers passes with it.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: PathBuf,
    /// The template text, for finding the control tokens it writes.
    text: String,
    /// `bos_token`, `eos_token`, ... as strings (transformers' `special_tokens_map`).
    special_tokens: BTreeMap<String, String>,
}

/// Instructions a render may execute: real chat templates use a few thousand per message, so
/// this allows conversations of thousands of turns and stops runaway loops within a second.
pub const TEMPLATE_FUEL: u64 = 50_000_000;

/// Bytes a render may produce: far beyond any model's context (a million tokens is ~4 MB), so
/// only a template that prints without end reaches it.
pub const TEMPLATE_MAX_OUTPUT: usize = 64 << 20;

const NAMED_SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

fn read_json(path: &Path) -> Result<Json> {
    let bytes = std::fs::read(path).at(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Template(format!("{}: invalid JSON: {e}", path.display())))
}

/// A template entry is a string or a list of `{name, template}` (the `default` one is used).
fn template_from_value(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Array(items) => items
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

/// Finds the template source in a model folder, in transformers' order of priority.
pub fn find_template(dir: &Path) -> Result<Option<(String, PathBuf)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return Ok(Some((std::fs::read_to_string(&jinja).at(&jinja)?, jinja)));
    }
    for (file, key) in [
        ("tokenizer_config.json", "chat_template"),
        ("chat_template.json", "chat_template"),
    ] {
        let path = dir.join(file);
        if path.is_file() {
            if let Some(t) = read_json(&path)?.get(key).and_then(template_from_value) {
                return Ok(Some((t, path)));
            }
        }
    }
    Ok(None)
}

/// Named special tokens from `tokenizer_config.json` / `special_tokens_map.json` (strings or
/// `{"content": ...}` objects).
pub fn named_special_tokens(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for file in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let json = read_json(&path)?;
        for name in NAMED_SPECIAL_TOKENS {
            let tok = match json.get(name) {
                Some(Json::String(s)) => Some(s.clone()),
                Some(Json::Object(o)) => {
                    o.get("content").and_then(Json::as_str).map(str::to_string)
                }
                _ => None,
            };
            if let Some(t) = tok {
                out.insert(name.to_string(), t);
            }
        }
    }
    Ok(out)
}

impl ChatTemplate {
    /// Loads the template of a model folder; `None` when it has none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let Some((source, path)) = find_template(dir)? else {
            return Ok(None);
        };
        Self::from_source(source, path, named_special_tokens(dir)?).map(Some)
    }

    /// Compiles template text (from `path`, used in messages).
    pub fn from_source(
        source: String,
        path: PathBuf,
        special_tokens: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid");
        env.set_syntax(syntax);
        // A template is code from a model folder: bound its run time and output so a hostile
        // or broken one fails with an error instead of hanging or exhausting memory.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.clone())
            .map_err(|e| Error::Template(format!("{}: does not compile: {e:#}", path.display())))?;
        Ok(Self {
            env,
            source: path,
            text: source,
            special_tokens,
        })
    }

    /// Where the template came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The template's own text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Renders `messages` (a JSON array of `{role, content}`), as `apply_chat_template(...,
    /// tokenize=False)` does. `extra` holds template kwargs such as `enable_thinking`.
    pub fn render(
        &self,
        messages: &Json,
        add_generation_prompt: bool,
        extra: &BTreeMap<String, Json>,
    ) -> Result<String> {
        let mut ctx: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        // None unless the caller passes them (transformers' defaults), as `extra` may.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        for (k, v) in extra {
            ctx.insert(k.clone(), Value::from(minijinja::value::Serde(v)));
        }
        ctx.insert(
            "messages".into(),
            Value::from(minijinja::value::Serde(messages)),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let tmpl = self.env.get_template("chat").expect("added in from_source");
        let mut out = CappedOutput::default();
        match tmpl.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|e| {
                Error::Template(format!(
                    "{}: output is not UTF-8: {e}",
                    self.source.display()
                ))
            }),
            Err(e) => Err(self.render_error(&e, out.overflowed)),
        }
    }

    /// The error of a failed render, naming the template file and, for the bounds, the cause.
    fn render_error(&self, e: &minijinja::Error, overflowed: bool) -> Error {
        let file = self.source.display();
        if overflowed {
            Error::Template(format!(
                "{file}: rendering produced more than {} MiB; the template prints without end \
                 (fix or replace the model folder's chat template)",
                TEMPLATE_MAX_OUTPUT >> 20
            ))
        } else if e.kind() == ErrorKind::OutOfFuel {
            Error::Template(format!(
                "{file}: rendering ran more than {TEMPLATE_FUEL} template instructions; the \
                 template loops without end (fix or replace the model folder's chat template)"
            ))
        } else if e.kind() == ErrorKind::InvalidOperation && e.detail().is_some() {
            // A `raise_exception` from the template: show its own message.
            Error::Template(format!("{file} raised: {}", e.detail().unwrap_or_default()))
        } else {
            Error::Template(format!("{file}: {e:#}"))
        }
    }
}

/// A render's output buffer that refuses to grow past [`TEMPLATE_MAX_OUTPUT`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > TEMPLATE_MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output cap reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=..., separators=...,
/// sort_keys=...)`, which unlike minijinja's does not HTML-escape.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json: Json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let (item_sep, key_sep) = match &separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = PyJson {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(out)
}

/// Python `json.dumps` formatting.
struct PyJson {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PyJson {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    }

    fn write(&self, v: &Json, depth: usize, out: &mut String) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => out.push_str(&serde_json::to_string(s).expect("string")),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Json::Object(map) if map.is_empty() => out.push_str("{}"),
            Json::Object(map) => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, val)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    out.push_str(&serde_json::to_string(k).expect("string"));
                    out.push_str(&self.key_sep);
                    self.write(val, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmpl(src: &str) -> ChatTemplate {
        let tokens = BTreeMap::from([("bos_token".to_string(), "<bos>".to_string())]);
        ChatTemplate::from_source(src.into(), "t.jinja".into(), tokens).unwrap()
    }

    #[test]
    fn tojson_matches_python_dumps() {
        let t = tmpl("{{ x | tojson }}|{{ x | tojson(indent=2) }}");
        let extra = BTreeMap::from([("x".to_string(), json!({"b": [1, "<&>"], "a": null}))]);
        let out = t.render(&json!([]), false, &extra).unwrap();
        assert_eq!(
            out,
            "{\"b\": [1, \"<&>\"], \"a\": null}|{\n  \"b\": [\n    1,\n    \"<&>\"\n  ],\n  \"a\": null\n}"
        );
    }

    #[test]
    fn raise_exception_shows_the_template_message() {
        let t = tmpl("{{ raise_exception('Conversation roles must alternate') }}");
        let err = t.render(&json!([]), false, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("raised: Conversation roles must alternate"),
            "{err}"
        );
    }

    #[test]
    fn trim_blocks_python_methods_and_special_tokens() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip().upper() }}]\n  {% endif %}\n{% endfor %}";
        let out = tmpl(src)
            .render(
                &json!([{"role": "user", "content": " hi "}]),
                false,
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(out, "<bos>[HI]\n");
    }

    /// Issue 17 item 2: these hung (1e10 loop steps) or aborted on allocation before the bounds.
    #[test]
    fn runaway_templates_fail_fast_naming_the_file() {
        let start = std::time::Instant::now();
        let spin =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let err = tmpl(spin)
            .render(&json!([]), false, &BTreeMap::new())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("t.jinja") && msg.contains("loops without end"),
            "{msg}"
        );
        let flood = "{% set s = 'x' * 100000 %}{% for i in range(100000) %}{{ s }}{% endfor %}";
        let err = tmpl(flood)
            .render(&json!([]), false, &BTreeMap::new())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("t.jinja") && msg.contains("prints without end"),
            "{msg}"
        );
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }

    #[test]
    fn template_priority_follows_transformers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "default", "template": "cfg"}], "bos_token": {"content": "<s>"}}"#,
        )
        .unwrap();
        let (src, _) = find_template(dir.path()).unwrap().unwrap();
        assert_eq!(src, "cfg");
        std::fs::write(dir.path().join("chat_template.jinja"), "file").unwrap();
        let (src, path) = find_template(dir.path()).unwrap().unwrap();
        assert_eq!(
            (src.as_str(), path.file_name().unwrap()),
            ("file", "chat_template.jinja".as_ref())
        );
        assert_eq!(
            named_special_tokens(dir.path()).unwrap()["bos_token"],
            "<s>"
        );
    }
}
