//! The checks an attachment passes before an upload is signed, and the one its bytes pass
//! before it is released.
//!
//! Limits come from two places and the stricter wins: our configuration, and the web
//! deployment's `SessionResponse.allowedMedia.inbound{fileTypes[{type}], maxFileSizeKB}` and
//! `blockedExtensions[]` (Web Messaging guest API; a deployment's default size limit is
//! UNCONFIRMED, so without either limit ours applies). A refusal is a clear 4xx.

/// Longest file name kept, in bytes (the usual file-system limit).
pub const MAX_NAME_BYTES: usize = 255;

/// What the web deployment allows (`allowedMedia.inbound`, `blockedExtensions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentMedia {
    /// MIME types, `*/*` or `image/*` style wildcards allowed.
    pub file_types: Vec<String>,
    pub max_file_size_kb: Option<u64>,
    pub blocked_extensions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// MIME types we accept (wildcards as above); empty = whatever the deployment allows.
    pub allowed_types: Vec<String>,
    /// Extensions (without the dot, any case) refused whatever the type.
    pub blocked_extensions: Vec<String>,
    pub max_bytes: u64,
    pub deployment: Option<DeploymentMedia>,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            allowed_types: Vec::new(),
            blocked_extensions: [
                "exe", "dll", "bat", "cmd", "com", "js", "msi", "ps1", "scr", "sh", "vbs",
            ]
            .iter()
            .map(|e| e.to_string())
            .collect(),
            max_bytes: 5 * 1024 * 1024 * 1024,
            deployment: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the file name is empty or only path separators and dots")]
    NameInvalid,
    #[error("files ending in .{extension} are not accepted")]
    BlockedExtension { extension: String },
    #[error("{declared} is not an accepted file type")]
    TypeNotAllowed { declared: String },
    #[error("{size} bytes is more than the {limit} bytes accepted")]
    TooLarge { size: u64, limit: u64 },
    #[error("an empty file is not an attachment")]
    Empty,
    #[error("the file is {sniffed}, not the {declared} it was declared as")]
    ContentMismatch {
        declared: String,
        sniffed: &'static str,
    },
}

impl Refusal {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooLarge { .. } => 413,
            Refusal::TypeNotAllowed { .. } | Refusal::ContentMismatch { .. } => 415,
            _ => 400,
        }
    }
}

/// An upload the policy admits: its safe name and the limit that applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub file_name: String,
    pub limit: u64,
}

/// The last path component of `name`, with control and unusual characters replaced by `_`,
/// leading dots and trailing dots and spaces removed, cut to [`MAX_NAME_BYTES`] keeping
/// the extension.
pub fn sanitize_file_name(name: &str) -> Result<String, Refusal> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " ._-()+,@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '_') {
        return Err(Refusal::NameInvalid);
    }
    if trimmed.len() <= MAX_NAME_BYTES {
        return Ok(trimmed.to_string());
    }
    let (stem, ext) = match trimmed.rsplit_once('.') {
        Some((s, e)) if e.len() <= 16 => (s, format!(".{e}")),
        _ => (trimmed, String::new()),
    };
    let mut cut = MAX_NAME_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok(format!("{}{ext}", &stem[..cut]))
}

fn type_matches(pattern: &str, mime: &str) -> bool {
    let (p, m) = (pattern.to_ascii_lowercase(), mime.to_ascii_lowercase());
    let m = m.split(';').next().unwrap_or_default().trim().to_string();
    p == "*/*"
        || p == m
        || p.strip_suffix("/*")
            .is_some_and(|major| m.split('/').next() == Some(major))
}

impl UploadPolicy {
    /// Checks a requested upload before anything is signed.
    pub fn admit(
        &self,
        file_name: &str,
        declared_type: &str,
        size: u64,
    ) -> Result<Admitted, Refusal> {
        let file_name = sanitize_file_name(file_name)?;
        if size == 0 {
            return Err(Refusal::Empty);
        }
        let extension = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let deployment = self.deployment.clone().unwrap_or_default();
        let blocked = self
            .blocked_extensions
            .iter()
            .chain(&deployment.blocked_extensions)
            .any(|b| b.trim_start_matches('.').eq_ignore_ascii_case(&extension));
        if !extension.is_empty() && blocked {
            return Err(Refusal::BlockedExtension { extension });
        }
        let ours = self.allowed_types.is_empty()
            || self
                .allowed_types
                .iter()
                .any(|p| type_matches(p, declared_type));
        let theirs = self.deployment.is_none()
            || deployment
                .file_types
                .iter()
                .any(|p| type_matches(p, declared_type));
        if !ours || !theirs {
            return Err(Refusal::TypeNotAllowed {
                declared: declared_type.to_string(),
            });
        }
        let limit = deployment.max_file_size_kb.map_or(self.max_bytes, |kb| {
            kb.saturating_mul(1024).min(self.max_bytes)
        });
        if size > limit {
            return Err(Refusal::TooLarge { size, limit });
        }
        Ok(Admitted { file_name, limit })
    }
}

/// What the first bytes of a file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Pdf,
    Png,
    Jpeg,
    Gif,
    /// ISO base media (`ftyp` box): MP4, MOV, M4A, 3GP.
    IsoMedia,
    /// A ZIP container: also DOCX, XLSX, PPTX, ODT.
    Zip,
    /// A Windows executable (`MZ`).
    WindowsExecutable,
    /// A Linux executable (ELF).
    Elf,
    Unknown,
}

impl Sniffed {
    pub fn name(self) -> &'static str {
        match self {
            Sniffed::Pdf => "a PDF document",
            Sniffed::Png => "a PNG image",
            Sniffed::Jpeg => "a JPEG image",
            Sniffed::Gif => "a GIF image",
            Sniffed::IsoMedia => "an MP4/QuickTime file",
            Sniffed::Zip => "a ZIP container",
            Sniffed::WindowsExecutable => "a Windows executable",
            Sniffed::Elf => "an ELF executable",
            Sniffed::Unknown => "of an unknown kind",
        }
    }
}

/// The kind of file `head` (its first bytes; 16 are enough) starts like.
pub fn sniff(head: &[u8]) -> Sniffed {
    match head {
        [b'%', b'P', b'D', b'F', b'-', ..] => Sniffed::Pdf,
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Sniffed::Png,
        [0xff, 0xd8, 0xff, ..] => Sniffed::Jpeg,
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Sniffed::Gif,
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Sniffed::IsoMedia,
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Sniffed::Zip,
        [b'M', b'Z', ..] => Sniffed::WindowsExecutable,
        [0x7f, b'E', b'L', b'F', ..] => Sniffed::Elf,
        _ => Sniffed::Unknown,
    }
}

/// Whether bytes that sniff as `sniffed` may be released as `declared`. Executables never
/// are; a type we cannot recognise from its bytes (text, CSV) is released only when the
/// bytes are not a recognised binary kind either.
pub fn check_content(declared: &str, head: &[u8]) -> Result<(), Refusal> {
    let sniffed = sniff(head);
    let mime = declared.to_ascii_lowercase();
    let mime = mime.split(';').next().unwrap_or_default().trim();
    let expected: Option<&[Sniffed]> = match mime {
        "application/pdf" => Some(&[Sniffed::Pdf]),
        "image/png" => Some(&[Sniffed::Png]),
        "image/jpeg" | "image/jpg" => Some(&[Sniffed::Jpeg]),
        "image/gif" => Some(&[Sniffed::Gif]),
        "video/mp4" | "video/quicktime" | "audio/mp4" | "video/3gpp" => Some(&[Sniffed::IsoMedia]),
        "application/zip"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation"
        | "application/vnd.oasis.opendocument.text" => Some(&[Sniffed::Zip]),
        _ => None,
    };
    let ok = match expected {
        Some(kinds) => kinds.contains(&sniffed),
        None => sniffed == Sniffed::Unknown,
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::ContentMismatch {
            declared: declared.to_string(),
            sniffed: sniffed.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_path_and_odd_characters_and_keep_their_extension() {
        assert_eq!(sanitize_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(
            sanitize_file_name("C:\\Users\\a\\report.pdf").unwrap(),
            "report.pdf"
        );
        assert_eq!(
            sanitize_file_name("in\u{0}voice\n.pdf").unwrap(),
            "in_voice_.pdf"
        );
        assert_eq!(sanitize_file_name("  .hidden.txt. ").unwrap(), "hidden.txt");
        assert_eq!(
            sanitize_file_name("Café menu (1).pdf").unwrap(),
            "Café menu (1).pdf"
        );
        for bad in ["", "/", "..", "...", "a/..", "\u{1}\u{2}"] {
            assert_eq!(
                sanitize_file_name(bad),
                Err(Refusal::NameInvalid),
                "{bad:?}"
            );
        }
        let long = format!("{}.docx", "é".repeat(300));
        let cut = sanitize_file_name(&long).unwrap();
        assert!(
            cut.len() <= MAX_NAME_BYTES && cut.ends_with(".docx"),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn the_stricter_of_ours_and_the_deployments_limits_wins() {
        let policy = UploadPolicy {
            allowed_types: vec!["application/pdf".into(), "image/*".into()],
            max_bytes: 100 * 1024 * 1024,
            deployment: Some(DeploymentMedia {
                file_types: vec!["image/png".into(), "application/pdf".into()],
                max_file_size_kb: Some(10 * 1024),
                blocked_extensions: vec![".zip".into()],
            }),
            ..UploadPolicy::default()
        };
        let ok = policy
            .admit("scan.pdf", "application/pdf", 10 * 1024 * 1024)
            .unwrap();
        assert_eq!(ok.limit, 10 * 1024 * 1024);
        assert_eq!(
            policy.admit("scan.pdf", "application/pdf", 10 * 1024 * 1024 + 1),
            Err(Refusal::TooLarge {
                size: 10 * 1024 * 1024 + 1,
                limit: 10 * 1024 * 1024
            })
        );
        // Ours allows image/*, the deployment only PNG.
        assert!(matches!(
            policy.admit("a.jpg", "image/jpeg", 10),
            Err(Refusal::TypeNotAllowed { .. })
        ));
        assert!(policy
            .admit("a.png", "image/PNG; charset=binary", 10)
            .is_ok());
        assert_eq!(
            policy.admit("setup.EXE", "application/pdf", 10),
            Err(Refusal::BlockedExtension {
                extension: "exe".into()
            })
        );
        assert_eq!(
            policy.admit("all.zip", "application/pdf", 10),
            Err(Refusal::BlockedExtension {
                extension: "zip".into()
            })
        );
        assert_eq!(
            policy.admit("a.pdf", "application/pdf", 0),
            Err(Refusal::Empty)
        );
        assert_eq!(Refusal::Empty.status(), 400);
        assert_eq!(Refusal::TooLarge { size: 2, limit: 1 }.status(), 413);
        // Without a deployment configuration, ours alone applies.
        let ours = UploadPolicy::default();
        assert!(ours
            .admit("clip.mp4", "video/mp4", 4 * 1024 * 1024 * 1024)
            .is_ok());
    }

    #[test]
    fn bytes_must_be_what_was_declared_and_never_an_executable() {
        assert_eq!(
            check_content("application/pdf", b"%PDF-1.7\n%\xe2\xe3"),
            Ok(())
        );
        let pe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00";
        assert_eq!(
            check_content("application/pdf", pe),
            Err(Refusal::ContentMismatch {
                declared: "application/pdf".into(),
                sniffed: "a Windows executable"
            })
        );
        assert!(
            check_content("text/plain", pe).is_err(),
            "an executable is no text either"
        );
        assert_eq!(check_content("text/csv", b"a,b\n1,2\n"), Ok(()));
        assert_eq!(
            check_content("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Ok(())
        );
        assert!(check_content("image/png", b"\xff\xd8\xff\xe0").is_err());
        assert_eq!(
            check_content("image/jpeg", b"\xff\xd8\xff\xe0\0\x10JFIF"),
            Ok(())
        );
        assert_eq!(check_content("image/gif", b"GIF89a\x01\0"), Ok(()));
        assert_eq!(check_content("video/mp4", b"\0\0\0\x20ftypisom"), Ok(()));
        assert_eq!(
            check_content(
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                b"PK\x03\x04\x14\0\x06\0"
            ),
            Ok(())
        );
        assert_eq!(sniff(b"\x7fELF\x02\x01"), Sniffed::Elf);
        assert_eq!(sniff(b""), Sniffed::Unknown);
    }
}
