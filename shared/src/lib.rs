//! gc-archive: the library every gc-archive Lambda and the CLI link.
//!
//! All logic lives here so it can be tested without AWS: handlers parse an event, call one
//! function from this crate, and map the result. See `DESIGN.md` §2 for the module map.

#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod compliance;
pub mod config;
pub mod crypto;
pub mod events;
pub mod genesys;
pub mod handlers;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod reconcile;
pub mod retry;
pub mod routing;
pub mod setup;
pub mod store;
pub mod stream;
pub mod sweep;
pub mod text;
pub mod transfer;
pub mod upload;
pub mod verify;
pub mod writeback;

pub use ids::{ConversationId, MediaKey, OrgId, RecordingId};
