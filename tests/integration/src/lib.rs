//! Test support for gc-archive's end-to-end tests: a moto server on a free loopback port, the
//! project virtualenv (moto, the official AWS Encryption SDK), and AWS SDK clients pointed at moto.
//!
//! Every helper here starts what it needs itself and stops it on drop, so a test never depends on
//! a server somebody else left running and never leaves one behind.

#![forbid(unsafe_code)]

pub mod chromium;
pub mod esm;
pub mod fault_proxy;
pub mod iam;
pub mod moto;
pub mod routing_kit;
pub mod runtime_api;
pub mod stack;
pub mod stream_kit;
pub mod transfer_kit;
pub mod upload_kit;
pub mod venv;

pub use moto::MotoServer;
