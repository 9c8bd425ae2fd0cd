//! Contract tests: the exact requests a reconcile makes, against kube's
//! `tower-test` mock service (no API server, no ClickHouse). They pin the
//! finalizer handling, status patches on `/status`, events, and that a
//! reconcile with nothing new makes no request at all.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};

use chmigrate::k8s::crd::{ClickHouseMigration, MigrationSet};

use super::context::FINALIZER;
use super::context::{Ctx, Settings, Shared, Stores};
use super::metrics::Metrics;
use super::reconcile;
use super::status::merge_diff;
use chmigrate::k8s::reconcile::Policy;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

impl Seen {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

fn store<K>(objs: Vec<K>) -> reflector::Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objs {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn guard<K>(yaml: &str) -> DeserializeGuard<K>
where
    DeserializeGuard<K>: serde::de::DeserializeOwned,
{
    serde_yaml::from_str(yaml).expect("test fixture is YAML")
}

const SET: &str = r#"
apiVersion: chmigrate.io/v1alpha1
kind: MigrationSet
metadata: { name: orders, namespace: apps, generation: 2, resourceVersion: "17", uid: u-1 }
spec:
  connection:
    url: http://127.0.0.1:9
    database: orders
    credentials: { user: chm, passwordSecretRef: { name: ch, key: password } }
  selector: { matchLabels: { app: orders } }
  policy: { suspend: true }
"#;

fn set_with(f: impl FnOnce(&mut MigrationSet)) -> DeserializeGuard<MigrationSet> {
    let mut g: DeserializeGuard<MigrationSet> = guard(SET);
    if let Ok(s) = g.0.as_mut() {
        f(s);
    }
    g
}

fn secret() -> Secret {
    serde_yaml::from_str(
        "metadata: { name: ch, namespace: apps, labels: { chmigrate.io/credentials: \"true\" } }\ndata: { password: czNjcmV0LXB3 }",
    )
    .expect("secret fixture")
}

/// A mock API server that answers every request with `reply` (the set, or
/// for events the event itself) and records what it saw, until the client
/// is dropped.
fn mock(reply: Value) -> (Client, tokio::task::JoinHandle<Vec<Seen>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            // Secrets are read one by one, by name, never listed or
            // watched; such reads are answered here and not recorded.
            if path.contains("/secrets") {
                assert!(
                    method == "GET" && path == "/api/v1/namespaces/apps/secrets/ch",
                    "only a GET of the named Secret: {method} {path}"
                );
                send.send_response(
                    Response::builder()
                        .body(Body::from(
                            serde_json::to_vec(&secret()).unwrap_or_default(),
                        ))
                        .expect("response"),
                );
                continue;
            }
            let answer = if path.contains("/events") {
                body.clone()
            } else {
                reply.clone()
            };
            seen.push(Seen { method, path, body });
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                    .expect("response"),
            );
        }
        seen
    });
    (Client::new(svc, "default"), task)
}

fn ctx(
    client: Client,
    set: &DeserializeGuard<MigrationSet>,
    migrations: Vec<DeserializeGuard<ClickHouseMigration>>,
) -> Arc<Ctx> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "chmigrate".into(),
            instance: Some("test".into()),
        },
    );
    let shared = Arc::new(Shared::new(
        client,
        recorder,
        Arc::new(Metrics::new()),
        Settings {
            policy: Policy::default(),
            recheck: Duration::from_secs(300),
            identity: "test".into(),
            leader: false,
            term: None,
            started_us: 0,
            stop: Default::default(),
            concurrency: 4,
            deposed: Default::default(),
        },
    ));
    Arc::new(Ctx {
        shared,
        stores: Stores {
            sets: store(vec![set.clone()]),
            migrations: store(migrations),
            config_maps: store(Vec::<ConfigMap>::new()),
        },
    })
}

fn reply_for(set: &DeserializeGuard<MigrationSet>) -> Value {
    match &set.0 {
        Ok(s) => serde_json::to_value(s).expect("set serializes"),
        Err(_) => serde_yaml::from_str::<Value>(SET).expect("fixture"),
    }
}

/// Runs `rounds` reconciles of `set` (the same object each time, as the
/// controller would after our own status write) and returns every request
/// in order, and each round's result.
async fn requests(
    set: DeserializeGuard<MigrationSet>,
    migrations: Vec<DeserializeGuard<ClickHouseMigration>>,
    rounds: usize,
) -> (Vec<Seen>, Vec<Result<Action, String>>) {
    let (client, task) = mock(reply_for(&set));
    let ctx = ctx(client, &set, migrations);
    let set = Arc::new(set);
    let mut results = Vec::new();
    for _ in 0..rounds {
        let r = reconcile::reconcile(set.clone(), ctx.clone()).await;
        results.push(r.map_err(|e| e.to_string()));
    }
    drop(ctx);
    (task.await.expect("mock task"), results)
}

#[tokio::test]
async fn first_reconcile_writes_status_and_one_event_then_nothing() {
    let set = set_with(|_| {});
    let (client, task) = mock(reply_for(&set));
    let ctx = ctx(client, &set, vec![]);
    let set = Arc::new(set);
    let first = reconcile::reconcile(set.clone(), ctx.clone()).await;
    assert!(first.is_ok(), "{first:?}");
    // The controller sees our status write as a change and calls again;
    // nothing is new, so nothing is sent (and no SQL runs: the set is
    // suspended here, and the memo stops before the engine anyway).
    for _ in 0..3 {
        let again = reconcile::reconcile(set.clone(), ctx.clone()).await;
        assert!(again.is_ok());
    }
    let text = ctx.shared.metrics.render();
    drop(ctx);
    let seen = task.await.expect("mock task");
    let calls: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "POST".to_string(),
                "/apis/events.k8s.io/v1/namespaces/apps/events".to_string()
            ),
            (
                "PATCH".to_string(),
                "/apis/chmigrate.io/v1alpha1/namespaces/apps/migrationsets/orders/status"
                    .to_string()
            ),
        ],
        "exactly one event and one status patch, on the status subresource"
    );
    assert_eq!(seen[0].body["reason"], "Suspended");
    assert_eq!(seen[0].body["type"], "Normal");
    let status = &seen[1].body["status"];
    assert_eq!(status["observedGeneration"], 2);
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Suspended");
    assert!(
        text.contains(r#"chmigrate_reconciles_total{result="noop"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn rollback_deletion_policy_adds_the_finalizer_with_a_compare_and_set() {
    let set = set_with(|s| {
        s.spec.policy.deletion_policy = chmigrate::k8s::crd::DeletionPolicy::Rollback;
    });
    let (seen, results) = requests(set, vec![], 1).await;
    assert!(results[0].is_ok(), "{results:?}");
    let seen = &seen;
    let fin = seen
        .iter()
        .find(|s| {
            s.is(
                "PATCH",
                "/apis/chmigrate.io/v1alpha1/namespaces/apps/migrationsets/orders",
            )
        })
        .expect("a patch of the set itself");
    assert_eq!(
        fin.body,
        json!({ "metadata": { "finalizers": [FINALIZER], "resourceVersion": "17" } })
    );
    assert!(
        seen.iter().position(|s| s.path.ends_with("/orders"))
            < seen.iter().position(|s| s.path.ends_with("/status")),
        "the finalizer is in place before anything else is written"
    );
}

#[tokio::test]
async fn deleting_a_retained_set_only_removes_the_finalizer() {
    let set = set_with(|s| {
        s.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    });
    let (seen, results) = requests(set, vec![], 1).await;
    assert_eq!(results[0], Ok(Action::await_change()));
    let seen = &seen;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].is(
        "PATCH",
        "/apis/chmigrate.io/v1alpha1/namespaces/apps/migrationsets/orders"
    ));
    assert_eq!(
        seen[0].body,
        json!({ "metadata": { "finalizers": ["other.io/keep"], "resourceVersion": "17" } }),
        "only our finalizer goes, others stay"
    );
}

#[tokio::test]
async fn a_malformed_set_gets_a_warning_and_a_stalled_status_once() {
    let bad: DeserializeGuard<MigrationSet> = guard(
        r#"
apiVersion: chmigrate.io/v1alpha1
kind: MigrationSet
metadata: { name: orders, namespace: apps, generation: 1, resourceVersion: "5" }
spec: { connection: { url: 42 } }
"#,
    );
    assert!(bad.0.is_err(), "fixture must not parse");
    let (seen, results) = requests(bad, vec![], 3).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let seen = &seen;
    assert_eq!(
        seen.len(),
        2,
        "one event and one status patch in three rounds: {seen:?}"
    );
    assert_eq!(seen[0].body["type"], "Warning");
    assert_eq!(seen[0].body["reason"], "InvalidSpec");
    assert!(seen[1].path.ends_with("/migrationsets/orders/status"));
    let stalled = seen[1].body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Stalled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(stalled["status"], "True");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match the MigrationSet schema"),
        "{stalled}"
    );
}

#[tokio::test]
async fn a_selected_malformed_migration_stalls_the_set_and_names_it() {
    let set = set_with(|s| s.spec.policy.suspend = false);
    let bad: DeserializeGuard<ClickHouseMigration> = guard(
        r#"
apiVersion: chmigrate.io/v1alpha1
kind: ClickHouseMigration
metadata: { name: broken, namespace: apps, labels: { app: orders } }
spec: { version: "3" }
"#,
    );
    assert!(bad.0.is_err());
    let (seen, results) = requests(set, vec![bad], 1).await;
    assert!(
        results[0].is_ok(),
        "a person must act: no retry loop: {results:?}"
    );
    let patches: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/status"))
        .collect();
    assert_eq!(patches.len(), 2, "{seen:?}");
    // Inputs the status has not seen: Reconciling before anything runs.
    let first = &patches[0].body["status"];
    let cond = |st: &Value, t: &str| {
        st["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .map(|c| (c["status"].clone(), c["reason"].clone()))
    };
    assert_eq!(
        cond(first, "Reconciling"),
        Some((json!("True"), json!("Reconciling")))
    );
    assert_eq!(
        cond(first, "Ready"),
        Some((json!("False"), json!("Reconciling")))
    );
    let patch = patches[1];
    assert!(
        patch.body["status"]["observedInputs"].is_string(),
        "{:?}",
        patch.body
    );
    let stalled = patch.body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Stalled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "InvalidMigrations");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ClickHouseMigration apps/broken"),
        "{stalled}"
    );
}

#[tokio::test]
async fn an_unreachable_server_backs_off_and_says_why() {
    let set = set_with(|s| s.spec.policy.suspend = false);
    let (client, task) = mock(reply_for(&set));
    let ctx = ctx(client, &set, vec![]);
    let set = Arc::new(set);
    let r = reconcile::reconcile(set.clone(), ctx.clone()).await;
    let err = r.expect_err("a server that does not answer is an error to retry");
    assert_eq!(err.category(), "clickhouse");
    let first = reconcile::error_policy(set.clone(), &err, ctx.clone());
    let second = reconcile::error_policy(set.clone(), &err, ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
    drop(ctx);
    let seen = task.await.expect("mock");
    let ev = seen
        .iter()
        .find(|s| s.path.contains("/events"))
        .expect("event");
    assert_eq!(ev.body["type"], "Warning");
    assert_eq!(ev.body["reason"], "Unavailable");
    let patch = seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("status");
    let reconciling = patch.body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Reconciling"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(reconciling["status"], "True", "{patch:?}");
    let msg = serde_json::to_string(&seen.iter().map(|s| &s.body).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        !msg.contains("s3cret-pw"),
        "the password never reaches the API"
    );
}

#[test]
fn merge_diff_nulls_what_is_gone_and_keeps_what_is_equal() {
    let old = json!({"a": 1, "plan": [1], "lastRun": {"applied": ["1"], "rolledBack": ["2"]}});
    let new = json!({"a": 1, "lastRun": {"applied": ["3"]}});
    assert_eq!(
        merge_diff(&old, &new),
        json!({"plan": null, "lastRun": {"applied": ["3"], "rolledBack": null}})
    );
    let mut patched = old.clone();
    json_patch::merge(&mut patched, &merge_diff(&old, &new));
    assert_eq!(
        patched, new,
        "applying the diff as a merge patch gives the new status"
    );
}
