//! Storage targets and routing rules: which bucket and prefix a recording is archived to.
//!
//! Genesys Cloud has no "storage target" resource (genesys-api.md §8): targets and rules live in
//! our own versioned configuration document (YAML or JSON, in S3 or SSM Parameter Store),
//! validated as a whole before any of it is used, with errors naming the field
//! (`rules[2].when.queueIds`) and, for a malformed document, the line and column. Rules are tried in order and the first that matches wins; a recording no
//! rule matches goes to `defaultTarget`, and without one it is refused with the reason (it
//! waits, it is never written to a guessed place).
//!
//! A rule's conditions are ANDed; a list inside one condition is ORed (any of the queues). A
//! condition left out matches everything.
//!
//! The decision for a recording is made once and kept ([`RecordedRoute`], in the deployment's
//! bucket and in the transfer job): a resumed or redelivered transfer never changes bucket, even
//! when the rules changed in between. [`table::RouteTable`] joins the document to the stores,
//! keyrings and compliance verdicts of its targets.

pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::RecordingMedia;
use crate::genesys::models::Conversation;

pub const ROUTING_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingError {
    /// The document is not JSON, or a field has the wrong shape.
    #[error("routing config: {path}: {reason}")]
    Parse { path: String, reason: String },
    /// The document parses but says something impossible.
    #[error("routing config: {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("no routing rule matches ({facts}) and the config has no defaultTarget")]
    NoRule { facts: String },
}

/// One place recordings can be archived to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageTarget {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub region: Option<String>,
    /// The envelope key (id, ARN or alias); the deployment's key when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// How long the bucket must keep each archive (Object Lock retention when `worm`).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Archives and manifests are written with Object Lock retention.
    #[serde(default)]
    pub worm: bool,
    /// The Object Lock mode of a worm target's archives.
    #[serde(default)]
    pub object_lock_mode: ObjectLockMode,
    /// The weakest bucket default encryption the compliance check accepts.
    #[serde(default)]
    pub minimum_encryption: EncryptionMinimum,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectLockMode {
    /// Nobody, not even the root user, can shorten or remove the retention.
    #[default]
    #[serde(rename = "COMPLIANCE")]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    #[serde(rename = "GOVERNANCE")]
    Governance,
}

impl ObjectLockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectLockMode::Compliance => "COMPLIANCE",
            ObjectLockMode::Governance => "GOVERNANCE",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionMinimum {
    /// SSE-KMS (or DSSE-KMS).
    #[default]
    #[serde(rename = "aws:kms")]
    Kms,
    /// SSE-S3 or better.
    #[serde(rename = "AES256")]
    Aes256,
}

impl EncryptionMinimum {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMinimum::Kms => "aws:kms",
            EncryptionMinimum::Aes256 => "AES256",
        }
    }
}

/// What a rule asks of a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    #[serde(default)]
    pub media: Option<BTreeSet<RecordingMedia>>,
    #[serde(default)]
    pub queue_ids: Option<BTreeSet<String>>,
    #[serde(default)]
    pub division_ids: Option<BTreeSet<String>>,
    /// `inbound` or `outbound` (the conversation's originating direction).
    #[serde(default)]
    pub direction: Option<BTreeSet<String>>,
    #[serde(default)]
    pub wrapup_codes: Option<BTreeSet<String>>,
    /// Conversation attributes (participant data) that must have exactly these values.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub when: Conditions,
}

/// The routing document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingConfig {
    pub version: u32,
    pub targets: BTreeMap<String, StorageTarget>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub default_target: Option<String>,
}

/// What is known about one recording when it is routed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFacts {
    pub media: Option<RecordingMedia>,
    /// Every queue the conversation passed through.
    pub queue_ids: BTreeSet<String>,
    pub division_ids: BTreeSet<String>,
    pub direction: Option<String>,
    pub wrapup_codes: BTreeSet<String>,
    pub attributes: BTreeMap<String, String>,
}

impl std::fmt::Display for RecordingFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        write!(
            f,
            "media {}, queues [{}], divisions [{}], direction {}, wrap-up codes [{}], {} attributes",
            self.media.map_or("-", |m| m.as_str()),
            list(&self.queue_ids),
            list(&self.division_ids),
            self.direction.as_deref().unwrap_or("-"),
            list(&self.wrapup_codes),
            self.attributes.len()
        )
    }
}

/// Where a recording goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub target_name: &'a str,
    pub target: &'a StorageTarget,
    /// The rule that matched; None for the default target.
    pub rule: Option<&'a str>,
    /// One line per rule tried before it: its name and the condition that failed.
    pub explanation: Vec<String>,
}

/// The decision for one recording, kept for the life of its archive: where it went and which
/// rule sent it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRoute {
    pub target: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// The rule that matched; None when the default target took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Where the rules came from (`s3://…`, `ssm:…`) and its version.
    #[serde(default)]
    pub config: String,
    pub decided_at: chrono::DateTime<chrono::Utc>,
}

impl RecordingFacts {
    /// What `GET /api/v2/conversations/{id}` says about a conversation, for one recording of
    /// kind `media`. The direction is that of the first participant's first media session
    /// (the customer's leg on an inbound call, the agent's on an outbound one), as Genesys
    /// Cloud's `originatingDirection` is defined.
    pub fn of_conversation(conv: &Conversation, media: Option<RecordingMedia>) -> RecordingFacts {
        let mut facts = RecordingFacts {
            media,
            ..Default::default()
        };
        for p in &conv.participants {
            if let Some(q) = &p.queue_id {
                facts.queue_ids.insert(q.clone());
            }
            if let Some(code) = p.wrapup.as_ref().and_then(|w| w.code.clone()) {
                facts.wrapup_codes.insert(code);
            }
            if facts.direction.is_none() {
                facts.direction = p
                    .sessions()
                    .find_map(|s| s.direction.as_ref())
                    .map(|d| d.to_ascii_lowercase());
            }
            for (k, v) in &p.attributes {
                if let Some(v) = v.as_str() {
                    // The first participant that sets a key wins: the customer's leg carries
                    // the flow's data, later legs copy it.
                    facts
                        .attributes
                        .entry(k.clone())
                        .or_insert_with(|| v.to_string());
                }
            }
        }
        facts.division_ids = conv
            .divisions
            .iter()
            .filter_map(|d| d.division.as_ref()?.id.clone())
            .collect();
        facts
    }
}

impl RoutingConfig {
    /// Parses and validates a document: JSON when it starts with `{`, else YAML (a superset
    /// of JSON, but its JSON errors are less clear).
    pub fn from_document(text: &str) -> Result<RoutingConfig, RoutingError> {
        if text.trim_start().starts_with('{') {
            Self::from_json(text)
        } else {
            Self::from_yaml(text)
        }
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml(text: &str) -> Result<RoutingConfig, RoutingError> {
        Self::parse_with(serde_norway::Deserializer::from_str(text))
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<RoutingConfig, RoutingError> {
        Self::parse_with(&mut serde_json::Deserializer::from_str(text))
    }

    /// Errors name the field path (`rules[1].target`), or the document for a syntax error,
    /// whose message carries the line and column.
    fn parse_with<'de, D>(de: D) -> Result<RoutingConfig, RoutingError>
    where
        D: serde::Deserializer<'de>,
        D::Error: std::fmt::Display,
    {
        let config: RoutingConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = match e.path().to_string().as_str() {
                "." => "(document)".to_string(),
                p => p.to_string(),
            };
            // serde_norway's messages start with the path themselves.
            let reason = e.into_inner().to_string();
            let reason = reason
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(reason);
            RoutingError::Parse { path, reason }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Everything a parse cannot see: references, duplicates, empty values.
    pub fn validate(&self) -> Result<(), RoutingError> {
        let invalid = |path: String, reason: &str| {
            Err(RoutingError::Invalid {
                path,
                reason: reason.to_string(),
            })
        };
        if self.version != ROUTING_VERSION {
            return invalid(
                "version".into(),
                &format!("is {}, this build reads {ROUTING_VERSION}", self.version),
            );
        }
        if self.targets.is_empty() {
            return invalid("targets".into(), "at least one target is needed");
        }
        for (name, t) in &self.targets {
            if !valid_bucket_name(&t.bucket) {
                return invalid(
                    format!("targets.{name}.bucket"),
                    "is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit)",
                );
            }
            if t.prefix.starts_with('/') || t.prefix.ends_with('/') || t.prefix.contains("//") {
                return invalid(
                    format!("targets.{name}.prefix"),
                    "has a leading, trailing or double '/'",
                );
            }
            if t.worm && t.retention_days.unwrap_or(0) == 0 {
                return invalid(
                    format!("targets.{name}.retentionDays"),
                    "a worm target needs retentionDays of at least 1",
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return invalid(format!("rules[{i}].name"), "is empty");
            }
            if !names.insert(rule.name.as_str()) {
                return invalid(
                    format!("rules[{i}].name"),
                    &format!("{:?} is used by an earlier rule", rule.name),
                );
            }
            if !self.targets.contains_key(&rule.target) {
                return invalid(
                    format!("rules[{i}].target"),
                    &format!("{:?} is not one of the targets", rule.target),
                );
            }
            let w = &rule.when;
            for (field, empty) in [
                ("media", w.media.as_ref().is_some_and(BTreeSet::is_empty)),
                (
                    "queueIds",
                    w.queue_ids.as_ref().is_some_and(BTreeSet::is_empty),
                ),
                (
                    "divisionIds",
                    w.division_ids.as_ref().is_some_and(BTreeSet::is_empty),
                ),
                (
                    "direction",
                    w.direction.as_ref().is_some_and(BTreeSet::is_empty),
                ),
                (
                    "wrapupCodes",
                    w.wrapup_codes.as_ref().is_some_and(BTreeSet::is_empty),
                ),
            ] {
                if empty {
                    return invalid(
                        format!("rules[{i}].when.{field}"),
                        "is an empty list, which nothing matches (leave it out to match everything)",
                    );
                }
            }
            if let Some(d) = w
                .direction
                .iter()
                .flatten()
                .find(|d| *d != "inbound" && *d != "outbound")
            {
                return invalid(
                    format!("rules[{i}].when.direction"),
                    &format!("{d:?} is neither inbound nor outbound"),
                );
            }
        }
        if let Some(d) = &self.default_target {
            if !self.targets.contains_key(d) {
                return invalid(
                    "defaultTarget".into(),
                    &format!("{d:?} is not one of the targets"),
                );
            }
        }
        Ok(())
    }

    /// The target of a recording: the first rule that matches, else the default. Allocates
    /// nothing (`explanation` is empty): what the pipeline calls per recording.
    pub fn route(&self, facts: &RecordingFacts) -> Result<Route<'_>, RoutingError> {
        self.route_with(facts, false)
    }

    /// [`RoutingConfig::route`] with the explanation: one line per rule passed over, naming the
    /// condition it failed (`gc-archive route`).
    pub fn explain(&self, facts: &RecordingFacts) -> Result<Route<'_>, RoutingError> {
        self.route_with(facts, true)
    }

    fn route_with(&self, facts: &RecordingFacts, explain: bool) -> Result<Route<'_>, RoutingError> {
        let mut explanation = Vec::new();
        for rule in &self.rules {
            match rule.when.first_miss(facts) {
                None => {
                    return Ok(Route {
                        target_name: &rule.target,
                        target: &self.targets[&rule.target],
                        rule: Some(&rule.name),
                        explanation,
                    })
                }
                Some(miss) if explain => explanation.push(format!(
                    "rule {:?}: {}",
                    rule.name,
                    rule.when.describe(&miss, facts)
                )),
                Some(_) => {}
            }
        }
        match &self.default_target {
            Some(name) => Ok(Route {
                target_name: name,
                target: &self.targets[name],
                rule: None,
                explanation,
            }),
            None => Err(RoutingError::NoRule {
                facts: facts.to_string(),
            }),
        }
    }
}

/// The first condition of a rule that a recording fails (no allocation; words on demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss<'a> {
    Media,
    Queues,
    Divisions,
    Direction,
    WrapupCodes,
    Attribute(&'a str, &'a str),
}

impl Conditions {
    fn first_miss(&self, f: &RecordingFacts) -> Option<Miss<'_>> {
        fn any_of(want: &Option<BTreeSet<String>>, have: &BTreeSet<String>) -> bool {
            want.as_ref().is_none_or(|w| !w.is_disjoint(have))
        }
        if let Some(media) = &self.media {
            if !f.media.is_some_and(|m| media.contains(&m)) {
                return Some(Miss::Media);
            }
        }
        if !any_of(&self.queue_ids, &f.queue_ids) {
            return Some(Miss::Queues);
        }
        if !any_of(&self.division_ids, &f.division_ids) {
            return Some(Miss::Divisions);
        }
        if let Some(dirs) = &self.direction {
            if !f.direction.as_ref().is_some_and(|d| dirs.contains(d)) {
                return Some(Miss::Direction);
            }
        }
        if !any_of(&self.wrapup_codes, &f.wrapup_codes) {
            return Some(Miss::WrapupCodes);
        }
        for (k, v) in &self.attributes {
            if f.attributes.get(k) != Some(v) {
                return Some(Miss::Attribute(k, v));
            }
        }
        None
    }

    fn describe(&self, miss: &Miss<'_>, f: &RecordingFacts) -> String {
        match miss {
            Miss::Media => format!(
                "media {} is not one of {:?}",
                f.media.map_or("unknown", |m| m.as_str()),
                self.media
                    .iter()
                    .flatten()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            ),
            Miss::Queues => "none of the conversation's queues is listed".into(),
            Miss::Divisions => "none of the conversation's divisions is listed".into(),
            Miss::Direction => format!(
                "direction {} is not listed",
                f.direction.as_deref().unwrap_or("unknown")
            ),
            Miss::WrapupCodes => "none of the conversation's wrap-up codes is listed".into(),
            Miss::Attribute(k, v) => format!("attribute {k:?} is not {v:?}"),
        }
    }

    /// None when every condition holds; else the first that does not, in words.
    #[cfg(test)]
    fn mismatch(&self, f: &RecordingFacts) -> Option<String> {
        self.first_miss(f).map(|m| self.describe(&m, f))
    }
}

/// S3's bucket naming rules (general purpose buckets), without the reserved prefixes.
fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC: &str = r#"{
      "version": 1,
      "targets": {
        "sales": {"bucket": "acme-sales-archive", "prefix": "recordings", "retentionDays": 2555, "worm": true},
        "support": {"bucket": "acme-support-archive"},
        "general": {"bucket": "acme-archive", "prefix": "genesys"}
      },
      "rules": [
        {"name": "sales calls", "target": "sales", "when": {"queueIds": ["q-sales"], "media": ["audio"]}},
        {"name": "vip", "target": "sales", "when": {"attributes": {"tier": "vip"}}},
        {"name": "support chats", "target": "support", "when": {"media": ["chat", "messaging"], "direction": ["inbound"]}}
      ],
      "defaultTarget": "general"
    }"#;

    fn facts(media: RecordingMedia, queue: &str) -> RecordingFacts {
        RecordingFacts {
            media: Some(media),
            queue_ids: [queue.to_string()].into(),
            direction: Some("inbound".into()),
            ..RecordingFacts::default()
        }
    }

    #[test]
    fn yaml_errors_name_the_field_once_and_the_line() {
        let e = RoutingConfig::from_yaml("version: 1\ntargets:\n  a: [oops\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("routing config: targets.a: "), "{text}");
        assert_eq!(text.matches("targets.a").count(), 1, "{text}");
        assert!(text.contains("line 3"), "{text}");
        let e = RoutingConfig::from_yaml(
            "version: 1\ntargets:\n  a:\n    bucket: acme-archive\n    prefx: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("targets.a") && e.contains("prefx"), "{e}");
        let same = RoutingConfig::from_yaml(
            "version: 1\ntargets:\n  a:\n    bucket: acme-archive\ndefaultTarget: a\n",
        )
        .unwrap();
        assert_eq!(
            same,
            RoutingConfig::from_json(
                r#"{"version":1,"targets":{"a":{"bucket":"acme-archive"}},"defaultTarget":"a"}"#
            )
            .unwrap()
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_the_explanation_names_the_rules_passed_over() {
        let c = RoutingConfig::from_json(DOC).unwrap();
        let r = c.route(&facts(RecordingMedia::Audio, "q-sales")).unwrap();
        assert_eq!((r.target_name, r.rule), ("sales", Some("sales calls")));
        assert!(r.explanation.is_empty());
        let r = c.explain(&facts(RecordingMedia::Chat, "q-sales")).unwrap();
        assert_eq!((r.target_name, r.rule), ("support", Some("support chats")));
        assert_eq!(
            r.explanation,
            [
                "rule \"sales calls\": media chat is not one of [\"audio\"]",
                "rule \"vip\": attribute \"tier\" is not \"vip\""
            ]
        );
        let r = c.route(&facts(RecordingMedia::Screen, "q-other")).unwrap();
        assert_eq!((r.target_name, r.rule), ("general", None));
        assert_eq!(r.target.prefix, "genesys");
    }

    #[test]
    fn without_a_default_an_unmatched_recording_is_refused_with_its_facts() {
        let mut c = RoutingConfig::from_json(DOC).unwrap();
        c.default_target = None;
        let e = c
            .route(&facts(RecordingMedia::Screen, "q-other"))
            .unwrap_err();
        assert!(
            matches!(&e, RoutingError::NoRule { facts } if facts.contains("media screen") && facts.contains("q-other")),
            "{e}"
        );
    }

    #[test]
    fn bad_documents_are_refused_naming_the_field() {
        // (what DOC has, what it gets instead, the field the error must name)
        let cases = [
            ("\"version\": 1", "\"version\": 2", "version"),
            (
                "\"target\": \"support\"",
                "\"target\": \"nowhere\"",
                "rules[2].target",
            ),
            (
                "\"name\": \"vip\"",
                "\"name\": \"sales calls\"",
                "rules[1].name",
            ),
            ("[\"q-sales\"]", "[]", "rules[0].when.queueIds"),
            ("\"inbound\"", "\"sideways\"", "rules[2].when.direction"),
            (
                "acme-support-archive",
                "Acme_Support",
                "targets.support.bucket",
            ),
            (
                "\"retentionDays\": 2555, ",
                "",
                "targets.sales.retentionDays",
            ),
            (
                "\"defaultTarget\": \"general\"",
                "\"defaultTarget\": \"x\"",
                "defaultTarget",
            ),
            (
                "\"media\": [\"audio\"]",
                "\"media\": [\"video\"]",
                "rules[0].when.media",
            ),
            ("\"queueIds\"", "\"queueId\"", "rules[0].when"),
            (
                "\"prefix\": \"genesys\"",
                "\"prefix\": \"/genesys/\"",
                "targets.general.prefix",
            ),
        ];
        let docs = cases
            .iter()
            .map(|(from, to, path)| {
                assert!(DOC.contains(from), "{from}");
                (DOC.replace(from, to), *path)
            })
            .chain([(r#"{"version": 1, "targets": {}}"#.to_string(), "targets")]);
        for (doc, path) in docs {
            let e = RoutingConfig::from_json(&doc).unwrap_err();
            let named = match &e {
                RoutingError::Parse { path: p, .. } | RoutingError::Invalid { path: p, .. } => p,
                other => panic!("{other}"),
            };
            assert!(named.starts_with(path), "{path}: {e}");
        }
        let e = RoutingConfig::from_json("{\"version\": 1,\n \"targets\": {,}}").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    fn arb_facts() -> impl Strategy<Value = RecordingFacts> {
        (
            prop::sample::select(RecordingMedia::ALL.to_vec()),
            prop::collection::btree_set("q-[a-c]", 0..3),
            prop::option::of(prop::sample::select(vec!["inbound", "outbound"])),
            prop::option::of(prop::sample::select(vec!["gold", "vip"])),
        )
            .prop_map(|(media, queues, direction, tier)| RecordingFacts {
                media: Some(media),
                queue_ids: queues,
                direction: direction.map(str::to_string),
                attributes: tier
                    .map(|t| [("tier".to_string(), t.to_string())].into())
                    .unwrap_or_default(),
                ..RecordingFacts::default()
            })
    }

    proptest! {
        /// The route is the first rule whose conditions all hold, else the default; and the
        /// explanation has one line per rule before it.
        #[test]
        fn routing_is_first_match_else_default(f in arb_facts()) {
            let c = RoutingConfig::from_json(DOC).unwrap();
            let r = c.explain(&f).unwrap();
            prop_assert_eq!(c.route(&f).unwrap().target_name, r.target_name);
            prop_assert!(c.route(&f).unwrap().explanation.is_empty());
            let first = c.rules.iter().position(|rule| rule.when.mismatch(&f).is_none());
            match first {
                Some(i) => {
                    prop_assert_eq!(r.rule, Some(c.rules[i].name.as_str()));
                    prop_assert_eq!(r.target_name, c.rules[i].target.as_str());
                    prop_assert_eq!(r.explanation.len(), i);
                }
                None => {
                    prop_assert_eq!(r.rule, None);
                    prop_assert_eq!(r.target_name, "general");
                    prop_assert_eq!(r.explanation.len(), c.rules.len());
                }
            }
            // A rule with no conditions before all others takes everything.
            let mut all = c.clone();
            all.rules.insert(0, Rule { name: "all".into(), target: "support".into(), when: Conditions::default() });
            prop_assert_eq!(all.route(&f).unwrap().rule, Some("all"));
        }
    }
}
