//! What the model sees: exchanges and generation prompts rendered with the model's chat template
//! (or the plain `User:/Assistant:` format), with the byte span of every message's content in
//! the rendered text, so that tokenization can treat user text as text and never as control
//! tokens, and so that response tokens can be found for pooling. How the spans are found, also
//! for templates that rewrite message text (Gemma 4 drops thinking blocks from model turns), is
//! explained in `text::locate`.

use crate::error::{Error, Result};
use crate::text::locate::{locate, Request};
use crate::text::template::ChatTemplate;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::ops::Range;

/// Rendered text plus where untrusted message content sits in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of message contents, in message order: what the template wrote for each
    /// (the text itself, trimmed, or rewritten, e.g. without Gemma 4's thinking blocks).
    pub content: Vec<Range<usize>>,
    /// Further ranges where the template writes a message's text again: untrusted like
    /// `content`.
    pub repeats: Vec<Range<usize>>,
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
        repeats: Vec::new(),
        prompt: Some(0),
        add_special_tokens: true,
    }
}

/// Renders `messages` and locates each message text in the output (module `text::locate`: a
/// skeleton rendering with sentinels in place of the texts and, for a template that rewrites a
/// text, one rendering per message).
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
    let req = Request {
        template,
        messages,
        add_generation_prompt,
        extra,
    };
    let text = template.render(messages, add_generation_prompt, extra)?;
    let located = locate(&req, &text)?.ok_or_else(|| {
        Error::Template(format!(
            "{}: cannot locate the message text in the rendered prompt (the template's output \
             for one message depends on another message's text), so user text could not be \
             kept from forging control tokens; render each message from its own text alone, or \
             use --no-chat-template",
            template.source().display()
        ))
    })?;
    let last_of = |role: &str| located.roles.iter().rposition(|r| r == role);
    Ok(Rendered {
        prompt: last_of("user"),
        response: last_of("assistant"),
        text,
        content: located.spans,
        repeats: located.repeats,
        add_special_tokens: false,
    })
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
    fn rewritten_content_is_located_and_cross_message_rewrites_refused() {
        // Gemma 4's official template drops thinking blocks from model turns.
        let strip = "{% for m in messages %}<|turn>{{ m.role }}\n{{ m.content.split('<channel|>')[-1] | trim }}<turn|>\n{% endfor %}";
        let r = chat(strip)
            .exchange("Q", "<|channel>thought\nplan<channel|> Answer ")
            .unwrap();
        assert_eq!(
            r.text,
            "<|turn>user\nQ<turn|>\n<|turn>assistant\nAnswer<turn|>\n"
        );
        assert_eq!(&r.text[r.content[r.response.unwrap()].clone()], "Answer");
        let err = chat(
            "{{ messages[0].content }}{{ messages[1].content if messages[0].content == 'abc' }}",
        )
        .exchange("abc", "def")
        .unwrap_err();
        assert!(err.to_string().contains("cannot locate"), "{err}");
    }
}
