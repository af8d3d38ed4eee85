//! Identifier types. Genesys ids are parsed once at the edge and trusted inside; because they
//! end up in S3 keys and URL paths, only characters that are safe in both are accepted.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// An identifier failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected 1-64 characters of A-Z, a-z, 0-9, '-' or '_'")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                if valid_id(&value) {
                    Ok($name(value))
                } else {
                    let mut shown = value;
                    crate::text::truncate_at_char_boundary(&mut shown, 80);
                    Err(InvalidId { kind: $kind, value: shown })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A Genesys Cloud organization id.
    OrgId,
    "organization id"
);
id_type!(
    /// A Genesys Cloud conversation id.
    ConversationId,
    "conversation id"
);
id_type!(
    /// A Genesys Cloud recording id.
    RecordingId,
    "recording id"
);

/// A `mediaUris` key, when a recording has several media streams (genesys-api.md §3.3: the keys'
/// meaning is not documented). It becomes part of object keys, so only safe characters are
/// kept; anything else is written as hex, so two different keys never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MediaKey(String);

impl MediaKey {
    pub fn from_api(raw: &str) -> MediaKey {
        let safe = !raw.is_empty()
            && raw.len() <= 32
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if safe {
            MediaKey(raw.to_string())
        } else {
            let mut hex = format!("x{}", hex::encode(raw.as_bytes()));
            crate::text::truncate_at_char_boundary(&mut hex, 64);
            MediaKey(hex)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MediaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            Ok(MediaKey(s))
        } else {
            Err(serde::de::Error::custom("invalid media key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_genesys_uuids() {
        let id = ConversationId::parse("0b5a2c8e-4f7e-4c3b-9a8d-2f1e6d7c5b4a").unwrap();
        assert_eq!(id.as_str(), "0b5a2c8e-4f7e-4c3b-9a8d-2f1e6d7c5b4a");
    }

    #[test]
    fn rejects_ids_that_could_escape_a_key_or_path() {
        for bad in ["", "../x", "a/b", "a b", "a?b", &"x".repeat(65)] {
            assert!(RecordingId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn media_keys_are_safe_in_object_keys_and_distinct() {
        assert_eq!(MediaKey::from_api("S").as_str(), "S");
        let odd = MediaKey::from_api("a/b");
        assert!(odd.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(MediaKey::from_api("a.b"), MediaKey::from_api("a_b"));
    }

    #[test]
    fn non_ascii_ids_are_refused_without_a_panic() {
        let long = "é".repeat(100);
        let err = RecordingId::parse(long).unwrap_err();
        assert!(err.value.len() <= 80);
    }

    #[test]
    fn deserializing_validates() {
        let ok: OrgId = serde_json::from_str("\"abc-123\"").unwrap();
        assert_eq!(ok.to_string(), "abc-123");
        assert!(serde_json::from_str::<OrgId>("\"a/b\"").is_err());
    }
}
