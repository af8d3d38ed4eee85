//! The routing document joined to what each target needs at run time: its store, its layout,
//! its keyring and its compliance verdict.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::time::Instant;

use super::{RecordedRoute, RecordingFacts, RoutingConfig, RoutingError, StorageTarget};
use crate::compliance::{self, BucketInspector, TargetReport, VERDICT_TTL};
use crate::crypto::Keyring;
use crate::store::{ArchiveLayout, ArchiveLocation, ObjectStore};

/// One target, ready to be written to.
pub struct Destination {
    pub name: String,
    pub target: StorageTarget,
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
    pub keyring: Arc<dyn Keyring>,
    /// Who can decrypt the data keys (for manifests), e.g. `aws-kms:<key>`.
    pub key_providers: Vec<String>,
}

impl Destination {
    pub fn location(&self) -> ArchiveLocation {
        ArchiveLocation {
            store: self.store.clone(),
            layout: self.layout.clone(),
        }
    }
}

pub struct RouteTable {
    pub config: RoutingConfig,
    /// Where the document was read from, with its version (`s3://b/k#etag`, `ssm:/p#3`).
    pub source: String,
    destinations: BTreeMap<String, Arc<Destination>>,
    /// One per distinct bucket and prefix.
    locations: Vec<ArchiveLocation>,
    inspector: Arc<dyn BucketInspector>,
    verdicts: Mutex<HashMap<String, (Instant, TargetReport)>>,
}

impl RouteTable {
    /// `destinations` must hold one entry per target of `config`.
    pub fn new(
        config: RoutingConfig,
        source: impl Into<String>,
        destinations: Vec<Destination>,
        inspector: Arc<dyn BucketInspector>,
    ) -> Result<RouteTable, RoutingError> {
        let destinations: BTreeMap<String, Arc<Destination>> = destinations
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        if let Some(name) = config
            .targets
            .keys()
            .find(|n| !destinations.contains_key(*n))
        {
            return Err(RoutingError::Invalid {
                path: format!("targets.{name}"),
                reason: "has no store (a deployment fault)".into(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        let locations = destinations
            .values()
            .filter(|d| seen.insert((d.target.bucket.clone(), d.layout.prefix().to_string())))
            .map(|d| d.location())
            .collect();
        Ok(RouteTable {
            config,
            source: source.into(),
            destinations,
            locations,
            inspector,
            verdicts: Mutex::new(HashMap::new()),
        })
    }

    /// The same table judging its buckets with another inspector (a test standing in for a
    /// bucket setting its local S3 cannot serve). Verdicts are not carried over.
    pub fn with_inspector(&self, inspector: Arc<dyn BucketInspector>) -> RouteTable {
        RouteTable {
            config: self.config.clone(),
            source: self.source.clone(),
            destinations: self.destinations.clone(),
            locations: self.locations.clone(),
            inspector,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }

    pub fn destinations(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.destinations.values()
    }

    /// Every place an archive can be, one per distinct bucket and prefix.
    pub fn locations(&self) -> &[ArchiveLocation] {
        &self.locations
    }

    /// The route of a recording by the current rules (not yet recorded).
    pub fn decide(&self, facts: &RecordingFacts) -> Result<RecordedRoute, RoutingError> {
        let route = self.config.route(facts)?;
        Ok(RecordedRoute {
            target: route.target_name.to_string(),
            bucket: route.target.bucket.clone(),
            prefix: route.target.prefix.clone(),
            rule: route.rule.map(str::to_string),
            config: self.source.clone(),
            decided_at: Utc::now(),
        })
    }

    /// The destination a recorded route names, when it is still configured the same way (a
    /// target renamed or moved to another bucket would split the recording's archive).
    pub fn destination_of(&self, route: &RecordedRoute) -> Result<&Arc<Destination>, String> {
        let d = self.destinations.get(&route.target).ok_or_else(|| {
            format!(
                "the recording was routed to target {:?} (bucket {}), which the routing config no longer has; restore the target to finish it",
                route.target, route.bucket
            )
        })?;
        if d.target.bucket != route.bucket || d.target.prefix != route.prefix {
            return Err(format!(
                "the recording was routed to target {:?} at s3://{}/{}, which is now s3://{}/{}; restore the target's bucket and prefix to finish it",
                route.target, route.bucket, route.prefix, d.target.bucket, d.target.prefix
            ));
        }
        Ok(d)
    }

    /// The target's compliance verdict, read from the bucket at most every [`VERDICT_TTL`].
    pub async fn verdict(&self, name: &str) -> Option<TargetReport> {
        if let Ok(cache) = self.verdicts.lock() {
            if let Some((at, report)) = cache.get(name) {
                if at.elapsed() < VERDICT_TTL {
                    return Some(report.clone());
                }
            }
        }
        let d = self.destinations.get(name)?;
        let settings = self.inspector.inspect(&d.target.bucket).await;
        let report = compliance::evaluate(name, &d.target, &settings, Utc::now());
        if !report.compliant() {
            tracing::error!(target_name = name, bucket = %d.target.bucket, failures = ?report.failures(), "storage target is not compliant: its recordings wait");
        }
        if let Ok(mut cache) = self.verdicts.lock() {
            cache.insert(name.to_string(), (Instant::now(), report.clone()));
        }
        Some(report)
    }

    /// Ok when the target may be written to now.
    pub async fn admit(&self, name: &str) -> Result<(), String> {
        match self.verdict(name).await {
            Some(r) if r.compliant() => Ok(()),
            Some(r) => Err(format!(
                "target {name:?} (bucket {}) fails required compliance checks: {}; its recordings wait until the bucket is fixed",
                r.bucket,
                r.failures().join("; ")
            )),
            None => Err(format!("target {name:?} is not configured")),
        }
    }
}
