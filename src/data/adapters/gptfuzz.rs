//! GPTFuzz labelled responses: `question,Response,label` where `question` indexes the
//! `index,text` question list (found beside the CSV as `question_list.csv`, or given explicitly).
//! The jailbreak templates were not published with the responses, so the prompt is the bare
//! question; every question is harmful by construction of the benchmark.

use super::{AdapterOptions, Collector, Draft, SourceKind};
use crate::data::io::{CsvInput, CsvRow};
use crate::data::schema::PromptIntent;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Topic of every GPTFuzz record: the responses answer jailbreak attempts.
pub const TOPIC: &str = "jailbreak";

/// Reads one GPTFuzz responses CSV.
pub fn load(file: &Path, opts: &AdapterOptions, c: &mut Collector) -> Result<()> {
    let questions_path = opts
        .gptfuzz_questions
        .clone()
        .unwrap_or_else(|| file.with_file_name("question_list.csv"));
    let questions = if questions_path.is_file() {
        Some(load_questions(&questions_path)?)
    } else {
        None
    };
    let mut csv = CsvInput::open(file)?;
    let cols = [
        csv.column("question")?,
        csv.column("Response")?,
        csv.column("label")?,
    ];
    for row in csv.records()? {
        let result = row_draft(file, &row, cols, questions.as_ref(), &questions_path);
        if let Err(e @ Error::Prepare(_)) = result {
            return Err(e);
        }
        c.row(result)?;
    }
    Ok(())
}

fn row_draft(
    file: &Path,
    row: &CsvRow,
    [q, r, l]: [usize; 3],
    questions: Option<&HashMap<String, String>>,
    questions_path: &Path,
) -> Result<Vec<Draft>> {
    let question = row.get(file, q, "question")?.trim();
    let response = row.get(file, r, "Response")?;
    let label = row.label(file, l, "label")?;
    // Published files index the question list; a file that carries the text itself also works.
    let prompt = if question.parse::<u64>().is_ok() {
        let Some(map) = questions else {
            return Err(Error::Prepare(format!(
                "{}: `question` holds indices but {} does not exist; pass --gptfuzz-questions",
                file.display(),
                questions_path.display()
            )));
        };
        map.get(question).ok_or_else(|| {
            let msg = format!(
                "question index {question} is not in {}",
                questions_path.display()
            );
            Error::data(file, row.line, "question", msg)
        })?
    } else {
        question
    };
    let mut d = Draft::new(SourceKind::GptFuzz, prompt, response, label);
    d.topic = TOPIC.to_string();
    d.intent = Some(PromptIntent::Harmful);
    Ok(vec![d])
}

/// Reads `index,text` into a map from the index's text to the question.
fn load_questions(path: &Path) -> Result<HashMap<String, String>> {
    let mut csv = CsvInput::open(path)?;
    let (i, t) = (csv.column("index")?, csv.column("text")?);
    let mut map = HashMap::new();
    for row in csv.records()? {
        let index = row.get(path, i, "index")?.trim().to_string();
        let text = row.get(path, t, "text")?.to_string();
        if map.insert(index.clone(), text).is_some() {
            let msg = format!("duplicate question index {index}");
            return Err(Error::data(path, row.line, "index", msg));
        }
    }
    Ok(map)
}
