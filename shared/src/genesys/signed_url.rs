//! A signed media URL (`mediaUris[*].mediaUri`, batch `resultUrl`). Its query string is a
//! bearer credential, so the type never shows it: `Debug`, `Display` and `Serialize` give the
//! scheme and host only. The full URL is reachable only through [`SignedUrl::expose`], which
//! the media fetch calls to send the request.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq)]
pub struct SignedUrl(url::Url);

impl SignedUrl {
    pub fn parse(raw: &str) -> Option<SignedUrl> {
        url::Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .map(SignedUrl)
    }

    pub fn host(&self) -> String {
        self.0.host_str().unwrap_or("unknown").to_string()
    }

    /// The whole URL, query included: only for sending the request.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    fn shown(&self) -> String {
        format!("{}://{}/***", self.0.scheme(), self.host())
    }
}

impl std::fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedUrl({})", self.shown())
    }
}

impl std::fmt::Display for SignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Serialize for SignedUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

impl<'de> Deserialize<'de> for SignedUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        // The message names no part of the value: it is a credential.
        SignedUrl::parse(&raw).ok_or_else(|| serde::de::Error::custom("not an http(s) URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rendering_shows_the_query() {
        let u = SignedUrl::parse("https://media.example.com/a/b.wav?X-Amz-Signature=s3cr3t&x=1")
            .unwrap();
        for shown in [
            format!("{u:?}"),
            format!("{u}"),
            serde_json::to_string(&u).unwrap(),
        ] {
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("b.wav"),
                "{shown}"
            );
            assert!(shown.contains("media.example.com"), "{shown}");
        }
        assert!(u.expose().as_str().contains("s3cr3t"));
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = serde_json::from_str::<SignedUrl>("\"ftp://x/?sig=hidden\"").unwrap_err();
        assert!(!err.to_string().contains("hidden"), "{err}");
    }
}
