//! The billing order: how a request body or a queued message is validated,
//! and the JSON message the gateway publishes and the worker stores.
//!
//! Users send values as JSON numbers or as strings (`"99"`), so every field is
//! read from its raw JSON text: money is parsed straight from that text into a
//! decimal and never passes through a binary float.

use bigdecimal::num_bigint::BigInt;
use bigdecimal::BigDecimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::str::FromStr;
use uuid::Uuid;

pub const MAX_USER_ID_CHARS: usize = 64;
pub const MAX_NUMBER_OF_ITEMS: i32 = 1_000_000;
/// Largest amount `NUMERIC(12,2)` can hold and the API accepts.
pub const MAX_TOTAL_AMOUNT: &str = "99999999.99";
pub const AMOUNT_DECIMAL_PLACES: i64 = 2;

/// A validation failure, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// `None` when the body as a whole is wrong (not JSON, not an object).
    pub field: Option<&'static str>,
    pub message: String,
}

impl FieldError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            message: message.into(),
        }
    }
    fn body(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

/// A valid order. `order_id` is `None` when the input carried none.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderInput {
    pub order_id: Option<Uuid>,
    pub user_id: String,
    pub number_of_items: i32,
    /// Always at scale 2 (`250` becomes `250.00`).
    pub total_amount: BigDecimal,
}

/// The message on `billing_queue` (AMQP `message_id` = `order_id`), as the
/// gateway writes it. It has no `Deserialize` on purpose: every reader (the
/// worker, and the tests) goes through [`parse_order`], the one definition of
/// what a valid order is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderMessage {
    pub order_id: Uuid,
    pub user_id: String,
    pub number_of_items: i32,
    /// A decimal string such as `"250.00"`: exact, unlike a JSON float.
    pub total_amount: String,
}

impl OrderMessage {
    pub fn new(order_id: Uuid, input: &OrderInput) -> Self {
        Self {
            order_id,
            user_id: input.user_id.clone(),
            number_of_items: input.number_of_items,
            // `{:.2}`: plain Display prints a zero as "0", whatever its scale.
            total_amount: format!("{:.2}", input.total_amount),
        }
    }
}

#[derive(Deserialize)]
struct RawOrder<'a> {
    #[serde(borrow, default)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    number_of_items: Option<&'a RawValue>,
    #[serde(borrow, default)]
    total_amount: Option<&'a RawValue>,
}

/// Parses and validates an order from JSON bytes (request body or message).
/// Unknown fields are ignored; the first invalid field is reported.
pub fn parse_order(bytes: &[u8]) -> Result<OrderInput, FieldError> {
    let value: &RawValue = serde_json::from_slice(bytes)
        .map_err(|e| FieldError::body(format!("body is not valid JSON: {e}")))?;
    if !value.get().trim_start().starts_with('{') {
        return Err(FieldError::body("body must be a JSON object"));
    }
    let raw: RawOrder<'_> = serde_json::from_str(value.get())
        .map_err(|e| FieldError::body(format!("body is not a valid order object: {e}")))?;

    let order_id = match present(raw.order_id) {
        None => None,
        Some(v) => Some(parse_order_id(v)?),
    };
    let user_id = parse_user_id(required("user_id", raw.user_id)?)?;
    let number_of_items = parse_number_of_items(required("number_of_items", raw.number_of_items)?)?;
    let total_amount = parse_total_amount(required("total_amount", raw.total_amount)?)?;
    Ok(OrderInput {
        order_id,
        user_id,
        number_of_items,
        total_amount,
    })
}

/// A field given as JSON `null` counts as absent.
fn present(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|v| v.get() != "null")
}

fn required<'a>(field: &'static str, v: Option<&'a RawValue>) -> Result<&'a RawValue, FieldError> {
    present(v).ok_or_else(|| FieldError::field(field, format!("{field} is required")))
}

/// What a scalar field held: the text of a JSON string, or of a JSON number.
enum Scalar {
    Str(String),
    Num(String),
}

fn scalar(field: &'static str, v: &RawValue, expected: &str) -> Result<Scalar, FieldError> {
    let text = v.get();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text)
            .map_err(|_| FieldError::field(field, format!("{field} must be {expected}")))?;
        Ok(Scalar::Str(s))
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(Scalar::Num(text.to_owned()))
    } else {
        Err(FieldError::field(
            field,
            format!("{field} must be {expected}"),
        ))
    }
}

fn parse_order_id(v: &RawValue) -> Result<Uuid, FieldError> {
    match scalar("order_id", v, "a UUID string")? {
        Scalar::Str(s) => Uuid::parse_str(s.trim())
            .map_err(|_| FieldError::field("order_id", "order_id must be a UUID")),
        Scalar::Num(_) => Err(FieldError::field(
            "order_id",
            "order_id must be a UUID string",
        )),
    }
}

fn parse_user_id(v: &RawValue) -> Result<String, FieldError> {
    const EXPECTED: &str = "a non-empty string or an integer";
    let id = match scalar("user_id", v, EXPECTED)? {
        Scalar::Str(s) => s.trim().to_owned(),
        Scalar::Num(n) if is_integer_text(&n) => n,
        Scalar::Num(_) => {
            return Err(FieldError::field(
                "user_id",
                format!("user_id must be {EXPECTED}"),
            ))
        }
    };
    if id.is_empty() {
        return Err(FieldError::field("user_id", "user_id must not be empty"));
    }
    if id.chars().count() > MAX_USER_ID_CHARS {
        return Err(FieldError::field(
            "user_id",
            format!("user_id must be at most {MAX_USER_ID_CHARS} characters"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(FieldError::field(
            "user_id",
            "user_id must not contain control characters",
        ));
    }
    // Invisible and bidirectional-override characters make two ids look
    // alike, or one look like another, in every report that shows them. With
    // them refused, the first character left after trimming is a visible one.
    if let Some(c) = id.chars().find(|&c| is_invisible(c)) {
        return Err(FieldError::field(
            "user_id",
            format!(
                "user_id must not contain invisible characters (U+{:04X}: a format, bidirectional or filler character)",
                u32::from(c)
            ),
        ));
    }
    Ok(id)
}

/// Drawn as nothing, or changing how the text around is drawn: Unicode's
/// general category Cf (format characters, Unicode 15.1: zero width spaces
/// and joiners, bidirectional marks, overrides and isolates, the byte order
/// mark, tags...), then the default-ignorable characters outside it (the
/// combining grapheme joiner, Hangul fillers, variation selectors). std has no
/// category lookup, and a table of 30 ranges does not call for a dependency.
/// openapi.yaml's `user_id` pattern excludes the same ranges, those below
/// U+10000 (its regular expressions cannot name the others).
fn is_invisible(c: char) -> bool {
    const INVISIBLE: &[(u32, u32)] = &[
        // Cf
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        // Default-ignorable, not Cf
        (0x034F, 0x034F),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180D),
        (0x180F, 0x180F),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFFA0, 0xFFA0),
        (0xE0100, 0xE01EF),
    ];
    let c = u32::from(c);
    INVISIBLE
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn parse_number_of_items(v: &RawValue) -> Result<i32, FieldError> {
    let msg = || {
        FieldError::field(
            "number_of_items",
            format!("number_of_items must be a whole number from 1 to {MAX_NUMBER_OF_ITEMS}"),
        )
    };
    let n: i64 = match scalar("number_of_items", v, "a positive whole number")? {
        Scalar::Str(s) => {
            let text = s.trim();
            if !is_integer_text(text) {
                return Err(msg());
            }
            // Digits only: an overflowing value is simply out of range.
            text.parse().unwrap_or(i64::MAX)
        }
        Scalar::Num(n) => {
            let exact = Exact::of(&n).ok_or_else(msg)?;
            // Whole (no fractional digits) and at most 7 integer digits.
            if exact.negative || exact.exp < 0 || exact.integer_digits() > 7 {
                return Err(msg());
            }
            exact.to_decimal().to_string().parse().map_err(|_| msg())?
        }
    };
    if n < 1 || n > i64::from(MAX_NUMBER_OF_ITEMS) {
        return Err(msg());
    }
    i32::try_from(n).map_err(|_| msg())
}

/// The exact value of a JSON number's text, `digits` × 10^`exp`, with
/// `digits` stripped of leading and trailing zeros (empty for zero). Reading
/// it this way bounds the work: `1e999999999` is judged out of range from its
/// exponent, without ever building a billion-digit number.
#[derive(Debug, PartialEq)]
struct Exact {
    negative: bool,
    digits: String,
    exp: i64,
}

impl Exact {
    /// `None` when `text` is not JSON number syntax.
    fn of(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits_only(int)
            || !digits_only(frac)
            || (mantissa.contains('.') && frac.is_empty())
        {
            return None;
        }
        let exp: i64 = match exponent {
            None => 0,
            Some(e) => {
                let (sign, e_digits) = match e.as_bytes().first() {
                    Some(b'-') => (-1, &e[1..]),
                    Some(b'+') => (1, &e[1..]),
                    _ => (1, e),
                };
                if e_digits.is_empty() || !digits_only(e_digits) {
                    return None;
                }
                // Anything beyond ±10^15 is far out of every range we accept.
                sign * e_digits.parse::<i64>().unwrap_or(1 << 50).min(1 << 50)
            }
        };
        let all = format!("{int}{frac}");
        let trimmed = all.trim_start_matches('0');
        let significant = trimmed.trim_end_matches('0');
        let trailing = trimmed.len() - significant.len();
        let frac_len = i64::try_from(frac.len()).ok()?;
        let trailing = i64::try_from(trailing).ok()?;
        Some(Self {
            negative,
            digits: significant.to_owned(),
            exp: if significant.is_empty() {
                0
            } else {
                exp - frac_len + trailing
            },
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Digits before the decimal point (0 for zero or a pure fraction).
    fn integer_digits(&self) -> i64 {
        if self.is_zero() {
            0
        } else {
            (i64::try_from(self.digits.len()).unwrap_or(i64::MAX) + self.exp).max(0)
        }
    }

    /// Digits after the decimal point that are not zero-padding.
    fn decimal_places(&self) -> i64 {
        (-self.exp).max(0)
    }

    /// Only for values already checked to be in a small range.
    fn to_decimal(&self) -> BigDecimal {
        if self.is_zero() {
            return BigDecimal::from(0);
        }
        // ASCII digits only (checked in `of`), so this cannot fail.
        let digits: BigInt = self.digits.parse().unwrap_or_default();
        let value = BigDecimal::new(digits, -self.exp);
        if self.negative {
            -value
        } else {
            value
        }
    }
}

fn parse_total_amount(v: &RawValue) -> Result<BigDecimal, FieldError> {
    const FIELD: &str = "total_amount";
    let malformed = || {
        FieldError::field(
            FIELD,
            "total_amount must be a decimal number like 250 or 250.50",
        )
    };
    let exact = match scalar(FIELD, v, "a decimal number")? {
        Scalar::Str(s) => {
            // Plain decimal notation only: digits, an optional point and decimals.
            let text = s.trim();
            if text.contains(['e', 'E']) || text.len() > 64 {
                return Err(malformed());
            }
            Exact::of(text).ok_or_else(malformed)?
        }
        Scalar::Num(n) => Exact::of(&n).ok_or_else(malformed)?,
    };
    if exact.negative && !exact.is_zero() {
        return Err(FieldError::field(
            FIELD,
            "total_amount must not be negative",
        ));
    }
    if exact.decimal_places() > AMOUNT_DECIMAL_PLACES {
        return Err(FieldError::field(
            FIELD,
            "total_amount must have at most 2 decimal places",
        ));
    }
    let max = BigDecimal::from_str(MAX_TOTAL_AMOUNT)
        .map_err(|_| FieldError::field(FIELD, "internal limit is not a number"))?;
    let too_big = || {
        FieldError::field(
            FIELD,
            format!("total_amount must be at most {MAX_TOTAL_AMOUNT}"),
        )
    };
    // 99999999.99 has 8 integer digits: check that before building the value.
    if exact.integer_digits() > 8 {
        return Err(too_big());
    }
    let amount = exact.to_decimal().abs();
    if amount > max {
        return Err(too_big());
    }
    Ok(amount.with_scale(AMOUNT_DECIMAL_PLACES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::orders::body_with;

    fn ok(body: &str) -> OrderInput {
        parse_order(body.as_bytes()).unwrap()
    }
    fn err(body: &str) -> FieldError {
        parse_order(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn strings_and_numbers_are_both_accepted() {
        let a = ok(r#"{"user_id":"20","number_of_items":"99","total_amount":"250"}"#);
        let b = ok(r#"{"user_id":20,"number_of_items":99,"total_amount":250}"#);
        assert_eq!(a, b);
        assert_eq!(a.user_id, "20");
        assert_eq!(a.number_of_items, 99);
        assert_eq!(a.total_amount.to_string(), "250.00");
        assert_eq!(a.order_id, None);
    }

    #[test]
    fn money_is_exact() {
        let o = ok(r#"{"user_id":1,"number_of_items":1,"total_amount":0.1}"#);
        assert_eq!(o.total_amount.to_string(), "0.10");
        let o = ok(r#"{"user_id":1,"number_of_items":1,"total_amount":99999999.99}"#);
        assert_eq!(o.total_amount.to_string(), "99999999.99");
        let o = ok(r#"{"user_id":1,"number_of_items":1,"total_amount":"1.500"}"#);
        assert_eq!(o.total_amount.to_string(), "1.50");
    }

    #[test]
    fn json_numbers_are_taken_at_their_exact_value_in_any_notation() {
        let amount = |v: &str| {
            let input = ok(&body_with("total_amount", Some(v)));
            OrderMessage::new(Uuid::nil(), &input).total_amount
        };
        for (v, want) in [
            ("1E2", "100.00"),
            ("1e2", "100.00"),
            ("1.5e1", "15.00"),
            ("2.50e1", "25.00"),
            ("12345e-2", "123.45"),
            ("1.000", "1.00"),
            ("0e0", "0.00"),
            ("0.0e99999999999999999999", "0.00"),
            ("-0", "0.00"),
            ("9.999999999E7", "99999999.99"),
            ("1E+1", "10.00"),
        ] {
            assert_eq!(amount(v), want, "{v}");
        }
        let items = |v: &str| ok(&body_with("number_of_items", Some(v))).number_of_items;
        for (v, want) in [
            ("5.0", 5),
            ("5E0", 5),
            ("1e6", 1_000_000),
            ("50e-1", 5),
            ("1.0000000000000000000000000000", 1),
            ("0.1e1", 1),
        ] {
            assert_eq!(items(v), want, "{v}");
        }
    }

    #[test]
    fn inexact_or_out_of_range_numbers_are_refused_cheaply() {
        let cases: [(&str, &[&str]); 2] = [
            (
                "total_amount",
                &[
                    "1e-3",
                    "1.001e0",
                    "1e8",
                    "1E999999999999999999999",
                    "1e-999999999999999999999",
                    "-1e2",
                    // Strings stay plain decimal: an exponent in a string is refused.
                    r#""1E2""#,
                ],
            ),
            (
                "number_of_items",
                &[
                    "5.5",
                    "1e7",
                    "1e-1",
                    "0e5",
                    "-5e0",
                    "1E999999999999999999999",
                    "1.0000001",
                    r#""1E2""#,
                    r#""5.0""#,
                ],
            ),
        ];
        for (field, values) in cases {
            for v in values {
                let body = body_with(field, Some(v));
                assert_eq!(err(&body).field, Some(field), "{v}");
            }
        }
    }

    /// Invisible and bidirectional-override characters (category Cf, and
    /// the fillers drawn as nothing) are refused wherever they are, so an id
    /// always shows a visible character.
    #[test]
    fn user_id_refuses_invisible_characters() {
        for (value, code_point) in [
            ("\"\u{200B}\"", "U+200B"),
            ("\"alice\u{202E}gnp.exe\"", "U+202E"),
            ("\"a\u{2066}b\u{2069}\"", "U+2066"),
            ("\"\u{FEFF}bob\"", "U+FEFF"),
            ("\"\u{E0041}\"", "U+E0041"),
            ("\"\u{3164}\"", "U+3164"),
            ("\"a\u{115F}\u{FE0F}\"", "U+115F"),
        ] {
            let e = err(&body_with("user_id", Some(value)));
            assert_eq!(e.field, Some("user_id"), "{value}");
            assert_eq!(
                e.message,
                format!("user_id must not contain invisible characters ({code_point}: a format, bidirectional or filler character)"),
                "{value}"
            );
        }
        for value in [
            "\"\u{e9}lodie\"",
            "\"\u{674E}\"",
            "\"x y\"",
            "\" \u{3000}z \"",
        ] {
            ok(&body_with("user_id", Some(value)));
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let long_user = format!(r#""{}""#, "x".repeat(65));
        // (field, its raw JSON value or None for absent): the body is a valid
        // order with only that field changed, so the error must name it.
        let cases: [(&str, Option<&str>); 22] = [
            ("user_id", None),
            ("user_id", Some(r#""""#)),
            ("user_id", Some(r#""   ""#)),
            ("user_id", Some("1.5")),
            ("user_id", Some("true")),
            ("user_id", Some("{}")),
            ("user_id", Some(&long_user)),
            ("number_of_items", None),
            ("number_of_items", Some("0")),
            ("number_of_items", Some("-3")),
            ("number_of_items", Some("1.5")),
            ("number_of_items", Some(r#""abc""#)),
            ("number_of_items", Some("1000001")),
            ("number_of_items", Some("99999999999999999999999")),
            ("total_amount", None),
            ("total_amount", Some("-1")),
            ("total_amount", Some("1.234")),
            ("total_amount", Some(r#""1e3""#)),
            ("total_amount", Some(r#""NaN""#)),
            ("total_amount", Some("100000000")),
            ("total_amount", Some("null")),
            ("order_id", Some(r#""nope""#)),
        ];
        for (field, value) in cases {
            let body = body_with(field, value);
            assert_eq!(err(&body).field, Some(field), "{body}");
        }
    }

    #[test]
    fn whole_body_errors_name_no_field() {
        for body in ["", "nope", "[1,2]", "42", "\"x\"", "{\"user_id\":"] {
            assert_eq!(err(body).field, None, "{body}");
        }
    }

    #[test]
    fn order_id_is_read_when_present() {
        let id = Uuid::new_v4();
        let o = ok(&format!(
            r#"{{"order_id":"{id}","user_id":"u","number_of_items":1,"total_amount":"0"}}"#
        ));
        assert_eq!(o.order_id, Some(id));
    }

    #[test]
    fn message_round_trips_through_validation() {
        let input = ok(r#"{"user_id":"20","number_of_items":"99","total_amount":"250"}"#);
        let id = Uuid::new_v4();
        let json = serde_json::to_vec(&OrderMessage::new(id, &input)).unwrap();
        let back = parse_order(&json).unwrap();
        assert_eq!(back.order_id, Some(id));
        assert_eq!(back.total_amount, input.total_amount);
    }
}
