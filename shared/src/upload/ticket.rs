//! Upload tickets: what lets a browser (which cannot sign AWS requests) call the upload API
//! through a Function URL without it being open. A ticket names one conversation, the
//! communication the attachment is sent on, who it was issued to and when it expires, and
//! is signed with HMAC-SHA256 under a key kept in Secrets Manager. It travels in the
//! `x-upload-ticket` header (the page takes it from the URL fragment, which no server logs).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::ConversationId;

/// The ticket signing key. Never printed.
pub struct TicketKey(SecretBox<Vec<u8>>);

impl TicketKey {
    /// At least 32 bytes of secret (a generated Secrets Manager string is fine).
    pub fn new(secret: &[u8]) -> Result<TicketKey, TicketError> {
        if secret.len() < 32 {
            return Err(TicketError::WeakKey {
                bytes: secret.len(),
            });
        }
        Ok(TicketKey(SecretBox::new(Box::new(secret.to_vec()))))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // new_from_slice only fails for key sizes HMAC cannot take; SHA-256 takes any.
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(<redacted>)")
    }
}

/// What a valid ticket grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "cid")]
    pub conversation: ConversationId,
    #[serde(rename = "comm")]
    pub communication: String,
    /// Who it was issued to (a rate-limit and audit subject, not a secret).
    pub sub: String,
    /// Unix seconds.
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the upload ticket is malformed")]
    Malformed,
    #[error("the upload ticket's signature is not valid")]
    BadSignature,
    #[error("the upload ticket expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the ticket key is {bytes} bytes; at least 32 are needed")]
    WeakKey { bytes: usize },
}

const VERSION: &str = "v1";

pub fn issue(key: &TicketKey, grant: &Grant) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(grant).unwrap_or_default());
    let signed = format!("{VERSION}.{payload}");
    let mut mac = key.mac();
    mac.update(signed.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// The grant of a ticket that `key` signed and that has not expired at `now`.
pub fn verify(key: &TicketKey, ticket: &str, now: DateTime<Utc>) -> Result<Grant, TicketError> {
    let (signed, tag) = ticket
        .trim()
        .rsplit_once('.')
        .ok_or(TicketError::Malformed)?;
    let (version, payload) = signed.split_once('.').ok_or(TicketError::Malformed)?;
    if version != VERSION {
        return Err(TicketError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TicketError::Malformed)?;
    let mut mac = key.mac();
    mac.update(signed.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&tag)
        .map_err(|_| TicketError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TicketError::Malformed)?;
    let grant: Grant = serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)?;
    let expiry = DateTime::from_timestamp(grant.exp, 0).ok_or(TicketError::Malformed)?;
    if expiry <= now {
        return Err(TicketError::Expired(expiry));
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TicketKey {
        TicketKey::new(&[byte; 32]).unwrap()
    }

    fn grant(exp: i64) -> Grant {
        Grant {
            conversation: ConversationId::parse("c-1").unwrap(),
            communication: "comm-1".into(),
            sub: "widget".into(),
            exp,
        }
    }

    #[test]
    fn a_ticket_round_trips_until_it_expires() {
        let now = Utc::now();
        let t = issue(&key(7), &grant(now.timestamp() + 60));
        assert_eq!(
            verify(&key(7), &t, now).unwrap(),
            grant(now.timestamp() + 60)
        );
        let later = now + chrono::Duration::seconds(61);
        assert!(matches!(
            verify(&key(7), &t, later),
            Err(TicketError::Expired(_))
        ));
    }

    #[test]
    fn another_key_or_an_edited_payload_is_refused() {
        let now = Utc::now();
        let t = issue(&key(7), &grant(now.timestamp() + 60));
        assert_eq!(verify(&key(8), &t, now), Err(TicketError::BadSignature));
        let (signed, tag) = t.rsplit_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Grant {
                communication: "other".into(),
                ..grant(now.timestamp() + 60)
            })
            .unwrap(),
        );
        let edited = format!("v1.{forged}.{tag}");
        assert_ne!(signed, format!("v1.{forged}"));
        assert_eq!(
            verify(&key(7), &edited, now),
            Err(TicketError::BadSignature)
        );
        assert_eq!(verify(&key(7), "garbage", now), Err(TicketError::Malformed));
        assert_eq!(verify(&key(7), "v2.a.b", now), Err(TicketError::Malformed));
    }

    #[test]
    fn a_short_key_is_refused_and_no_key_is_printed() {
        assert_eq!(
            TicketKey::new(b"short").unwrap_err(),
            TicketError::WeakKey { bytes: 5 }
        );
        assert_eq!(format!("{:?}", key(7)), "TicketKey(<redacted>)");
    }
}
