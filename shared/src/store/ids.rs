//! Ids of Keel's entities, checked once where they come in (a path, a body,
//! a query string, a job's parameters), so that code past the edge holds an
//! id that is one, never a bare string. Every one is a UUID (new ones are
//! UUIDv7, so they sort by creation); each knows the partition key of its
//! item, `USER#<id>`, `CHART#<id>`...
//!
//! The text is kept as given: stored ids are lower-case hyphenated, and an
//! id spelled otherwise (upper case, braces) names nothing, as before ids
//! were typed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every id type offers generic code (the path extractor of
/// `http::PathId`).
pub trait Id: Sized {
    /// What the id names, for messages: "user", "job"...
    const WHAT: &'static str;
    /// The id, if `value` is one.
    fn parse(value: &str) -> Option<Self>;
}

/// A string that is not an id of the kind expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub &'static str);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// What a request is told when a field should hold one.
            pub const EXPECTED: &'static str = concat!("must be a ", $what, " id (UUID)");

            /// The id, if `value` is a UUID.
            pub fn parse(value: &str) -> Option<Self> {
                uuid::Uuid::try_parse(value).ok().map(|_| $name(value.to_string()))
            }

            /// A new id (UUIDv7: ids sort by creation).
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// The partition key of its item(s).
            pub fn pk(&self) -> String {
                Self::pk_of(&self.0)
            }

            /// The partition key for an id read from a stored item (already
            /// checked when it was written).
            pub fn pk_of(id: &str) -> String {
                format!(concat!($prefix, "#{}"), id)
            }
        }

        impl Id for $name {
            const WHAT: &'static str = $what;
            fn parse(value: &str) -> Option<Self> {
                $name::parse(value)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(value: &str) -> Result<Self, InvalidId> {
                $name::parse(value).ok_or(InvalidId($name::EXPECTED))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Read as the string it is, so code that takes `&str` takes an id.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| serde::de::Error::custom($name::EXPECTED))
            }
        }
    };
}

uuid_id!(
    /// A user (`USER#<id>`).
    UserId,
    "user",
    "USER"
);
uuid_id!(
    /// A chart (`CHART#<id>`).
    ChartId,
    "chart",
    "CHART"
);
uuid_id!(
    /// A job: exports, imports, bulk operations, erasures (`JOB#<id>`).
    JobId,
    "job",
    "JOB"
);
uuid_id!(
    /// An analytics insight (stored under `INSIGHTS / INSIGHT#<id>`): derived
    /// from the finding's stable key, so the job that finds it again updates
    /// the same one.
    InsightId,
    "insight",
    "INSIGHT"
);

uuid_id!(
    /// A GDPR/CCPA subject request (`REQUEST#<id>`); not an HTTP request's id.
    SubjectRequestId,
    "subject request",
    "REQUEST"
);
uuid_id!(
    /// A backup of the table (`BACKUP#<id>`): the id of the job that wrote it.
    BackupId,
    "backup",
    "BACKUP"
);
uuid_id!(
    /// A custom analytics segment (stored under `ANALYTICS#SEGMENTS / SEGMENT#<id>`).
    SegmentId,
    "segment",
    "SEGMENT"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_are_ids() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.pk(), format!("USER#{id}"));
        assert_eq!(JobId::parse("0190f5a4-7c3e-7d2b-9a1e-3f4c5d6e7f80").unwrap().pk(), "JOB#0190f5a4-7c3e-7d2b-9a1e-3f4c5d6e7f80");
        for bad in ["", "not-a-uuid", "USER#0190f5a4-7c3e-7d2b-9a1e-3f4c5d6e7f80", "0190f5a4-7c3e-7d2b-9a1e"] {
            assert_eq!(UserId::parse(bad), None, "{bad}");
            assert_eq!(bad.parse::<ChartId>(), Err(InvalidId("must be a chart id (UUID)")));
        }
    }

    #[test]
    fn serde_is_the_plain_string() {
        let id = SubjectRequestId::generate();
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(id.as_str()));
        assert_eq!(serde_json::from_value::<SubjectRequestId>(serde_json::json!(id.as_str())).unwrap(), id);
        let err = serde_json::from_value::<UserId>(serde_json::json!("nope")).unwrap_err();
        assert_eq!(err.to_string(), "must be a user id (UUID)");
    }
}
