//! Reading policy files: TOML (with line and column for every error) or the same structure in
//! JSON, then validation and compilation.

use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

use super::compile::Policy;
use super::error::{Location, PolicyError, PolicyErrorKind};
use super::model::PolicyFile;
use super::suggest::closest;
use super::validate::{DocPath, Issue, Segment, validate};
use super::warning::PolicyWarning;

impl Policy {
    /// Loads a policy from TOML text. `source` names it in errors and audit records (usually
    /// the file path).
    ///
    /// # Errors
    /// A [`PolicyError`] with the line and column of the first problem.
    pub fn from_toml(text: &str, source: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map(|span| line_column(text, span.start))
                .unzip();
            PolicyError::new(
                Location {
                    source: source.to_owned(),
                    line,
                    column,
                    path: String::new(),
                },
                PolicyErrorKind::Syntax {
                    message: with_suggestion(error.message().trim_end()),
                },
            )
        })?;
        build(file, text, source, |path| {
            toml_span(text, path).map(|span| line_column(text, span.start))
        })
    }

    /// Loads a policy from JSON text with the same structure as the TOML format.
    ///
    /// JSON syntax errors carry a line and column; other errors carry the path of the entry
    /// (`rules[2].roles[0]`) only.
    ///
    /// # Errors
    /// A [`PolicyError`] describing the first problem.
    pub fn from_json(text: &str, source: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = serde_json::from_str(text).map_err(|error| {
            let full = error.to_string();
            // serde_json appends " at line L column C"; the location says that already.
            let message = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(message, _)| message);
            PolicyError::new(
                Location {
                    source: source.to_owned(),
                    line: Some(error.line()),
                    column: Some(error.column()),
                    path: String::new(),
                },
                PolicyErrorKind::Syntax {
                    message: with_suggestion(message),
                },
            )
        })?;
        build(file, text, source, |_| None)
    }

    /// Loads a policy file, TOML or JSON by its extension.
    ///
    /// # Errors
    /// A [`PolicyError`] if the file cannot be read, has another extension, or is invalid.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let fail = |kind| {
            PolicyError::new(
                Location {
                    source: source.clone(),
                    line: None,
                    column: None,
                    path: String::new(),
                },
                kind,
            )
        };
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("toml" | "json")) {
            return Err(fail(PolicyErrorKind::UnknownFormat));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(PolicyErrorKind::Io {
                message: e.to_string(),
            })
        })?;
        if extension == Some("json") {
            Policy::from_json(&text, &source)
        } else {
            Policy::from_toml(&text, &source)
        }
    }
}

/// Validates and compiles a parsed document; `locate` turns a validation problem's path into a
/// line and column where the format allows.
fn build(
    file: PolicyFile,
    text: &str,
    source: &str,
    locate: impl Fn(&DocPath) -> Option<(usize, usize)>,
) -> Result<Policy, PolicyError> {
    let at = |path: &DocPath| {
        let (line, column) = locate(path).unzip();
        Location {
            source: source.to_owned(),
            line,
            column,
            path: path.to_string(),
        }
    };
    let mut resolved =
        validate(&file).map_err(|Issue { path, kind }| PolicyError::new(at(&path), *kind))?;
    let warnings = std::mem::take(&mut resolved.warnings)
        .into_iter()
        .map(|(path, kind)| PolicyWarning::new(at(&path), kind))
        .collect();
    let digest = data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()));
    Ok(Policy::compile(resolved, source, digest, warnings))
}

/// The byte span of the entry at `path` in TOML `text`, or of its closest existing ancestor.
fn toml_span(text: &str, path: &DocPath) -> Option<Range<usize>> {
    let document = DeTable::parse(text).ok()?;
    let mut span = document.span();
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for segment in &path.0 {
        let current_table = table.or(match value {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        });
        match segment {
            Segment::Key(key) => {
                let Some(next) = current_table.and_then(|t| t.get(key.as_str())) else {
                    break;
                };
                span = next.span();
                value = Some(next.get_ref());
            }
            Segment::KeyName(key) => {
                if let Some((name, _)) = current_table.and_then(|t| t.get_key_value(key.as_str())) {
                    span = name.span();
                }
                break;
            }
            Segment::Index(index) => {
                let Some(next) = (match value {
                    Some(DeValue::Array(array)) => array.get(*index),
                    _ => None,
                }) else {
                    break;
                };
                span = next.span();
                value = Some(next.get_ref());
            }
        }
        table = None;
    }
    Some(span)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1usize;
    let mut column = 1usize;
    for (index, c) in text.char_indices() {
        if index >= offset {
            break;
        }
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" messages.
pub(crate) fn with_suggestion(message: &str) -> String {
    let suggestion = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|marker| {
            let (_, rest) = message.split_once(marker)?;
            let (unknown, after) = rest.split_once('`')?;
            let (_, expected) = after.split_once("expected")?;
            closest(unknown, expected.split('`').skip(1).step_by(2))
        });
    match suggestion {
        Some(name) => format!("{message}; did you mean `{name}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 100), (3, 2));
        assert_eq!(line_column(text, 5), (2, 3));
    }

    #[test]
    fn suggestions_in_serde_messages() {
        assert_eq!(
            with_suggestion("unknown field `rolse`, expected one of `name`, `roles`, `effect`"),
            "unknown field `rolse`, expected one of `name`, `roles`, `effect`; did you mean `roles`?"
        );
        assert_eq!(
            with_suggestion("unknown variant `alow`, expected `allow` or `deny`"),
            "unknown variant `alow`, expected `allow` or `deny`; did you mean `allow`?"
        );
        assert_eq!(with_suggestion("invalid type"), "invalid type");
    }
}
