//! The JSON gateway over real HTTP: every route, and bad input on each.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use consensusdb_api::http::hosts::AllowedHosts;
use consensusdb_api::{ConnectionLimits, Connections, Gateway, Metrics, Readiness, serve_http};
use consensusdb_storage::{Store, StoreOptions};
use serde_json::{Value, json};

/// A gateway over a fresh store, on an ephemeral port, on its own runtime.
struct TestGateway {
    addr: SocketAddr,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an error answer and returns its body.
    fn error(&self, status: u16, code: &str, field: Option<&str>) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.content_type.starts_with("application/json"), "{}", self.content_type);
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["field"].as_str(), field, "{body}");
        if let Some(field) = field {
            let message = body["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{field}:")),
                "the message starts with the field: {message}"
            );
        }
        body
    }
}

impl TestGateway {
    fn start() -> Self {
        Self::start_with(|gateway| gateway)
    }

    fn start_with(configure: impl FnOnce(Gateway) -> Gateway) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = Store::open(StoreOptions::new(dir.path())).unwrap();
        let metrics = Metrics::new(store.counters()).unwrap();
        let admin = consensusdb_types::Identity::parse("cdb://test/client/admin").unwrap();
        let access = runtime.block_on(consensusdb_access::Access::open(store.clone(), admin)).unwrap();
        let gateway = configure(Gateway::new(store.clone(), access, Readiness::new(store), metrics));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(serve_http(
            gateway,
            listener,
            // The gateway's own behaviour, over plaintext (every caller
            // unchecked); HTTPS and who may call are tested with the node.
            consensusdb_api::ServerTransport::Plaintext,
            Connections::new(ConnectionLimits::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Self { addr, agent, stop: Some(stop), runtime: Some(runtime), server: Some(server), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.body_mut().read_to_string().unwrap();
        Answer { status: response.status().as_u16(), content_type, body }
    }

    fn get(&self, path: &str) -> Answer {
        Self::answer(self.agent.get(self.url(path)).call().unwrap())
    }

    fn delete(&self, path: &str) -> Answer {
        Self::answer(self.agent.delete(self.url(path)).call().unwrap())
    }

    fn send(&self, method: &str, path: &str, content_type: &str, body: &str) -> Answer {
        let url = self.url(path);
        let request = match method {
            "PUT" => self.agent.put(url),
            "POST" => self.agent.post(url),
            "PATCH" => self.agent.patch(url),
            other => panic!("no such method here: {other}"),
        };
        Self::answer(request.header("content-type", content_type).send(body).unwrap())
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.send(method, path, "application/json", &body.to_string())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) {
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

const V7: &str = "0190b3c4-1b2c-7d3e-8f40-123456789abc";

#[test]
fn a_put_record_reads_back_with_its_head() {
    let gateway = TestGateway::start();
    let written = gateway.json("PUT", "/v1/records/acme/accounts/alice", &json!({"value": "balance=10"}));
    assert_eq!(written.status, 200, "{}", written.body);
    let written = written.json();
    assert_eq!(
        written["key"],
        json!({"major_key": "acme", "region": "accounts", "minor_key": "alice", "time_uuid": null})
    );
    let head = &written["head"];
    assert!(
        head["hlc"].as_str().unwrap().parse::<u64>().unwrap() > 1 << 53,
        "hlc is a decimal string: {head}"
    );
    assert_eq!(head["origin"]["node_id"].as_str().unwrap().len(), 32);
    assert_eq!(head["tombstone"], false);
    assert_eq!(head["expires_at_ms"], Value::Null);

    let read = gateway.get("/v1/records/acme/accounts/alice");
    assert_eq!(read.status, 200, "{}", read.body);
    let read = read.json();
    assert_eq!(read["value"], "balance=10");
    assert_eq!(read["encoding"], "utf8");
    assert_eq!(read["head"], *head);

    let head_only = gateway.get("/v1/records/acme/accounts/alice?head_only=true").json();
    assert_eq!((head_only["value"].clone(), head_only["encoding"].clone()), (Value::Null, Value::Null));
}

#[test]
fn binary_values_travel_as_base64_and_text_can_be_asked_as_base64() {
    let gateway = TestGateway::start();
    // 0xFF 0x00 0x80 is not UTF-8.
    let put = gateway.json(
        "PUT",
        &format!("/v1/records/t/r/m/{V7}"),
        &json!({"value": "/wCA", "encoding": "base64"}),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let read = gateway.get(&format!("/v1/records/t/r/m/{V7}")).json();
    assert_eq!((read["value"].as_str(), read["encoding"].as_str()), (Some("/wCA"), Some("base64")));
    assert_eq!(read["key"]["time_uuid"], V7);

    gateway.json("PUT", "/v1/records/t/r/text", &json!({"value": "hi"}));
    let read = gateway.get("/v1/records/t/r/text?value_encoding=base64").json();
    assert_eq!((read["value"].as_str(), read["encoding"].as_str()), (Some("aGk="), Some("base64")));

    let bad =
        gateway.json("PUT", "/v1/records/t/r/m", &json!({"value": "not base64!", "encoding": "base64"}));
    bad.error(400, "INVALID_ARGUMENT", Some("value"));
}

#[test]
fn keys_with_slashes_go_percent_encoded_or_as_base64() {
    let gateway = TestGateway::start();
    let put = gateway.json("PUT", "/v1/records/acme/files/a%2Fb%20c", &json!({"value": "1"}));
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["key"]["minor_key"], "a/b c");
    // "a/b c" in URL-safe base64 without padding.
    let read = gateway.get("/v1/records/YWNtZQ/ZmlsZXM/YS9iIGM?key_encoding=base64");
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["key"]["minor_key"], "a/b c");
    // 0xFF is not UTF-8: keys are UTF-8 strings, so base64 must decode to text.
    gateway.get("/v1/records/YWNtZQ/ZmlsZXM/_w?key_encoding=base64").error(
        400,
        "INVALID_ARGUMENT",
        Some("minor_key"),
    );
    gateway.get("/v1/records/YWNtZQ/ZmlsZXM/!!?key_encoding=base64").error(
        400,
        "INVALID_ARGUMENT",
        Some("minor_key"),
    );
}

#[test]
fn events_posted_at_new_time_uuids_are_read_by_time() {
    let gateway = TestGateway::start();
    let mut times = Vec::new();
    for n in 0..5 {
        let posted =
            gateway.json("POST", "/v1/records/acme/orders/o-1", &json!({"value": format!("event {n}")}));
        assert_eq!(posted.status, 200, "{}", posted.body);
        times.push(posted.json()["key"]["time_uuid"].as_str().unwrap().to_string());
    }
    let timed = gateway.get(&format!("/v1/records/acme/orders/o-1/{}", times[2])).json();
    assert_eq!(timed["value"], "event 2");

    let newest = gateway.get("/v1/rows/acme/orders/o-1/recent").json();
    assert_eq!(newest["value"], "event 4");
    let at = gateway.get(&format!("/v1/rows/acme/orders/o-1/recent?at_or_before={}", times[1])).json();
    assert_eq!(at["value"], "event 1");
    gateway.get("/v1/rows/acme/orders/nobody/recent").error(404, "NOT_FOUND", Some("row"));

    // Newest first, two a page, following the tokens.
    let mut values = Vec::new();
    let mut path = "/v1/rows/acme/orders/o-1/range?limit=2".to_string();
    loop {
        let page = gateway.get(&path).json();
        values.extend(
            page["records"].as_array().unwrap().iter().map(|r| r["value"].as_str().unwrap().to_string()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => path = format!("/v1/rows/acme/orders/o-1/range?limit=2&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(values, ["event 4", "event 3", "event 2", "event 1", "event 0"]);

    let forward = gateway
        .get(&format!("/v1/rows/acme/orders/o-1/range?order=forward&from={}&until={}", times[1], times[3]))
        .json();
    let values: Vec<_> = forward["records"].as_array().unwrap().iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, ["event 1", "event 2"]);
    assert_eq!(forward["next_page_token"], Value::Null);
}

#[test]
fn range_parameters_are_checked_by_name() {
    let gateway = TestGateway::start();
    let row = "/v1/rows/acme/orders/o-1/range";
    gateway.get(&format!("{row}?limit=0")).error(400, "INVALID_ARGUMENT", Some("limit"));
    gateway.get(&format!("{row}?limit=ten")).error(400, "INVALID_ARGUMENT", Some("limit"));
    gateway.get(&format!("{row}?limit=100000")).error(400, "INVALID_ARGUMENT", Some("limit"));
    gateway.get(&format!("{row}?order=forward&at_or_before={V7}")).error(
        400,
        "INVALID_ARGUMENT",
        Some("at_or_before"),
    );
    gateway.get(&format!("{row}?from={V7}")).error(400, "INVALID_ARGUMENT", Some("from"));
    gateway.get(&format!("{row}?order=sideways")).error(400, "INVALID_ARGUMENT", Some("order"));
    gateway.get(&format!("{row}?page_token=%21%21")).error(400, "INVALID_ARGUMENT", Some("page_token"));
    gateway.get(&format!("{row}?at_or_before=")).error(400, "INVALID_ARGUMENT", Some("at_or_before"));
    gateway.get(&format!("{row}?limt=5")).error(400, "INVALID_ARGUMENT", Some("limt"));
    let v4 = "9f1c3e1e-5d2b-4c57-9a57-3f0e9d6b2a10";
    gateway.get(&format!("{row}?order=forward&from={v4}")).error(400, "INVALID_ARGUMENT", Some("from"));
    let later = "0190b3c4-1b2c-7d3e-8f40-123456789abd";
    gateway.get(&format!("{row}?order=forward&from={later}&until={V7}")).error(
        400,
        "INVALID_ARGUMENT",
        Some("until"),
    );
}

#[test]
fn if_absent_touch_and_remove_follow_the_records_rules() {
    let gateway = TestGateway::start();
    let path = "/v1/records/acme/sessions/s-1";
    assert_eq!(gateway.json("PUT", path, &json!({"value": "a", "if_absent": true})).status, 200);
    gateway.json("PUT", path, &json!({"value": "b", "if_absent": true})).error(
        409,
        "ALREADY_EXISTS",
        Some("key"),
    );

    let touched = gateway.json("PATCH", path, &json!({"ttl_ms": 60_000}));
    assert_eq!(touched.status, 200, "{}", touched.body);
    assert!(touched.json()["head"]["expires_at_ms"].as_u64().is_some());
    assert_eq!(gateway.get(path).json()["value"], "a", "a touch keeps the value");

    let removed = gateway.delete(path);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json()["head"]["tombstone"], true);
    gateway.get(path).error(404, "NOT_FOUND", Some("key"));
    gateway.json("PATCH", path, &json!({"ttl_ms": 1000})).error(404, "NOT_FOUND", Some("key"));
    gateway.json("PATCH", path, &json!({"ttl_ms": 0})).error(400, "INVALID_ARGUMENT", Some("ttl_ms"));
}

#[test]
fn a_batch_is_all_or_nothing_and_names_the_record_at_fault() {
    let gateway = TestGateway::start();
    let batch = json!({"records": [
        {"key": {"major_key": "acme", "region": "r", "minor_key": "a"}, "value": "1"},
        {"key": {"major_key": "acme", "region": "r", "minor_key": "b", "time_uuid": V7}, "value": "Mg==", "encoding": "base64"},
    ]});
    let written = gateway.json("POST", "/v1/batch", &batch);
    assert_eq!(written.status, 200, "{}", written.body);
    let written = written.json();
    assert_eq!(written["heads"].as_array().unwrap().len(), 2);
    assert_eq!(written["heads"][0]["seq"], written["heads"][1]["seq"], "one log entry");
    assert_eq!(gateway.get(&format!("/v1/records/acme/r/b/{V7}")).json()["value"], "2");

    let bad = json!({"records": [
        {"key": {"major_key": "acme", "region": "r", "minor_key": "c"}, "value": "3"},
        {"key": {"major_key": "", "region": "r", "minor_key": "d"}, "value": "4"},
    ]});
    gateway.json("POST", "/v1/batch", &bad).error(400, "INVALID_ARGUMENT", Some("records[1].key.major_key"));
    gateway.get("/v1/records/acme/r/c").error(404, "NOT_FOUND", Some("key"));

    let typo =
        json!({"records": [{"key": {"major_key": "a", "region": "r", "minor_key": "m"}, "valu": "x"}]});
    // An unknown field is named itself; a missing one, by the record it is missing from.
    gateway.json("POST", "/v1/batch", &typo).error(400, "INVALID_ARGUMENT", Some("records[0].valu"));
    let missing = json!({"records": [{"key": {"major_key": "a", "region": "r", "minor_key": "m"}}]});
    let body = gateway.json("POST", "/v1/batch", &missing).error(400, "INVALID_ARGUMENT", Some("records[0]"));
    assert!(body["message"].as_str().unwrap().contains("missing field `value`"), "{body}");
    gateway.json("POST", "/v1/batch", &json!({"records": []})).error(
        400,
        "INVALID_ARGUMENT",
        Some("records"),
    );
}

fn ndjson(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/x-ndjson");
    answer.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn scans_stream_ndjson_and_continue_from_their_token() {
    let gateway = TestGateway::start();
    for (region, minor) in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("b", "3")] {
        assert_eq!(
            gateway
                .json("PUT", &format!("/v1/records/acme/{region}/{minor}"), &json!({"value": minor}))
                .status,
            200
        );
    }
    gateway.json("PUT", "/v1/records/other/a/1", &json!({"value": "not acme's"}));

    let lines = ndjson(&gateway.get("/v1/scan/acme?limit=3"));
    assert_eq!(lines.len(), 4, "three records and the end: {lines:?}");
    assert!(lines[..3].iter().all(|line| line["record"]["key"]["major_key"] == "acme"));
    let token = lines[3]["end"]["next_page_token"].as_str().unwrap().to_string();
    let rest = ndjson(&gateway.get(&format!("/v1/scan/acme?limit=10&page_token={token}")));
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(rest[2], json!({"end": {"next_page_token": null}}));

    let region = ndjson(&gateway.get("/v1/scan/acme/b?head_only=true"));
    assert_eq!(region.len(), 4);
    assert_eq!(region[0]["record"]["value"], Value::Null);
    let row = ndjson(&gateway.get("/v1/scan/acme/b/2"));
    assert_eq!(row[0]["record"]["value"], "2");
    assert_eq!(row.len(), 2);

    gateway.get("/v1/scan/acme?limit=0").error(400, "INVALID_ARGUMENT", Some("limit"));
}

#[test]
fn malformed_bodies_get_a_clear_4xx() {
    let gateway = TestGateway::start_with(|gateway| gateway.with_max_body_bytes(4096));
    let path = "/v1/records/acme/r/m";
    gateway.send("PUT", path, "application/json", "{\"value\": ").error(
        400,
        "INVALID_ARGUMENT",
        Some("body"),
    );
    gateway.send("PUT", path, "application/json", "{\"value\": \"x\"} trailing").error(
        400,
        "INVALID_ARGUMENT",
        Some("body"),
    );
    gateway.send("PUT", path, "text/plain", "{\"value\": \"x\"}").error(
        415,
        "INVALID_ARGUMENT",
        Some("content-type"),
    );
    let big = json!({"value": "x".repeat(5000)}).to_string();
    let too_large =
        gateway.send("PUT", path, "application/json", &big).error(413, "RESOURCE_EXHAUSTED", Some("body"));
    assert!(too_large["message"].as_str().unwrap().contains("4096"), "{too_large}");
    gateway.json("PUT", path, &json!({"valeu": "x"})).error(400, "INVALID_ARGUMENT", Some("valeu"));
    gateway.json("PUT", path, &json!({})).error(400, "INVALID_ARGUMENT", Some("body"));
    gateway.json("PUT", path, &json!({"value": 5})).error(400, "INVALID_ARGUMENT", Some("value"));
    gateway.json("PUT", path, &json!({"value": "x", "ttl_ms": -1})).error(
        400,
        "INVALID_ARGUMENT",
        Some("ttl_ms"),
    );
    gateway.json("PUT", path, &json!({"value": "x", "compression": "zstd"})).error(
        400,
        "INVALID_ARGUMENT",
        Some("compression"),
    );
    gateway.json("PUT", &format!("{path}?timeout_ms=0"), &json!({"value": "x"})).error(
        400,
        "INVALID_ARGUMENT",
        Some("timeout_ms"),
    );
    gateway.delete(&format!("{path}?timeout_ms=86400001")).error(400, "INVALID_ARGUMENT", Some("timeout_ms"));
    let huge = json!({"value": "x", "ttl_ms": 9_223_372_036_854_775_808_u64});
    gateway.json("PUT", path, &huge).error(400, "INVALID_ARGUMENT", Some("ttl_ms"));
}

#[test]
fn key_components_are_checked_like_grpc_does() {
    let gateway = TestGateway::start();
    let long = "x".repeat(1025);
    let answer = gateway.json("PUT", &format!("/v1/records/{long}/r/m"), &json!({"value": "x"}));
    let body = answer.error(400, "INVALID_ARGUMENT", Some("major_key"));
    assert!(body["message"].as_str().unwrap().contains("over the limit of 1024 bytes"), "{body}");
    gateway.get("/v1/records/acme/r/m/not-a-uuid").error(400, "INVALID_ARGUMENT", Some("time_uuid"));
    let v4 = "9f1c3e1e-5d2b-4c57-9a57-3f0e9d6b2a10";
    gateway.get(&format!("/v1/records/acme/r/m/{v4}")).error(400, "INVALID_ARGUMENT", Some("time_uuid"));
    // A v7 id a year ahead: beyond the clock-skew bound writes accept.
    let ahead = uuid_v7_at_ms(now_ms() + 365 * 24 * 3600 * 1000);
    gateway.json("PUT", &format!("/v1/records/acme/r/m/{ahead}"), &json!({"value": "x"})).error(
        400,
        "INVALID_ARGUMENT",
        Some("time_uuid"),
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn uuid_v7_at_ms(ms: u64) -> String {
    let hex = format!("{ms:012x}");
    format!("{}-{}-7000-8000-000000000000", &hex[..8], &hex[8..12])
}

#[test]
fn a_write_concern_no_known_peer_set_can_meet_is_refused_before_writing() {
    let gateway = TestGateway::start();
    let path = "/v1/records/acme/r/m";
    let body = gateway.json("PUT", path, &json!({"value": "x", "write_concern": 1}));
    let body = body.error(412, "FAILED_PRECONDITION", Some("write_concern"));
    assert!(body["message"].as_str().unwrap().contains("this node knows 0"), "{body}");
    gateway.get(path).error(404, "NOT_FOUND", Some("key"));
    let batch = json!({"records": [{"key": {"major_key": "a", "region": "r", "minor_key": "m"}, "value": "x"}], "write_concern": 2});
    gateway.json("POST", "/v1/batch", &batch).error(412, "FAILED_PRECONDITION", Some("write_concern"));
}

#[test]
fn unknown_paths_and_methods_answer_json() {
    let gateway = TestGateway::start();
    gateway.get("/v2/nothing").error(404, "NOT_FOUND", None);
    gateway.delete("/v1/batch").error(405, "INVALID_ARGUMENT", None);
}

#[test]
fn the_openapi_document_lists_every_route_and_docs_are_served_offline() {
    let gateway = TestGateway::start();
    let document = gateway.get("/openapi.json");
    assert_eq!(document.status, 200);
    let document = document.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "{}", document["openapi"]);
    let paths: Vec<&str> = document["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for path in [
        "/v1/records/{major_key}/{region}/{minor_key}",
        "/v1/records/{major_key}/{region}/{minor_key}/{time_uuid}",
        "/v1/batch",
        "/v1/rows/{major_key}/{region}/{minor_key}/recent",
        "/v1/rows/{major_key}/{region}/{minor_key}/range",
        "/v1/scan/{major_key}",
        "/v1/scan/{major_key}/{region}",
        "/v1/scan/{major_key}/{region}/{minor_key}",
        "/v1/status",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains(&path), "{path} is documented: {paths:?}");
    }
    let row = &document["paths"]["/v1/records/{major_key}/{region}/{minor_key}"];
    for method in ["get", "put", "post", "patch", "delete"] {
        assert!(row[method].is_object(), "{method} is documented");
    }
    assert!(row["put"]["responses"]["409"].is_object(), "errors are declared: {}", row["put"]["responses"]);
    // The answers given before routing are declared on every operation,
    // while a route's own description of a code is kept.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in ["413", "414", "431"] {
                assert!(operation["responses"][status].is_object(), "{method} {path} declares {status}");
            }
        }
    }
    let too_large = row["put"]["responses"]["413"]["description"].as_str().unwrap();
    assert!(too_large.contains("http.max_body_bytes"), "the write's own 413: {too_large}");
    // The codec names the gateway takes and returns are listed, so a
    // client generated from the document can spell them.
    let codecs = &document["components"]["schemas"]["Compression"]["enum"];
    assert_eq!(codecs, &json!(["none", "lz4", "snappy"]), "{}", document["components"]);

    let docs = gateway.get("/docs/");
    assert_eq!(docs.status, 200);
    assert!(docs.body.contains("swagger-ui"), "{}", docs.body);
    assert!(!docs.body.contains("https://"), "Swagger UI loads nothing from the network");
    let initializer = gateway.get("/docs/swagger-initializer.js");
    assert_eq!(initializer.status, 200);
    assert!(initializer.body.contains("/openapi.json"), "{}", initializer.body);
}

#[test]
fn the_status_page_is_self_contained_and_its_figures_are_served() {
    let gateway = TestGateway::start();
    for minor in ["a", "b", "c"] {
        gateway.json("PUT", &format!("/v1/records/acme/orders/{minor}"), &json!({"value": "x"}));
    }
    gateway.get("/v1/records/acme/orders/a");

    let page = gateway.get("/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    for external in ["http://", "https://", "<link", "src="] {
        assert!(!page.body.contains(external), "the page loads nothing ({external})");
    }

    let status = gateway.get("/v1/status").json();
    assert_eq!(status["node_id"].as_str().unwrap().len(), 32);
    assert_eq!(status["ready"], true);
    assert_eq!(status["totals"], json!({"writes": 3, "reads": 1}));
    assert_eq!(
        status["regions"],
        json!([{"tenant": "acme", "region": "orders", "records_estimate": 3, "estimated": false}])
    );
    assert!(status["storage"]["data_bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["replication"], Value::Null, "no mesh in this test");
}

#[test]
fn metrics_count_requests_per_operation_and_code() {
    let gateway = TestGateway::start();
    gateway.json("PUT", "/v1/records/acme/r/m", &json!({"value": "x"}));
    gateway.json("PUT", "/v1/records/acme/r/m", &json!({"value": "x", "if_absent": true}));
    gateway.get("/v1/records/acme/r/nobody");
    let metrics = gateway.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.starts_with("text/plain"));
    let text = metrics.body;
    for line in [
        r#"consensusdb_requests_total{code="OK",interface="http",operation="put"} 1"#,
        r#"consensusdb_requests_total{code="ALREADY_EXISTS",interface="http",operation="put"} 1"#,
        r#"consensusdb_requests_total{code="NOT_FOUND",interface="http",operation="get"} 1"#,
        "consensusdb_group_commit_size_count 1",
        "consensusdb_group_commit_seconds_count 1",
        "consensusdb_writes_committed_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    for name in [
        "consensusdb_data_bytes",
        "consensusdb_pending_compaction_bytes",
        "consensusdb_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
}

#[test]
fn a_host_the_gateway_does_not_answer_to_is_refused_before_routing() {
    let gateway =
        TestGateway::start_with(|gateway| gateway.with_allowed_hosts(AllowedHosts::new(["db.example"])));
    let with_host = |host: &str| {
        let request = gateway.agent.get(gateway.url("/v1/records/acme/r/m")).header("host", host);
        TestGateway::answer(request.call().unwrap())
    };
    // DNS rebinding: the browser names the attacker's domain.
    with_host("evil.example").error(421, "INVALID_ARGUMENT", Some("host"));
    with_host("localhost.evil.example:4481").error(421, "INVALID_ARGUMENT", Some("host"));
    for served in ["127.0.0.1", "localhost:4481", "db.example", "DB.EXAMPLE."] {
        assert_eq!(with_host(served).status, 404, "{served} reaches routing (no such record)");
    }
    let head = "GET /healthz HTTP/1.1\r\nhost: evil.example\r\n\r\n";
    let (status, body) = raw_exchange(gateway.addr, head, Duration::from_secs(5));
    assert_eq!(status, 421, "health checks too: {body}");
}

/// Sends `head` (request line and headers, no body) over a fresh
/// connection and reads the answer within `within`.
fn raw_exchange(addr: std::net::SocketAddr, head: &str, within: Duration) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // Read until the JSON body is complete (the server may keep the
    // connection open, or close it).
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..n]);
        if answer.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn oversized_requests_get_json_naming_what_is_too_large() {
    let gateway = TestGateway::start();
    let long_path = format!("/v1/records/acme/r/{}", "m".repeat(9 * 1024));
    gateway.get(&long_path).error(414, "INVALID_ARGUMENT", Some("uri"));
    let mut many = gateway.agent.get(gateway.url("/healthz"));
    for i in 0..120 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    TestGateway::answer(many.call().unwrap()).error(431, "INVALID_ARGUMENT", Some("headers"));
    let big = gateway.agent.get(gateway.url("/healthz")).header("x-big", "v".repeat(70 * 1024));
    TestGateway::answer(big.call().unwrap()).error(431, "INVALID_ARGUMENT", Some("headers"));
    // A body declared over the limit is refused on its Content-Length, at
    // once: the client never has to send it.
    let head = "PUT /v1/records/acme/r/m HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n";
    let (status, body) = raw_exchange(gateway.addr, head, Duration::from_secs(5));
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((body["code"].as_str(), body["field"].as_str()), (Some("RESOURCE_EXHAUSTED"), Some("body")));
}

#[test]
fn an_empty_key_component_in_a_path_is_named() {
    let gateway = TestGateway::start();
    gateway.get("/v1/records/acme/ACCOUNT/").error(400, "INVALID_ARGUMENT", Some("minor_key"));
    gateway.get("/v1/records/acme//balance").error(400, "INVALID_ARGUMENT", Some("region"));
    gateway.get("/v1/scan/").error(400, "INVALID_ARGUMENT", Some("major_key"));
    gateway.get("/v1/rows/acme/ACCOUNT//recent").error(400, "INVALID_ARGUMENT", Some("minor_key"));
}

#[test]
fn messages_name_fields_as_the_gateway_lays_them_out() {
    let gateway = TestGateway::start();
    let later = "0190b3c4-1b2c-7d3e-8f40-123456789abd";
    let path = format!("/v1/rows/acme/orders/o-1/range?order=forward&from={later}&until={V7}");
    let body = gateway.get(&path).error(400, "INVALID_ARGUMENT", Some("until"));
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("forward."), "no gRPC field names over HTTP: {message}");
}

#[test]
fn time_uuids_have_one_spelling() {
    let gateway = TestGateway::start();
    for other in [V7.to_uppercase(), V7.replace('-', ""), format!("{{{V7}}}")] {
        let body = gateway.get(&format!("/v1/records/acme/r/m/{other}")).error(
            400,
            "INVALID_ARGUMENT",
            Some("time_uuid"),
        );
        assert!(body["message"].as_str().unwrap().contains(V7), "the canonical spelling is shown: {body}");
    }
}

#[test]
fn an_expiry_stays_exact_in_javascript() {
    let gateway = TestGateway::start();
    let path = "/v1/records/acme/r/m";
    let refused = gateway.json("PUT", path, &json!({"value": "x", "ttl_ms": u64::MAX / 2}));
    let body = refused.error(400, "INVALID_ARGUMENT", Some("ttl_ms"));
    assert!(body["message"].as_str().unwrap().contains("9999"), "{body}");
    let a_century = 100u64 * 365 * 24 * 3600 * 1000;
    let put = gateway.json("PUT", path, &json!({"value": "x", "ttl_ms": a_century}));
    assert_eq!(put.status, 200, "{}", put.body);
    let expires = put.json()["head"]["expires_at_ms"].as_u64().expect("an expiry");
    assert!(expires < 1 << 53, "{expires} is exact in a JavaScript number");
}
