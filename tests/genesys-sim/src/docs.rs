//! Documents served for non-audio recordings: a ZIP holding a chat/messaging transcript and
//! an RFC 822 email. Deterministic from the recording, small, built once when the recording is
//! added.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::json;

use crate::digest::crc32;

/// A ZIP archive with `files` stored (method 0, no compression): local headers, data,
/// central directory and end-of-central-directory record, CRC-32 per entry.
pub(crate) fn zip_stored(files: &[(&str, &[u8])], at: DateTime<Utc>) -> Vec<u8> {
    let (time, date) = dos_time(at);
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        let name_len = name.len() as u16;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes()); // compressed
        out.extend_from_slice(&size.to_le_bytes()); // uncompressed
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&20u16.to_le_bytes()); // version needed
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // this disk
    out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

fn dos_time(t: DateTime<Utc>) -> (u16, u16) {
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let year = (t.year().clamp(1980, 2107) - 1980) as u16;
    let date = (year << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}

/// `transcript.json` of a chat or messaging recording.
pub(crate) fn transcript_json(
    media: &str,
    conversation_id: &str,
    recording_id: &str,
    start: DateTime<Utc>,
) -> Vec<u8> {
    let at = |s: i64| {
        (start + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let v = json!({
        "conversationId": conversation_id,
        "recordingId": recording_id,
        "media": media,
        "messages": [
            {"timestamp": at(0), "from": "customer", "body": "Hello, I would like to check my order."},
            {"timestamp": at(12), "from": "agent", "body": "Of course. Could you give me the order number?"},
            {"timestamp": at(30), "from": "customer", "body": "It is 4711."},
            {"timestamp": at(41), "from": "agent", "body": "Thank you, it ships tomorrow."},
        ],
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// An RFC 822 message for an email recording (CRLF line endings).
pub(crate) fn email(conversation_id: &str, recording_id: &str, start: DateTime<Utc>) -> Vec<u8> {
    let lines = [
        "From: Customer <customer@example.com>".to_string(),
        "To: Support <support@example.org>".to_string(),
        "Subject: Order 4711".to_string(),
        format!("Date: {}", start.to_rfc2822()),
        format!("Message-ID: <{recording_id}@gc-sim.invalid>"),
        "MIME-Version: 1.0".to_string(),
        "Content-Type: text/plain; charset=utf-8".to_string(),
        "Content-Transfer-Encoding: 8bit".to_string(),
        format!("X-Genesys-Conversation-Id: {conversation_id}"),
        String::new(),
        "Hello,".to_string(),
        String::new(),
        "could you tell me when order 4711 ships?".to_string(),
        String::new(),
        "Thanks".to_string(),
    ];
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s.into_bytes()
}
