//! Genesys Cloud Platform API: OAuth client credentials ([`auth`]), the HTTP client with the
//! shared retry policy and rate-limit tracking ([`client`]), client-side pacing by the
//! org's rate limit ([`throttle`]), and typed models for the real
//! endpoints we call ([`models`]). Only endpoints that exist in the official SDKs are used
//! (see `genesys-api.md`).

pub mod admin;
pub mod auth;
pub mod client;
pub mod error;
pub mod models;
pub mod notifications;
pub mod signed_url;
pub mod throttle;
pub mod webmessaging;

pub use auth::{AccessToken, TokenProvider};
pub use client::{GenesysClient, RateLimitInfo};
pub use error::GenesysError;
pub use signed_url::SignedUrl;
