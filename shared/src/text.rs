//! Small text helpers for values that come from input and end up in bounded places (SQS message
//! attributes, error messages): cut on a character boundary, never inside one (`String::truncate`
//! at a byte index inside a multi-byte character panics).

/// Shortens `s` to at most `max_bytes` bytes, at the last character boundary that fits.
pub fn truncate_at_char_boundary(s: &mut String, max_bytes: usize) {
    if s.len() <= max_bytes {
        return;
    }
    let mut cut = max_bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

/// Replaces every double-quoted part of a parser message with `"…"`. serde_json quotes the
/// offending input value (`invalid type: string "https://…?X-Amz-Signature=…"`), and a Genesys
/// response can hold a signed URL: the message keeps its shape, never the value.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    let mut escaped = false;
    for c in message.chars() {
        if inside {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                inside = false;
                out.push_str("…\"");
            }
            continue;
        }
        out.push(c);
        if c == '"' {
            inside = true;
        }
    }
    if inside {
        out.push_str("…\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cuts_before_a_multibyte_character_instead_of_panicking() {
        let mut s = "aé".repeat(200);
        truncate_at_char_boundary(&mut s, 250);
        assert!(s.len() <= 250);
        assert!(s.ends_with('a') || s.ends_with('é'));
        let mut short = "ü".to_string();
        truncate_at_char_boundary(&mut short, 1);
        assert_eq!(short, "");
    }

    #[test]
    fn quoted_values_are_redacted() {
        let m = r#"invalid type: string "https://h/x?X-Amz-Signature=abc\"d", expected u64 at line 1 column 9"#;
        let r = redact_quoted(m);
        assert!(!r.contains("Signature"), "{r}");
        assert!(
            r.starts_with("invalid type: string \"…\", expected u64"),
            "{r}"
        );
        assert_eq!(redact_quoted("missing field `id`"), "missing field `id`");
    }

    proptest! {
        #[test]
        fn truncation_never_panics_and_respects_the_limit(s in "\\PC{0,80}", max in 0usize..120) {
            let mut t = s.clone();
            truncate_at_char_boundary(&mut t, max);
            prop_assert!(t.len() <= max);
            prop_assert!(s.starts_with(&t));
        }
    }
}
