//! From text to token ids: finding and loading an exported model's files ([`ModelFiles`], and
//! [`Model`] with its decoder), its [`ChatTemplate`], rendering prompts and exchanges with the
//! spans of their parts ([`prompt`]) and tokenizing them with control-token text neutralized
//! ([`TextEncoder`]).

pub(crate) mod locate;
pub(crate) mod message_texts;
pub mod model;
pub mod prompt;
pub(crate) mod template;
pub(crate) mod tokenize;

pub use model::{Model, ModelFiles};
pub use template::ChatTemplate;
pub use tokenize::{Encoded, TextEncoder};
