//! Self-tests of the fake Kubernetes API server in
//! `tests/support/fake_apiserver.rs`, driven by the real kube client,
//! kube-runtime (watcher, finalizer helper, event recorder) and
//! kube-lease-manager.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chmigrate::k8s::crd::{ClickHouseMigration, MigrationSet};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{controller::Action, finalizer, watcher};
use kube::{Client, Error, ResourceExt};
use serde_json::{Value, json};
use support::fake_apiserver::FakeApiServer;
use tokio::time::{Instant, timeout};

/// A kube client built from the kubeconfig the fake writes.
async fn client(server: &FakeApiServer) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path);
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    Client::try_from(config).unwrap()
}

fn api_code(e: &Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .unwrap()
}

fn migration_set(name: &str, database: &str) -> MigrationSet {
    serde_json::from_value(json!({
        "apiVersion": "chmigrate.io/v1alpha1",
        "kind": "MigrationSet",
        "metadata": {"name": name},
        "spec": {"connection": {
            "url": "http://clickhouse:8123",
            "database": database,
            "credentials": {"passwordless": true},
        }},
    }))
    .unwrap()
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `secs`.
async fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn configmaps_create_get_list_and_selectors() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let a = api
        .create(
            &pp,
            &cm("a", json!({"app": "web", "tier": "fe"}), json!({"k": "1"})),
        )
        .await
        .unwrap();
    api.create(&pp, &cm("b", json!({"app": "db"}), json!({})))
        .await
        .unwrap();
    api.create(&pp, &cm("c", json!({"app": "cache"}), json!({})))
        .await
        .unwrap();

    let meta = &a.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv > 0);

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "1");
    assert_eq!(
        api_code(&api.get("nope").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert_eq!(
        api_code(
            &api.create(&pp, &cm("a", json!({}), json!({})))
                .await
                .unwrap_err()
        ),
        (409, "AlreadyExists".into())
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "missing-ns");
    assert_eq!(
        api_code(
            &elsewhere
                .create(&pp, &cm("x", json!({}), json!({})))
                .await
                .unwrap_err()
        ),
        (404, "NotFound".into())
    );

    let names = |sel: &str| {
        let api = api.clone();
        let lp = ListParams::default().labels(sel);
        async move {
            let list = api.list(&lp).await.unwrap();
            list.items.iter().map(|o| o.name_any()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("").await, ["a", "b", "c"]);
    assert_eq!(names("app=web").await, ["a"]);
    assert_eq!(names("app==db").await, ["b"]);
    assert_eq!(names("app!=web").await, ["b", "c"]);
    assert_eq!(names("tier").await, ["a"]);
    assert_eq!(names("!tier").await, ["b", "c"]);
    assert_eq!(names("app in (web, db)").await, ["a", "b"]);
    assert_eq!(names("app notin (web,db)").await, ["c"]);
    assert_eq!(names("app in (web,db),!tier").await, ["b"]);

    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    assert_eq!(by_name.items[0].name_any(), "b");
    // Pages of `limit` with continue tokens; the last page has none.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let page_names: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    assert_eq!(page_names, ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    assert_eq!(
        first.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let token = first.metadata.continue_.clone().expect("a continue token");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let page_names: Vec<String> = second.items.iter().map(|c| c.name_any()).collect();
    assert_eq!(page_names, ["c"]);
    assert!(second.metadata.continue_.is_none());
    // Selectors apply before paging.
    let web = api
        .list(&ListParams::default().labels("app").limit(1))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 1);
    assert_eq!(web.metadata.remaining_item_count, Some(2));
    // Once the history after the token's resourceVersion is compacted
    // away, the token is too old: 410 Expired.
    api.create(&PostParams::default(), &cm("d", json!({}), json!({})))
        .await
        .unwrap();
    server.compact();
    api.delete("d", &DeleteParams::default()).await.unwrap();
    let e = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (410, "Expired".to_string()));
    let e = api
        .list(&ListParams::default().continue_token("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 400);

    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    assert_eq!(server.list("configmaps", Some("default")).len(), 3);
    assert_eq!(
        server.get("configmaps", "default", "a").unwrap()["data"]["k"],
        "1"
    );
    assert!(server.list("namespaces", None).len() >= 4);
    assert!(
        client
            .apiserver_version()
            .await
            .unwrap()
            .git_version
            .contains("fake")
    );
}

#[tokio::test]
async fn patch_types_and_resource_version_conflicts() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let pp = PatchParams::default();
    let created = api
        .create(
            &PostParams::default(),
            &cm("p", json!({"a": "1"}), json!({"x": "1", "y": "2"})),
        )
        .await
        .unwrap();

    // merge (RFC 7386): null removes
    let merged = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"data": {"x": null, "z": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.clone().unwrap().len(), 2);
    assert_eq!(merged.data.unwrap()["z"], "3");

    // strategic, treated as merge
    let strategic = api
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.labels().len(), 2);

    // JSON patch, and a failing `test` is 422 Invalid
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/y", "value": "2"},
        {"op": "replace", "path": "/data/y", "value": "20"},
    ]))
    .unwrap();
    let patched = api.patch("p", &pp, &Patch::Json::<()>(jp)).await.unwrap();
    assert_eq!(patched.data.unwrap()["y"], "20");
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/y", "value": "2"},
        {"op": "remove", "path": "/data/y"},
    ]))
    .unwrap();
    let err = api
        .patch("p", &pp, &Patch::Json::<()>(failing))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (422, "Invalid".into()));
    assert_eq!(
        server.get("configmaps", "default", "p").unwrap()["data"]["y"],
        "20"
    );

    // resourceVersion preconditions: PUT and a merge patch carrying one
    let mut stale = created.clone();
    stale.data = Some([("q".to_string(), "1".to_string())].into());
    let err = api
        .replace("p", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    let err = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": created.resource_version()}, "data": {"q": "1"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    let mut fresh = api.get("p").await.unwrap();
    fresh.data = Some([("q".to_string(), "1".to_string())].into());
    let replaced = api
        .replace("p", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version(), fresh.resource_version());

    // a no-op write does not bump resourceVersion
    let same = api
        .patch("p", &pp, &Patch::Merge(json!({"data": {"q": "1"}})))
        .await
        .unwrap();
    assert_eq!(same.resource_version(), replaced.resource_version());

    // server-side apply: creates, conflicts between managers, force, and
    // fields a manager stops applying are removed
    let apply = |m: &str| PatchParams::apply(m);
    let doc = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});
    let (s1, code) = {
        let s = api
            .patch(
                "s",
                &apply("alice"),
                &Patch::Apply(doc(json!({"owner": "alice", "a": "1"}))),
            )
            .await
            .unwrap();
        (s, server.requests().last().unwrap().status)
    };
    assert_eq!(code, 201);
    assert_eq!(s1.data.unwrap()["owner"], "alice");
    let err = api
        .patch(
            "s",
            &apply("bob"),
            &Patch::Apply(doc(json!({"owner": "bob"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    // same value: shared ownership, no conflict
    api.patch(
        "s",
        &apply("bob"),
        &Patch::Apply(doc(json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    let owners = server.field_owners("configmaps", "default", "s");
    assert_eq!(owners[".data.a"], ["alice (Apply)", "bob (Apply)"]);
    let forced = api
        .patch(
            "s",
            &apply("bob").force(),
            &Patch::Apply(doc(json!({"owner": "bob", "a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "bob");
    assert_eq!(
        server.field_owners("configmaps", "default", "s")[".data.owner"],
        ["bob (Apply)"]
    );
    // alice drops `a` (still owned by bob, kept) and `owner` (no longer hers)
    api.patch("s", &apply("alice"), &Patch::Apply(doc(json!({"c": "3"}))))
        .await
        .unwrap();
    let data = api.get("s").await.unwrap().data.unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c", "owner"]
    );
    // bob drops `b`: he was its only owner, so it goes
    api.patch(
        "s",
        &apply("bob"),
        &Patch::Apply(doc(json!({"owner": "bob", "a": "1"}))),
    )
    .await
    .unwrap();
    let data = api.get("s").await.unwrap().data.unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "c", "owner"]
    );
    // an update by another manager takes the fields it changes
    api.patch(
        "s",
        &PatchParams {
            field_manager: Some("carol".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"owner": "carol"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        server.field_owners("configmaps", "default", "s")[".data.owner"],
        ["carol (Update)"]
    );
    let err = api
        .patch(
            "s",
            &apply("bob"),
            &Patch::Apply(doc(json!({"owner": "bob", "a": "1"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));

    let apply_req = server
        .requests()
        .into_iter()
        .find(|r| r.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .unwrap();
    assert_eq!(apply_req.param("fieldManager").as_deref(), Some("alice"));
    assert!(apply_req.is_write());
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<MigrationSet> = Api::default_namespaced(client);
    let mut set = migration_set("orders", "db1");
    set.status = Some(serde_json::from_value(json!({"pendingCount": 7})).unwrap());
    let created = api.create(&PostParams::default(), &set).await.unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    // status writes: only .status changes, generation stays
    let with_status = api
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": {"connection": {"database": "hacked"}},
                "metadata": {"labels": {"via": "status"}},
                "status": {"pendingCount": 3, "observedGeneration": 1},
            })),
        )
        .await
        .unwrap();
    assert_eq!(with_status.status.as_ref().unwrap().pending_count, 3);
    assert_eq!(with_status.spec.connection.database, "db1");
    assert!(with_status.labels().is_empty());
    assert_eq!(with_status.metadata.generation, Some(1));
    assert_ne!(with_status.resource_version(), created.resource_version());

    // main-resource writes never change .status; metadata does not bump generation
    let labelled = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"team": "a"}}, "status": {"pendingCount": 99}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(labelled.status.as_ref().unwrap().pending_count, 3);
    assert_eq!(labelled.metadata.generation, Some(1));
    let respec = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"connection": {"database": "db2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(respec.metadata.generation, Some(2));
    assert_eq!(respec.status.as_ref().unwrap().pending_count, 3);

    // PUT on /status, with the resourceVersion precondition
    let mut current = api.get_status("orders").await.unwrap();
    current.status.as_mut().unwrap().pending_count = 0;
    current.spec.connection.database = "ignored".into();
    let replaced = api
        .replace_status("orders", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.status.as_ref().unwrap().pending_count, 0);
    assert_eq!(replaced.spec.connection.database, "db2");
    assert_eq!(replaced.metadata.generation, Some(2));
    let err = api
        .replace_status("orders", &PostParams::default(), &current)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));

    // server-side apply of status by the operator's field manager: the
    // pendingCount set by the updates above (kube sends no User-Agent, so
    // their manager is "unknown") conflicts unless forced
    let status_apply = Patch::Apply(json!({
        "apiVersion": "chmigrate.io/v1alpha1",
        "kind": "MigrationSet",
        "status": {"pendingCount": 5, "appliedVersion": "3"},
    }));
    let err = api
        .patch_status(
            "orders",
            &PatchParams::apply("chmigrate-operator"),
            &status_apply,
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    let applied = api
        .patch_status(
            "orders",
            &PatchParams::apply("chmigrate-operator").force(),
            &status_apply,
        )
        .await
        .unwrap();
    let status = applied.status.unwrap();
    assert_eq!(
        (status.pending_count, status.applied_version.as_deref()),
        (5, Some("3"))
    );
    assert_eq!(applied.metadata.generation, Some(2));

    // apply_yaml: kubectl-apply-like, bumps generation on a spec change, keeps status
    server.apply_yaml(
        "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata:\n  name: orders\n  namespace: default\n\
         spec:\n  connection:\n    url: http://clickhouse:8123\n    database: db3\n    credentials:\n      passwordless: true\n\
         status:\n  pendingCount: 42\n\
         ---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  1_init.sql: SELECT 1\n",
    );
    let obj = server.get("migrationsets", "default", "orders").unwrap();
    assert_eq!(obj["spec"]["connection"]["database"], "db3");
    assert_eq!(obj["metadata"]["generation"], 3);
    assert_eq!(obj["status"]["pendingCount"], 5);
    assert_eq!(
        server.get("configmaps", "default", "files").unwrap()["data"]["1_init.sql"],
        "SELECT 1"
    );
    let rv = server.resource_version();
    server.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  1_init.sql: SELECT 1\n",
    );
    assert_eq!(
        server.resource_version(),
        rv,
        "re-applying the same YAML is a no-op"
    );
}

#[tokio::test]
async fn finalizers_and_graceful_deletion() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ClickHouseMigration> = Api::default_namespaced(client);
    let m: ClickHouseMigration = serde_json::from_value(json!({
        "apiVersion": "chmigrate.io/v1alpha1",
        "kind": "ClickHouseMigration",
        "metadata": {"name": "m1"},
        "spec": {"version": "1", "up": "SELECT 1"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &m).await.unwrap();
    const FIN: &str = "chmigrate.io/cleanup";

    // kube's finalizer helper adds the finalizer with a JSON patch whose
    // `test` of a missing path against null must pass
    let obj = Arc::new(api.get("m1").await.unwrap());
    finalizer(&api, FIN, obj, |_| async {
        Ok::<_, Error>(Action::await_change())
    })
    .await
    .unwrap();
    let obj = api.get("m1").await.unwrap();
    assert_eq!(obj.finalizers(), [FIN]);
    let generation = obj.metadata.generation.unwrap();

    // DELETE with a finalizer: deletionTimestamp, generation bumped, still there
    let deleted = api.delete("m1", &DeleteParams::default()).await.unwrap();
    let deleting = deleted
        .left()
        .expect("the object while it is being deleted");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.generation, Some(generation + 1));
    assert!(
        server
            .get("clickhousemigrations", "default", "m1")
            .is_some()
    );

    // no new finalizers on an object being deleted
    let err = api
        .patch(
            "m1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FIN, "other/fin"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (422, "Invalid".into()));

    // the helper's cleanup removes the finalizer and the object goes
    let mut cleaned = false;
    finalizer(&api, FIN, Arc::new(deleting), |ev| {
        cleaned = matches!(ev, finalizer::Event::Cleanup(_));
        async { Ok::<_, Error>(Action::await_change()) }
    })
    .await
    .unwrap();
    assert!(cleaned);
    assert!(
        server
            .get("clickhousemigrations", "default", "m1")
            .is_none()
    );
    assert_eq!(api_code(&api.get("m1").await.unwrap_err()).0, 404);

    // without finalizers: gone at once; the helper's delete too
    let cm_api: Api<ConfigMap> = Api::default_namespaced(api.clone().into_client());
    cm_api
        .create(&PostParams::default(), &cm("gone", json!({}), json!({})))
        .await
        .unwrap();
    let status = cm_api
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    assert!(status.is_right(), "configmaps answer a Status on delete");
    assert!(server.get("configmaps", "default", "gone").is_none());
    server.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [x/y]\n",
    );
    server.delete("configmaps", "default", "held");
    let held = server.get("configmaps", "default", "held").unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    cm_api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(server.get("configmaps", "default", "held").is_none());
}

#[tokio::test]
async fn watcher_sees_events_in_order_and_watch_replays() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let pp = PostParams::default();
    api.create(&pp, &cm("existing", json!({"w": "yes"}), json!({})))
        .await
        .unwrap();
    let start_rv = server.resource_version();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_api = api.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default().labels("w=yes")).boxed();
        while let Some(ev) = stream.try_next().await.unwrap() {
            let line = match ev {
                watcher::Event::Init => "Init".to_string(),
                watcher::Event::InitApply(o) => format!("InitApply {}", o.name_any()),
                watcher::Event::InitDone => "InitDone".to_string(),
                watcher::Event::Apply(o) => {
                    format!(
                        "Apply {} {:?}",
                        o.name_any(),
                        o.data.unwrap_or_default().get("v")
                    )
                }
                watcher::Event::Delete(o) => format!("Delete {}", o.name_any()),
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next = async || {
        timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("watch event in time")
            .unwrap()
    };
    for _ in 0..3 {
        seen.push(next().await);
    }
    assert_eq!(seen, ["Init", "InitApply existing", "InitDone"]);

    api.create(&pp, &cm("new", json!({"w": "yes"}), json!({"v": "1"})))
        .await
        .unwrap();
    api.create(&pp, &cm("other", json!({"w": "no"}), json!({})))
        .await
        .unwrap();
    api.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("new", &DeleteParams::default()).await.unwrap();
    // leaving the selector reads as a deletion
    api.patch(
        "existing",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"w": "no"}}})),
    )
    .await
    .unwrap();
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(next().await);
    }
    assert_eq!(
        live,
        [
            "Apply new Some(\"1\")",
            "Apply new Some(\"2\")",
            "Delete new",
            "Delete existing",
        ]
    );
    task.abort();
    let watch_req = server.requests().into_iter().find(|r| r.watch).unwrap();
    assert_eq!(
        watch_req.param("allowWatchBookmarks").as_deref(),
        Some("true")
    );
    assert_eq!(watch_req.param("sendInitialEvents"), None);

    // a raw watch from an old resourceVersion replays the log, then ends at timeoutSeconds
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1), &start_rv.to_string())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
            WatchEvent::Error(e) => format!("ERROR {e:?}"),
        })
        .collect();
    // one bookmark (at the latest resourceVersion) when the watch times out
    assert_eq!(
        kinds.last().unwrap(),
        &format!("BOOKMARK {}", server.resource_version())
    );
    assert_eq!(
        kinds[..kinds.len() - 1],
        [
            "ADDED new",
            "ADDED other",
            "MODIFIED new",
            "DELETED new",
            "MODIFIED existing"
        ]
    );
}

#[tokio::test]
async fn lease_manager_elects_exactly_one_leader() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let build = |id: &str| {
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "chmigrate-leader")
            .with_identity(id)
            .with_field_manager(format!("kube-lease-manager-{id}"))
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let (a, b) = tokio::join!(build("a"), build("b"));
    let (a_rx, _a_task) = a.unwrap().watch().await;
    let (b_rx, _b_task) = b.unwrap().watch().await;

    let leader = eventually(10, "a leader", || match (*a_rx.borrow(), *b_rx.borrow()) {
        (true, false) => Some("a"),
        (false, true) => Some("b"),
        (true, true) => panic!("two leaders"),
        (false, false) => None,
    })
    .await;
    let lease = server.get("leases", "default", "chmigrate-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], leader);
    assert_eq!(
        server.field_owners("leases", "default", "chmigrate-leader")[".spec.holderIdentity"],
        [format!("kube-lease-manager-{leader} (Apply)")]
    );

    // a third contender applying without force gets the 409 the loser relies on
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let err = leases
        .patch(
            "chmigrate-leader",
            &PatchParams::apply("kube-lease-manager-c"),
            &Patch::Apply(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "spec": {"holderIdentity": "c"},
            })),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));

    // the leader lets go (its receiver is dropped, it releases the lease)
    // and the other one takes over
    let (follower, follower_rx) = if leader == "a" {
        drop(a_rx);
        ("b", b_rx)
    } else {
        drop(b_rx);
        ("a", a_rx)
    };
    eventually(15, "the follower to take over", || {
        (*follower_rx.borrow()).then_some(())
    })
    .await;
    let lease = server.get("leases", "default", "chmigrate-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], follower);
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 2);
}

#[tokio::test]
async fn event_recorder_creates_then_patches_a_series() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "chmigrate-test".into(),
            instance: Some("pod-1".into()),
        },
    );
    let set = migration_set("orders", "db");
    server.apply_yaml(&serde_yaml::to_string(&set).unwrap());
    let obj = server.get("migrationsets", "default", "orders").unwrap();
    let reference = ObjectReference {
        api_version: Some("chmigrate.io/v1alpha1".into()),
        kind: Some("MigrationSet".into()),
        name: Some("orders".into()),
        namespace: Some("default".into()),
        uid: obj["metadata"]["uid"].as_str().map(str::to_owned),
        ..Default::default()
    };
    let ev = KubeEvent {
        type_: EventType::Normal,
        reason: "Applied".into(),
        note: Some("applied 3 migrations".into()),
        action: "Apply".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.list("events.events.k8s.io", Some("default"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["reason"], "Applied");
    assert_eq!(events[0]["regarding"]["name"], "orders");
    assert_eq!(events[0]["series"]["count"], 2);
    let writes: Vec<String> = server
        .writes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes[0],
        "POST /apis/events.k8s.io/v1/namespaces/default/events"
    );
    assert!(
        writes[1].starts_with("PATCH /apis/events.k8s.io/v1/namespaces/default/events/orders.")
    );
    assert!(
        server.list("events", None).is_empty(),
        "the test helpers see each API's own store"
    );
    // Through the API, core/v1 shows the same Event converted, found by
    // the field selector `kubectl describe` uses.
    let core: Api<k8s_openapi::api::core::v1::Event> =
        Api::default_namespaced(crate::client(&server).await);
    let selector = format!(
        "involvedObject.name=orders,involvedObject.namespace=default,involvedObject.kind=MigrationSet,involvedObject.uid={}",
        obj["metadata"]["uid"].as_str().unwrap()
    );
    let seen = core
        .list(&ListParams::default().fields(&selector).limit(500))
        .await
        .unwrap();
    assert_eq!(seen.items.len(), 1);
    let e = &seen.items[0];
    assert_eq!(e.message.as_deref(), Some("applied 3 migrations"));
    assert_eq!(e.reason.as_deref(), Some("Applied"));
    assert_eq!(e.reporting_component.as_deref(), Some("chmigrate-test"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
    let one = core.get(&e.name_any()).await.unwrap();
    assert_eq!(one.involved_object.name.as_deref(), Some("orders"));
}

/// A raw GET through the kube client with an Accept header.
async fn get_json(client: &Client, path: &str, accept: &str) -> Value {
    let req = http::Request::get(path)
        .header("accept", accept)
        .body(Vec::new())
        .unwrap();
    client.request::<Value>(req).await.unwrap()
}

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn crds_bring_discovery_openapi_tables_and_admission() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let sets: Api<MigrationSet> = Api::default_namespaced(client.clone());
    // Without its CRD a custom resource is stored as given and is not
    // discoverable (tests that need no CRD use it so).
    let mut bad = migration_set("before", "db");
    bad.spec.connection.url = "clickhouse:8123".into();
    sets.create(&PostParams::default(), &bad).await.unwrap();
    let groups = get_json(&client, "/apis", "application/json").await;
    assert!(!groups.to_string().contains("chmigrate.io"), "{groups}");

    let crds = std::fs::read_to_string(support::repo().join("crds/chmigrate.yaml")).unwrap();
    server.apply_yaml(&crds);
    // Discovery: names, short names, categories, verbs, scope.
    let list = get_json(&client, "/apis/chmigrate.io/v1alpha1", "application/json").await;
    let chm = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "clickhousemigrations")
        .unwrap();
    assert_eq!(
        chm["shortNames"],
        json!(["chm", "chmigration", "chmigrations"])
    );
    assert_eq!(chm["categories"], json!(["chmigrate"]));
    assert_eq!(chm["singularName"], "clickhousemigration");
    assert_eq!(chm["namespaced"], true);
    assert!(chm["verbs"].as_array().unwrap().contains(&json!("watch")));
    // OpenAPI v3: the index and the group-version's document with the
    // CRD's schema.
    let index = get_json(&client, "/openapi/v3", "application/json").await;
    let url = index["paths"]["apis/chmigrate.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = get_json(&client, &url, "application/json").await;
    let schema = &doc["components"]["schemas"]["io.chmigrate.v1alpha1.ClickHouseMigration"];
    assert_eq!(
        schema["properties"]["spec"]["required"],
        json!(["up", "version"])
    );
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "chmigrate.io", "version": "v1alpha1", "kind": "ClickHouseMigration"}])
    );

    // Admission: CEL rule, defaulting, ratcheting of a stored object.
    let mut invalid = migration_set("after", "db");
    invalid.spec.connection.url = "clickhouse:8123".into();
    let e = sets
        .create(&PostParams::default(), &invalid)
        .await
        .unwrap_err();
    match &e {
        Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert_eq!(
                s.message,
                "MigrationSet.chmigrate.io \"after\" is invalid: spec.connection.url: Invalid value: \"string\": url must start with http:// or https://"
            );
        }
        other => panic!("{other:?}"),
    }
    let good = sets
        .create(&PostParams::default(), &migration_set("good", "db"))
        .await
        .unwrap();
    let stored = server.get("migrationsets", "default", "good").unwrap();
    assert_eq!(stored["spec"]["policy"]["deletionPolicy"], "Retain");
    assert_eq!(
        stored["spec"]["connection"]["credentials"]["passwordless"],
        true
    );
    assert_eq!(good.metadata.generation, Some(1));
    // The object stored before the CRD keeps its bad url through updates
    // that leave it alone (ratcheting), but may not get a new bad value.
    sets.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    let e = sets
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"connection": {"database": "a b"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (422, "Invalid".to_string()));
    // Strategic merge patch of a custom resource: 415.
    let e = sets
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"environment": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (415, "UnsupportedMediaType".to_string()));

    // Tables: Name, then the CRD's printer columns.
    server.apply_yaml(
        r#"{"apiVersion":"chmigrate.io/v1alpha1","kind":"ClickHouseMigration",
            "metadata":{"name":"m1","namespace":"default"},
            "spec":{"version":"1","up":"SELECT 1"}}"#,
    );
    let migrations: Api<ClickHouseMigration> = Api::default_namespaced(client.clone());
    migrations
        .patch_status(
            "m1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"set": "orders", "phase": "Applied", "hosts": "2/2"}})),
        )
        .await
        .unwrap();
    let table = get_json(
        &client,
        "/apis/chmigrate.io/v1alpha1/namespaces/default/clickhousemigrations",
        TABLE,
    )
    .await;
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Version", "Set", "Phase", "Hosts", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        cells.as_array().unwrap()[..5],
        [
            json!("m1"),
            json!("1"),
            json!("orders"),
            json!("Applied"),
            json!("2/2")
        ]
    );
    assert!(cells[5].as_str().unwrap().ends_with('s'), "{cells}");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // The Ready column's JSONPath filter.
    sets.patch_status(
        "good",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"appliedVersion": "3", "pendingCount": 0, "conditions": [
            {"type": "Reconciling", "status": "False", "reason": "Applied", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "Applied", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        ]}})),
    )
    .await
    .unwrap();
    let table = get_json(
        &client,
        "/apis/chmigrate.io/v1alpha1/namespaces/default/migrationsets/good?includeObject=Object",
        TABLE,
    )
    .await;
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "good");
    assert_eq!(cells[1], Value::Null, "no cluster");
    assert_eq!(cells[2], "3");
    assert_eq!(cells[4], 0);
    assert_eq!(cells[5], "True");
    assert_eq!(table["rows"][0]["object"]["kind"], "MigrationSet");
}

#[tokio::test]
async fn transition_rules_make_fields_immutable_and_status_is_admitted_too() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    // The CRDs with one more rule: spec.version may not change once set
    // (a transition rule, evaluated with oldSelf on updates only).
    let text = std::fs::read_to_string(support::repo().join("crds/chmigrate.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut crd: Value = serde::Deserialize::deserialize(doc).unwrap();
        if crd["metadata"]["name"] == "clickhousemigrations.chmigrate.io" {
            let version = crd
                .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/version/x-kubernetes-validations")
                .and_then(Value::as_array_mut)
                .unwrap();
            version.push(json!({"rule": "self == oldSelf", "message": "version is immutable"}));
        }
        server.apply_yaml(&crd.to_string());
    }
    let api: Api<ClickHouseMigration> = Api::default_namespaced(client);
    let m: ClickHouseMigration = serde_json::from_value(json!({
        "apiVersion": "chmigrate.io/v1alpha1", "kind": "ClickHouseMigration",
        "metadata": {"name": "m"},
        "spec": {"version": "1", "up": "SELECT 1"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &m).await.unwrap();
    let e = api
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "2"}})),
        )
        .await
        .unwrap_err();
    match &e {
        Error::Api(s) => assert_eq!(
            s.message,
            "ClickHouseMigration.chmigrate.io \"m\" is invalid: spec.version: Invalid value: \"string\": version is immutable"
        ),
        other => panic!("{other:?}"),
    }
    // Other fields still change.
    let patched = api
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "d"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.description, "d");
    // The status subresource is admitted against the schema too: a
    // wrong type is refused, an unknown field is pruned.
    let e = api
        .patch_status(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": "three"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (422, "Invalid".to_string()));
    api.patch_status(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"observedGeneration": 3, "bogus": true}})),
    )
    .await
    .unwrap();
    let stored = server.get("clickhousemigrations", "default", "m").unwrap();
    assert_eq!(stored["status"]["observedGeneration"], 3);
    assert!(stored["status"].get("bogus").is_none(), "{stored}");
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_is_gone_and_the_watcher_relists() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let pp = PostParams::default();
    api.create(&pp, &cm("one", json!({}), json!({})))
        .await
        .unwrap();
    let old_rv = server.resource_version();
    server.set_history(2);
    for i in 0..3 {
        api.create(&pp, &cm(&format!("more{i}"), json!({}), json!({})))
            .await
            .unwrap();
    }
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1), &old_rv.to_string())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    match events.as_slice() {
        [WatchEvent::Error(e)] => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message
                    .starts_with(&format!("too old resource version: {old_rv} (")),
                "{}",
                e.message
            );
        }
        other => panic!("expected one 410 ERROR event, got {other:?}"),
    }
    // Within the window the watch replays.
    let recent = server.resource_version() - 1;
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1), &recent.to_string())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&events[0], WatchEvent::Added(o) if o.name_any() == "more2"),
        "{events:?}"
    );

    // kube's watcher, told its resourceVersion is gone, lists again and
    // carries on (compaction after every event).
    server.set_history(0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn({
        let api = api.clone();
        async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.try_next().await.unwrap() {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = ev
                    && tx.send(o.name_any()).is_err()
                {
                    break;
                }
            }
        }
    });
    let mut names = Vec::new();
    while names.len() < 4 {
        names.push(
            timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    api.create(&pp, &cm("late", json!({}), json!({})))
        .await
        .unwrap();
    let late = timeout(Duration::from_secs(10), async {
        loop {
            if rx.recv().await.unwrap() == "late" {
                return;
            }
        }
    })
    .await;
    assert!(
        late.is_ok(),
        "the watcher saw the object created after compaction"
    );
    task.abort();
}

#[tokio::test]
async fn fault_injection_and_request_log() {
    let server = FakeApiServer::start();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("f", json!({}), json!({})))
        .await
        .unwrap();
    server.clear_requests();

    server.fail_requests("GET", "/configmaps/f", 500, 1);
    let err = api.get("f").await.unwrap_err();
    assert_eq!(api_code(&err), (500, "InternalError".into()));
    api.get("f").await.unwrap();

    server.fail_requests("patch", "/configmaps/f", 409, 2);
    for _ in 0..2 {
        let err = api
            .patch(
                "f",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"a": "1"}})),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(&err), (409, "Conflict".into()));
    }
    let stored = server.get("configmaps", "default", "f").unwrap();
    assert_eq!(
        stored["data"],
        json!({}),
        "faulted requests are not executed"
    );

    // kube's client retries 503 by itself
    server.fail_requests("*", "/configmaps/f", 503, 1);
    api.get("f").await.unwrap();

    let log: Vec<(String, u16)> = server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("GET".to_string(), 500),
            ("GET".to_string(), 200),
            ("PATCH".to_string(), 409),
            ("PATCH".to_string(), 409),
            ("GET".to_string(), 503),
            ("GET".to_string(), 200),
        ]
    );
    let writes = server.writes();
    assert_eq!(writes.len(), 2);
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(writes[0].body, Some(json!({"data": {"a": "1"}})));
    assert!(!server.requests()[0].is_write());
}

#[test]
#[should_panic(expected = "does not serve")]
fn apply_yaml_panics_on_unknown_kinds() {
    let server = FakeApiServer::start();
    server.apply_yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
}

#[test]
fn plain_test_helpers_work_without_a_runtime() {
    let server = FakeApiServer::start();
    server.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: l\n  namespace: team\nspec:\n  holderIdentity: me\n");
    let lease = server.wait_for(Duration::from_secs(1), "the lease", |s| {
        s.get("leases", "team", "l")
    });
    assert_eq!(lease["spec"]["holderIdentity"], "me");
    assert_eq!(server.list("leases", None).len(), 1);
    assert!(server.requests().is_empty());
}
