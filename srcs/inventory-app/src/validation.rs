//! Turns untrusted input (JSON bodies, query strings, path segments) into the
//! typed values of `models`, or an error naming the field at fault.

use crate::error::Error;
use crate::models::{MovieChanges, MovieFilter, NewMovie};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_LIMIT: i64 = 1000;

/// The query string as sent: numbers stay text so a bad one is reported by
/// name, not as a generic query parse failure.
#[derive(Debug, Default, Deserialize)]
pub struct RawMovieQuery {
    pub title: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub after_id: Option<String>,
}

pub fn new_movie(body: &Value) -> Result<NewMovie, Error> {
    let fields = object(body)?;
    let title = match fields.get("title") {
        None => return Err(Error::field("title", "title is required")),
        Some(v) => title(v)?,
    };
    let description = match fields.get("description") {
        None => String::new(),
        Some(v) => description(v)?,
    };
    Ok(NewMovie { title, description })
}

pub fn movie_changes(body: &Value) -> Result<MovieChanges, Error> {
    let fields = object(body)?;
    Ok(MovieChanges {
        title: fields.get("title").map(title).transpose()?,
        description: fields.get("description").map(description).transpose()?,
    })
}

pub fn movie_filter(raw: RawMovieQuery) -> Result<MovieFilter, Error> {
    if let Some(title) = &raw.title {
        if title.contains('\0') {
            return Err(Error::field(
                "title",
                "title must not contain NUL characters",
            ));
        }
    }
    let limit = raw
        .limit
        .as_deref()
        .map(|v| non_negative("limit", v, MAX_LIMIT))
        .transpose()?;
    let offset = raw
        .offset
        .as_deref()
        .map(|v| non_negative("offset", v, i64::MAX))
        .transpose()?;
    let after_id = raw
        .after_id
        .as_deref()
        .map(|v| non_negative("after_id", v, i64::MAX))
        .transpose()?;
    Ok(MovieFilter {
        title: raw.title,
        limit,
        offset,
        after_id,
    })
}

/// Ids are BIGSERIAL values: 1 to i64::MAX.
pub fn movie_id(raw: &str) -> Result<i64, Error> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Error::field(
            "id",
            format!("id must be a positive integer up to {}", i64::MAX),
        )
    })
}

fn object(body: &Value) -> Result<&Map<String, Value>, Error> {
    body.as_object()
        .ok_or_else(|| Error::body("request body must be a JSON object"))
}

fn title(value: &Value) -> Result<String, Error> {
    let text = string("title", value)?.trim();
    if text.is_empty() {
        return Err(Error::field("title", "title must not be empty"));
    }
    check_length("title", text, MAX_TITLE_CHARS)?;
    Ok(text.to_owned())
}

fn description(value: &Value) -> Result<String, Error> {
    let text = string("description", value)?;
    check_length("description", text, MAX_DESCRIPTION_CHARS)?;
    Ok(text.to_owned())
}

fn string<'a>(field: &'static str, value: &'a Value) -> Result<&'a str, Error> {
    let text = value
        .as_str()
        .ok_or_else(|| Error::field(field, format!("{field} must be a string")))?;
    // PostgreSQL text cannot hold NUL; refuse it here rather than fail in SQL.
    if text.contains('\0') {
        return Err(Error::field(
            field,
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(text)
}

/// Counted in characters, as PostgreSQL's VARCHAR(n) counts them.
fn check_length(field: &'static str, text: &str, max: usize) -> Result<(), Error> {
    if text.chars().count() > max {
        return Err(Error::field(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn non_negative(name: &'static str, raw: &str, max: i64) -> Result<i64, Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| (0..=max).contains(n))
        .ok_or_else(|| Error::field(name, format!("{name} must be an integer from 0 to {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: Error) -> Option<&'static str> {
        match e {
            Error::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn title_is_trimmed_and_description_defaults_to_empty() {
        let m = new_movie(&json!({"title": "  Alien  ", "extra": 1})).unwrap();
        assert_eq!(m.title, "Alien");
        assert_eq!(m.description, "");
    }

    #[test]
    fn title_length_counts_characters_not_bytes() {
        assert!(new_movie(&json!({ "title": "é".repeat(255) })).is_ok());
        let e = new_movie(&json!({ "title": "é".repeat(256) })).unwrap_err();
        assert_eq!(field_of(e), Some("title"));
    }

    #[test]
    fn null_fields_in_an_update_are_rejected_by_name() {
        let e = movie_changes(&json!({"description": null})).unwrap_err();
        assert_eq!(field_of(e), Some("description"));
        assert_eq!(movie_changes(&json!({})).unwrap(), MovieChanges::default());
    }

    #[test]
    fn nul_characters_are_rejected() {
        let e = new_movie(&json!({"title": "a\u{0}b"})).unwrap_err();
        assert_eq!(field_of(e), Some("title"));
    }

    #[test]
    fn ids_must_be_positive_64_bit_integers() {
        assert_eq!(movie_id("7").unwrap(), 7);
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999"] {
            assert_eq!(field_of(movie_id(bad).unwrap_err()), Some("id"), "{bad}");
        }
    }

    /// A query with the one parameter `name`, as the extractor gives it.
    fn one(name: &str, value: &str) -> RawMovieQuery {
        serde_json::from_value(json!({ name: value })).unwrap()
    }

    #[test]
    fn paging_bounds() {
        assert_eq!(
            movie_filter(one("limit", "1000")).unwrap().limit,
            Some(1000)
        );
        assert_eq!(movie_filter(one("limit", "0")).unwrap().limit, Some(0));
        for bad in ["1001", "-1", "x", ""] {
            assert_eq!(
                field_of(movie_filter(one("limit", bad)).unwrap_err()),
                Some("limit")
            );
        }
    }

    #[test]
    fn after_id_bounds() {
        assert_eq!(
            movie_filter(one("after_id", "0")).unwrap().after_id,
            Some(0)
        );
        let max = i64::MAX.to_string();
        assert_eq!(
            movie_filter(one("after_id", &max)).unwrap().after_id,
            Some(i64::MAX)
        );
        for bad in ["-1", "x", "", "1.5", "9223372036854775808", " 1"] {
            let e = movie_filter(one("after_id", bad)).unwrap_err();
            assert_eq!(field_of(e), Some("after_id"), "{bad}");
        }
        // Together: first the keyset, then the offset (see queries::page).
        let both = RawMovieQuery {
            after_id: Some("1".to_owned()),
            offset: Some("2".to_owned()),
            ..Default::default()
        };
        let f = movie_filter(both).unwrap();
        assert_eq!((f.after_id, f.offset), (Some(1), Some(2)));
    }
}
