//! The training schema: the prepared record written by `prepare-data` (the seed's nine fields plus
//! `source`), the lighter `Example` every training command reads, and the small shared helpers
//! (content hash, snake_case topics) that make ids and topics stable across runs.

use serde::{Deserialize, Serialize};

/// Version tag of the preparation rules; bump it when a rule changes what a record looks like.
pub const PREPARE_VERSION: &str = "oc-prepare-1";

/// The fields of a prepared record, in output order.
pub const RECORD_FIELDS: [&str; 10] = [
    "id",
    "prompt",
    "response",
    "label",
    "split",
    "topic",
    "prompt_intent",
    "response_behavior",
    "dataset_version",
    "source",
];

/// Topic used when a source gives no usable category.
pub const UNCATEGORIZED: &str = "uncategorized";

/// Which part of the data a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    /// All splits, from most trained-on to most held out.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The schema spelling (`train`, `validation`, `test`).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    /// Parses a split name; `val`, `valid` and `dev` are accepted for `validation` because
    /// published datasets spell it all of these ways.
    pub fn parse(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "validation" | "val" | "valid" | "dev" => Some(Split::Validation),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the prompt asks for something harmful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptIntent {
    Benign,
    Harmful,
    Unknown,
}

impl PromptIntent {
    /// The schema spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptIntent::Benign => "benign",
            PromptIntent::Harmful => "harmful",
            PromptIntent::Unknown => "unknown",
        }
    }

    /// Parses the schema spelling.
    pub fn parse(name: &str) -> Option<PromptIntent> {
        [Self::Benign, Self::Harmful, Self::Unknown]
            .into_iter()
            .find(|v| v.as_str() == name)
    }
}

/// What the response does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseBehavior {
    SafeAnswer,
    Refusal,
    UnsafeCompliance,
}

impl ResponseBehavior {
    /// The schema spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseBehavior::SafeAnswer => "safe_answer",
            ResponseBehavior::Refusal => "refusal",
            ResponseBehavior::UnsafeCompliance => "unsafe_compliance",
        }
    }

    /// Parses the schema spelling.
    pub fn parse(name: &str) -> Option<ResponseBehavior> {
        [Self::SafeAnswer, Self::Refusal, Self::UnsafeCompliance]
            .into_iter()
            .find(|v| v.as_str() == name)
    }
}

/// One prepared record, as `prepare-data` writes it (field order is the output order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub prompt: String,
    pub response: String,
    /// 0 = safe assistant behaviour (including refusals), 1 = unsafe assistant behaviour.
    pub label: u8,
    pub split: Split,
    pub topic: String,
    pub prompt_intent: PromptIntent,
    pub response_behavior: ResponseBehavior,
    pub dataset_version: String,
    pub source: String,
}

/// One training example as the training commands read it: only what they need, with the optional
/// schema fields left `None` when a file does not carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub prompt: String,
    pub response: String,
    pub label: u8,
    pub split: Option<Split>,
    pub topic: Option<String>,
    pub source: Option<String>,
}

/// First 16 hex digits of sha256(prompt `\x1f` response): the content part of every derived id.
/// The unit separator cannot occur in normal text, so ("a b", "c") and ("a", "b c") differ.
pub fn content_hash(prompt: &str, response: &str) -> String {
    let mut bytes = Vec::with_capacity(prompt.len() + response.len() + 1);
    bytes.extend_from_slice(prompt.as_bytes());
    bytes.push(0x1f);
    bytes.extend_from_slice(response.as_bytes());
    let mut hex = crate::fsutil::sha256_bytes(&bytes);
    hex.truncate(16);
    hex
}

/// Normalizes a topic or category name to snake_case: lowercase, every run of characters that
/// are not letters or digits becomes one `_`, camelCase humps are split. Empty results become
/// [`UNCATEGORIZED`] so a record always has a topic.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_lower = false;
    for ch in name.chars() {
        if ch.is_alphanumeric() {
            if ch.is_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = ch.is_lowercase() || ch.is_numeric();
            out.extend(ch.to_lowercase());
        } else {
            prev_lower = false;
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        UNCATEGORIZED.to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_covers_published_category_names() {
        assert_eq!(
            snake_case("Endangering National Security"),
            "endangering_national_security"
        );
        assert_eq!(snake_case("White-Collar Crime"), "white_collar_crime");
        assert_eq!(
            snake_case("controversial_topics,politics"),
            "controversial_topics_politics"
        );
        assert_eq!(snake_case("selfHarm"), "self_harm");
        assert_eq!(snake_case("  --  "), UNCATEGORIZED);
        assert_eq!(snake_case("contrast_homonyms"), "contrast_homonyms");
    }

    #[test]
    fn content_hash_separates_fields() {
        assert_ne!(content_hash("a b", "c"), content_hash("a", "b c"));
        assert_eq!(content_hash("p", "r").len(), 16);
    }

    #[test]
    fn record_serializes_fields_in_schema_order() {
        let r = Record {
            id: "x".into(),
            prompt: "p".into(),
            response: "r".into(),
            label: 0,
            split: Split::Validation,
            topic: "safe".into(),
            prompt_intent: PromptIntent::Benign,
            response_behavior: ResponseBehavior::SafeAnswer,
            dataset_version: PREPARE_VERSION.into(),
            source: "s".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, RECORD_FIELDS);
        assert_eq!(v["split"], "validation");
        assert_eq!(v["response_behavior"], "safe_answer");
    }

    #[test]
    fn split_aliases() {
        assert_eq!(Split::parse("dev"), Some(Split::Validation));
        assert_eq!(Split::parse(" Test "), Some(Split::Test));
        assert_eq!(Split::parse("holdout"), None);
    }
}
