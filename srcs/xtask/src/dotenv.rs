//! The one definition of the `.env` format. Four readers implement it (this
//! one, scripts/lib/dotenv.sh, scripts/lib/dotenv.rb for the Vagrantfile and
//! scripts/mp_dotenv.py) and all are tested against scripts/testdata/dotenv/.
//!
//! - UTF-8; a byte-order mark at the start is ignored; lines end in LF or CRLF.
//! - Blank lines and lines whose first non-blank character is `#` are comments.
//!   A `#` anywhere else is part of the value (`A=x#y` gives `x#y`).
//! - `KEY=VALUE`, optionally preceded by `export `; KEY is `[A-Za-z_][A-Za-z0-9_]*`
//!   and is followed directly by `=`.
//! - VALUE without quotes: the rest of the line without surrounding blanks.
//!   `"..."`: what is between the quotes, blanks kept. `'...'`: the same, but
//!   literal (no `${}`). No escapes: a backslash is an ordinary character.
//!   A value that opens a quote must end with the same quote.
//! - `${NAME}` (unquoted or in double quotes) is the value of NAME, a key defined
//!   on an earlier line; any other name is an error. A `$` not followed by `{`
//!   is literal.
//! - A key set in the environment keeps the environment's value (the line is
//!   still checked), and later `${KEY}` see that value. A key given twice takes
//!   the last value and keeps its first position.

use std::fmt;

/// One resolved variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Shown as `LINE: message`, so `format!("{file}:{e}")` reads like a compiler's.
pub struct DotenvError {
    /// 1-based line number.
    pub line: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    NotKeyValue,
    UnclosedQuote(String),
    BadReference(String),
    Undefined { key: String, name: String },
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        match &self.kind {
            ErrorKind::NotKeyValue => write!(f, "not a KEY=VALUE line"),
            ErrorKind::UnclosedQuote(key) => {
                write!(f, "{key}: the quote that opens the value is not closed")
            }
            ErrorKind::BadReference(key) => {
                write!(f, "{key}: '${{' must start a reference ${{NAME}}")
            }
            ErrorKind::Undefined { key, name } => {
                write!(f, "{key}: ${{{name}}} is used before it is defined")
            }
        }
    }
}

impl std::error::Error for DotenvError {}

fn is_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

const BLANKS: [char; 2] = [' ', '\t'];

/// Parses `.env` text. `environment` looks a key up in the process
/// environment (pass `|_| None` to read the file alone).
pub fn parse(
    text: &str,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Var>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars: Vec<Var> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let err = |kind| DotenvError {
            line: line_no,
            kind,
        };
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_start_matches(BLANKS);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with(BLANKS) => rest.trim_start_matches(BLANKS),
            _ => line,
        };
        let (key, rest) = line.split_once('=').ok_or(err(ErrorKind::NotKeyValue))?;
        if !is_key(key) {
            return Err(err(ErrorKind::NotKeyValue));
        }
        let value = rest.trim_matches(BLANKS);
        let value = if let Some(inner) = value.strip_prefix('\'') {
            inner
                .strip_suffix('\'')
                .ok_or(err(ErrorKind::UnclosedQuote(key.to_string())))?
                .to_string()
        } else {
            let inner = match value.strip_prefix('"') {
                Some(inner) => inner
                    .strip_suffix('"')
                    .ok_or(err(ErrorKind::UnclosedQuote(key.to_string())))?,
                None => value,
            };
            expand(inner, &vars).map_err(|e| {
                err(match e {
                    RefError::Malformed => ErrorKind::BadReference(key.to_string()),
                    RefError::Undefined(name) => ErrorKind::Undefined {
                        key: key.to_string(),
                        name,
                    },
                })
            })?
        };
        let value = environment(key).unwrap_or(value);
        match vars.iter_mut().find(|v| v.key == key) {
            Some(existing) => existing.value = value,
            None => vars.push(Var {
                key: key.to_string(),
                value,
            }),
        }
    }
    Ok(vars)
}

enum RefError {
    Malformed,
    Undefined(String),
}

fn expand(value: &str, vars: &[Var]) -> Result<String, RefError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some((name, tail)) = after.split_once('}').filter(|(name, _)| is_key(name)) else {
            return Err(RefError::Malformed);
        };
        match vars.iter().find(|v| v.key == name) {
            Some(v) => out.push_str(&v.value),
            None => return Err(RefError::Undefined(name.to_string())),
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of `key` in parsed variables.
pub fn get<'a>(vars: &'a [Var], key: &str) -> Option<&'a str> {
    vars.iter().find(|v| v.key == key).map(|v| v.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_only(text: &str) -> Result<Vec<Var>, DotenvError> {
        parse(text, |_| None)
    }

    #[test]
    fn environment_wins_and_references_follow_it() {
        let vars = parse("IP=10.0.0.1\nURL=http://${IP}:80\n", |k| {
            (k == "IP").then(|| "127.0.0.1".to_string())
        })
        .unwrap();
        assert_eq!(get(&vars, "URL"), Some("http://127.0.0.1:80"));
        assert_eq!(get(&vars, "IP"), Some("127.0.0.1"));
    }

    #[test]
    fn an_overridden_line_is_still_checked() {
        let e = parse("A=${NOPE}\n", |_| Some("x".to_string())).unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn errors_name_the_line_and_the_fault() {
        assert_eq!(
            file_only("A=1\nB=${C}\n").unwrap_err().to_string(),
            "2: B: ${C} is used before it is defined"
        );
        assert_eq!(
            file_only("\n\nnot a line\n").unwrap_err().to_string(),
            "3: not a KEY=VALUE line"
        );
        assert_eq!(file_only("A = 1\n").unwrap_err().line, 1);
        assert_eq!(
            file_only("A=\"x\n").unwrap_err().kind,
            ErrorKind::UnclosedQuote("A".into())
        );
        assert_eq!(
            file_only("A=${1x}\n").unwrap_err().kind,
            ErrorKind::BadReference("A".into())
        );
        assert_eq!(
            file_only("A=${A\n").unwrap_err().kind,
            ErrorKind::BadReference("A".into())
        );
    }
}
