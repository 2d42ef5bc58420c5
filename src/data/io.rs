//! Line-level input shared by the reader and the adapters: plain or gzip files, JSONL lines parsed
//! into objects with file:line errors (bad UTF-8, bad JSON, non-objects), typed field access that
//! names the field, and CSV files with named columns.

use crate::data::schema::Split;
use crate::error::{Error, IoContext, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Field name used in errors about a whole line rather than one field.
pub const RECORD_FIELD: &str = "<record>";

/// Opens a file for reading, decompressing it when its name ends in `.gz`.
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).at(path)?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Calls `f(line_number, parsed)` for every non-blank line of a JSONL stream. `parsed` is the
/// line's JSON object or a [`Error::Data`] saying why it is not one; `f` decides whether that is
/// fatal. Returns the number of blank lines, which are skipped silently. A read error (such as a
/// corrupt gzip stream) is fatal: nothing after it can be trusted.
pub fn for_each_json_line<R, F>(mut reader: R, file: &Path, mut f: F) -> Result<usize>
where
    R: BufRead,
    F: FnMut(usize, Result<Map<String, Value>>) -> Result<()>,
{
    let mut buf = Vec::new();
    let mut line = 0usize;
    let mut blank = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).at(file)? == 0 {
            return Ok(blank);
        }
        line += 1;
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            blank += 1;
            continue;
        }
        f(line, parse_object(bytes, file, line))?;
    }
}

fn parse_object(bytes: &[u8], file: &Path, line: usize) -> Result<Map<String, Value>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        Error::data(
            file,
            line,
            RECORD_FIELD,
            format!("not valid UTF-8 (byte {at} of the line)"),
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::data(
            file,
            line,
            RECORD_FIELD,
            format!("expected a JSON object, found {}", type_name(&other)),
        )),
        Err(e) => Err(Error::data(
            file,
            line,
            RECORD_FIELD,
            format!("not valid JSON: {e}"),
        )),
    }
}

/// The JSON type of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One parsed JSONL object with its location, for field access whose errors name file, line and
/// field.
pub struct Row<'a> {
    pub file: &'a Path,
    pub line: usize,
    pub obj: &'a Map<String, Value>,
}

impl Row<'_> {
    /// A data error about `field` of this row.
    pub fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::data(self.file, self.line, field, message)
    }

    /// The field, treating `null` as absent.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// A required string field.
    pub fn req_str(&self, field: &str) -> Result<&str> {
        self.opt_str(field)?
            .ok_or_else(|| self.err(field, "missing (required string)"))
    }

    /// An optional string field.
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(field, format!("expected a string, found {}", type_name(v)))),
        }
    }

    /// A required non-empty text field (prompt, response): whitespace-only counts as empty.
    pub fn req_text(&self, field: &str) -> Result<&str> {
        let s = self.req_str(field)?;
        if s.trim().is_empty() {
            return Err(self.err(field, "empty text"));
        }
        Ok(s)
    }

    /// A required boolean field.
    pub fn req_bool(&self, field: &str) -> Result<bool> {
        match self.get(field) {
            None => Err(self.err(field, "missing (required boolean)")),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(field, format!("expected a boolean, found {}", type_name(v)))),
        }
    }

    /// A required 0/1 label.
    pub fn label(&self, field: &str) -> Result<u8> {
        match self.get(field) {
            None => Err(self.err(field, "missing (required 0 or 1)")),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v @ (0 | 1)) => Ok(v as u8),
                _ => Err(self.err(field, format!("expected 0 or 1, found {n}"))),
            },
            Some(v) => Err(self.err(field, format!("expected 0 or 1, found {}", type_name(v)))),
        }
    }

    /// An optional split name (`train`, `validation`/`val`/`valid`/`dev`, `test`).
    pub fn opt_split(&self, field: &str) -> Result<Option<Split>> {
        match self.opt_str(field)? {
            None => Ok(None),
            Some(s) => Split::parse(s).map(Some).ok_or_else(|| {
                self.err(
                    field,
                    format!("unknown split `{s}` (expected train, validation or test)"),
                )
            }),
        }
    }

    /// An optional `{category: bool}` object; returns the active categories, sorted.
    pub fn opt_categories(&self, field: &str) -> Result<Vec<String>> {
        let map = match self.get(field) {
            None => return Ok(Vec::new()),
            Some(Value::Object(m)) => m,
            Some(v) => {
                let found = type_name(v);
                return Err(self.err(
                    field,
                    format!("expected an object of category: boolean, found {found}"),
                ));
            }
        };
        let mut active = Vec::new();
        for (name, v) in map {
            match v {
                Value::Bool(true) => active.push(name.clone()),
                Value::Bool(false) | Value::Null => {}
                other => {
                    let found = type_name(other);
                    return Err(self.err(
                        field,
                        format!("category `{name}`: expected a boolean, found {found}"),
                    ));
                }
            }
        }
        active.sort();
        Ok(active)
    }
}

/// A CSV file opened with its header row mapped to column indices.
pub struct CsvInput {
    pub reader: csv::Reader<Box<dyn BufRead>>,
    columns: HashMap<String, usize>,
    file: std::path::PathBuf,
}

impl CsvInput {
    /// Opens a CSV (optionally `.csv.gz`) and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let input: Box<dyn BufRead> = open_input(path)?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let headers = reader.headers().map_err(|e| csv_error(path, 1, e))?;
        let columns = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim_start_matches('\u{feff}').trim().to_string(), i))
            .collect();
        Ok(CsvInput {
            reader,
            columns,
            file: path.to_path_buf(),
        })
    }

    /// The index of a column the format requires.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .get(name)
            .copied()
            .ok_or_else(|| Error::data(&self.file, 1, name, "missing column in the CSV header"))
    }

    /// Reads every record with its line number, stopping at the first unreadable one (a CSV
    /// syntax error leaves the rest of the file ambiguous). Bytes are checked per field later, so
    /// one bad field can be reported, or skipped, on its own.
    pub fn records(&mut self) -> Result<Vec<CsvRow>> {
        let mut out = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            let line = self.reader.position().line() as usize;
            match self.reader.read_byte_record(&mut record) {
                Ok(false) => return Ok(out),
                Ok(true) => {
                    let line = record.position().map_or(line, |p| p.line() as usize);
                    out.push(CsvRow {
                        line,
                        record: record.clone(),
                    });
                }
                Err(e) => return Err(csv_error(&self.file, line, e)),
            }
        }
    }
}

/// One CSV record with the line it starts on.
pub struct CsvRow {
    pub line: usize,
    pub record: csv::ByteRecord,
}

impl CsvRow {
    /// Column `idx` (named `name` in errors) as a 0/1 label.
    pub fn label(&self, file: &Path, idx: usize, name: &str) -> Result<u8> {
        match self.get(file, idx, name)?.trim() {
            "0" => Ok(0),
            "1" => Ok(1),
            other => Err(Error::data(
                file,
                self.line,
                name,
                format!("expected 0 or 1, found `{other}`"),
            )),
        }
    }

    /// Column `idx` (named `name` in errors) as UTF-8 text.
    pub fn get<'a>(&'a self, file: &Path, idx: usize, name: &str) -> Result<&'a str> {
        let bytes = self.record.get(idx).ok_or_else(|| {
            Error::data(
                file,
                self.line,
                name,
                "missing (record has too few columns)",
            )
        })?;
        std::str::from_utf8(bytes).map_err(|e| {
            Error::data(
                file,
                self.line,
                name,
                format!("not valid UTF-8 (byte {})", e.valid_up_to()),
            )
        })
    }
}

fn csv_error(path: &Path, line: usize, e: csv::Error) -> Error {
    let line = e.position().map_or(line, |p| p.line() as usize);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        kind => Error::data(
            path,
            line,
            RECORD_FIELD,
            format!("unreadable CSV: {kind:?}"),
        ),
    }
}
