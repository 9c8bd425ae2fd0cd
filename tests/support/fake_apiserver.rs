//! A FAKE Kubernetes API server for end-to-end tests and for trying the
//! operator without a cluster: stateful, in memory, plain HTTP on
//! `127.0.0.1`, serving a fixed set of resources. It is **not** a
//! kube-apiserver. It aims to be faithful where a kube-rs controller and
//! `kubectl` depend on the server (list/watch with resourceVersions, watch
//! history and `410 Gone`, pagination, optimistic concurrency, the status
//! subresource, finalizers and graceful deletion, the four patch types,
//! server-side-apply field ownership and conflicts, discovery, OpenAPI v3,
//! `Table` output, CRD admission, `Status` error bodies) and it is
//! simplified everywhere else. The tests include it as a module; the
//! example program `examples/fake-apiserver.rs` includes the same file
//! (`cargo run --release --example fake-apiserver -- --listen ADDR
//! --write-kubeconfig FILE`).
//!
//! Served resources (see [`RESOURCES`]): core `v1` `configmaps`, `secrets`,
//! `events`, `namespaces` (cluster scoped); `events.k8s.io/v1` `events`;
//! `coordination.k8s.io/v1` `leases`; `apiextensions.k8s.io/v1`
//! `customresourcedefinitions`; `chmigrate.io/v1alpha1` `migrationsets`
//! and `clickhousemigrations` (both with `/status`).
//!
//! Custom resources and their CRDs:
//! - The custom resources' REST paths are always served, whether or not
//!   their CRD is stored (tests of the operator that need no CRD use them
//!   so, and store what they like). Once a CRD named `plural.group` is
//!   stored (`kubectl apply -f crds/chmigrate.yaml`), it drives the rest,
//!   as on a real server: discovery lists the resource with the CRD's
//!   singular name, short names and categories (before that, discovery
//!   does not list it); `/openapi/v3` serves its schema; `Table`s have
//!   Name and the CRD's `additionalPrinterColumns`; and every write (create,
//!   update, patch, apply, `/status`) goes through admission: unknown
//!   fields pruned (refused with `fieldValidation=Strict`, which kubectl
//!   sends by default; a `Warning` header under `Warn`), `default`s filled
//!   in, then the structural schema (type, nullable, enum, required,
//!   minimum/maximum, minLength/maxLength, additionalProperties,
//!   x-kubernetes-int-or-string) and `x-kubernetes-validations` CEL rules
//!   (the `cel` crate with the strings extension; transition rules with
//!   `oldSelf` on updates, which is how immutable fields are written) are
//!   checked. Errors are `422 Invalid` with one cause per field, as kubectl
//!   prints them. Errors on fields an update leaves unchanged are ratcheted
//!   away (as since Kubernetes 1.30). Not modelled: `pattern`, `format`,
//!   list types/map keys, `x-kubernetes-embedded-resource`, CEL cost
//!   limits, other versions and conversion, CRDs of other groups (only the
//!   kinds of [`RESOURCES`] are served), the CRD's own validation and
//!   status conditions (`Established`).
//! - Strategic merge patch of a custom resource is `415`, as on a real
//!   server; on built-in kinds it is applied as a JSON merge patch (list
//!   merge keys and directives are not implemented, lists are replaced).
//! - Request bodies must be JSON (or YAML for apply): a protobuf body is
//!   `415`, so typed clients that send protobuf (`kubectl create
//!   namespace`, `kubectl create secret`) do not work; `kubectl apply -f`
//!   does (it sends JSON).
//!
//! Reads:
//! - Discovery: legacy `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`
//!   documents with verbs, short names (built-in ones for `cm`, `ns`, `ev`,
//!   `crd`), categories and the namespaced flag; no aggregated discovery.
//!   `/openapi/v3` and its per-group-version documents list each kind's
//!   schema (the CRD's, or an open object for built-in kinds) and paths
//!   whose PATCH has the `fieldValidation` parameter and the accepted patch
//!   media types; there is no `/openapi/v2`.
//! - `Table` (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) for
//!   lists and single objects, with `includeObject` (`None`, `Metadata`,
//!   `Object`); printer columns use a JSONPath subset (`.field`, `[n]`,
//!   `[*]`, `[?(@.a.b=="x")]` and `!=`), the first result, dates as ages
//!   (as the real CRD table convertor). Built-in kinds have a few of the
//!   real columns. A watch answers `Table` rows too (`kubectl get -w`).
//! - Lists: `limit` and `continue` page through the objects in namespace
//!   and name order; a continue token shows the current state after its
//!   last key (not a snapshot at its resourceVersion) and is `410 Expired`
//!   once the history after its resourceVersion is compacted.
//!   `resourceVersion`/`resourceVersionMatch` on a list are ignored (the
//!   list is always the current state).
//! - Watch: one global resourceVersion counter and an event log of the
//!   last [`DEFAULT_HISTORY`] events ([`FakeApiServer::set_history`],
//!   [`FakeApiServer::compact`]); a watch from an older resourceVersion
//!   gets one `ERROR` event with a `410 Expired` Status (as the real one)
//!   and clients list again. A watcher that falls behind the broadcast
//!   buffer has its stream closed (the client resumes from its last
//!   resourceVersion). Bookmarks (if asked for) come every second and when
//!   a watch times out. `sendInitialEvents=true` is supported.
//! - Field selectors accept any dotted path (`metadata.name`,
//!   `involvedObject.kind`, ...) with `=`, `==` and `!=`; the real server only
//!   allows a few fields per type. Label selectors support `=`, `==`, `!=`,
//!   `in`, `notin`, exists and `!exists` (not `<`/`>`).
//! - Events: core `v1` and `events.k8s.io/v1` Events are stored
//!   separately (the real server has one store), but a list or a get of
//!   either API also shows the other API's Events, converted (`regarding`
//!   ⇄ `involvedObject`, `note` ⇄ `message`, ...), so `kubectl describe`
//!   (core/v1, by `involvedObject` field selector) shows the Events the
//!   operator writes through events.k8s.io/v1. Watches see only their own
//!   API's Events; the test helpers ([`FakeApiServer::list`]) see each
//!   store as written.
//!
//! Writes:
//! - No authentication or authorization (a bearer token is only used to
//!   cut a client off, [`FakeApiServer::partition`]), no admission
//!   plugins, no defaulting or validation of built-in kinds.
//! - Server-side apply: field ownership is tracked per leaf (a path to a
//!   scalar or a list); lists are atomic except `metadata.finalizers`, which
//!   is a set. A manager never conflicts with itself, whether its fields came
//!   from apply or from an update. `null` values in an applied configuration
//!   are ignored (omit a field to give it up). Fields a manager applied
//!   before and omits now are removed if nobody else owns them. Ownership is
//!   kept inside the fake (see [`FakeApiServer::field_owners`]);
//!   `metadata.managedFields` is never written. Requests without a
//!   `fieldManager` are attributed to the User-Agent's product (or
//!   `unknown`), as the real server does; kube-rs sends no User-Agent, so
//!   its plain creates/updates/patches own their fields as `unknown`, and a
//!   later apply of those fields by a named manager conflicts unless forced
//!   (as against a real cluster).
//! - No-op writes do not bump resourceVersion and send no watch event
//!   (like the real server). Every object gets `metadata.generation` (the
//!   real server sets it only for some kinds); it moves when anything
//!   outside `metadata` and `status` changes, and when a deletionTimestamp
//!   is set.
//! - Namespaces: `default`, `kube-system`, `kube-public` and
//!   `kube-node-lease` exist at start; creating a namespaced object in a
//!   missing namespace is refused (404) as the real server does; deleting a
//!   namespace removes it at once (no `Terminating` phase, no cascade).
//! - No garbage collection (ownerReferences are ignored), no
//!   deletecollection, no `/scale`, no legacy `/watch/` paths, no protobuf,
//!   HTTP/1.1 only, no compression. `dryRun=All` is honoured.
//! - `/version` answers `v1.33.0-fake`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use json_patch::PatchOperation;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot};

/// One served resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has the `/status` subresource (writes to the main resource leave
    /// `.status` alone; writes to `/status` change only `.status`).
    pub status: bool,
    /// DELETE answers the deleted object (otherwise a `Status` Success), as
    /// for the real resource.
    pub returns_deleted_object: bool,
}

impl ResourceDef {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// A custom resource (served from a CRD on a real server): admission,
    /// printer columns and names come from its stored CRD, and strategic
    /// merge patch is refused (415).
    fn custom(&self) -> bool {
        self.group == "chmigrate.io"
    }

    /// `plural` for core resources, `plural.group` otherwise (as in error
    /// messages of the real server).
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Everything the fake serves.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
        returns_deleted_object: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status: false,
        returns_deleted_object: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        returns_deleted_object: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        status: true,
        returns_deleted_object: true,
    },
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        returns_deleted_object: false,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
        returns_deleted_object: false,
    },
    ResourceDef {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false,
        status: true,
        returns_deleted_object: true,
    },
    ResourceDef {
        group: "chmigrate.io",
        version: "v1alpha1",
        plural: "migrationsets",
        kind: "MigrationSet",
        namespaced: true,
        status: true,
        returns_deleted_object: true,
    },
    ResourceDef {
        group: "chmigrate.io",
        version: "v1alpha1",
        plural: "clickhousemigrations",
        kind: "ClickHouseMigration",
        namespaced: true,
        status: true,
        returns_deleted_object: true,
    },
];

/// Finds a resource for the test helpers: `plural` (the first match, so
/// `events` is the core one, as with kubectl) or `plural.group`
/// (`events.events.k8s.io`, `leases.coordination.k8s.io`).
fn resource_by_name(name: &str) -> usize {
    RESOURCES
        .iter()
        .position(|d| d.plural == name)
        .or_else(|| RESOURCES.iter().position(|d| d.qualified() == name))
        .unwrap_or_else(|| {
            let known: Vec<String> = RESOURCES.iter().map(ResourceDef::qualified).collect();
            panic!("fake apiserver: unknown resource {name:?}; known: {known:?}")
        })
}

fn resource_by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|d| d.group == group && d.version == version && d.plural == plural)
}

fn resource_by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|d| d.api_version() == api_version && d.kind == kind)
}

/// One HTTP request the fake saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string (percent-encoded), `""` when there is none.
    pub query: String,
    pub content_type: Option<String>,
    /// The body parsed as JSON (YAML for apply patches); `None` when empty
    /// or unparsable.
    pub body: Option<Value>,
    /// HTTP status answered (200 for a watch that was started).
    pub status: u16,
    pub watch: bool,
}

impl Recorded {
    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// The decoded value of one query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        parse_query(&self.query).remove(name)
    }
}

// ---------------------------------------------------------------------------
// Errors

#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn not_found(def: &ResourceDef, name: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", def.qualified()),
    )
    .with_details(def, name)
}

fn conflict(def: &ResourceDef, name: &str) -> ApiError {
    ApiError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            def.qualified()
        ),
    )
    .with_details(def, name)
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", msg)
}

fn invalid(def: &ResourceDef, name: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {msg}", def.qualified()),
    )
    .with_details(def, name)
}

// ---------------------------------------------------------------------------
// Field ownership (server-side apply)

/// One step of a field path: a map key, or an item of a set-like list
/// (only `metadata.finalizers`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Item(String),
}

type FieldPath = Vec<Seg>;
type Leaves = BTreeMap<FieldPath, Value>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Owner {
    manager: String,
    apply: bool,
}

type Owners = BTreeMap<FieldPath, BTreeSet<Owner>>;

/// Metadata the server sets; never owned, never taken from a request.
const SERVER_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn is_finalizers(path: &[Seg]) -> bool {
    matches!(path, [Seg::Key(a), Seg::Key(b)] if a == "metadata" && b == "finalizers")
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Item(i) => s.push_str(&format!("[{i:?}]")),
        }
    }
    s
}

/// The owned leaves of an object: paths to scalars and lists (items of
/// `metadata.finalizers`), without apiVersion, kind and identity/server
/// metadata. Empty maps are not leaves.
fn leaves(v: &Value) -> Leaves {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut Leaves) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    if path.is_empty() && (k == "apiVersion" || k == "kind") {
                        continue;
                    }
                    if matches!(path.as_slice(), [Seg::Key(m)] if m == "metadata")
                        && (k == "name" || k == "namespace" || SERVER_META.contains(&k.as_str()))
                    {
                        continue;
                    }
                    path.push(Seg::Key(k.clone()));
                    walk(c, path, out);
                    path.pop();
                }
            }
            Value::Array(items) if is_finalizers(path) => {
                for item in items {
                    let s = item
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| item.to_string());
                    path.push(Seg::Item(s));
                    out.insert(path.clone(), item.clone());
                    path.pop();
                }
            }
            other => {
                if !path.is_empty() {
                    out.insert(path.clone(), other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn remove_leaf(obj: &mut Value, path: &[Seg]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for seg in parent_path {
        let Seg::Key(k) = seg else { return };
        match node.get_mut(k.as_str()) {
            Some(n) => node = n,
            None => return,
        }
    }
    match last {
        Seg::Key(k) => {
            if let Some(m) = node.as_object_mut() {
                m.remove(k);
            }
        }
        Seg::Item(item) => {
            if let Some(a) = node.as_array_mut() {
                a.retain(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                        != *item
                });
            }
        }
    }
}

/// Merges an applied configuration: maps merge recursively, lists are
/// replaced except `metadata.finalizers` (a set: union).
fn apply_merge(target: &mut Value, patch: &Value) {
    fn go(target: &mut Map<String, Value>, patch: &Map<String, Value>, path: &mut FieldPath) {
        for (k, pv) in patch {
            path.push(Seg::Key(k.clone()));
            match target.get_mut(k) {
                Some(tv) if tv.is_object() && pv.is_object() => {
                    go(
                        tv.as_object_mut().expect("object"),
                        pv.as_object().expect("object"),
                        path,
                    );
                }
                Some(Value::Array(ta)) if is_finalizers(path) && pv.is_array() => {
                    for item in pv.as_array().expect("array") {
                        if !ta.contains(item) {
                            ta.push(item.clone());
                        }
                    }
                }
                _ => {
                    target.insert(k.clone(), pv.clone());
                }
            }
            path.pop();
        }
    }
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        go(t, p, &mut Vec::new());
    }
}

fn strip_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, c| !c.is_null());
        for c in m.values_mut() {
            strip_nulls(c);
        }
    }
}

/// Ownership after a non-apply write by `manager`: it takes every leaf it
/// changed or added.
fn update_owners(prev: &Owners, old: &Value, new: &Value, manager: &str) -> Owners {
    let old_leaves = leaves(old);
    let mut owners = prev.clone();
    for (p, v) in leaves(new) {
        if old_leaves.get(&p) != Some(&v) {
            owners.insert(
                p,
                BTreeSet::from([Owner {
                    manager: manager.to_string(),
                    apply: false,
                }]),
            );
        }
    }
    owners
}

fn all_owned(obj: &Value, manager: &str, apply: bool) -> Owners {
    leaves(obj)
        .into_keys()
        .map(|p| {
            let o = Owner {
                manager: manager.to_string(),
                apply,
            };
            (p, BTreeSet::from([o]))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Selectors

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, ApiError> {
    let mut reqs = Vec::new();
    for term in split_top(s) {
        let t = term.trim();
        if t.is_empty() {
            continue;
        }
        let bad = || bad_request(format!("unable to parse requirement: {t:?}"));
        if let Some(open) = t.find('(') {
            let close = t.rfind(')').filter(|c| *c > open).ok_or_else(bad)?;
            let head: Vec<&str> = t[..open].split_whitespace().collect();
            let [key, op] = head.as_slice() else {
                return Err(bad());
            };
            let values = t[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            match *op {
                "in" => reqs.push(LabelReq::In(key.to_string(), values)),
                "notin" => reqs.push(LabelReq::NotIn(key.to_string(), values)),
                _ => return Err(bad()),
            }
        } else if let Some(rest) = t.strip_prefix('!') {
            reqs.push(LabelReq::NotExists(rest.trim().to_string()));
        } else if let Some((k, v)) = t.split_once("!=") {
            reqs.push(LabelReq::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = t.split_once("==") {
            reqs.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = t.split_once('=') {
            reqs.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if t.contains(['<', '>', ' ']) {
            return Err(bad());
        } else {
            reqs.push(LabelReq::Exists(t.to_string()));
        }
    }
    Ok(reqs)
}

fn labels_match(reqs: &[LabelReq], obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels");
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        LabelReq::NotIn(k, vs) => !get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

#[derive(Debug, Clone)]
struct FieldReq {
    path: String,
    equal: bool,
    value: String,
}

fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, ApiError> {
    let mut reqs = Vec::new();
    for term in s.split(',') {
        let t = term.trim();
        if t.is_empty() {
            continue;
        }
        let (path, equal, value) = if let Some((k, v)) = t.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = t.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = t.split_once('=') {
            (k, true, v)
        } else {
            return Err(bad_request(format!("invalid field selector: {t:?}")));
        };
        reqs.push(FieldReq {
            path: path.trim().to_string(),
            equal,
            value: value.trim().to_string(),
        });
    }
    Ok(reqs)
}

fn fields_match(reqs: &[FieldReq], obj: &Value) -> bool {
    reqs.iter().all(|r| {
        let pointer = format!("/{}", r.path.replace('.', "/"));
        let actual = match obj.pointer(&pointer) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        (actual == r.value) == r.equal
    })
}

#[derive(Debug, Clone)]
struct Filter {
    res: usize,
    ns: Option<String>,
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Filter {
    fn from_params(res: usize, ns: Option<String>, q: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            res,
            ns,
            labels: parse_label_selector(q.get("labelSelector").map_or("", String::as_str))?,
            fields: parse_field_selector(q.get("fieldSelector").map_or("", String::as_str))?,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        labels_match(&self.labels, obj) && fields_match(&self.fields, obj)
    }

    fn in_scope(&self, res: usize, ns: &str) -> bool {
        res == self.res && self.ns.as_deref().is_none_or(|n| n == ns)
    }

    /// The watch line for a logged event, as this watch sees it: an object
    /// that stops matching the selectors is DELETED, one that starts
    /// matching is ADDED (like the real watch cache).
    fn render<'e>(&self, ev: &'e LogEvent) -> Option<(&'static str, &'e Value)> {
        if !self.in_scope(ev.res, &ev.ns) {
            return None;
        }
        let now = self.matches(&ev.obj);
        let typ = match ev.kind {
            EventKind::Added | EventKind::Deleted => now.then_some(ev.kind.as_str())?,
            EventKind::Modified => {
                let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
        };
        Some((typ, &ev.obj))
    }
}

fn watch_line(typ: &str, obj: &Value) -> Bytes {
    let mut s = serde_json::to_string(&json!({"type": typ, "object": obj})).expect("json");
    s.push('\n');
    Bytes::from(s)
}

// ---------------------------------------------------------------------------
// State

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    res: usize,
    /// `""` for cluster-scoped resources.
    ns: String,
    name: String,
}

#[derive(Debug)]
struct Stored {
    obj: Value,
    owners: Owners,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
struct LogEvent {
    rv: u64,
    res: usize,
    ns: String,
    kind: EventKind,
    obj: Value,
    /// The object before a MODIFIED event (for selector transitions).
    prev: Option<Value>,
}

#[derive(Debug)]
struct Fault {
    method: String,
    path_contains: String,
    code: u16,
    remaining: usize,
}

/// How a write is made.
struct WriteCtx<'a> {
    manager: &'a str,
    dry: bool,
    /// The request targets the `/status` subresource.
    status_sub: bool,
    /// `fieldValidation`: `Strict`, `Warn` or `Ignore` (`""`: Warn).
    validation: &'a str,
}

struct State {
    rv: u64,
    seq: u64,
    uid_seed: u32,
    objects: BTreeMap<Key, Stored>,
    log: Vec<Arc<LogEvent>>,
    tx: broadcast::Sender<Arc<LogEvent>>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    /// Bearer tokens whose requests are never answered (a client cut off
    /// by a network partition).
    partitioned: Vec<String>,
    /// Watch history: every event with a resourceVersion above this is in
    /// `log`; a watch or continue token from at or below it is `410 Gone`.
    compacted: u64,
    /// How many events `log` keeps (older ones are compacted away).
    history: usize,
    /// `Warning` headers of the request being answered.
    warnings: Vec<String>,
}

/// Watch events kept by default before compaction.
pub const DEFAULT_HISTORY: usize = 1000;

fn now_rfc3339() -> String {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .expect("timestamp")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let m = obj.as_object_mut().expect("object");
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("object")
}

fn finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Drops empty/null optional metadata, as ObjectMeta's `omitempty` does.
fn normalize_meta(obj: &mut Value) {
    let meta = meta_mut(obj);
    meta.retain(|k, v| {
        !(v.is_null()
            || (matches!(
                k.as_str(),
                "finalizers" | "labels" | "annotations" | "ownerReferences"
            ) && (v.as_array().is_some_and(Vec::is_empty)
                || v.as_object().is_some_and(Map::is_empty))))
    });
}

/// Everything but metadata and status: a change here bumps generation.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    let m = obj.as_object_mut().expect("object");
    match value {
        Some(v) => {
            m.insert(key.to_string(), v);
        }
        None => {
            m.remove(key);
        }
    }
}

impl State {
    fn new() -> State {
        let (tx, _) = broadcast::channel(4096);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut st = State {
            rv: 0,
            seq: 0,
            uid_seed: nanos ^ std::process::id().rotate_left(16),
            objects: BTreeMap::new(),
            log: Vec::new(),
            tx,
            requests: Vec::new(),
            faults: Vec::new(),
            partitioned: Vec::new(),
            compacted: 0,
            history: DEFAULT_HISTORY,
            warnings: Vec::new(),
        };
        let ns_res = resource_by_name("namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"metadata": {"name": ns}});
            let ctx = WriteCtx {
                manager: "fake-apiserver",
                dry: false,
                status_sub: false,
                validation: "",
            };
            st.create(ns_res, "", obj, &ctx, false)
                .expect("create namespace");
        }
        st
    }

    fn emit(&mut self, res: usize, ns: &str, kind: EventKind, obj: Value, prev: Option<Value>) {
        let ev = Arc::new(LogEvent {
            rv: self.rv,
            res,
            ns: ns.to_string(),
            kind,
            obj,
            prev,
        });
        self.log.push(ev.clone());
        self.compact_to(self.history);
        // No receivers is fine; a full buffer drops the oldest for laggards.
        let _ = self.tx.send(ev);
    }

    /// Drops the oldest watch events until at most `keep` remain.
    fn compact_to(&mut self, keep: usize) {
        if self.log.len() > keep {
            let drop = self.log.len() - keep;
            self.compacted = self.log[drop - 1].rv;
            self.log.drain(..drop);
        }
        if keep == 0 {
            self.compacted = self.rv;
        }
    }

    fn next_rv(&mut self, obj: &mut Value) {
        self.rv += 1;
        meta_mut(obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
    }

    fn key(res: usize, ns: &str, name: &str) -> Key {
        let ns = if RESOURCES[res].namespaced { ns } else { "" };
        Key {
            res,
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    fn take_fault(&mut self, method: &str, path: &str) -> Option<u16> {
        let f = self.faults.iter_mut().find(|f| {
            f.remaining > 0
                && (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path.contains(&f.path_contains)
        })?;
        f.remaining -= 1;
        let code = f.code;
        self.faults.retain(|f| f.remaining > 0);
        Some(code)
    }

    fn objects_of(&self, res: usize, ns: Option<&str>) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(move |(k, _)| k.res == res && ns.is_none_or(|n| k.ns == n))
            .map(|(_, s)| &s.obj)
    }

    // -- writes ------------------------------------------------------------

    /// Creates an object (POST, or apply of a missing object).
    fn create(
        &mut self,
        res: usize,
        ns: &str,
        mut body: Value,
        ctx: &WriteCtx,
        apply: bool,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[res];
        if !body.is_object() {
            return Err(bad_request("the body of the request must be a JSON object"));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != def.kind
        {
            return Err(bad_request(format!(
                "the kind of the object ({kind}) does not match the resource ({})",
                def.kind
            )));
        }
        let meta = meta_mut(&mut body);
        if def.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(invalid(
                    def,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            self.seq += 1;
            name = format!("{prefix}{:05x}", (self.seq * 7919) % 0xfffff);
            meta.insert("name".into(), json!(name));
        }
        for f in SERVER_META {
            meta.remove(*f);
        }
        if def.namespaced {
            let ns_key = State::key(resource_by_name("namespaces"), "", ns);
            if !self.objects.contains_key(&ns_key) {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                )
                .with_details(&RESOURCES[ns_key.res], ns));
            }
        }
        let key = State::key(res, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", def.qualified()),
            )
            .with_details(def, &name));
        }
        let obj = body.as_object_mut().expect("object");
        obj.insert("apiVersion".into(), json!(def.api_version()));
        obj.insert("kind".into(), json!(def.kind));
        if def.status {
            obj.remove("status");
        }
        if def.kind == "Namespace" {
            obj.insert("status".into(), json!({"phase": "Active"}));
        }
        normalize_meta(&mut body);
        let warnings = self.admit(res, &name, &mut body, None, ctx)?;
        self.warnings.extend(warnings);
        let owners = all_owned(&body, ctx.manager, apply);
        self.seq += 1;
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", self.uid_seed, self.seq);
        let meta = meta_mut(&mut body);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        if ctx.dry {
            return Ok(body);
        }
        self.next_rv(&mut body);
        self.objects.insert(
            key.clone(),
            Stored {
                obj: body.clone(),
                owners,
            },
        );
        self.emit(res, &key.ns, EventKind::Added, body.clone(), None);
        Ok(body)
    }

    /// Writes a new version of an existing object: the common end of PUT,
    /// every PATCH and apply. `cand` is the full desired object.
    fn commit_update(
        &mut self,
        key: &Key,
        mut cand: Value,
        ctx: &WriteCtx,
        apply_owners: Option<Owners>,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[key.res];
        let stored = self
            .objects
            .get(key)
            .ok_or_else(|| not_found(def, &key.name))?;
        let old = stored.obj.clone();
        if !cand.is_object() {
            return Err(bad_request("the body of the request must be a JSON object"));
        }
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("");
        if let Some(rv) = meta_str(&cand, "resourceVersion")
            && !rv.is_empty()
            && rv != old_rv
        {
            return Err(conflict(def, &key.name));
        }
        if ctx.status_sub {
            let status = cand.get("status").cloned();
            cand = old.clone();
            set_or_remove(&mut cand, "status", status);
        } else if def.status {
            set_or_remove(&mut cand, "status", old.get("status").cloned());
        }
        let obj = cand.as_object_mut().expect("object");
        obj.insert("apiVersion".into(), json!(def.api_version()));
        obj.insert("kind".into(), json!(def.kind));
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let meta = meta_mut(&mut cand);
        for f in ["name", "namespace"].iter().chain(SERVER_META) {
            match old_meta.get(*f) {
                Some(v) => meta.insert(f.to_string(), v.clone()),
                None => meta.remove(*f),
            };
        }
        normalize_meta(&mut cand);
        let deleting = old_meta.contains_key("deletionTimestamp");
        if deleting {
            let before = finalizers(&old);
            if finalizers(&cand).iter().any(|f| !before.contains(f)) {
                return Err(invalid(
                    def,
                    &key.name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        let warnings = self.admit(key.res, &key.name, &mut cand, Some(&old), ctx)?;
        let mut owners = match apply_owners {
            Some(o) => o,
            None => update_owners(&stored.owners, &old, &cand, ctx.manager),
        };
        let now_leaves = leaves(&cand);
        owners.retain(|p, s| !s.is_empty() && now_leaves.contains_key(p));
        self.warnings.extend(warnings);

        if cand == old {
            if !ctx.dry {
                self.objects.get_mut(key).expect("stored").owners = owners;
            }
            return Ok(old);
        }
        if spec_part(&cand) != spec_part(&old)
            && let Some(g) = old_meta.get("generation").and_then(Value::as_i64)
        {
            meta_mut(&mut cand).insert("generation".into(), json!(g + 1));
        }
        if ctx.dry {
            return Ok(cand);
        }
        self.next_rv(&mut cand);
        if deleting && finalizers(&cand).is_empty() {
            self.objects.remove(key);
            self.emit(key.res, &key.ns, EventKind::Deleted, cand.clone(), None);
            return Ok(cand);
        }
        self.objects.insert(
            key.clone(),
            Stored {
                obj: cand.clone(),
                owners,
            },
        );
        self.emit(
            key.res,
            &key.ns,
            EventKind::Modified,
            cand.clone(),
            Some(old),
        );
        Ok(cand)
    }

    fn existing(&self, key: &Key) -> Result<&Stored, ApiError> {
        self.objects
            .get(key)
            .ok_or_else(|| not_found(&RESOURCES[key.res], &key.name))
    }

    fn check_identity(key: &Key, body: &Value) -> Result<(), ApiError> {
        if let Some(n) = meta_str(body, "name")
            && n != key.name
        {
            return Err(bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if RESOURCES[key.res].namespaced
            && let Some(n) = meta_str(body, "namespace")
            && !n.is_empty()
            && n != key.ns
        {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(())
    }

    /// PUT.
    fn replace(&mut self, key: &Key, body: Value, ctx: &WriteCtx) -> Result<Value, ApiError> {
        self.existing(key)?;
        State::check_identity(key, &body)?;
        self.commit_update(key, body, ctx, None)
    }

    /// PATCH (not apply).
    fn patch(
        &mut self,
        key: &Key,
        media: &str,
        body: &Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[key.res];
        let mut cand = self.existing(key)?.obj.clone();
        if def.custom() && media == "application/strategic-merge-patch+json" {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        match media {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                if !body.is_object() {
                    return Err(bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(&mut cand, body);
            }
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_value(body.clone())
                    .map_err(|e| bad_request(format!("invalid JSON patch: {e}")))?;
                for op in &patch.0 {
                    // As the real server (evanphx/json-patch): testing for
                    // null succeeds when the path is missing.
                    if let PatchOperation::Test(t) = op
                        && t.value.is_null()
                        && cand.pointer(t.path.as_str()).is_none()
                    {
                        continue;
                    }
                    json_patch::patch(&mut cand, std::slice::from_ref(op))
                        .map_err(|e| invalid(def, &key.name, e))?;
                }
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format: {other}"),
                ));
            }
        }
        self.commit_update(key, cand, ctx, None)
    }

    /// Server-side apply; returns (HTTP code, object).
    fn apply(
        &mut self,
        key: &Key,
        config: &Value,
        force: bool,
        ctx: &WriteCtx,
    ) -> Result<(u16, Value), ApiError> {
        let def = &RESOURCES[key.res];
        if !config.is_object() {
            return Err(bad_request("an apply patch must be an object"));
        }
        State::check_identity(key, config)?;
        let precondition = meta_str(config, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let mut cfg = config.clone();
        {
            let m = cfg.as_object_mut().expect("object");
            m.remove("apiVersion");
            m.remove("kind");
        }
        {
            let meta = meta_mut(&mut cfg);
            for f in ["name", "namespace"].iter().chain(SERVER_META) {
                meta.remove(*f);
            }
        }
        if ctx.status_sub {
            cfg = json!({"status": cfg.get("status").cloned().unwrap_or(json!({}))});
        } else if def.status {
            cfg.as_object_mut().expect("object").remove("status");
        }
        strip_nulls(&mut cfg);

        let Some(stored) = self.objects.get(key) else {
            if ctx.status_sub {
                return Err(not_found(def, &key.name));
            }
            if precondition.is_some() {
                return Err(conflict(def, &key.name));
            }
            let mut obj = json!({"metadata": {"name": key.name}});
            apply_merge(&mut obj, &cfg);
            let created = self.create(key.res, &key.ns, obj, ctx, true)?;
            return Ok((201, created));
        };
        let old = &stored.obj;
        if let Some(rv) = &precondition
            && meta_str(old, "resourceVersion") != Some(rv.as_str())
        {
            return Err(conflict(def, &key.name));
        }
        let mut merged = old.clone();
        apply_merge(&mut merged, &cfg);
        let old_leaves = leaves(old);
        let merged_leaves = leaves(&merged);
        let cfg_leaves = leaves(&cfg);
        let mut owners = stored.owners.clone();
        let mut conflicts = Vec::new();
        for (p, v) in &old_leaves {
            if merged_leaves.get(p) == Some(v) {
                continue;
            }
            let Some(set) = owners.get_mut(p) else {
                continue;
            };
            let others: Vec<String> = set
                .iter()
                .filter(|o| o.manager != ctx.manager)
                .map(|o| o.manager.clone())
                .collect();
            if others.is_empty() {
                continue;
            }
            if force {
                set.retain(|o| o.manager == ctx.manager);
            } else {
                for m in others {
                    conflicts.push(format!("conflict with \"{m}\": {}", path_string(p)));
                }
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort();
            conflicts.dedup();
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": c}))
                .collect();
            let mut err = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}: {}",
                    conflicts.len(),
                    if conflicts.len() == 1 { "" } else { "s" },
                    conflicts.join("; ")
                ),
            )
            .with_details(def, &key.name);
            if let Some(d) = err.details.as_mut() {
                d["causes"] = json!(causes);
            }
            return Err(err);
        }
        let me = Owner {
            manager: ctx.manager.to_string(),
            apply: true,
        };
        for (p, v) in &cfg_leaves {
            let set = owners.entry(p.clone()).or_default();
            if old_leaves.get(p) != Some(v) {
                set.clear();
            }
            set.insert(me.clone());
        }
        // Fields this manager applied before and leaves out now are removed
        // unless someone else owns them too.
        let in_scope = |p: &FieldPath| {
            let is_status = matches!(p.first(), Some(Seg::Key(k)) if k == "status");
            if ctx.status_sub {
                is_status
            } else {
                !(def.status && is_status)
            }
        };
        let mut dropped = Vec::new();
        for (p, set) in owners.iter_mut() {
            if in_scope(p) && !cfg_leaves.contains_key(p) && set.remove(&me) && set.is_empty() {
                dropped.push(p.clone());
            }
        }
        for p in dropped {
            remove_leaf(&mut merged, &p);
            owners.remove(&p);
        }
        let obj = self.commit_update(key, merged, ctx, Some(owners))?;
        Ok((200, obj))
    }

    /// DELETE; returns (HTTP code, body).
    fn delete(&mut self, key: &Key, opts: Option<&Value>, dry: bool) -> Result<Value, ApiError> {
        let def = &RESOURCES[key.res];
        let old = self.existing(key)?.obj.clone();
        if let Some(pre) = opts.and_then(|o| o.get("preconditions")) {
            let rv = pre.get("resourceVersion").and_then(Value::as_str);
            let uid = pre.get("uid").and_then(Value::as_str);
            if rv.is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
                || uid.is_some_and(|uid| Some(uid) != meta_str(&old, "uid"))
            {
                return Err(conflict(def, &key.name));
            }
        }
        let status_success = || {
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": key.name,
                    "group": def.group,
                    "kind": def.plural,
                    "uid": meta_str(&old, "uid"),
                },
            })
        };
        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut obj = old.clone();
            let meta = meta_mut(&mut obj);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
            if dry {
                return Ok(obj);
            }
            self.next_rv(&mut obj);
            self.objects.get_mut(key).expect("stored").obj = obj.clone();
            self.emit(
                key.res,
                &key.ns,
                EventKind::Modified,
                obj.clone(),
                Some(old),
            );
            return Ok(obj);
        }
        if dry {
            return Ok(if def.returns_deleted_object {
                old
            } else {
                status_success()
            });
        }
        let mut obj = old.clone();
        self.next_rv(&mut obj);
        self.objects.remove(key);
        self.emit(key.res, &key.ns, EventKind::Deleted, obj.clone(), None);
        Ok(if def.returns_deleted_object {
            obj
        } else {
            status_success()
        })
    }

    /// The objects a list or watch of `filter` sees: the stored ones and,
    /// for either Events API, the other API's Events converted (the real
    /// server keeps one store for both), sorted by namespace and name.
    fn visible(&self, filter: &Filter) -> Vec<(String, String, Value)> {
        let mut out: Vec<(String, String, Value)> = self
            .objects
            .iter()
            .filter(|(k, _)| k.res == filter.res && filter.ns.as_deref().is_none_or(|n| k.ns == n))
            .map(|(k, s)| (k.ns.clone(), k.name.clone(), s.obj.clone()))
            .collect();
        if RESOURCES[filter.res].plural == "events" {
            let to_core = RESOURCES[filter.res].group.is_empty();
            let other = if to_core {
                resource_by_name("events.events.k8s.io")
            } else {
                resource_by_name("events")
            };
            for (k, s) in self
                .objects
                .iter()
                .filter(|(k, _)| k.res == other && filter.ns.as_deref().is_none_or(|n| k.ns == n))
            {
                out.push((k.ns.clone(), k.name.clone(), convert_event(&s.obj, to_core)));
            }
            out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        }
        out.retain(|(_, _, o)| filter.matches(o));
        out
    }

    /// A list, a page at a time with `limit` and `continue` (the token
    /// holds the resourceVersion of the first page and the last key
    /// returned; a later page shows the current state after that key, not
    /// a snapshot, and a token older than the watch history is `410`).
    fn list_json(&self, filter: &Filter, q: &Query) -> Result<Value, ApiError> {
        let def = &RESOURCES[filter.res];
        let mut items = self.visible(filter);
        let mut list_rv = self.rv;
        if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
            let decoded = hex_decode(token)
                .and_then(|t| {
                    let mut parts = t.splitn(3, '\u{0}');
                    let rv = parts.next()?.parse::<u64>().ok()?;
                    Some((rv, parts.next()?.to_string(), parts.next()?.to_string()))
                })
                .ok_or_else(|| {
                    bad_request(
                        "continue key is not valid: incorrect encoded start resourceVersion",
                    )
                })?;
            let (rv, ns, name) = decoded;
            if rv < self.compacted {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ));
            }
            list_rv = rv;
            items.retain(|(n, m, _)| (n.as_str(), m.as_str()) > (ns.as_str(), name.as_str()));
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if let Some(limit) = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            && items.len() > limit
        {
            let remaining = items.len() - limit;
            items.truncate(limit);
            let (ns, name, _) = items.last().expect("a page");
            meta["continue"] = json!(hex_encode(&format!("{list_rv}\u{0}{ns}\u{0}{name}")));
            meta["remainingItemCount"] = json!(remaining);
        }
        let items: Vec<Value> = items.into_iter().map(|(_, _, o)| o).collect();
        Ok(json!({
            "apiVersion": def.api_version(),
            "kind": format!("{}List", def.kind),
            "metadata": meta,
            "items": items,
        }))
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

// ---------------------------------------------------------------------------
// Admission of custom resources (only for kinds whose CRD is stored)

/// One field error, as in a real `Status`'s `details.causes`.
#[derive(Debug, Clone)]
struct Cause {
    reason: &'static str,
    field: String,
    message: String,
}

/// How a value is quoted after `Invalid value:` (as the real server's
/// field errors print it).
fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes every field the structural schema does not know (as a real API
/// server prunes), collecting their paths. The root's `apiVersion`, `kind`
/// and `metadata` are kept.
fn prune(v: &mut Value, schema: &Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props
                    .and_then(|p| p.get(&k))
                    .or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(s) => {
                        let child = map.get_mut(&k).expect("key");
                        prune(child, s, &child_path(path, &k), pruned);
                    }
                    None if preserve || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                        pruned.push(child_path(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, s, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the schema's `default`s of missing fields of every object that
/// is present (defaults are defaulted in turn).
fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !map.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
                for (k, s) in props {
                    if let Some(child) = map.get_mut(k) {
                        apply_defaults(child, s);
                    }
                }
            }
            if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(child, a);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    apply_defaults(item, s);
                }
            }
        }
        _ => {}
    }
}

/// Evaluates one `x-kubernetes-validations` rule as the API server's CEL
/// environment would (standard library and the strings extension), with
/// `self` and, for transition rules, `oldSelf`.
fn eval_cel(rule: &str, value: &Value, old: Option<&Value>) -> Result<bool, String> {
    let program = cel::Program::compile(rule).map_err(|e| format!("compilation failed: {e}"))?;
    let mut env = cel::Env::stdlib();
    cel::extensions::strings(&mut env).map_err(|e| format!("{e:?}"))?;
    let mut ctx = cel::Context::with_env(Arc::new(env));
    ctx.add_variable("self", value.clone())
        .map_err(|e| e.to_string())?;
    if let Some(o) = old {
        ctx.add_variable("oldSelf", o.clone())
            .map_err(|e| e.to_string())?;
    }
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule did not evaluate to a bool: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Structural validation and CEL rules of `v` against `schema`; `old` is
/// the same field of the stored object on an update (transition rules, with
/// `oldSelf`, run only when it exists).
fn validate(v: &Value, schema: &Value, path: &str, old: Option<&Value>, out: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: \"null\": {shown} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            });
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && matches!(got, "integer" | "string"));
        if !ok {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: \"{got}\": {shown} in body must be of type {want}: \"{got}\""
                ),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(quoted).collect();
        out.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                quoted(v),
                list.join(", ")
            ),
        });
    }
    if let Some(n) = v.as_f64() {
        let fmt = |x: f64| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                x.to_string()
            }
        };
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: {v}: {shown} in body should be greater than or equal to {}",
                    fmt(min)
                ),
            });
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: {v}: {shown} in body should be less than or equal to {}",
                    fmt(max)
                ),
            });
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: {}: {shown} in body should be at least {min} chars long",
                    quoted(v)
                ),
            });
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: path.to_string(),
                message: format!("Too long: may not be more than {max} bytes"),
            });
        }
    }
    match v {
        Value::Object(map) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    out.push(Cause {
                        reason: "FieldValueRequired",
                        field: child_path(path, req),
                        message: "Required value".to_string(),
                    });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    let old_child = old.and_then(|o| o.get(k));
                    validate(child, s, &child_path(path, k), old_child, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, s, &format!("{path}[{i}]"), None, out);
                }
            }
        }
        _ => {}
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(text) = rule.get("rule").and_then(Value::as_str) else {
            continue;
        };
        let transition = text.contains("oldSelf");
        if transition && old.is_none() {
            continue;
        }
        let message = || {
            rule.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("failed rule: {text}"))
        };
        let field = match rule.get("fieldPath").and_then(Value::as_str) {
            Some(fp) => format!("{path}{fp}"),
            None => path.to_string(),
        };
        let shown_type = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object");
        match eval_cel(text, v, if transition { old } else { None }) {
            Ok(true) => {}
            Ok(false) => out.push(Cause {
                reason: "FieldValueInvalid",
                field,
                message: format!("Invalid value: \"{shown_type}\": {}", message()),
            }),
            Err(e) => out.push(Cause {
                reason: "FieldValueInvalid",
                field,
                message: format!("Invalid value: \"{shown_type}\": {e} evaluating rule: {text}"),
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// CRDs, discovery, OpenAPI v3, tables

/// Short names of the built-in resources (those of the custom resources
/// come from their stored CRDs).
fn builtin_short_names(def: &ResourceDef) -> Vec<Value> {
    let names: &[&str] = match (def.group, def.plural) {
        ("", "configmaps") => &["cm"],
        ("", "events") | ("events.k8s.io", "events") => &["ev"],
        ("", "namespaces") => &["ns"],
        ("apiextensions.k8s.io", _) => &["crd", "crds"],
        _ => &[],
    };
    names.iter().map(|n| json!(n)).collect()
}

/// OpenAPI component name of a resource's schema, like the real server's
/// (`io.k8s.api.core.v1.ConfigMap`, `io.chmigrate.v1alpha1.MigrationSet`).
fn schema_name(def: &ResourceDef) -> String {
    if def.custom() {
        let reversed: Vec<&str> = def.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), def.version, def.kind);
    }
    let group = match def.group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    let prefix = if def.group == "apiextensions.k8s.io" {
        "io.k8s.apiextensions-apiserver.pkg.apis"
    } else {
        "io.k8s.api"
    };
    format!("{prefix}.{group}.{}.{}", def.version, def.kind)
}

/// Human-readable age, as Kubernetes' `duration.HumanDuration`.
fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(v: &Value) -> Value {
    match v.as_str().and_then(|s| s.parse::<Timestamp>().ok()) {
        Some(t) => json!(human_duration(Timestamp::now().as_second() - t.as_second())),
        None => Value::Null,
    }
}

/// One step of the JSONPath subset printer columns use: `.field`, `[n]`,
/// `[*]` and `[?(@.path=="value")]` (also `!=`).
#[derive(Debug, Clone)]
enum PathStep {
    Field(String),
    Index(usize),
    All,
    Filter {
        path: Vec<String>,
        equal: bool,
        value: String,
    },
}

fn parse_jsonpath(expr: &str) -> Result<Vec<PathStep>, String> {
    let s = expr.trim().trim_start_matches('{').trim_end_matches('}');
    let b = s.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j > start {
                    steps.push(PathStep::Field(s[start..j].to_string()));
                }
                i = j;
            }
            b'[' => {
                let end = s[i..]
                    .find(']')
                    .map(|e| i + e)
                    .ok_or_else(|| format!("unclosed [ in {expr}"))?;
                // A filter may hold ']' only inside quotes; the CRD columns
                // here never do.
                let inner = &s[i + 1..end];
                if inner == "*" {
                    steps.push(PathStep::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs, equal) = if let Some((l, r)) = f.split_once("!=") {
                        (l, r, false)
                    } else if let Some((l, r)) = f.split_once("==") {
                        (l, r, true)
                    } else {
                        return Err(format!("unsupported filter {f:?}"));
                    };
                    let path = lhs
                        .trim()
                        .trim_start_matches('@')
                        .split('.')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect();
                    let value = rhs
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_string();
                    steps.push(PathStep::Filter { path, equal, value });
                } else {
                    let n = inner
                        .trim_matches(|c| c == '"' || c == '\'')
                        .parse::<usize>();
                    match n {
                        Ok(n) => steps.push(PathStep::Index(n)),
                        Err(_) => steps.push(PathStep::Field(
                            inner.trim_matches(|c| c == '"' || c == '\'').to_string(),
                        )),
                    }
                }
                i = end + 1;
            }
            _ => return Err(format!("unexpected {:?} in {expr}", b[i] as char)),
        }
    }
    Ok(steps)
}

fn jsonpath_values(obj: &Value, steps: &[PathStep]) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                PathStep::Field(f) => next.extend(v.get(f).cloned()),
                PathStep::Index(n) => next.extend(v.get(*n).cloned()),
                PathStep::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.into_iter().map(|(_, x)| x)),
                    _ => {}
                },
                PathStep::Filter { path, equal, value } => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut x = Some(item);
                        for p in path {
                            x = x.and_then(|x| x.get(p));
                        }
                        let text = match x {
                            Some(Value::String(s)) => Some(s.clone()),
                            Some(other) => Some(other.to_string()),
                            None => None,
                        };
                        if text.is_some_and(|t| (t == *value) == *equal) {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// A table cell for a printer column of `type` (as the real server's CRD
/// table convertor: the first result, dates as ages).
fn cell(obj: &Value, json_path: &str, typ: &str) -> Value {
    let Ok(steps) = parse_jsonpath(json_path) else {
        return Value::Null;
    };
    let Some(v) = jsonpath_values(obj, &steps).into_iter().next() else {
        return Value::Null;
    };
    match (typ, &v) {
        ("date", _) => age_of(&v),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => v,
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => v,
        ("string", Value::String(_)) => v,
        ("integer" | "number" | "boolean", _) => Value::Null,
        (_, Value::String(_)) => v,
        (_, other) => json!(other.to_string()),
    }
}

/// A column of a table: its definition and how each row's cell is made.
struct Column {
    name: String,
    typ: String,
    format: String,
    description: String,
    priority: i64,
    value: Box<dyn Fn(&Value) -> Value + Send + Sync>,
}

fn column(
    name: &str,
    typ: &str,
    value: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> Column {
    Column {
        name: name.into(),
        typ: typ.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        value: Box::new(value),
    }
}

fn count_of(obj: &Value, fields: &[&str]) -> Value {
    json!(
        fields
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .map(Map::len)
            .sum::<usize>()
    )
}

/// The columns of a built-in resource (a few of the real server's).
fn age_column() -> Column {
    column("Age", "date", |o| {
        age_of(
            o.pointer("/metadata/creationTimestamp")
                .unwrap_or(&Value::Null),
        )
    })
}

fn builtin_columns(def: &ResourceDef) -> Vec<Column> {
    let age = age_column;
    match (def.group, def.plural) {
        ("", "configmaps") => vec![
            column("Data", "string", |o| count_of(o, &["data", "binaryData"])),
            age(),
        ],
        ("", "secrets") => vec![
            column("Type", "string", |o| {
                o.get("type").cloned().unwrap_or(json!("Opaque"))
            }),
            column("Data", "string", |o| count_of(o, &["data"])),
            age(),
        ],
        ("", "namespaces") => vec![
            column("Status", "string", |o| {
                o.pointer("/status/phase").cloned().unwrap_or_default()
            }),
            age(),
        ],
        ("", "events") | ("events.k8s.io", "events") => {
            let core = def.group.is_empty();
            vec![
                column("Last Seen", "string", move |o| {
                    let t = if core {
                        "/lastTimestamp"
                    } else {
                        "/deprecatedLastTimestamp"
                    };
                    let seen = o
                        .pointer("/series/lastObservedTime")
                        .or_else(|| o.pointer(t).filter(|v| !v.is_null()))
                        .or_else(|| o.pointer("/eventTime"))
                        .cloned()
                        .unwrap_or_default();
                    age_of(&seen)
                }),
                column("Type", "string", |o| {
                    o.get("type").cloned().unwrap_or_default()
                }),
                column("Reason", "string", |o| {
                    o.get("reason").cloned().unwrap_or_default()
                }),
                column("Object", "string", move |o| {
                    let r = o.get(if core { "involvedObject" } else { "regarding" });
                    let s = |k: &str| {
                        r.and_then(|r| r.get(k))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_ascii_lowercase()
                    };
                    json!(format!(
                        "{}/{}",
                        s("kind"),
                        r.and_then(|r| r.get("name"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ))
                }),
                column("Message", "string", move |o| {
                    o.get(if core { "message" } else { "note" })
                        .cloned()
                        .unwrap_or_default()
                }),
            ]
        }
        ("coordination.k8s.io", "leases") => vec![
            column("Holder", "string", |o| {
                o.pointer("/spec/holderIdentity")
                    .cloned()
                    .unwrap_or_default()
            }),
            age(),
        ],
        ("apiextensions.k8s.io", _) => vec![column("Created At", "date", |o| {
            o.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or_default()
        })],
        _ => vec![age()],
    }
}

/// The events.k8s.io/v1 ⇄ core/v1 field names of an Event (the real
/// server stores one Event and converts; the fake converts on read).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("related", "related"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("series", "series"),
];

/// An Event of one API in the shape of the other (`to_core`: from
/// events.k8s.io/v1 to core/v1).
fn convert_event(obj: &Value, to_core: bool) -> Value {
    let mut out = json!({
        "apiVersion": if to_core { "v1" } else { "events.k8s.io/v1" },
        "kind": "Event",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    });
    for (new, core) in EVENT_FIELDS {
        let (from, to) = if to_core { (new, core) } else { (core, new) };
        if let Some(v) = obj.get(*from).filter(|v| !v.is_null()) {
            out[*to] = v.clone();
        }
    }
    out
}

impl State {
    /// The stored CRD of a custom resource (`plural.group`), if applied.
    fn crd_of(&self, res: usize) -> Option<&Value> {
        let def = &RESOURCES[res];
        if !def.custom() {
            return None;
        }
        let key = State::key(
            resource_by_name("customresourcedefinitions"),
            "",
            &format!("{}.{}", def.plural, def.group),
        );
        self.objects.get(&key).map(|s| &s.obj)
    }

    /// The stored CRD's entry for the served version.
    fn crd_version(&self, res: usize) -> Option<&Value> {
        let version = RESOURCES[res].version;
        self.crd_of(res)?
            .pointer("/spec/versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
    }

    fn crd_schema(&self, res: usize) -> Option<&Value> {
        self.crd_version(res)?.pointer("/schema/openAPIV3Schema")
    }

    /// Discovery and OpenAPI list a custom resource only once its CRD is
    /// stored (its REST paths are served regardless, for tests that need no
    /// CRD).
    fn discoverable(&self, res: usize) -> bool {
        !RESOURCES[res].custom() || self.crd_version(res).is_some()
    }

    fn discovery_resources(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for (res, d) in RESOURCES.iter().enumerate() {
            if d.group != group || d.version != version || !self.discoverable(res) {
                continue;
            }
            let names = self.crd_of(res).and_then(|c| c.pointer("/spec/names"));
            let list = |field: &str| names.and_then(|n| n.get(field)).cloned();
            let mut entry = json!({
                "name": d.plural,
                "singularName": list("singular").unwrap_or_else(|| json!(d.kind.to_ascii_lowercase())),
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            });
            let short = list("shortNames").unwrap_or_else(|| json!(builtin_short_names(d)));
            if short.as_array().is_some_and(|a| !a.is_empty()) {
                entry["shortNames"] = short;
            }
            if let Some(c) = list("categories") {
                entry["categories"] = c;
            }
            resources.push(entry);
            if d.status {
                resources.push(json!({
                    "name": format!("{}/status", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }

    fn discovery_groups(&self) -> Value {
        let mut groups: Vec<Value> = Vec::new();
        let mut seen = BTreeSet::new();
        for (res, d) in RESOURCES.iter().enumerate() {
            if d.group.is_empty() || !self.discoverable(res) {
                continue;
            }
            if seen.insert(d.api_version()) {
                let gv = json!({"groupVersion": d.api_version(), "version": d.version});
                groups.push(
                    json!({"name": d.group, "versions": [gv.clone()], "preferredVersion": gv}),
                );
            }
        }
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// The group-versions with an OpenAPI v3 document: `api/v1`,
    /// `apis/{group}/{version}`.
    fn openapi_group_versions(&self) -> BTreeSet<(String, String)> {
        RESOURCES
            .iter()
            .enumerate()
            .filter(|(res, _)| self.discoverable(*res))
            .map(|(_, d)| (d.group.to_string(), d.version.to_string()))
            .collect()
    }

    /// `/openapi/v3`: where each group-version's document is, with a hash
    /// that changes with the document (clients cache by it).
    fn openapi_index(&self) -> Value {
        let mut paths = Map::new();
        for (g, v) in self.openapi_group_versions() {
            let rel = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let doc = self.openapi_document(&g, &v).unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&doc.to_string(), &mut h);
            let hash = format!("{:016X}", std::hash::Hasher::finish(&h));
            paths.insert(
                rel.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{rel}?hash={hash}")}),
            );
        }
        json!({"paths": paths})
    }

    /// One group-version's OpenAPI v3 document: the schemas (a CRD's own
    /// `openAPIV3Schema`; a permissive object for built-in kinds) and the
    /// paths with their operations, whose PATCH lists the `fieldValidation`
    /// parameter (so kubectl leaves validation to the server) and the patch
    /// media types the resource accepts.
    fn openapi_document(&self, group: &str, version: &str) -> Option<Value> {
        let mut schemas = Map::new();
        let mut paths = Map::new();
        for (res, d) in RESOURCES.iter().enumerate() {
            if d.group != group || d.version != version || !self.discoverable(res) {
                continue;
            }
            let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
            let mut schema = self.crd_schema(res).cloned().unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("apiVersion".into(), json!({"type": "string"}));
                props.insert("kind".into(), json!({"type": "string"}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            schema["x-kubernetes-group-version-kind"] = json!([gvk]);
            let name = schema_name(d);
            schemas.insert(name.clone(), schema);
            let reference = json!({"$ref": format!("#/components/schemas/{name}")});
            let mut media = vec![
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ];
            if !d.custom() {
                media.push("application/strategic-merge-patch+json");
            }
            let content: Map<String, Value> = media
                .iter()
                .map(|m| (m.to_string(), json!({"schema": {"type": "object"}})))
                .collect();
            let param = |n: &str, place: &str| json!({"name": n, "in": place, "schema": {"type": "string"}});
            let body = json!({"content": {"application/json": {"schema": reference}}});
            let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
            let op = |verb: &str, extra: Value| {
                let mut o = json!({
                    "operationId": format!("{verb}{}", d.kind),
                    "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": ok,
                });
                if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                o
            };
            let write_params = json!([
                param("dryRun", "query"),
                param("fieldManager", "query"),
                param("fieldValidation", "query")
            ]);
            let mut patch_params = write_params.clone();
            patch_params
                .as_array_mut()
                .expect("array")
                .push(param("force", "query"));
            let base = if d.group.is_empty() {
                format!("/api/{}", d.version)
            } else {
                format!("/apis/{}/{}", d.group, d.version)
            };
            let scope = if d.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}", d.plural)
            } else {
                format!("{base}/{}", d.plural)
            };
            let mut path_params = vec![param("name", "path")];
            if d.namespaced {
                path_params.push(param("namespace", "path"));
            }
            paths.insert(
                scope.clone(),
                json!({
                    "get": op("list", json!({"parameters": [param("labelSelector", "query"), param("fieldSelector", "query"), param("limit", "query"), param("continue", "query"), param("watch", "query")]})),
                    "post": op("post", json!({"parameters": write_params, "requestBody": body})),
                    "parameters": if d.namespaced { json!([param("namespace", "path")]) } else { json!([]) },
                }),
            );
            let mut item_params = path_params.clone();
            item_params.push(param("fieldValidation", "query"));
            paths.insert(
                format!("{scope}/{{name}}"),
                json!({
                    "get": op("get", json!({})),
                    "put": op("put", json!({"parameters": write_params, "requestBody": body})),
                    "patch": op("patch", json!({"parameters": patch_params, "requestBody": {"content": content}})),
                    "delete": op("delete", json!({"parameters": [param("dryRun", "query")]})),
                    "parameters": item_params,
                }),
            );
            if d.status {
                paths.insert(
                    format!("{scope}/{{name}}/status"),
                    json!({
                        "get": op("get", json!({})),
                        "put": op("put", json!({"parameters": write_params, "requestBody": body})),
                        "patch": op("patch", json!({"parameters": patch_params, "requestBody": {"content": content}})),
                        "parameters": item_params,
                    }),
                );
            }
        }
        if schemas.is_empty() {
            return None;
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (chmigrate's fake API server)", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }

    /// The columns of a resource's tables: Name, then the stored CRD's
    /// `additionalPrinterColumns` (or Age when it has none), or a few
    /// columns of the real server's for built-in kinds.
    fn columns(&self, res: usize) -> Vec<Column> {
        let def = &RESOURCES[res];
        let mut cols = vec![Column {
            name: "Name".into(),
            typ: "string".into(),
            format: "name".into(),
            description: "Name must be unique within a namespace.".into(),
            priority: 0,
            value: Box::new(|o| o.pointer("/metadata/name").cloned().unwrap_or_default()),
        }];
        let printer = self
            .crd_version(res)
            .and_then(|v| v.get("additionalPrinterColumns"))
            .and_then(Value::as_array);
        match printer {
            Some(pcs) => {
                for pc in pcs {
                    let s = |k: &str| pc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let (path, typ) = (s("jsonPath"), s("type"));
                    let t = typ.clone();
                    cols.push(Column {
                        name: s("name"),
                        typ: typ.clone(),
                        format: s("format"),
                        description: s("description"),
                        priority: pc.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        value: Box::new(move |o| cell(o, &path, &t)),
                    });
                }
            }
            None if def.custom() => cols.push(age_column()),
            None if def.plural == "events" => {
                // As the real Event table: the name only in -o wide.
                let mut name = cols.remove(0);
                name.priority = 1;
                cols.extend(builtin_columns(def));
                cols.push(name);
            }
            None => cols.extend(builtin_columns(def)),
        }
        cols
    }

    /// A `meta.k8s.io/v1` `Table` of `objects` (`includeObject`: `None`,
    /// `Metadata` (the default) or `Object`).
    fn table(&self, res: usize, objects: &[Value], list_meta: Value, include: &str) -> Value {
        table_of(&self.columns(res), objects, list_meta, include)
    }

    /// Admission of a write of a custom resource whose CRD is stored, as a
    /// real API server does it: unknown fields are pruned (refused under
    /// `fieldValidation=Strict`, warned about otherwise), defaults are
    /// filled in, then the structural schema and the CEL rules are checked
    /// (transition rules against `old`). Errors on fields an update leaves
    /// unchanged are ratcheted (not reported), as since Kubernetes 1.30.
    /// Returns the warnings.
    fn admit(
        &self,
        res: usize,
        name: &str,
        cand: &mut Value,
        old: Option<&Value>,
        ctx: &WriteCtx,
    ) -> Result<Vec<String>, ApiError> {
        let Some(schema) = self.crd_schema(res) else {
            return Ok(Vec::new());
        };
        let def = &RESOURCES[res];
        let mut pruned = Vec::new();
        prune(cand, schema, "", &mut pruned);
        let mut warnings = Vec::new();
        if !pruned.is_empty() {
            let list: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field {p:?}"))
                .collect();
            match ctx.validation {
                "Strict" => {
                    return Err(bad_request(format!(
                        "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                        list.join(", "),
                        kind = def.kind,
                        version = def.version,
                    )));
                }
                "Ignore" => {}
                _ => warnings = list,
            }
        }
        apply_defaults(cand, schema);
        let mut causes = Vec::new();
        validate(cand, schema, "", old, &mut causes);
        if let Some(old) = old {
            causes.retain(|c| {
                let pointer = field_pointer(&c.field);
                cand.pointer(&pointer) != old.pointer(&pointer)
            });
        }
        if causes.is_empty() {
            Ok(warnings)
        } else {
            Err(invalid_causes(def, name, &causes))
        }
    }
}

/// A `meta.k8s.io/v1` `Table` of `objects` with `cols` (`includeObject`:
/// `None`, `Metadata` (the default) or `Object`).
fn table_of(cols: &[Column], objects: &[Value], list_meta: Value, include: &str) -> Value {
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.typ, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.value)(o)).collect();
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_default(),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// `spec.a[0].b` → `/spec/a/0/b`.
fn field_pointer(field: &str) -> String {
    let mut out = String::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        out.push('/');
        out.push_str(&rest[..name_end].replace('~', "~0").replace('/', "~1"));
        rest = &rest[name_end..];
        while let Some(close) = rest.find(']') {
            out.push('/');
            out.push_str(&rest[1..close]);
            rest = &rest[close + 1..];
        }
    }
    out
}

/// A 422 `Invalid` as the real server answers it: the kind and name in
/// `details`, one cause per field error (kubectl prints them).
fn invalid_causes(def: &ResourceDef, name: &str, causes: &[Cause]) -> ApiError {
    let texts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("[{}]", texts.join(", "))
    };
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("{}.{} \"{name}\" is invalid: {joined}", def.kind, def.group),
    );
    e.details = Some(json!({
        "name": name,
        "group": def.group,
        "kind": def.kind,
        "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
    }));
    e
}

// ---------------------------------------------------------------------------
// HTTP

type Body = BoxBody<Bytes, Infallible>;
type Query = BTreeMap<String, String>;

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Query {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).expect("json");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("response")
}

struct RequestInfo {
    method: String,
    path: String,
    params: Query,
    media: String,
    body: Option<Value>,
    body_present: bool,
    default_manager: String,
    watch: bool,
    /// The client accepts a `meta.k8s.io/v1` `Table` (kubectl get).
    table: bool,
}

enum Outcome {
    Reply(u16, Value),
    Watch(Box<WatchStream>),
}

enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Resources(String, String),
    OpenApiIndex,
    OpenApi(String, String),
    Resource {
        res: usize,
        ns: Option<String>,
        name: Option<String>,
        status: bool,
    },
}

fn route_of(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["healthz" | "readyz" | "livez"] => return Some(Route::Health),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["openapi", "v3"] => return Some(Route::OpenApiIndex),
        ["openapi", "v3", "api", v] => return Some(Route::OpenApi(String::new(), v.to_string())),
        ["openapi", "v3", "apis", g, v] => {
            return Some(Route::OpenApi(g.to_string(), v.to_string()));
        }
        ["api", v] => return Some(Route::Resources(String::new(), v.to_string())),
        ["apis", g, v] => return Some(Route::Resources(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(res) = resource_by_path(group, version, rest[2])
        && RESOURCES[res].namespaced
    {
        let tail = &rest[3..];
        return match tail {
            [] => Some((None, false)),
            [name] => Some((Some(name.to_string()), false)),
            [name, "status"] if RESOURCES[res].status => Some((Some(name.to_string()), true)),
            _ => None,
        }
        .map(|(name, status)| Route::Resource {
            res,
            ns: Some(rest[1].to_string()),
            name,
            status,
        });
    }
    let res = resource_by_path(group, version, rest[0])?;
    let def = &RESOURCES[res];
    match (&rest[1..], def.namespaced) {
        ([], _) => Some(Route::Resource {
            res,
            ns: None,
            name: None,
            status: false,
        }),
        ([name], false) => Some(Route::Resource {
            res,
            ns: None,
            name: Some(name.to_string()),
            status: false,
        }),
        ([name, "status"], false) if def.status => Some(Route::Resource {
            res,
            ns: None,
            name: Some(name.to_string()),
            status: true,
        }),
        _ => None,
    }
}

impl State {
    fn route(&mut self, req: &RequestInfo) -> Result<Outcome, ApiError> {
        let not_found_path = || {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({})",
                    req.path
                ),
            )
        };
        let Some(route) = route_of(&req.path) else {
            return Err(not_found_path());
        };
        let get_only = |v: Value| {
            if req.method == "GET" {
                Ok(Outcome::Reply(200, v))
            } else {
                Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method",
                ))
            }
        };
        let (res, ns, name, status) = match route {
            Route::Version => {
                return get_only(json!({
                    "major": "1",
                    "minor": "33",
                    "gitVersion": "v1.33.0-fake",
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24.0",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }));
            }
            Route::Health => return get_only(json!("ok")),
            Route::CoreVersions => {
                return get_only(json!({"kind": "APIVersions", "versions": ["v1"]}));
            }
            Route::Groups => return get_only(self.discovery_groups()),
            Route::Resources(g, v) => {
                return match self.discovery_resources(&g, &v) {
                    Some(doc) => get_only(doc),
                    None => Err(not_found_path()),
                };
            }
            Route::OpenApiIndex => return get_only(self.openapi_index()),
            Route::OpenApi(g, v) => {
                return match self.openapi_document(&g, &v) {
                    Some(doc) => get_only(doc),
                    None => Err(not_found_path()),
                };
            }
            Route::Resource {
                res,
                ns,
                name,
                status,
            } => (res, ns, name, status),
        };
        let def = &RESOURCES[res];
        let dry = req.params.get("dryRun").is_some_and(|v| v == "All");
        let manager = req
            .params
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| req.default_manager.clone());
        let ctx = WriteCtx {
            manager: &manager,
            dry,
            status_sub: status,
            validation: req.params.get("fieldValidation").map_or("", String::as_str),
        };
        let body = || -> Result<Value, ApiError> {
            match &req.body {
                Some(b) => Ok(b.clone()),
                None if req.body_present && req.media.contains("protobuf") => {
                    // Clients fall back to JSON on a 415.
                    Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (the fake does not speak {})",
                            req.media
                        ),
                    ))
                }
                None if req.body_present => Err(bad_request("the request body is not valid JSON")),
                None => Err(bad_request("the request needs a body")),
            }
        };
        let ns_str = ns.clone().unwrap_or_default();
        match (req.method.as_str(), name) {
            ("GET", None) => {
                let filter = Filter::from_params(res, ns, &req.params)?;
                if req.watch {
                    Ok(Outcome::Watch(Box::new(self.start_watch(
                        filter,
                        &req.params,
                        req.table,
                    )?)))
                } else {
                    let list = self.list_json(&filter, &req.params)?;
                    if req.table {
                        let items = list["items"].as_array().cloned().unwrap_or_default();
                        let include = req.params.get("includeObject").map_or("", String::as_str);
                        Ok(Outcome::Reply(
                            200,
                            self.table(res, &items, list["metadata"].clone(), include),
                        ))
                    } else {
                        Ok(Outcome::Reply(200, list))
                    }
                }
            }
            ("POST", None) if def.namespaced && ns.is_none() => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "create needs a namespace in the path",
            )),
            ("POST", None) => {
                let obj = self.create(res, &ns_str, body()?, &ctx, false)?;
                Ok(Outcome::Reply(201, obj))
            }
            ("GET", Some(name)) => {
                let key = State::key(res, &ns_str, &name);
                let obj = match self.existing(&key) {
                    Ok(s) => s.obj.clone(),
                    // An Event of the other Events API, converted.
                    Err(e) if def.plural == "events" => {
                        let filter = Filter::from_params(res, ns.clone(), &Query::new())?;
                        self.visible(&filter)
                            .into_iter()
                            .find(|(_, n, _)| *n == name)
                            .map(|(_, _, o)| o)
                            .ok_or(e)?
                    }
                    Err(e) => return Err(e),
                };
                if req.table {
                    let include = req.params.get("includeObject").map_or("", String::as_str);
                    let meta = json!({"resourceVersion": self.rv.to_string()});
                    Ok(Outcome::Reply(200, self.table(res, &[obj], meta, include)))
                } else {
                    Ok(Outcome::Reply(200, obj))
                }
            }
            ("PUT", Some(name)) => {
                let key = State::key(res, &ns_str, &name);
                Ok(Outcome::Reply(200, self.replace(&key, body()?, &ctx)?))
            }
            ("PATCH", Some(name)) => {
                let key = State::key(res, &ns_str, &name);
                if req.media == "application/apply-patch+yaml" {
                    if req.params.get("fieldManager").is_none_or(String::is_empty) {
                        return Err(invalid(
                            def,
                            &name,
                            "fieldManager: Required value: is required for apply patch",
                        ));
                    }
                    let force = req.params.get("force").is_some_and(|f| f == "true");
                    let (code, obj) = self.apply(&key, &body()?, force, &ctx)?;
                    Ok(Outcome::Reply(code, obj))
                } else {
                    Ok(Outcome::Reply(
                        200,
                        self.patch(&key, &req.media, &body()?, &ctx)?,
                    ))
                }
            }
            ("DELETE", Some(name)) if !status => {
                let key = State::key(res, &ns_str, &name);
                Ok(Outcome::Reply(
                    200,
                    self.delete(&key, req.body.as_ref(), dry)?,
                ))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{} is not supported on {}", req.method, req.path),
            )),
        }
    }

    fn start_watch(
        &mut self,
        filter: Filter,
        q: &Query,
        table: bool,
    ) -> Result<WatchStream, ApiError> {
        let def = &RESOURCES[filter.res];
        let requested: Option<u64> = match q.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(
                rv.parse()
                    .map_err(|_| bad_request(format!("invalid resourceVersion {rv:?}")))?,
            ),
        };
        let initial_events = q.get("sendInitialEvents").is_some_and(|v| v == "true");
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800);
        let rx = self.tx.subscribe();
        let mut pending = VecDeque::new();
        let mut table = table.then(|| TableView {
            cols: self.columns(filter.res),
            include: q.get("includeObject").cloned().unwrap_or_default(),
            defs_sent: false,
        });
        if let Some(rv) = requested
            && !initial_events
            && rv < self.compacted
        {
            // As the real server: 200, then one ERROR event with a 410.
            let gone = ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", self.compacted + 1),
            );
            pending.push_back(watch_line("ERROR", &gone.to_json()));
            let now = tokio::time::Instant::now();
            return Ok(WatchStream {
                pending,
                rx,
                filter,
                table,
                min_rv: self.rv,
                seen_rv: self.rv,
                bookmarked_rv: self.rv,
                bookmarks: false,
                deadline: now,
                next_bookmark: now,
                done: true,
            });
        }
        match requested {
            Some(rv) if !initial_events => {
                let from = self.log.partition_point(|e| e.rv <= rv);
                for ev in &self.log[from..] {
                    if let Some((typ, obj)) = filter.render(ev) {
                        pending.push_back(encode(&mut table, typ, obj));
                    }
                }
            }
            _ => {
                for obj in self.objects_of(filter.res, filter.ns.as_deref()) {
                    if filter.matches(obj) {
                        pending.push_back(encode(&mut table, "ADDED", obj));
                    }
                }
                if initial_events {
                    pending.push_back(watch_line(
                        "BOOKMARK",
                        &json!({
                            "apiVersion": def.api_version(),
                            "kind": def.kind,
                            "metadata": {
                                "resourceVersion": self.rv.to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        }),
                    ));
                }
            }
        }
        let now = tokio::time::Instant::now();
        Ok(WatchStream {
            pending,
            rx,
            filter,
            table,
            min_rv: requested.unwrap_or(0).max(self.rv),
            seen_rv: self.rv,
            bookmarked_rv: requested.unwrap_or(0),
            bookmarks,
            deadline: now + Duration::from_secs(timeout),
            next_bookmark: now + BOOKMARK_EVERY,
            done: false,
        })
    }
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// A watch that answers `Table`s (`kubectl get -w`): each event's object
/// is a one-row Table; only the first carries the column definitions, as
/// from the real server.
struct TableView {
    cols: Vec<Column>,
    include: String,
    defs_sent: bool,
}

/// One watch line: the object itself, or as a Table row.
fn encode(table: &mut Option<TableView>, typ: &str, obj: &Value) -> Bytes {
    let Some(t) = table else {
        return watch_line(typ, obj);
    };
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or_default();
    let mut v = table_of(
        &t.cols,
        std::slice::from_ref(obj),
        json!({"resourceVersion": rv}),
        &t.include,
    );
    if t.defs_sent {
        v.as_object_mut()
            .expect("table")
            .remove("columnDefinitions");
    }
    t.defs_sent = true;
    watch_line(typ, &v)
}

struct WatchStream {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<LogEvent>>,
    filter: Filter,
    table: Option<TableView>,
    /// Live events at or below this were already sent (or not wanted).
    min_rv: u64,
    /// Every event up to this one has been considered.
    seen_rv: u64,
    bookmarked_rv: u64,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
    done: bool,
}

impl WatchStream {
    fn bookmark(&mut self) {
        if self.bookmarks && self.seen_rv > self.bookmarked_rv {
            let def = &RESOURCES[self.filter.res];
            self.pending.push_back(watch_line(
                "BOOKMARK",
                &json!({
                    "apiVersion": def.api_version(),
                    "kind": def.kind,
                    "metadata": {"resourceVersion": self.seen_rv.to_string()},
                }),
            ));
            self.bookmarked_rv = self.seen_rv;
        }
    }

    async fn step(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep_until(self.deadline) => {
                self.bookmark();
                self.done = true;
            }
            _ = tokio::time::sleep_until(self.next_bookmark), if self.bookmarks => {
                self.bookmark();
                self.next_bookmark += BOOKMARK_EVERY;
            }
            r = self.rx.recv() => match r {
                Ok(ev) => {
                    self.seen_rv = self.seen_rv.max(ev.rv);
                    if ev.rv > self.min_rv && let Some((typ, obj)) = self.filter.render(&ev) {
                        let line = encode(&mut self.table, typ, obj);
                        self.pending.push_back(line);
                    }
                }
                // Lagged or closed: end the watch; the client resumes from
                // its last resourceVersion and the full log replays it.
                Err(_) => self.done = true,
            },
        }
    }

    fn into_body(self) -> Body {
        let stream = futures::stream::unfold(self, |mut w| async move {
            loop {
                if let Some(b) = w.pending.pop_front() {
                    return Some((Ok::<_, Infallible>(Frame::data(b)), w));
                }
                if w.done {
                    return None;
                }
                w.step().await;
            }
        });
        BodyExt::boxed(StreamBody::new(stream))
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if shared.lock().partitioned.contains(&token) {
        // Cut off: the request is never answered.
        std::future::pending::<()>().await;
    }
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let media = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let default_manager = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string();
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok().or_else(|| {
            (media == "application/apply-patch+yaml")
                .then(|| serde_yaml::from_slice::<Value>(&bytes).ok())
                .flatten()
        })
    };
    let query = parts.uri.query().unwrap_or("").to_string();
    let params = parse_query(&query);
    let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    let table = parts
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|m| {
                m.contains("as=Table") && m.contains("g=meta.k8s.io") && m.contains("v=v1")
            })
        });
    let incoming = RequestInfo {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        params,
        media,
        body,
        body_present: !bytes.is_empty(),
        default_manager,
        watch,
        table,
    };
    let (outcome, warnings) = {
        let mut st = shared.lock();
        st.warnings.clear();
        let outcome = match st.take_fault(&incoming.method, &incoming.path) {
            Some(code) => {
                let e = ApiError::new(
                    code,
                    reason_for(code),
                    format!("fault injected by the fake apiserver (HTTP {code})"),
                );
                Outcome::Reply(code, e.to_json())
            }
            None => st
                .route(&incoming)
                .unwrap_or_else(|e| Outcome::Reply(e.code, e.to_json())),
        };
        let status = match &outcome {
            Outcome::Reply(code, _) => *code,
            Outcome::Watch(_) => 200,
        };
        st.requests.push(Recorded {
            method: incoming.method.clone(),
            path: incoming.path.clone(),
            query,
            content_type,
            body: incoming.body.clone(),
            status,
            watch: incoming.watch,
        });
        (outcome, std::mem::take(&mut st.warnings))
    };
    Ok(match outcome {
        Outcome::Reply(code, v) => {
            let mut resp = json_response(code, &v);
            for w in warnings {
                let text = format!("299 - {}", serde_json::to_string(&w).expect("json"));
                if let Ok(h) = hyper::header::HeaderValue::from_str(&text) {
                    resp.headers_mut().append("warning", h);
                }
            }
            resp
        }
        Outcome::Watch(w) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(w.into_body())
            .expect("response"),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The public handle

/// A running fake API server (see the module docs for what it is and is
/// not). Stops when dropped.
pub struct FakeApiServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Binds `127.0.0.1:0` and serves on its own thread and tokio runtime.
    pub fn start() -> FakeApiServer {
        FakeApiServer::start_on("127.0.0.1:0").expect("bind 127.0.0.1:0")
    }

    /// Binds `addr` (like `127.0.0.1:6443`) and serves on its own thread
    /// and tokio runtime; the kubeconfig may be written once this returns.
    pub fn start_on(addr: &str) -> std::io::Result<FakeApiServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
        });
        let (stop, stop_rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(serve(listener, thread_shared, stop_rx));
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake apiserver thread");
        Ok(FakeApiServer {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Drops the whole watch history (as etcd compaction does): a watch or
    /// a continue token from any resourceVersion up to now is `410 Gone`.
    pub fn compact(&self) {
        self.shared.lock().compact_to(0);
    }

    /// Keeps at most `events` watch events (default [`DEFAULT_HISTORY`]);
    /// older ones are compacted away.
    pub fn set_history(&self, events: usize) {
        let mut st = self.shared.lock();
        st.history = events;
        st.compact_to(events);
    }

    /// A kubeconfig whose only context points at this server (namespace
    /// `default`, a dummy bearer token).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n\
             users:\n\
             - name: fake\n  user:\n    token: fake-token\n\
             preferences: {{}}\n",
            self.url
        )
    }

    /// A kubeconfig like [`FakeApiServer::kubeconfig_yaml`] whose client
    /// sends `token`, so that [`FakeApiServer::partition`] can cut it off.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        self.kubeconfig_yaml()
            .replace("token: fake-token", &format!("token: {token}"))
    }

    /// From now on, requests with bearer `token` are never answered, as for
    /// a client on the far side of a network partition.
    pub fn partition(&self, token: &str) {
        self.shared.lock().partitioned.push(token.to_string());
    }

    /// Writes [`FakeApiServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(path, self.kubeconfig_yaml())
            .unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
    }

    /// Creates or updates every document of a multi-document YAML, like
    /// `kubectl apply --server-side --force-conflicts` (field manager
    /// `kubectl`): a spec change bumps generation, `.status` of resources
    /// with a status subresource is left alone, fields others set (e.g.
    /// finalizers) are kept. Namespaced objects without a namespace go to
    /// `default`. Panics on unknown kinds and on refused writes.
    pub fn apply_yaml(&self, yaml: &str) {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let obj =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("apply_yaml: bad YAML: {e}"));
            if obj.is_null() {
                continue;
            }
            let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
            let res = resource_by_kind(api_version, kind).unwrap_or_else(|| {
                let known: Vec<String> = RESOURCES
                    .iter()
                    .map(|d| format!("{} {}", d.api_version(), d.kind))
                    .collect();
                panic!("apply_yaml: the fake apiserver does not serve {api_version:?} {kind:?}; known: {known:?}")
            });
            let name = meta_str(&obj, "name")
                .unwrap_or_else(|| panic!("apply_yaml: {kind} without metadata.name"))
                .to_string();
            let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
            let key = State::key(res, &ns, &name);
            let ctx = WriteCtx {
                manager: "kubectl",
                dry: false,
                status_sub: false,
                validation: "",
            };
            let mut st = self.shared.lock();
            if let Err(e) = st.apply(&key, &obj, true, &ctx) {
                panic!("apply_yaml: {kind} {ns}/{name} refused: {}", e.to_json());
            }
        }
    }

    /// One object. `plural` is `configmaps`, `leases`, `migrationsets`, ...
    /// (`events` is the core one; say `events.events.k8s.io` for the other).
    /// `namespace` is ignored for cluster-scoped resources.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = State::key(resource_by_name(plural), namespace, name);
        self.shared.lock().objects.get(&key).map(|s| s.obj.clone())
    }

    /// Every object of a resource (in one namespace, or all), sorted by
    /// namespace and name.
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let res = resource_by_name(plural);
        self.shared
            .lock()
            .objects_of(res, namespace)
            .cloned()
            .collect()
    }

    /// Deletes like an HTTP DELETE would: with finalizers the object only
    /// gets a deletionTimestamp. Does nothing if the object is missing.
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let key = State::key(resource_by_name(plural), namespace, name);
        let mut st = self.shared.lock();
        match st.delete(&key, None, false) {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => panic!("delete {plural} {namespace}/{name}: {}", e.to_json()),
        }
    }

    /// Every HTTP request seen so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests that are writes (POST, PUT, PATCH, DELETE).
    pub fn writes(&self) -> Vec<Recorded> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Fault injection: the next `times` requests whose method is `method`
    /// (case-insensitive; `*` for any) and whose path contains
    /// `path_contains` are answered with a `Status` error of HTTP `code`
    /// (and are not executed). Note kube's client retries 429, 503 and 504
    /// by itself.
    pub fn fail_requests(&self, method: &str, path_contains: &str, code: u16, times: usize) {
        self.shared.lock().faults.push(Fault {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            code,
            remaining: times,
        });
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Server-side-apply bookkeeping of one object: field path (like
    /// `.spec.holderIdentity`) → its managers, `name (Apply)` or
    /// `name (Update)`. Empty if the object is missing.
    pub fn field_owners(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> BTreeMap<String, Vec<String>> {
        let key = State::key(resource_by_name(plural), namespace, name);
        let st = self.shared.lock();
        let Some(stored) = st.objects.get(&key) else {
            return BTreeMap::new();
        };
        stored
            .owners
            .iter()
            .map(|(p, set)| {
                let managers = set
                    .iter()
                    .map(|o| {
                        format!(
                            "{} ({})",
                            o.manager,
                            if o.apply { "Apply" } else { "Update" }
                        )
                    })
                    .collect();
                (path_string(p), managers)
            })
            .collect()
    }

    /// Polls `check` (blocking this thread) until it returns `Some`, or
    /// panics after `timeout` naming `what`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&FakeApiServer) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
