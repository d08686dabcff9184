//! Numbers as the reports show them: cells read as numbers, and numbers
//! written per [`Unit`] ("1,234", "1,234.56 EUR", "12.5 %").

use serde_json::Value;

use crate::Unit;

/// The number a cell holds: a JSON number, or a string that reads as one
/// (surrounding spaces allowed). `None` for anything else, and for the
/// non-finite values a string can spell ("NaN", "inf"), which no report
/// can draw or sum.
pub fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// Whether a cell holds nothing: null, or a string of only spaces.
pub fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A cell's number in the unit it is shown in: money in currency units
/// (the table holds cents), everything else as it is.
pub fn shown_number(raw: f64, unit: &Unit) -> f64 {
    match unit {
        Unit::Money { .. } => raw / 100.0,
        _ => raw,
    }
}

/// A cell as text: numbers formatted per `unit`; a value that is not a
/// number (in a numeric column) or a text column's value as it is.
pub fn format_value(value: &Value, unit: &Unit) -> String {
    if *unit != Unit::Text
        && let Some(n) = number(value)
    {
        return format_number(n, unit);
    }
    plain(value)
}

/// A value as it is: strings without quotes, null as nothing, numbers and
/// booleans as JSON writes them, arrays and objects as JSON.
pub fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number formatted per `unit`: Count "1,234"; Number up to 2 decimals
/// "1,234.5"; Money (cents) "1,234.56 EUR"; Percent (a ratio) "12.5 %";
/// Text as a plain number.
pub fn format_number(n: f64, unit: &Unit) -> String {
    match unit {
        Unit::Count => grouped(n, 0, false),
        Unit::Number => grouped(n, 2, true),
        Unit::Money { currency } => {
            let amount = grouped(n / 100.0, 2, false);
            let currency = currency.trim();
            if currency.is_empty() { amount } else { format!("{amount} {currency}") }
        }
        Unit::Percent => format!("{} %", grouped(n * 100.0, 1, false)),
        Unit::Text => {
            // As JSON writes it: 3 rather than 3.0.
            serde_json::Number::from_f64(n).map(|n| n.to_string()).unwrap_or_default()
        }
    }
}

/// A relative change (0.125) as a signed percentage ("+12.5 %").
pub fn format_change(change: f64) -> String {
    let text = grouped(change * 100.0, 1, false);
    if text.starts_with('-') || text.chars().all(|c| c == '0' || c == '.') { format!("{text} %") } else { format!("+{text} %") }
}

/// `n` with `decimals` decimals (trailing zeros dropped when `trim`) and
/// its whole part grouped by thousands with commas.
fn grouped(n: f64, decimals: usize, trim: bool) -> String {
    let fixed = format!("{:.*}", decimals, n.abs());
    let (whole, fraction) = match fixed.split_once('.') {
        Some((whole, fraction)) => (whole, if trim { fraction.trim_end_matches('0') } else { fraction }),
        None => (fixed.as_str(), ""),
    };
    let mut out = String::with_capacity(fixed.len() + fixed.len() / 3 + 2);
    // "-0.00" reads as a negative nothing: only a number that is not zero
    // once rounded gets a sign.
    if n < 0.0 && fixed.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('-');
    }
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn money() -> Unit {
        Unit::Money { currency: "EUR".to_string() }
    }

    #[test]
    fn numbers_are_formatted_per_unit() {
        assert_eq!(format_value(&json!(1234), &Unit::Count), "1,234");
        assert_eq!(format_value(&json!(1234567.4), &Unit::Count), "1,234,567");
        assert_eq!(format_value(&json!(-999), &Unit::Count), "-999");
        assert_eq!(format_value(&json!(123456), &money()), "1,234.56 EUR");
        assert_eq!(format_value(&json!("5"), &money()), "0.05 EUR");
        assert_eq!(format_value(&json!(-123456), &money()), "-1,234.56 EUR");
        assert_eq!(format_value(&json!(0.125), &Unit::Percent), "12.5 %");
        assert_eq!(format_value(&json!(1234.5), &Unit::Number), "1,234.5");
        assert_eq!(format_value(&json!(2.0), &Unit::Number), "2");
        assert_eq!(format_value(&json!(0.126), &Unit::Number), "0.13");
        assert_eq!(format_value(&json!(-0.001), &Unit::Number), "0");
        assert_eq!(format_value(&json!(3.0), &Unit::Text), "3.0");
        assert_eq!(format_value(&json!("n/a"), &Unit::Count), "n/a");
        assert_eq!(format_value(&json!(null), &Unit::Count), "");
        assert_eq!(format_value(&json!(" 12 "), &Unit::Count), "12");
    }

    #[test]
    fn cells_read_as_numbers() {
        assert_eq!(number(&json!(" 1.5 ")), Some(1.5));
        assert_eq!(number(&json!("NaN")), None);
        assert_eq!(number(&json!("inf")), None);
        assert_eq!(number(&json!(true)), None);
        assert!(is_blank(&json!("  ")));
        assert!(!is_blank(&json!(0)));
    }

    #[test]
    fn changes_are_signed() {
        assert_eq!(format_change(0.125), "+12.5 %");
        assert_eq!(format_change(-0.03), "-3.0 %");
        assert_eq!(format_change(0.0), "0.0 %");
    }
}
