//! Leader election through a `coordination.k8s.io` Lease, with a renew
//! deadline: the leader stops acting when it could not renew for
//! `renew_deadline`, which is shorter than the lease, so that it has
//! stopped before any other instance may take the Lease over (an instance
//! takes over only a Lease it saw unchanged for a whole lease duration, on
//! its own clock, as client-go does). A leader cut off from the API server
//! therefore never migrates at the same time as its successor.
//!
//! Each takeover increments `leaseTransitions`: the leader's term, which it
//! writes into the ClickHouse lock it takes, so that the next term may
//! fence it there too.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The timing of an election, derived from the lease duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease nobody renews stays its holder's.
    pub lease: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts (to renew, or to acquire).
    pub retry: Duration,
}

impl Timing {
    /// Two thirds of the lease to renew, a fifth between attempts (for 15 s:
    /// 10 s and 3 s, near client-go's 15/10/2).
    pub fn for_lease(lease: Duration) -> Timing {
        let lease = lease.max(Duration::from_secs(2));
        Timing {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease / 5).max(Duration::from_millis(200)),
        }
    }
}

/// Why a leader stopped being one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// No renewal succeeded within the renew deadline (the API server is
    /// unreachable or slow).
    RenewDeadline(Duration),
    /// The Lease names another holder.
    TakenBy(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::RenewDeadline(d) => write!(f, "the Lease could not be renewed within {d:?}"),
            Lost::TakenBy(h) => write!(f, "the Lease is now held by {h}"),
        }
    }
}

/// One instance's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        Elector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// One request, bounded by the retry period: a silent API server
    /// counts as a failed attempt.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timing.retry, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, lease = %self.name, "lease request failed");
                None
            }
            Err(_) => {
                tracing::debug!(lease = %self.name, "lease request timed out");
                None
            }
        }
    }

    /// Writes this instance as holder over the Lease at `resource_version`
    /// (compare-and-set); `term` is the new `leaseTransitions`.
    async fn claim(&self, resource_version: &str, term: i32, acquired: bool) -> Option<Lease> {
        let mut spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease.as_secs(),
            "renewTime": now(),
            "leaseTransitions": term,
        });
        if acquired {
            spec["acquireTime"] = json!(now());
        }
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": spec,
        });
        self.bounded(
            self.api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
    }

    /// Waits until this instance holds the Lease and returns its term, or
    /// `None` when `stop` resolves first.
    pub async fn acquire(&self, stop: impl std::future::Future<Output = ()>) -> Option<i32> {
        tokio::pin!(stop);
        // The Lease as last seen (holder, resourceVersion) and since when.
        let mut seen: Option<(String, Instant)> = None;
        loop {
            if let Some(term) = self.try_acquire(&mut seen).await {
                return Some(term);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry) => {}
                _ = &mut stop => return None,
            }
        }
    }

    async fn try_acquire(&self, seen: &mut Option<(String, Instant)>) -> Option<i32> {
        let current = self.bounded(self.api.get_opt(&self.name)).await?;
        let Some(lease) = current else {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": { "name": self.name },
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.timing.lease.as_secs(),
                    "acquireTime": now(),
                    "renewTime": now(),
                    "leaseTransitions": 0,
                },
            }))
            .ok()?;
            self.bounded(self.api.create(&PostParams::default(), &lease))
                .await?;
            return Some(0);
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let term = spec.lease_transitions.unwrap_or(0);
        if holder == self.identity {
            // This instance's own earlier life (a restarted pod): continue
            // under a new term, so that what the earlier life left is
            // fenced like any predecessor's.
            return self.claim(&rv, term + 1, true).await.map(|_| term + 1);
        }
        if holder.is_empty() {
            return self.claim(&rv, term + 1, true).await.map(|_| term + 1);
        }
        // Another holder: take over only once the Lease has not changed
        // for a whole lease duration on this instance's clock.
        let lease_for = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.lease, Duration::from_secs)
            .max(self.timing.lease);
        match seen {
            Some((seen_rv, since)) if *seen_rv == rv => {
                if since.elapsed() >= lease_for {
                    tracing::warn!(previous = %holder, "the leader stopped renewing its Lease; taking over");
                    return self.claim(&rv, term + 1, true).await.map(|_| term + 1);
                }
            }
            _ => *seen = Some((rv, Instant::now())),
        }
        None
    }

    /// Renews the Lease until leadership is lost, and says why. The
    /// deadline counts from the start of the last successful renewal.
    pub async fn hold(&self, term: i32) -> Lost {
        let mut renewed = Instant::now();
        loop {
            // The deadline races the attempt: a hung request cannot carry
            // the leader past it.
            let deadline = tokio::time::Instant::from_std(renewed + self.timing.renew_deadline);
            let step = async {
                tokio::time::sleep(self.timing.retry).await;
                let attempt = Instant::now();
                (attempt, self.renew(term).await)
            };
            match tokio::time::timeout_at(deadline, step).await {
                Err(_) => return Lost::RenewDeadline(self.timing.renew_deadline),
                Ok((attempt, Some(Ok(())))) => renewed = attempt,
                Ok((_, Some(Err(holder)))) => return Lost::TakenBy(holder),
                Ok((_, None)) => {}
            }
        }
    }

    /// `Some(Ok)` renewed, `Some(Err(holder))` another holder (or another
    /// term: someone took the Lease over in between), `None` the attempt
    /// failed.
    async fn renew(&self, term: i32) -> Option<Result<(), String>> {
        let lease = self.bounded(self.api.get(&self.name)).await?;
        let spec = lease.spec.unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let now_term = spec.lease_transitions.unwrap_or(0);
        if holder != self.identity || now_term != term {
            return Some(Err(format!("{holder} (term {now_term})")));
        }
        let rv = lease.metadata.resource_version.unwrap_or_default();
        self.claim(&rv, term, false).await.map(|_| Ok(()))
    }

    /// Gives the Lease up (a clean shutdown), so that a successor need not
    /// wait a lease duration.
    pub async fn release(&self) {
        let Some(lease) = self.bounded(self.api.get(&self.name)).await else {
            return;
        };
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let patch = json!({
            "metadata": { "resourceVersion": lease.metadata.resource_version },
            "spec": { "holderIdentity": null, "renewTime": null, "acquireTime": null },
        });
        let _ = self
            .bounded(
                self.api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_before_anyone_may_take_over() {
        for secs in [2, 6, 15, 60] {
            let t = Timing::for_lease(Duration::from_secs(secs));
            // The leader stops at renew_deadline after the start of its
            // last successful renewal; a successor waits a whole lease
            // after it first saw that renewal, which came later.
            assert!(t.renew_deadline < t.lease, "{t:?}");
            assert!(t.retry < t.renew_deadline, "{t:?}");
        }
        let t = Timing::for_lease(Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry, Duration::from_secs(3));
    }
}
