//! The org-administration calls `gc-archive setup` makes: integrations (the Amazon
//! EventBridge source), media retention policies, and permission probes.

use reqwest::Method;

use super::models::{
    Integration, IntegrationConfiguration, IntegrationListing, RetentionPolicy,
    RetentionPolicyListing,
};
use super::{GenesysClient, GenesysError};

/// Pages of an entity listing are fetched until `pageCount`, at most this many (a guard
/// against a listing that never ends).
const MAX_PAGES: u32 = 50;

impl GenesysClient {
    /// Every page of an entity listing at `path` (`pageSize=100`, until `pageCount`).
    pub(super) async fn all_pages<L, T>(
        &self,
        path: &str,
        entities: impl Fn(L) -> (Vec<T>, Option<u32>),
    ) -> Result<Vec<T>, GenesysError>
    where
        L: serde::de::DeserializeOwned,
    {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let (_, bytes) = self
                .call(
                    Method::GET,
                    path,
                    &[("pageSize", "100"), ("pageNumber", &page_text)],
                    None,
                    true,
                )
                .await?;
            let (listed, page_count) = entities(Self::decode::<L>("GET", path, &bytes)?);
            let done = listed.is_empty() || page_count.unwrap_or(1) <= page;
            out.extend(listed);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// GET `/api/v2/integrations` (every page).
    pub async fn integrations(&self) -> Result<Vec<Integration>, GenesysError> {
        self.all_pages("/api/v2/integrations", |l: IntegrationListing| {
            (l.entities, l.page_count)
        })
        .await
    }

    /// POST `/api/v2/integrations` (`CreateIntegrationRequest`). Not retried: a retry after a
    /// lost response would create a second integration.
    pub async fn create_integration(
        &self,
        type_id: &str,
        name: &str,
    ) -> Result<Integration, GenesysError> {
        let path = "/api/v2/integrations";
        let body = serde_json::json!({"name": name, "integrationType": {"id": type_id}});
        let (_, bytes) = self
            .call(Method::POST, path, &[], Some(body), false)
            .await?;
        Self::decode("POST", path, &bytes)
    }

    /// GET `/api/v2/integrations/{id}/config/current`.
    pub async fn integration_config(
        &self,
        id: &str,
    ) -> Result<IntegrationConfiguration, GenesysError> {
        let path = format!("/api/v2/integrations/{id}/config/current");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// PUT `/api/v2/integrations/{id}/config/current` with the version read (a concurrent
    /// change makes it fail rather than be overwritten).
    pub async fn put_integration_config(
        &self,
        id: &str,
        config: &IntegrationConfiguration,
    ) -> Result<IntegrationConfiguration, GenesysError> {
        let path = format!("/api/v2/integrations/{id}/config/current");
        let (_, bytes) = self
            .call(Method::PUT, &path, &[], Self::json_body(config), false)
            .await?;
        Self::decode("PUT", &path, &bytes)
    }

    /// PATCH `/api/v2/integrations/{id}` with `{"intendedState": state}`.
    pub async fn set_integration_state(
        &self,
        id: &str,
        state: &str,
    ) -> Result<Integration, GenesysError> {
        let path = format!("/api/v2/integrations/{id}");
        let body = serde_json::json!({"intendedState": state});
        let (_, bytes) = self
            .call(Method::PATCH, &path, &[], Some(body), true)
            .await?;
        Self::decode("PATCH", &path, &bytes)
    }

    /// GET `/api/v2/recording/mediaretentionpolicies` (every page).
    pub async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, GenesysError> {
        self.all_pages(
            "/api/v2/recording/mediaretentionpolicies",
            |l: RetentionPolicyListing| (l.entities, l.page_count),
        )
        .await
    }

    /// Sends one request for its status only (permission probes): Ok(status) for any HTTP
    /// answer, 403 included; Err only when no answer came.
    pub async fn probe(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<u16, GenesysError> {
        match self.call(method, path, &[], body, true).await {
            Ok((status, _)) => Ok(status.as_u16()),
            Err(GenesysError::Api { status, .. }) => Ok(status),
            Err(e) => Err(e),
        }
    }
}
