//! Times as Keel reads them, from requests and from stored items: RFC 3339
//! with any offset, normalized to UTC; and the one form it writes them in.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::platform::error::{Error, Result};

/// What a request is told when a time field is not one.
pub const EXPECTED: &str = "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z";

/// An RFC 3339 time (any offset), in UTC; none if `value` is not one.
pub fn parse(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

/// An optional request field that must be an RFC 3339 time: absent is
/// none, anything else that is not a time is a 400 naming `field`.
pub fn field(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value.map(|v| parse(v).ok_or_else(|| Error::field(field, EXPECTED))).transpose()
}

/// RFC 3339 UTC with microseconds: sorts lexically in time order (stored
/// timestamps and the sort keys built from them).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_becomes_utc() {
        let t = parse("2026-01-31T02:00:00+02:00").unwrap();
        assert_eq!(timestamp(t), "2026-01-31T00:00:00.000000Z");
        assert_eq!(parse("2026-01-31T00:00:00.5Z").map(timestamp).as_deref(), Some("2026-01-31T00:00:00.500000Z"));
    }

    #[test]
    fn a_field_that_is_not_a_time_is_named() {
        assert_eq!(field("from", None).unwrap(), None);
        assert!(field("from", Some("2026-01-31T00:00:00Z")).unwrap().is_some());
        for bad in ["2026-01-31", "yesterday", "", "2026-01-31 00:00:00"] {
            match field("filters.from", Some(bad)) {
                Err(Error::Validation(errors)) => assert_eq!((errors[0].field.as_str(), errors[0].message.as_str()), ("filters.from", EXPECTED)),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
