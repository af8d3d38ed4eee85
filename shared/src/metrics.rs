//! CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout: Lambda ships them to
//! CloudWatch Logs, which extracts the metrics, so publishing costs no API call and no latency.
//!
//! Hand-written because one JSON object per transfer is all we emit; a metrics facade crate
//! (and its global recorder) would add more than it saves.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "gc-archive";

/// One metric value with its CloudWatch unit.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl Metric {
    pub fn count(name: &'static str, value: f64) -> Metric {
        Metric {
            name,
            value,
            unit: "Count",
        }
    }
}

/// Builds the EMF JSON line for `metrics` with the given dimensions.
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[Metric], timestamp_ms: i64) -> String {
    let mut root = Map::new();
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let defs: Vec<Value> = metrics
        .iter()
        .map(|m| json!({"Name": m.name, "Unit": m.unit}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": defs}]
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::String((*v).into()));
    }
    for m in metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    Value::Object(root).to_string()
}

/// Prints the line where Lambda collects it (stdout, one line). Outside Lambda (CLI, demo,
/// tests) nothing is printed unless `GC_ARCHIVE_METRICS=emf`.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[Metric]) {
    let enabled = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("GC_ARCHIVE_METRICS").is_ok_and(|v| v == "emf");
    if !enabled {
        return;
    }
    println!(
        "{}",
        emf_line(dimensions, metrics, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_and_dimension() {
        let line = emf_line(
            &[("Function", "chunk-recording"), ("Outcome", "archived")],
            &[
                Metric {
                    name: "Bytes",
                    value: 42.0,
                    unit: "Bytes",
                },
                Metric::count("Retries", 2.0),
            ],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "gc-archive");
        assert_eq!(cw["Dimensions"][0], json!(["Function", "Outcome"]));
        assert_eq!(cw["Metrics"][0], json!({"Name": "Bytes", "Unit": "Bytes"}));
        assert_eq!(v["Bytes"], 42.0);
        assert_eq!(v["Outcome"], "archived");
        assert!(!line.contains('\n'));
    }
}
