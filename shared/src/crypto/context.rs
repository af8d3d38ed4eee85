//! The encryption context: non-secret key/value pairs bound to a message by authentication.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CryptoError;

/// Keys starting with this prefix are reserved by the ESDK for its own use (e.g. the signing
/// public key), so a caller-supplied one would be misread by other implementations.
const RESERVED_PREFIX: &str = "aws-crypto-";

/// Encryption context. A `BTreeMap<String, String>` iterates in the byte order of the UTF-8 keys,
/// which is exactly the order the ESDK serialization requires. Serializes to JSON as a plain map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a pair, returning the previous value for the key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Builder-style insert.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value for `key`, or [`CryptoError::MissingContextKey`].
    pub fn require(&self, key: &str) -> Result<&str, CryptoError> {
        self.get(key)
            .ok_or_else(|| CryptoError::MissingContextKey(key.to_owned()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// ESDK serialization: empty bytes for an empty context, else a u16 pair count followed by
    /// u16-length-prefixed key and value of each pair in key order. Fails when a key, value, pair
    /// count or the whole serialization (which the header prefixes with a u16 length) would not
    /// fit in 16 bits.
    pub fn serialize(&self) -> Result<Vec<u8>, CryptoError> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let count = u16::try_from(self.0.len())
            .map_err(|_| CryptoError::InvalidContext("more than 65535 pairs".into()))?;
        let mut out = Vec::with_capacity(
            2 + self
                .0
                .iter()
                .map(|(k, v)| 4 + k.len() + v.len())
                .sum::<usize>(),
        );
        out.extend_from_slice(&count.to_be_bytes());
        for (k, v) in &self.0 {
            for field in [k, v] {
                let len = u16::try_from(field.len()).map_err(|_| {
                    CryptoError::InvalidContext(format!(
                        "entry for key {k:?} is longer than 65535 bytes"
                    ))
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(CryptoError::InvalidContext(
                "serialized context is longer than 65535 bytes".into(),
            ));
        }
        Ok(out)
    }

    /// Checks what encryption must refuse: reserved keys and contexts too large to serialize.
    pub fn validate_for_encrypt(&self) -> Result<(), CryptoError> {
        if let Some(k) = self.0.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(CryptoError::InvalidContext(format!(
                "key {k:?} uses the reserved prefix {RESERVED_PREFIX:?}"
            )));
        }
        self.serialize().map(|_| ())
    }

    /// Every pair of `required` must be present here with an equal value.
    pub fn check_required(&self, required: &EncryptionContext) -> Result<(), CryptoError> {
        for (k, expected) in &required.0 {
            let actual = self.0.get(k);
            if actual != Some(expected) {
                return Err(CryptoError::ContextMismatch {
                    key: k.clone(),
                    expected: expected.clone(),
                    actual: actual.cloned(),
                });
            }
        }
        Ok(())
    }

    /// Parses the key-value-pairs block of a header AAD (not including the outer u16 length).
    pub(crate) fn deserialize(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = |m: &str| CryptoError::Malformed(format!("encryption context: {m}"));
        let mut map = BTreeMap::new();
        if bytes.is_empty() {
            return Ok(Self(map));
        }
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], CryptoError> {
            if rest.len() < n {
                return Err(bad("length field runs past the end"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let count = read_u16(take(2)?);
        if count == 0 {
            return Err(bad("non-empty context with zero pairs"));
        }
        for _ in 0..count {
            let klen = usize::from(read_u16(take(2)?));
            let key = std::str::from_utf8(take(klen)?).map_err(|_| bad("key is not UTF-8"))?;
            let vlen = usize::from(read_u16(take(2)?));
            let value = std::str::from_utf8(take(vlen)?).map_err(|_| bad("value is not UTF-8"))?;
            if map.insert(key.to_owned(), value.to_owned()).is_some() {
                return Err(bad("duplicate key"));
            }
        }
        if !rest.is_empty() {
            return Err(bad("bytes after the last pair"));
        }
        Ok(Self(map))
    }
}

fn read_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for EncryptionContext {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}
