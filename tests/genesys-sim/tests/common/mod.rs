#![allow(dead_code)]

use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::Value;

pub async fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.expect("start")
}

pub async fn sim_with(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg).await.expect("start")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

pub async fn token(sim: &Simulator, c: &reqwest::Client) -> String {
    let r = c
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(sim.client_id(), Some(sim.client_secret()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub async fn api_get(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    path: &str,
) -> reqwest::Response {
    c.get(format!("{}{}", sim.base_url(), path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

/// A conversation with one recording; returns (conversation id, recording id).
pub fn conv_with(sim: &Simulator, spec: RecordingSpec) -> (String, String) {
    let cid = sim.add_conversation(ConversationSpec::default());
    let rid = sim.add_recording(&cid, spec);
    (cid, rid)
}

/// Fetch the recording (formatId=NONE) and return its signed media URL.
pub async fn media_url(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    cid: &str,
    rid: &str,
) -> String {
    let r = api_get(
        sim,
        c,
        tok,
        &format!("/api/v2/conversations/{cid}/recordings/{rid}?formatId=NONE&download=true"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["mediaUris"]["S"]["mediaUri"]
        .as_str()
        .unwrap()
        .to_string()
}
