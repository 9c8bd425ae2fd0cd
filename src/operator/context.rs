//! What every reconcile shares: the Kubernetes client, the caches of the
//! objects a set reads, the event recorder, metrics, per-object backoff and
//! the memory of what each set last reconciled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::DeserializeGuard;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use chmigrate::k8s::crd::{ClickHouseMigration, MigrationSet};

use super::backoff::Backoff;
use super::metrics::Metrics;
use chmigrate::engine::StopFlag;
use chmigrate::k8s::reconcile::Policy;

/// The finalizer a set with `deletionPolicy: Rollback` carries.
pub const FINALIZER: &str = "chmigrate.io/rollback";

/// `namespace/name`.
pub fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

/// Operator-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    /// How often a healthy or stalled set is looked at again without a
    /// change (hosts that were pending, a ledger changed by a CLI run).
    pub recheck: Duration,
    /// Who this instance is (pod name), for the ledger and events.
    pub identity: String,
    /// Whether this instance was elected leader through the Lease.
    pub leader: bool,
    /// When this process started or became the leader (µs): see
    /// [`chmigrate::engine::StaleLocks`] for when a lock taken before then
    /// may be taken over.
    pub started_us: u64,
    /// Set on SIGINT/SIGTERM or the loss of the leader Lease: every running
    /// migration stops before its next statement.
    pub stop: StopFlag,
}

/// The caches (reflector stores) one controller reads from. Secrets are
/// not cached: a reconcile reads the ones its set names, by name.
#[derive(Clone)]
pub struct Stores {
    pub sets: Store<DeserializeGuard<MigrationSet>>,
    pub migrations: Store<DeserializeGuard<ClickHouseMigration>>,
    /// Only ConfigMaps labelled `chmigrate.io/migrations: "true"`.
    pub config_maps: Store<ConfigMap>,
}

impl Stores {
    /// Waits until every cache has its first full list (false when a cache's
    /// writer is gone).
    pub async fn ready(&self) -> bool {
        // kube-runtime 5's readiness future keeps a single waker: of several
        // tasks waiting at once only the last is woken. Polling again with a
        // short timeout sees the memoized value.
        loop {
            if let Ok(ready) =
                tokio::time::timeout(Duration::from_millis(200), self.ready_once()).await
            {
                return ready;
            }
        }
    }

    async fn ready_once(&self) -> bool {
        self.sets.wait_until_ready().await.is_ok()
            && self.migrations.wait_until_ready().await.is_ok()
            && self.config_maps.wait_until_ready().await.is_ok()
    }
}

/// What a set's last successful reconcile saw, so that an event with
/// nothing new (our own status write, say) does nothing.
#[derive(Debug, Clone)]
pub struct Memo {
    pub fingerprint: String,
    pub next_check: Instant,
}

/// State shared by the controllers of every watched namespace.
pub struct Shared {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub backoff: Mutex<Backoff>,
    pub memo: Mutex<HashMap<String, Memo>>,
}

impl Shared {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Shared {
            client,
            recorder,
            metrics,
            settings,
            backoff: Mutex::new(Backoff::new(
                Duration::from_secs(5),
                Duration::from_secs(300),
            )),
            memo: Mutex::new(HashMap::new()),
        }
    }

    pub fn memo(&self, key: &str) -> Option<Memo> {
        self.memo.lock().ok().and_then(|m| m.get(key).cloned())
    }

    pub fn remember(&self, key: &str, memo: Option<Memo>) {
        if let Ok(mut m) = self.memo.lock() {
            match memo {
                Some(v) => m.insert(key.to_string(), v),
                None => m.remove(key),
            };
        }
    }

    pub fn failed(&self, key: &str) -> Duration {
        self.backoff
            .lock()
            .map(|mut b| b.failed(key))
            .unwrap_or(Duration::from_secs(30))
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut b) = self.backoff.lock() {
            b.succeeded(key);
        }
    }
}

/// One controller's context.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub stores: Stores,
}
