//! `status`'s reads: the ledger, the lock, hosts still pending, the cluster
//! — no lock taken, nothing written — and the [`Snapshot`] they give.

use crate::config::Settings;
use crate::ledger::fold::TargetState;
use crate::ledger::pending::{self, PendingTask};
use crate::model::migration::Migration;
use crate::plan::snapshot::{self, Snapshot};
use crate::runtime::lock::{self, LockInfo};
use crate::runtime::store;
use crate::runtime::{ClusterHost, Session};

use super::drift::{self, DriftCheck};
use super::error::EngineError;
use super::execute::verify_pending;
use super::session::events;

/// The target as `status` shows it.
#[derive(Debug)]
pub struct Inspection {
    pub state: TargetState,
    pub snapshot: Snapshot,
    pub lock: Option<LockInfo>,
    /// Every host of the cluster (none on a single node).
    pub hosts: Vec<ClusterHost>,
    /// `ON CLUSTER` statements some hosts have still not finished.
    pub still_pending: Vec<PendingTask>,
    /// Every host compared with the applied migrations' schema (empty on a
    /// single node).
    pub drift: DriftCheck,
}

/// Reads the target and its hosts' progress (no lock, no writes).
pub async fn inspect(
    session: &Session,
    settings: &Settings,
    migrations: &[Migration],
) -> Result<Inspection, EngineError> {
    let ledger = &session.cfg.ledger;
    let history = store::read_if_exists(&session.conn, ledger).await?;
    let state = TargetState::fold(&events(&history)?);
    let lock = lock::inspect(&session.conn, ledger, &history).await?;
    let open = pending::open_tasks(&history);
    let (still_pending, _failed) = verify_pending(session, None, open).await?;
    let hosts = session.cluster_hosts().await?;
    let drift = if hosts.is_empty() {
        DriftCheck::default()
    } else {
        drift::check(session, settings, migrations, &history).await?
    };
    let snapshot = snapshot::snapshot(
        migrations,
        &state,
        &settings.policy(),
        &still_pending,
        &crate::plan::Target::Latest,
    );
    Ok(Inspection {
        state,
        snapshot,
        lock,
        hosts,
        still_pending,
        drift,
    })
}
