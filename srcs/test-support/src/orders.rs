//! Order bodies for the tests of the order parser and of `POST /api/billing`.

/// `{"user_id":1,"number_of_items":1,"total_amount":1}` with `field` set to
/// the raw JSON `value` (absent when None); an `order_id` goes last. A valid
/// order with one field changed, so that an error must name that field.
pub fn body_with(field: &str, value: Option<&str>) -> String {
    let fields = [
        ("user_id", Some("1")),
        ("number_of_items", Some("1")),
        ("total_amount", Some("1")),
        ("order_id", None),
    ];
    let members: Vec<String> = fields
        .into_iter()
        .filter_map(|(name, default)| {
            let v = if name == field { value } else { default };
            v.map(|v| format!(r#""{name}":{v}"#))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

#[cfg(test)]
mod tests {
    use super::body_with;

    #[test]
    fn one_field_changed_or_left_out() {
        assert_eq!(
            body_with("total_amount", Some("-1")),
            r#"{"user_id":1,"number_of_items":1,"total_amount":-1}"#
        );
        assert_eq!(
            body_with("user_id", None),
            r#"{"number_of_items":1,"total_amount":1}"#
        );
        assert_eq!(
            body_with("order_id", Some(r#""nope""#)),
            r#"{"user_id":1,"number_of_items":1,"total_amount":1,"order_id":"nope"}"#
        );
    }
}
