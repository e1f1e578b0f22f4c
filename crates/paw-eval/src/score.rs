//! Scoring one answer against its expected output.
//!
//! Two verdicts are always reported side by side:
//!
//! - **exact**: byte-for-byte equality. This is the headline metric, the one
//!   the published FuzzyBench numbers use.
//! - **normalised**: equality after removing surrounding whitespace (Unicode
//!   `White_Space`, so trailing newlines and indentation do not count); and,
//!   when *both* sides then parse as JSON, equality of the JSON values, where
//!   object key order and insignificant whitespace do not matter.
//!
//! Decisions, deliberately narrow so that "normalised" never hides a real
//! error:
//! - Numbers compare by value: `1`, `1.0` and `1e0` are equal (most JSON
//!   consumers, JavaScript included, cannot tell them apart). Integers are
//!   compared exactly; any comparison involving a fraction or exponent goes
//!   through `f64`.
//! - Array order matters; duplicate object keys follow serde_json (last wins).
//! - Text is not case-folded, inner whitespace is kept, and Unicode is not
//!   normalised: `é` precomposed and `e` + combining accent differ. A label in
//!   the wrong case is a wrong label.
//! - A JSON string is not equal to the same text unquoted (`"abc"` vs `abc`).

use serde::Serialize;
use serde_json::Value;

/// Both verdicts for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Score {
    pub exact: bool,
    pub normalised: bool,
}

/// Score `actual` against `expected`. An exact match is always also a
/// normalised match.
pub fn score(expected: &str, actual: &str) -> Score {
    let exact = exact_match(expected, actual);
    Score {
        exact,
        normalised: exact || normalised_match(expected, actual),
    }
}

/// Byte-for-byte equality.
pub fn exact_match(expected: &str, actual: &str) -> bool {
    expected == actual
}

/// Equality ignoring surrounding whitespace, and JSON formatting and key order
/// when both sides are JSON.
pub fn normalised_match(expected: &str, actual: &str) -> bool {
    let (e, a) = (expected.trim(), actual.trim());
    if e == a {
        return true;
    }
    match (
        serde_json::from_str::<Value>(e),
        serde_json::from_str::<Value>(a),
    ) {
        (Ok(ev), Ok(av)) => json_equal(&ev, &av),
        _ => false,
    }
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w))
        }
        (Value::Number(x), Value::Number(y)) => number_equal(x, y),
        _ => a == b,
    }
}

fn number_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    // Exact for integers (f64 would conflate large neighbours), by value otherwise.
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        return i == j;
    }
    if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
        return i == j;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(i), Some(j)) => i == j,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(expected: &str, actual: &str) -> (bool, bool) {
        let s = score(expected, actual);
        (s.exact, s.normalised)
    }

    #[test]
    fn identical_text_is_exact_and_normalised() {
        assert_eq!(both("positive", "positive"), (true, true));
        assert_eq!(both("", ""), (true, true));
    }

    #[test]
    fn surrounding_whitespace_only_counts_for_exact() {
        assert_eq!(both("ALERT", "ALERT\n"), (false, true));
        assert_eq!(both("ALERT", "  ALERT \t\r\n"), (false, true));
        assert_eq!(both(" ALERT", "ALERT"), (false, true));
        // Unicode whitespace (no-break space, ideographic space) is whitespace too.
        assert_eq!(both("ALERT", "\u{00A0}ALERT\u{3000}"), (false, true));
    }

    #[test]
    fn inner_whitespace_and_case_are_not_normalised_in_text() {
        assert_eq!(both("New York", "New  York"), (false, false));
        assert_eq!(both("positive", "Positive"), (false, false));
        assert_eq!(both("a\nb", "a\r\nb"), (false, false));
    }

    #[test]
    fn json_key_order_and_spacing_are_normalised() {
        assert_eq!(both(r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1}"#), (false, true));
        assert_eq!(
            both(r#"{"a":1,"b":2}"#, "{\n  \"a\": 1,\n  \"b\": 2\n}\n"),
            (false, true)
        );
    }

    #[test]
    fn nested_json_compares_deeply() {
        let e = r#"{"user":{"name":"Ana","tags":["x","y"],"meta":{"k":null}},"ok":true}"#;
        let reordered = r#"{"ok":true,"user":{"meta":{"k":null},"tags":["x","y"],"name":"Ana"}}"#;
        assert_eq!(both(e, reordered), (false, true));
        let inner_changed = r#"{"ok":true,"user":{"meta":{"k":0},"tags":["x","y"],"name":"Ana"}}"#;
        assert_eq!(both(e, inner_changed), (false, false));
    }

    #[test]
    fn json_array_order_matters() {
        assert_eq!(both(r#"["a","b"]"#, r#"["b","a"]"#), (false, false));
        assert_eq!(both(r#"["a","b"]"#, r#"[ "a", "b" ]"#), (false, true));
    }

    #[test]
    fn json_missing_or_extra_keys_do_not_match() {
        assert_eq!(both(r#"{"a":1}"#, r#"{"a":1,"b":2}"#), (false, false));
        assert_eq!(both(r#"{"a":1,"b":2}"#, r#"{"a":1}"#), (false, false));
        assert_eq!(both(r#"{"a":1}"#, r#"{"b":1}"#), (false, false));
    }

    #[test]
    fn numbers_compare_by_value_so_one_equals_one_point_zero() {
        assert_eq!(both("1", "1.0"), (false, true));
        assert_eq!(
            both(r#"{"price":150}"#, r#"{"price":150.0}"#),
            (false, true)
        );
        assert_eq!(both("1", "1e0"), (false, true));
        assert_eq!(both("-0.5", "-5e-1"), (false, true));
        assert_eq!(both("1", "1.5"), (false, false));
        assert_eq!(both("1", "-1"), (false, false));
    }

    #[test]
    fn large_integers_are_compared_exactly() {
        // Both round to the same f64; they must still differ.
        assert_eq!(both("9007199254740993", "9007199254740992"), (false, false));
        assert_eq!(
            both("18446744073709551615", "18446744073709551614"),
            (false, false)
        );
        assert_eq!(
            both("-9223372036854775808", "-9223372036854775808 "),
            (false, true)
        );
    }

    #[test]
    fn json_types_are_not_coerced() {
        assert_eq!(both("true", "\"true\""), (false, false));
        assert_eq!(both("1", "\"1\""), (false, false));
        assert_eq!(both("null", "{}"), (false, false));
        assert_eq!(both("[]", "{}"), (false, false));
    }

    #[test]
    fn json_string_is_not_equal_to_unquoted_text() {
        assert_eq!(both("abc", "\"abc\""), (false, false));
    }

    #[test]
    fn one_side_json_other_side_text_falls_back_to_text() {
        assert_eq!(both(r#"{"a":1}"#, "{a: 1}"), (false, false));
        assert_eq!(both("{a: 1}", " {a: 1} "), (false, true));
    }

    #[test]
    fn json_string_escapes_are_normalised() {
        assert_eq!(both(r#"["café"]"#, r#"["caf\u00e9"]"#), (false, true));
    }

    #[test]
    fn unicode_text_is_compared_without_normalisation() {
        assert_eq!(both("São Paulo", "São Paulo"), (true, true));
        // Precomposed vs decomposed "é": equal to a reader, different bytes.
        assert_eq!(both("caf\u{e9}", "cafe\u{301}"), (false, false));
        assert_eq!(both("東京", " 東京\n"), (false, true));
    }

    #[test]
    fn exact_match_implies_normalised_match() {
        for s in ["", " ", "x", "{\"a\":1}", "1.0", "\n"] {
            assert_eq!(both(s, s), (true, true), "{s:?}");
        }
    }
}
