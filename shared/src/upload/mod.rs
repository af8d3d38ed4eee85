//! upload-proxy's library (issue 18, in progress): what a large Web Messaging attachment must
//! pass before anything is signed for it. So far the policy ([`policy`]): file names,
//! blocked extensions, allowed types and sizes (ours and the web deployment's
//! `allowedMedia`/`blockedExtensions`, genesys-api.md §6), and the magic-byte check of what
//! was uploaded against the type declared. The S3 multipart flow, the Genesys media upload
//! and the function are not built yet.

pub mod policy;
