//! Codec identification: sniffed from magic bytes, so a recording whose bytes are not what was
//! asked for is caught before it is archived. A media host's `Content-Type` is advisory only
//! (the signed URLs are served by storage that may say `binary/octet-stream`): the bytes decide.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Codec {
    WavPcm,
    WavUlaw,
    /// WAV with another format tag (A-law, GSM, …).
    WavOther,
    OggOpus,
    OggVorbis,
    Mp3,
    Webm,
    /// ISO base media (MP4) video: screen recordings.
    Mp4,
    /// A ZIP archive: chat and messaging transcripts (`chatFormatId=ZIP`).
    Zip,
    /// An RFC 822 message: email recordings (`emailFormatId=EML`).
    Eml,
}

/// The family a declared media type names; sniffed codecs must belong to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Ogg,
    Mp3,
    Webm,
    Mp4,
    Zip,
    Eml,
}

impl Codec {
    pub fn container(self) -> Container {
        match self {
            Codec::WavPcm | Codec::WavUlaw | Codec::WavOther => Container::Wav,
            Codec::OggOpus | Codec::OggVorbis => Container::Ogg,
            Codec::Mp3 => Container::Mp3,
            Codec::Webm => Container::Webm,
            Codec::Mp4 => Container::Mp4,
            Codec::Zip => Container::Zip,
            Codec::Eml => Container::Eml,
        }
    }

    /// Audio a recording of media `audio` may hold.
    pub fn is_audio(self) -> bool {
        !matches!(self, Codec::Mp4 | Codec::Zip | Codec::Eml)
    }

    /// File extension used in the archive key.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::WavPcm | Codec::WavUlaw | Codec::WavOther => "wav",
            Codec::OggOpus => "opus",
            Codec::OggVorbis => "ogg",
            Codec::Mp3 => "mp3",
            Codec::Webm => "webm",
            Codec::Mp4 => "mp4",
            Codec::Zip => "zip",
            Codec::Eml => "eml",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self.container() {
            Container::Wav => "audio/wav",
            Container::Ogg => "audio/ogg",
            Container::Mp3 => "audio/mpeg",
            Container::Webm => "audio/webm",
            Container::Mp4 => "video/mp4",
            Container::Zip => "application/zip",
            Container::Eml => "message/rfc822",
        }
    }

    /// The Genesys `formatId` that yields this codec.
    pub fn format_id(self) -> &'static str {
        match self {
            Codec::WavPcm | Codec::WavOther => "WAV",
            Codec::WavUlaw => "WAV_ULAW",
            Codec::OggOpus => "OGG_OPUS",
            Codec::OggVorbis => "OGG_VORBIS",
            Codec::Mp3 => "MP3",
            Codec::Webm | Codec::Mp4 => "WEBM",
            Codec::Zip | Codec::Eml => "NONE",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::WavPcm => "WAV (PCM)",
            Codec::WavUlaw => "WAV (mu-law)",
            Codec::WavOther => "WAV (other)",
            Codec::OggOpus => "Ogg Opus",
            Codec::OggVorbis => "Ogg Vorbis",
            Codec::Mp3 => "MP3",
            Codec::Webm => "WebM",
            Codec::Mp4 => "MP4",
            Codec::Zip => "ZIP",
            Codec::Eml => "email (RFC 822)",
        })
    }
}

/// Bytes needed from the start of the media to sniff it.
pub const SNIFF_LEN: usize = 64;

/// Identifies the codec from the first bytes of the media.
pub fn sniff(head: &[u8]) -> Option<Codec> {
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        // The fmt chunk normally follows directly; its first field is the format tag.
        if head.len() >= 22 && &head[12..16] == b"fmt " {
            return Some(match u16::from_le_bytes([head[20], head[21]]) {
                1 | 0xFFFE => Codec::WavPcm,
                7 => Codec::WavUlaw,
                _ => Codec::WavOther,
            });
        }
        return Some(Codec::WavOther);
    }
    if head.len() >= 36 && &head[0..4] == b"OggS" {
        // First page: 27-byte header + segment table, then the first packet.
        let segments = head[26] as usize;
        let packet = head.get(27 + segments..)?;
        if packet.starts_with(b"OpusHead") {
            return Some(Codec::OggOpus);
        }
        if packet.starts_with(b"\x01vorbis") {
            return Some(Codec::OggVorbis);
        }
        return None;
    }
    if head.len() >= 4 && head[0..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return Some(Codec::Webm);
    }
    if head.len() >= 4 && head[0..4] == *b"PK\x03\x04" {
        return Some(Codec::Zip);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(Codec::Mp4);
    }
    if looks_like_rfc822(head) {
        return Some(Codec::Eml);
    }
    if head.len() >= 3 && &head[0..3] == b"ID3" {
        return Some(Codec::Mp3);
    }
    // MPEG audio frame sync: 11 set bits, layer III, not a reserved version.
    if head.len() >= 2 && head[0] == 0xFF && (head[1] & 0xE0) == 0xE0 && (head[1] & 0x06) == 0x02 {
        return Some(Codec::Mp3);
    }
    None
}

/// An email message starts with header fields: `Name: value` lines of printable ASCII, and one
/// of the fields every message or its transport adds.
fn looks_like_rfc822(head: &[u8]) -> bool {
    const FIRST: &[&str] = &[
        "from:",
        "return-path:",
        "received:",
        "date:",
        "message-id:",
        "mime-version:",
        "subject:",
        "to:",
        "delivered-to:",
        "x-",
    ];
    let Ok(text) = std::str::from_utf8(&head[..head.len().min(SNIFF_LEN)]) else {
        return false;
    };
    let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
    FIRST.iter().any(|f| first.starts_with(f))
        && first.find(':').is_some_and(|i| {
            first[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether a `Content-Type` is an error page rather than media (a proxy's or a storage
/// service's error answer): such a response is worth another try, not a verdict on the media.
pub fn is_error_page_type(content_type: &str) -> bool {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        base.as_str(),
        "text/html"
            | "application/xml"
            | "text/xml"
            | "application/json"
            | "application/problem+json"
    )
}

/// The container a `Content-Type` declares (parameters ignored).
pub fn declared_container(content_type: &str) -> Option<Container> {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(Container::Wav),
        "audio/ogg" | "audio/opus" | "application/ogg" => Some(Container::Ogg),
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" => Some(Container::Mp3),
        "audio/webm" | "video/webm" => Some(Container::Webm),
        "video/mp4" | "audio/mp4" => Some(Container::Mp4),
        "application/zip" | "application/x-zip-compressed" => Some(Container::Zip),
        "message/rfc822" => Some(Container::Eml),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16) -> Vec<u8> {
        let mut h = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&[0u8; 40]);
        h
    }

    fn ogg(packet: &[u8]) -> Vec<u8> {
        let mut h = b"OggS".to_vec();
        h.extend_from_slice(&[0u8; 22]);
        h.push(1); // one segment
        h.push(packet.len() as u8);
        h.extend_from_slice(packet);
        h.extend_from_slice(&[0u8; 16]);
        h
    }

    #[test]
    fn sniffs_every_codec_genesys_offers() {
        assert_eq!(sniff(&wav(1)), Some(Codec::WavPcm));
        assert_eq!(sniff(&wav(7)), Some(Codec::WavUlaw));
        assert_eq!(sniff(&ogg(b"OpusHead\x01\x02")), Some(Codec::OggOpus));
        assert_eq!(sniff(&ogg(b"\x01vorbis\0\0\0\0")), Some(Codec::OggVorbis));
        assert_eq!(sniff(b"ID3\x04\0\0\0\0\0\0"), Some(Codec::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x00]), Some(Codec::Mp3));
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), Some(Codec::Webm));
    }

    #[test]
    fn sniffs_the_other_recording_kinds() {
        assert_eq!(sniff(b"PK\x03\x04\x14\0\0\0"), Some(Codec::Zip));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some(Codec::Mp4));
        assert_eq!(
            sniff(b"From: agent@example.com\r\nTo: c@example.org\r\n"),
            Some(Codec::Eml)
        );
        assert_eq!(sniff(b"Hello: not quite\r\n"), None);
        assert!(is_error_page_type("text/html; charset=utf-8"));
        assert!(!is_error_page_type("binary/octet-stream"));
    }

    #[test]
    fn unknown_bytes_are_not_guessed() {
        assert_eq!(sniff(b"<html><body>error</body></html>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn declared_types_map_to_containers() {
        assert_eq!(declared_container("audio/wav"), Some(Container::Wav));
        assert_eq!(
            declared_container("audio/ogg; codecs=opus"),
            Some(Container::Ogg)
        );
        assert_eq!(declared_container("AUDIO/MPEG"), Some(Container::Mp3));
        assert_eq!(declared_container("text/html"), None);
    }
}
