//! Prompt lists for batched generation and benchmarks, the one reader for every `--prompts-file`:
//! JSONL objects with a `prompt` string (`.jsonl`), a CSV with a `prompt` column (`.csv`, e.g.
//! XSTest's `xstest_prompts.csv`), or plain text with one prompt per line. Other fields of a
//! record (`id`, `label`, `type`, ...) are kept, so results can be matched back to their source.

use super::io::{for_each_json_line, open_input, CsvInput};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::Path;

/// One prompt and the other fields of its record (empty for plain text).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLine {
    /// 1-based line of the file the prompt starts on.
    pub line: usize,
    pub prompt: String,
    pub fields: Map<String, Value>,
}

/// Reads every prompt of `path`; blank prompts and a file without any are errors naming the
/// file and line.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptLine>> {
    if path.is_dir() {
        return Err(Error::Argument(format!(
            "{} is a directory: pass a prompts file (.jsonl, .csv or one prompt per line)",
            path.display()
        )));
    }
    let name = path.to_string_lossy();
    let prompts = if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
        read_jsonl(path)?
    } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        read_csv(path)?
    } else {
        read_text(path)?
    };
    if prompts.is_empty() {
        return Err(Error::data(path, 1, "prompt", "the file holds no prompts"));
    }
    Ok(prompts)
}

fn read_jsonl(path: &Path) -> Result<Vec<PromptLine>> {
    let mut out = Vec::new();
    for_each_json_line(open_input(path)?, path, |line, parsed| {
        let mut fields = parsed?;
        let prompt = match fields.remove("prompt") {
            Some(Value::String(p)) => p,
            Some(_) => return Err(Error::data(path, line, "prompt", "not a string")),
            None => return Err(Error::data(path, line, "prompt", "missing")),
        };
        out.push(checked(path, line, prompt, fields)?);
        Ok(())
    })?;
    Ok(out)
}

fn read_csv(path: &Path) -> Result<Vec<PromptLine>> {
    let mut csv = CsvInput::open(path)?;
    let prompt_col = csv.column("prompt")?;
    let headers: Vec<String> = csv
        .reader
        .headers()
        .map(|h| h.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for row in csv.records()? {
        let prompt = row.get(path, prompt_col, "prompt")?.to_string();
        let mut fields = Map::new();
        for (i, h) in headers.iter().enumerate() {
            if i != prompt_col {
                if let Ok(v) = row.get(path, i, h) {
                    fields.insert(h.clone(), Value::String(v.to_string()));
                }
            }
        }
        out.push(checked(path, row.line, prompt, fields)?);
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<Vec<PromptLine>> {
    let mut out = Vec::new();
    for (i, line) in open_input(path)?.lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if !line.trim().is_empty() {
            out.push(PromptLine {
                line: i + 1,
                prompt: line,
                fields: Map::new(),
            });
        }
    }
    Ok(out)
}

fn checked(
    path: &Path,
    line: usize,
    prompt: String,
    fields: Map<String, Value>,
) -> Result<PromptLine> {
    if prompt.trim().is_empty() {
        return Err(Error::data(path, line, "prompt", "empty prompt"));
    }
    Ok(PromptLine {
        line,
        prompt,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_jsonl_csv_and_text_keeping_the_other_fields() {
        let (_d, p) = file(
            "p.jsonl",
            "{\"id\": 7, \"prompt\": \"Hi\"}\n\n{\"prompt\": \"Yo\"}\n",
        );
        let got = read_prompts(&p).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].prompt.as_str(), got[0].fields["id"].clone()),
            ("Hi", 7.into())
        );
        assert_eq!(got[1].line, 3);
        let (_d, p) = file(
            "x.csv",
            "id,prompt,label\n1,\"How, then?\",safe\n2,Why,unsafe\n",
        );
        let got = read_prompts(&p).unwrap();
        assert_eq!(got[0].prompt, "How, then?");
        assert_eq!(got[1].fields["label"], "unsafe");
        let (_d, p) = file("p.txt", "one\n\n two \n");
        let got = read_prompts(&p).unwrap();
        assert_eq!(
            got.iter().map(|p| p.prompt.as_str()).collect::<Vec<_>>(),
            ["one", " two "]
        );
    }

    #[test]
    fn bad_files_name_the_line_and_field() {
        let cases = [
            (
                "a.jsonl",
                "{\"prompt\": \"ok\"}\n{\"text\": \"x\"}\n",
                ":2: field `prompt`",
            ),
            ("b.jsonl", "[1]\n", ":1: field"),
            ("c.jsonl", "{\"prompt\": 3}\n", "not a string"),
            ("d.csv", "id,text\n1,x\n", "missing column"),
            (
                "e.csv",
                "prompt\n\"  \"\n",
                ":2: field `prompt`: empty prompt",
            ),
            ("f.txt", "\n\n", "holds no prompts"),
        ];
        for (name, text, want) in cases {
            let (_d, p) = file(name, text);
            let e = read_prompts(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e = read_prompts(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
