//! From text to token ids: finding and loading an exported model's files ([`model`]), its chat
//! template ([`template`]), rendering prompts and exchanges with the spans of their parts
//! ([`prompt`]) and tokenizing them with control-token text neutralized ([`tokenize`]).

pub mod model;
pub mod prompt;
pub mod template;
pub mod tokenize;

pub use model::{Model, ModelFiles};
