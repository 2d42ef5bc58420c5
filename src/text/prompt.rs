//! What the model sees: exchanges and generation prompts rendered with the model's chat template
//! (or the plain `User:/Assistant:` format), with the byte span of every message's content in
//! the rendered text, so that tokenization can treat user text as text and never as control
//! tokens, and so that response tokens can be found for pooling.

use crate::error::{Error, Result};
use crate::text::template::ChatTemplate;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::ops::Range;

/// Rendered text plus where untrusted message content sits in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of message contents, in message order.
    pub content: Vec<Range<usize>>,
    /// Index into `content` of the prompt (the last user message), if any.
    pub prompt: Option<usize>,
    /// Index into `content` of the response (the last assistant message), if any.
    pub response: Option<usize>,
    /// Whether the tokenizer should add its own special tokens (plain format: yes; a chat
    /// template writes its own `<bos>`).
    pub add_special_tokens: bool,
}

/// How prompts are formatted.
pub enum PromptFormat {
    Chat(Box<ChatTemplate>),
    /// `User:\n{prompt}\n\nAssistant:\n{response}`.
    Plain,
}

impl PromptFormat {
    pub fn uses_chat_template(&self) -> bool {
        matches!(self, PromptFormat::Chat(_))
    }

    /// A user turn and the assistant's answer, as scored by a probe.
    pub fn exchange(&self, prompt: &str, response: &str) -> Result<Rendered> {
        match self {
            PromptFormat::Plain => Ok(plain(prompt, Some(response))),
            PromptFormat::Chat(t) => {
                let msgs = json!([
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": response}
                ]);
                render_messages(t, &msgs, false, &BTreeMap::new())
            }
        }
    }

    /// A user turn followed by the template's generation prompt.
    pub fn generation_prompt(&self, prompt: &str) -> Result<Rendered> {
        match self {
            PromptFormat::Plain => Ok(plain(prompt, None)),
            PromptFormat::Chat(t) => {
                let msgs = json!([{"role": "user", "content": prompt}]);
                render_messages(t, &msgs, true, &BTreeMap::new())
            }
        }
    }

    /// Arbitrary chat messages (`render --messages`).
    pub fn messages(
        &self,
        messages: &Json,
        add_generation_prompt: bool,
        extra: &BTreeMap<String, Json>,
    ) -> Result<Rendered> {
        match self {
            PromptFormat::Chat(t) => render_messages(t, messages, add_generation_prompt, extra),
            PromptFormat::Plain => Err(Error::Template(
                "--messages needs the model's chat template (drop --no-chat-template)".into(),
            )),
        }
    }
}

fn plain(prompt: &str, response: Option<&str>) -> Rendered {
    let mut text = String::from("User:\n");
    let p = text.len()..text.len() + prompt.len();
    text.push_str(prompt);
    text.push_str("\n\nAssistant:\n");
    let mut content = vec![p];
    if let Some(r) = response {
        content.push(text.len()..text.len() + r.len());
        text.push_str(r);
    }
    Rendered {
        text,
        response: response.map(|_| 1),
        content,
        prompt: Some(0),
        add_special_tokens: true,
    }
}

fn sentinel(k: usize) -> String {
    format!("\u{E000}oc{k}\u{E001}")
}

/// Calls `f` on every message content string (plain content or `text` of list parts), in order.
fn for_each_content(messages: &mut Json, mut f: impl FnMut(&mut String, &str)) {
    let Some(list) = messages.as_array_mut() else {
        return;
    };
    for m in list {
        let role = m
            .get("role")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        match m.get_mut("content") {
            Some(Json::String(s)) => f(s, &role),
            Some(Json::Array(parts)) => {
                for p in parts {
                    if let Some(Json::String(s)) = p.get_mut("text") {
                        f(s, &role);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Renders `messages` and locates each content string in the output by rendering once more with
/// sentinels in place of the contents and aligning the two renderings.
pub fn render_messages(
    template: &ChatTemplate,
    messages: &Json,
    add_generation_prompt: bool,
    extra: &BTreeMap<String, Json>,
) -> Result<Rendered> {
    if messages.as_array().is_some_and(|m| m.is_empty()) {
        // As transformers' apply_chat_template: a template may render something for no
        // messages (a bare generation prompt), but it is not a conversation.
        return Err(Error::Template(
            "cannot apply the chat template to an empty conversation: give at least one message"
                .into(),
        ));
    }
    let text = template.render(messages, add_generation_prompt, extra)?;
    let mut contents: Vec<(String, String)> = Vec::new();
    let mut skeleton_msgs = messages.clone();
    for_each_content(&mut skeleton_msgs, |s, role| {
        let original = std::mem::replace(s, sentinel(contents.len()));
        contents.push((original, role.to_string()));
    });
    let skeleton = template.render(&skeleton_msgs, add_generation_prompt, extra)?;
    let spans = align(&skeleton, &text, &contents).ok_or_else(|| {
        Error::Template(format!(
            "{}: cannot locate the message text in the rendered prompt (the template rewrites \
             message content), so user text could not be kept from forging control tokens",
            template.source().display()
        ))
    })?;
    let last_of = |role: &str| contents.iter().rposition(|(_, r)| r == role);
    let content: Vec<Range<usize>> = spans;
    let prompt = last_of("user");
    let response = last_of("assistant");
    Ok(Rendered {
        text,
        content,
        prompt,
        response,
        add_special_tokens: false,
    })
}

enum Piece<'a> {
    Literal(&'a str),
    Slot(usize),
}

fn pieces(skeleton: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = skeleton;
    while let Some(start) = rest.find('\u{E000}') {
        let after = &rest[start + '\u{E000}'.len_utf8()..];
        let Some(end) = after.find('\u{E001}') else {
            break;
        };
        let Some(k) = after[..end].strip_prefix("oc").and_then(|n| n.parse().ok()) else {
            break;
        };
        out.push(Piece::Literal(&rest[..start]));
        out.push(Piece::Slot(k));
        rest = &after[end + '\u{E001}'.len_utf8()..];
    }
    out.push(Piece::Literal(rest));
    out
}

/// Aligns the real rendering with the skeleton; each slot matches its content verbatim or
/// whitespace-trimmed (templates commonly `| trim` content). Returns spans in content order.
fn align(skeleton: &str, text: &str, contents: &[(String, String)]) -> Option<Vec<Range<usize>>> {
    let pieces = pieces(skeleton);
    let mut spans: Vec<Option<Range<usize>>> = vec![None; contents.len()];
    let mut pos = 0;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Literal(lit) => {
                if !text[pos..].starts_with(lit) {
                    return None;
                }
                pos += lit.len();
            }
            Piece::Slot(k) => {
                let c = &contents.get(*k)?.0;
                let next = match pieces.get(i + 1) {
                    Some(Piece::Literal(l)) => *l,
                    _ => "",
                };
                let cand = [c.as_str(), c.trim(), c.trim_start(), c.trim_end()]
                    .into_iter()
                    .find(|cand| {
                        text[pos..].starts_with(cand) && text[pos + cand.len()..].starts_with(next)
                    })?;
                spans[*k] = Some(pos..pos + cand.len());
                pos += cand.len();
            }
        }
    }
    if pos != text.len() {
        return None;
    }
    // A content the template dropped (unused) gets an empty span at the end.
    Some(
        spans
            .into_iter()
            .map(|s| s.unwrap_or(text.len()..text.len()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(src: &str) -> PromptFormat {
        let t = ChatTemplate::from_source(
            src.into(),
            "t.jinja".into(),
            BTreeMap::from([("bos_token".to_string(), "<bos>".to_string())]),
        )
        .unwrap();
        PromptFormat::Chat(Box::new(t))
    }

    const GEMMA3ISH: &str = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

    #[test]
    fn spans_point_at_the_content() {
        let r = chat(GEMMA3ISH).exchange("  Hi user ", "Answer.\n").unwrap();
        assert_eq!(
            r.text,
            "<bos><start_of_turn>user\nHi user<end_of_turn>\n<start_of_turn>model\nAnswer.<end_of_turn>\n"
        );
        assert_eq!(&r.text[r.content[0].clone()], "Hi user");
        assert_eq!(&r.text[r.content[r.response.unwrap()].clone()], "Answer.");
        assert!(!r.add_special_tokens);
    }

    #[test]
    fn content_equal_to_template_text_is_still_located() {
        let r = chat(GEMMA3ISH).exchange("user", "model").unwrap();
        let p = r.content[0].clone();
        assert_eq!(&r.text[..p.start], "<bos><start_of_turn>user\n");
        assert_eq!(&r.text[p], "user");
    }

    #[test]
    fn generation_prompt_and_plain() {
        let r = chat(GEMMA3ISH).generation_prompt("Q").unwrap();
        assert!(r.text.ends_with("<start_of_turn>model\n"));
        assert_eq!(r.response, None);
        let p = PromptFormat::Plain.exchange("a", "b").unwrap();
        assert_eq!(p.text, "User:\na\n\nAssistant:\nb");
        assert_eq!(&p.text[p.content[1].clone()], "b");
        assert!(p.add_special_tokens);
    }

    #[test]
    fn rewriting_templates_are_refused() {
        let err = chat("{% for m in messages %}{{ m.content | upper }}{% endfor %}")
            .exchange("abc", "def")
            .unwrap_err();
        assert!(err.to_string().contains("cannot locate"), "{err}");
    }
}
