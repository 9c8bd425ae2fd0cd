//! What every reconcile shares: the Kubernetes client, the caches of the
//! objects a set reads, the event recorder, metrics, per-object backoff and
//! the memory of what each set last reconciled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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

/// A person's way out when a deleted set cannot be rolled back (its
/// target is gone, say): with `chmigrate.io/release-finalizer: "true"` the
/// operator drops its finalizer without rolling back.
pub const RELEASE_ANNOTATION: &str = "chmigrate.io/release-finalizer";

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
    /// The leader's term (the Lease's `leaseTransitions` when it took it):
    /// written into the ClickHouse locks it takes, so that a later term
    /// fences this one there.
    pub term: Option<i32>,
    /// When this process started or became the leader (µs): see
    /// [`chmigrate::engine::StaleLocks`] for when a lock taken before then
    /// may be taken over.
    pub started_us: u64,
    /// Set on SIGINT/SIGTERM or the loss of the leader Lease: every running
    /// migration stops before its next statement.
    pub stop: StopFlag,
    /// Sets reconciled at once (`--concurrency`).
    pub concurrency: usize,
    /// Set when this instance lost the leadership: it writes nothing more
    /// to the API (its successor owns the statuses now).
    pub deposed: Arc<std::sync::atomic::AtomicBool>,
}

impl Settings {
    pub fn is_deposed(&self) -> bool {
        self.deposed.load(std::sync::atomic::Ordering::SeqCst)
    }
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

/// Reconcile slots per namespace: with sets in `k` namespaces, one
/// namespace may run at most `⌈concurrency / k⌉` of the operator's
/// `--concurrency` at once, so that its slow or unreachable targets cannot
/// take every slot from the others (alone, it may use them all).
#[derive(Debug)]
pub struct FairShare {
    concurrency: usize,
    running: Mutex<HashMap<String, usize>>,
}

/// A namespace's slot, given back when dropped.
pub struct Slot<'a> {
    owner: &'a FairShare,
    namespace: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.owner.running.lock()
            && let Some(n) = m.get_mut(&self.namespace)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.namespace);
            }
        }
    }
}

impl FairShare {
    pub fn new(concurrency: usize) -> Self {
        FairShare {
            concurrency: concurrency.max(1),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `namespace` when sets live in `namespaces` namespaces, or
    /// `None` when it already runs its share.
    pub fn try_acquire(&self, namespace: &str, namespaces: usize) -> Option<Slot<'_>> {
        let share = self.concurrency.div_ceil(namespaces.max(1));
        let mut m = self.running.lock().ok()?;
        let n = m.entry(namespace.to_string()).or_default();
        if *n >= share {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self,
            namespace: namespace.to_string(),
        })
    }
}

/// State shared by the controllers of every watched namespace.
pub struct Shared {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub backoff: Mutex<Backoff>,
    pub memo: Mutex<HashMap<String, Memo>>,
    pub fair: FairShare,
    /// The Secrets last used by each set that rolls back on deletion, in
    /// memory only: its namespace may delete them before the set.
    pub kept_secrets: Mutex<HashMap<String, Vec<Secret>>>,
}

impl Shared {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let concurrency = settings.concurrency;
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
            fair: FairShare::new(concurrency),
            kept_secrets: Mutex::new(HashMap::new()),
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

    /// Keeps (`Some`: the latest version of each, by name; a Secret that
    /// is gone now stays kept) or forgets (`None`) the Secrets a set used.
    pub fn keep_secrets(&self, key: &str, secrets: Option<Vec<Secret>>) {
        let Ok(mut m) = self.kept_secrets.lock() else {
            return;
        };
        match secrets {
            Some(now) => {
                let kept = m.entry(key.to_string()).or_default();
                for s in now {
                    kept.retain(|k| k.metadata.name != s.metadata.name);
                    kept.push(s);
                }
            }
            None => {
                m.remove(key);
            }
        }
    }

    /// Adds to `secrets` those kept for the set that are gone from the API.
    pub fn fill_kept_secrets(&self, key: &str, secrets: &mut Vec<Secret>) {
        let Ok(m) = self.kept_secrets.lock() else {
            return;
        };
        for kept in m.get(key).into_iter().flatten() {
            if !secrets
                .iter()
                .any(|s| s.metadata.name == kept.metadata.name)
            {
                secrets.push(kept.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::FairShare;

    #[test]
    fn one_namespace_gets_at_most_half_the_slots_and_gives_them_back() {
        let fair = FairShare::new(4);
        // Alone, a namespace may use every slot.
        let alone: Vec<_> = (0..4)
            .map(|_| fair.try_acquire("a", 1).expect("slot"))
            .collect();
        assert!(fair.try_acquire("a", 1).is_none());
        drop(alone);
        // With two namespaces holding sets, two slots each.
        let a1 = fair.try_acquire("a", 2).expect("first");
        let a2 = fair.try_acquire("a", 2).expect("second");
        assert!(
            fair.try_acquire("a", 2).is_none(),
            "a third would starve the others"
        );
        let b1 = fair
            .try_acquire("b", 2)
            .expect("another namespace still runs");
        let _b2 = fair.try_acquire("b", 2).expect("its share");
        drop(a1);
        let _a3 = fair.try_acquire("a", 2).expect("a slot came back");
        drop((a2, b1));
        // More namespaces than slots: one each.
        let one = FairShare::new(1);
        let x = one.try_acquire("x", 3).expect("x");
        assert!(one.try_acquire("x", 3).is_none());
        drop(x);
        assert!(one.try_acquire("y", 3).is_some());
    }
}
