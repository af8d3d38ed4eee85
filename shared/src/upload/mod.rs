//! upload-proxy's library: large Web Messaging attachments go from the client straight to S3
//! as a multipart upload whose parts' SHA-256 are bound in their presigned URLs; completion
//! verifies the bytes, releases them beside the conversation's recordings and hands them to
//! the conversation through Genesys' message media flow, or as a link above its limits
//! (genesys-api.md §6; the seed's `GuestApi.createGuestFile` does not exist).
//!
//! [`policy`] decides what may be uploaded, [`plan`] how it is cut into parts, [`ticket`]
//! who may call, [`s3`] the S3 calls, [`state`] the upload's record, [`service`] the
//! lifecycle and [`api`] the HTTP surface.

pub mod api;
pub mod plan;
pub mod policy;
pub mod s3;
pub mod service;
pub mod state;
pub mod ticket;

pub use api::{handle, ApiRequest, ApiResponse, AuthMode};
pub use service::{Caller, UploadError, UploadService, UploadSettings, VerifyMode};
