//! The target lock: at most one runner (CLI or operator) migrates a target.
//!
//! ClickHouse has no advisory locks and 18.16 has no KeeperMap, but both old
//! and current versions refuse to create a table that already exists, and a
//! `ReplicatedMergeTree` refuses to register a replica name that is already
//! registered under its ZooKeeper path. So taking the lock is creating a
//! table:
//!
//! - single node: `CREATE TABLE <db>.<ledger>_lock … ENGINE = MergeTree()`
//!   (atomic on the server: the second runner gets "already exists");
//! - cluster: the same table as `ReplicatedMergeTree('/clickhouse/chmigrate/
//!   <db>/<ledger>_lock', 'lock')`, created on the entry node only. Whichever
//!   node a second runner goes through, its create fails in ZooKeeper
//!   ("replica … already exists"): the lock spans the cluster, not one node.
//!
//! The holder writes one row (token, holder, time) into the lock table and a
//! `lock_taken` event into the ledger. Releasing drops the table (with
//! `SYNC` on versions that delay drops) after writing `lock_released`. A
//! runner that dies leaves the lock behind: it is reported with its holder
//! and age, and `chmigrate unlock` drops it (`ON CLUSTER`, so it is found
//! on whichever node holds it) and records `lock_forced`.

use serde::{Deserialize, Serialize};

use super::client::Connection;
use super::error::{ChError, codes};
use super::queries::{
    self, attach_lock_sql, create_lock_sql, drop_lock_sql, lock_table, lock_zk_path,
    needs_sync_drop,
};
use crate::clock::now_us;
use crate::ledger::EventName;
use crate::ledger::{LedgerEntry, LedgerTable};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub token: String,
    pub holder: String,
    pub acquired_us: u64,
    /// The node the lock table lives on, when known (clusters).
    #[serde(default)]
    pub node: String,
}

impl LockInfo {
    pub fn age_secs(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.acquired_us) / 1_000_000
    }

    pub fn describe(&self, now_us: u64) -> String {
        let mut s = format!(
            "held by {} for {}s (token {})",
            if self.holder.is_empty() {
                "an unknown runner"
            } else {
                &self.holder
            },
            self.age_secs(now_us),
            self.token
        );
        if !self.node.is_empty() {
            s.push_str(&format!(" on node {}", self.node));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("target is locked: {}", info.describe(*now_us))]
    Held { info: LockInfo, now_us: u64 },
    #[error(
        "the lock table {table} on {url} lost its ZooKeeper session: it is not dropped now (ClickHouse 18.16 would drop it from the catalogue and leave its files, which blocks every later lock); the lock stays held — once ZooKeeper is back, run `chmigrate unlock`"
    )]
    ZooKeeperLost { url: String, table: String },
    #[error(transparent)]
    Ch(#[from] ChError),
}

/// A held lock; release it with [`release`].
#[derive(Debug)]
pub struct Lock {
    pub info: LockInfo,
    conn: Connection,
    ledger: LedgerTable,
    sync_drop: bool,
}

/// Takes the lock or reports who holds it.
pub async fn acquire(
    conn: &Connection,
    ledger: &LedgerTable,
    holder: &str,
    token: &str,
    server_major: u32,
    history: &[LedgerEntry],
) -> Result<Lock, LockError> {
    match conn.execute(&create_lock_sql(ledger)?).await {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.code(),
                Some(
                    codes::TABLE_ALREADY_EXISTS
                        | codes::REPLICA_ALREADY_EXISTS
                        | codes::INCORRECT_DATA
                )
            ) =>
        {
            // INCORRECT_DATA: an earlier drop left the lock's files behind
            // (see `release`); the lock counts as held until `unlock`
            // repairs it.
            let info = inspect(conn, ledger, history).await?.unwrap_or(LockInfo {
                token: String::new(),
                holder: String::new(),
                acquired_us: 0,
                node: String::new(),
            });
            return Err(LockError::Held {
                info,
                now_us: now_us(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let info = LockInfo {
        token: token.to_string(),
        holder: holder.to_string(),
        acquired_us: now_us(),
        node: conn.url().to_string(),
    };
    let head = queries::lock_insert_sql(ledger, &lock_table(ledger)?);
    #[derive(Serialize)]
    struct Row<'a> {
        token: &'a str,
        holder: &'a str,
        acquired_us: u64,
    }
    conn.insert_json(
        &head,
        &[Row {
            token,
            holder,
            acquired_us: info.acquired_us,
        }],
        &[],
    )
    .await?;
    Ok(Lock {
        info,
        conn: conn.clone(),
        ledger: ledger.clone(),
        sync_drop: needs_sync_drop(server_major),
    })
}

impl Lock {
    /// What renews this lock, for a task of its own.
    pub fn renewal(&self) -> Renewal {
        Renewal {
            conn: self.conn.clone(),
            ledger: self.ledger.clone(),
            token: self.info.token.clone(),
            holder: self.info.holder.clone(),
        }
    }
}

/// Renews a held lock: each renewal adds a row to the lock table, which the
/// server stamps (a part's modification time; on a cluster, a replication
/// log entry in ZooKeeper). Readers compare that stamp with their server's
/// clock: no runner's own clock is trusted.
#[derive(Debug, Clone)]
pub struct Renewal {
    conn: Connection,
    ledger: LedgerTable,
    token: String,
    holder: String,
}

impl Renewal {
    /// Adds a renewal row while the lock is still this run's; `Ok(false)`
    /// when it is another's (taken over): nothing is added to a lock that
    /// is no longer ours, where a row of ours could pass for its holder's.
    pub async fn renew(&self) -> Result<bool, ChError> {
        let table = lock_table(&self.ledger)?;
        let first: Vec<LockInfo> = self
            .conn
            .rows(&queries::lock_holder_sql(&self.ledger, &table))
            .await?;
        if first.first().is_some_and(|r| r.token != self.token) {
            return Ok(false);
        }
        #[derive(Serialize)]
        struct Row<'a> {
            token: &'a str,
            holder: &'a str,
            acquired_us: u64,
        }
        let head = queries::lock_insert_sql(&self.ledger, &lock_table(&self.ledger)?);
        self.conn
            .insert_json(
                &head,
                &[Row {
                    token: &self.token,
                    holder: &self.holder,
                    acquired_us: now_us(),
                }],
                &[],
            )
            .await
            .map(|()| true)
    }
}

/// Seconds since the lock's holder last renewed it, by the server's clock
/// (ZooKeeper's on a cluster, from any node); `None` when there is no
/// lock table to ask about.
pub async fn renewed_ago(conn: &Connection, ledger: &LedgerTable) -> Result<Option<u64>, ChError> {
    let sql = match &ledger.cluster {
        Some(_) => queries::lock_renewed_zk_sql(&format!("{}/log", lock_zk_path(ledger))),
        None => {
            queries::lock_renewed_parts_sql(ledger.database.as_str(), lock_table(ledger)?.as_str())
        }
    };
    #[derive(Deserialize)]
    struct R {
        age: i32,
        n: u32,
    }
    let rows: Vec<R> = match conn.rows(&sql).await {
        Ok(r) => r,
        // No such ZooKeeper path: no lock.
        Err(e)
            if e.code() == Some(codes::KEEPER_EXCEPTION)
                && e.server_message().is_some_and(|m| m.contains("No node")) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(rows
        .first()
        .filter(|r| r.n > 0)
        .map(|r| u64::try_from(r.age).unwrap_or(0)))
}

/// Fails when the lock table on `conn` is a replica that lost its
/// ZooKeeper session: dropping it then (18.16) removes it from the catalogue
/// but keeps its files, and every later `CREATE` of the lock fails.
async fn ensure_droppable(conn: &Connection, ledger: &LedgerTable) -> Result<(), LockError> {
    if ledger.cluster.is_none() {
        return Ok(());
    }
    let table = lock_table(ledger)?;
    #[derive(Deserialize)]
    struct R {
        readonly: u8,
    }
    let rows: Vec<R> = conn
        .rows(&queries::replica_readonly_sql(
            ledger.database.as_str(),
            table.as_str(),
        ))
        .await?;
    if rows.iter().any(|r| r.readonly != 0) {
        return Err(LockError::ZooKeeperLost {
            url: conn.url().to_string(),
            table: format!("{}.{}", ledger.database, table),
        });
    }
    Ok(())
}

/// Releases a held lock. A lock whose table lost its ZooKeeper session is
/// left held (see [`LockError::ZooKeeperLost`]).
pub async fn release(lock: Lock) -> Result<(), LockError> {
    ensure_droppable(&lock.conn, &lock.ledger).await?;
    lock.conn
        .execute(&drop_lock_sql(&lock.ledger, false, false, lock.sync_drop)?)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
struct ZkNode {
    name: String,
    value: String,
}

/// Who holds the lock, if anyone: the row in the lock table when it is on
/// this node, else the ledger's last `lock_taken` without a release and the
/// node ZooKeeper names.
pub async fn inspect(
    conn: &Connection,
    ledger: &LedgerTable,
    history: &[LedgerEntry],
) -> Result<Option<LockInfo>, ChError> {
    let table = lock_table(ledger)?;
    let here = queries::table_exists_sql(ledger.database.as_str(), table.as_str());
    #[derive(Deserialize)]
    struct N {
        n: u64,
    }
    let local: Vec<N> = conn.rows(&here).await?;
    if local.first().is_some_and(|r| r.n > 0) {
        let rows: Vec<LockInfo> = conn.rows(&queries::lock_holder_sql(ledger, &table)).await?;
        let info = rows.into_iter().next().unwrap_or(LockInfo {
            token: String::new(),
            holder: String::new(),
            acquired_us: 0,
            node: String::new(),
        });
        return Ok(Some(LockInfo {
            node: conn.url().to_string(),
            ..info
        }));
    }
    if ledger.cluster.is_none() {
        return Ok(None);
    }
    // Held through another node? Ask ZooKeeper.
    let zk = queries::zookeeper_children_sql(&format!("{}/replicas/lock", lock_zk_path(ledger)));
    let nodes: Vec<ZkNode> = match conn.rows(&zk).await {
        Ok(n) => n,
        // No such path: nobody holds the lock.
        Err(e)
            if e.code() == Some(codes::KEEPER_EXCEPTION)
                && e.server_message().is_some_and(|m| m.contains("No node")) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if nodes.is_empty() {
        return Ok(None);
    }
    let node = nodes
        .iter()
        .find(|n| n.name == "host")
        .and_then(|n| n.value.lines().find_map(|l| l.strip_prefix("host: ")))
        .unwrap_or_default()
        .to_string();
    Ok(Some(last_taken(history).map_or(
        LockInfo {
            token: String::new(),
            holder: String::new(),
            acquired_us: 0,
            node: node.clone(),
        },
        |mut i| {
            i.node = node.clone();
            i
        },
    )))
}

/// What the current holder announced in its `lock_taken` event: its lease
/// and host identity (`None`: the holder announced nothing — a release
/// before leases, or a lock made by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub token: String,
    pub lease_s: u64,
    pub host: String,
}

pub fn announcement(history: &[LedgerEntry]) -> Option<Announcement> {
    let mut current = None;
    for e in history {
        match e.name() {
            Some(EventName::LockTaken) => {
                let d = serde_json::from_str::<serde_json::Value>(&e.details).ok();
                current = d.and_then(|d| {
                    Some(Announcement {
                        token: d["token"].as_str()?.to_string(),
                        lease_s: d["lease_s"].as_u64()?,
                        host: d["host"].as_str().unwrap_or_default().to_string(),
                    })
                });
            }
            Some(EventName::LockReleased | EventName::LockForced) => current = None,
            _ => {}
        }
    }
    current
}

/// Whether the lock table on the lock's node still holds this lock's token
/// (not taken over since).
pub async fn still_ours(lock: &Lock) -> Result<bool, ChError> {
    let table = lock_table(&lock.ledger)?;
    #[derive(Deserialize)]
    struct N {
        n: u64,
    }
    let here: Vec<N> = lock
        .conn
        .rows(&queries::table_exists_sql(
            lock.ledger.database.as_str(),
            table.as_str(),
        ))
        .await?;
    if here.first().is_none_or(|r| r.n == 0) {
        return Ok(false);
    }
    let rows: Vec<LockInfo> = lock
        .conn
        .rows(&queries::lock_holder_sql(&lock.ledger, &table))
        .await?;
    Ok(rows.first().is_some_and(|r| r.token == lock.info.token))
}

/// The last `lock_taken` event with no `lock_released`/`lock_forced` after it.
pub fn last_taken(history: &[LedgerEntry]) -> Option<LockInfo> {
    let mut current: Option<LockInfo> = None;
    for e in history {
        match e.name() {
            Some(EventName::LockTaken) => {
                current = Some(LockInfo {
                    token: e.run_id.clone(),
                    holder: e.actor.clone(),
                    acquired_us: e.event_time_us,
                    node: String::new(),
                })
            }
            Some(EventName::LockReleased | EventName::LockForced) => current = None,
            _ => {}
        }
    }
    current
}

/// Drops the lock wherever it is and, on a cluster, repairs a lock whose
/// table an earlier drop removed from the catalogue but not from the disk of
/// the node `conn` talks to (18.16 with ZooKeeper gone): it is attached
/// again from its files and dropped properly.
/// Stops the statements a run whose lock was taken over may still be
/// running on this server (best effort: a server that refuses says why in
/// the log).
pub async fn kill_run_queries(conn: &Connection, token: &str) {
    if let Err(e) = conn.execute(&queries::kill_run_queries_sql(token)).await {
        tracing::warn!(error = %e, "could not stop the previous holder's statements");
    }
}

pub async fn force(
    conn: &Connection,
    ledger: &LedgerTable,
    server_major: u32,
    ddl_timeout_s: u64,
) -> Result<(), LockError> {
    ensure_droppable(conn, ledger).await?;
    let sync = needs_sync_drop(server_major);
    let sql = drop_lock_sql(ledger, true, ledger.cluster.is_some(), sync)?;
    conn.execute_with(
        &sql,
        &[("distributed_ddl_task_timeout", ddl_timeout_s.to_string())],
    )
    .await?;
    if ledger.cluster.is_none() {
        // A plain MergeTree drop needs no ZooKeeper: nothing is left behind.
        return Ok(());
    }
    // Files left behind on this node? Creating the lock says so.
    match conn.execute(&create_lock_sql(ledger)?).await {
        Ok(()) => {}
        Err(e) if e.code() == Some(codes::INCORRECT_DATA) => {
            tracing::warn!(table = %lock_table(ledger)?, "the lock's files outlived its table; attaching and dropping them");
            conn.execute(&attach_lock_sql(ledger)?).await?;
            ensure_droppable(conn, ledger).await?;
        }
        // Another runner on this node took the lock since the drop above:
        // the stale lock is gone, which is all this was for; theirs stays.
        Err(e) if e.code() == Some(codes::TABLE_ALREADY_EXISTS) => return Ok(()),
        // On a cluster, a replica name still registered after a drop that
        // reached every host: another runner, or a lock whose node is gone
        // for good; either way not released here, and said so.
        Err(e) => return Err(e.into()),
    }
    conn.execute(&drop_lock_sql(ledger, false, false, sync)?)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ident::Ident;

    fn ledger(cluster: Option<&str>) -> LedgerTable {
        LedgerTable {
            database: Ident::new("d", "analytics").unwrap(),
            table: Ident::new("t", "schema_migrations").unwrap(),
            cluster: cluster.map(|c| Ident::new("c", c).unwrap()),
        }
    }

    #[test]
    fn lock_sql() {
        assert_eq!(
            create_lock_sql(&ledger(None)).unwrap(),
            "CREATE TABLE `analytics`.`schema_migrations_lock` (`token` String, `holder` String, `acquired_us` UInt64) ENGINE = MergeTree() ORDER BY token"
        );
        assert!(create_lock_sql(&ledger(Some("c"))).unwrap().contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/chmigrate/analytics/schema_migrations_lock', 'lock')"
        ));
        assert_eq!(
            drop_lock_sql(&ledger(Some("c")), true, true, true).unwrap(),
            "DROP TABLE IF EXISTS `analytics`.`schema_migrations_lock` ON CLUSTER `c` SYNC"
        );
        assert_eq!(
            drop_lock_sql(&ledger(None), false, true, false).unwrap(),
            "DROP TABLE `analytics`.`schema_migrations_lock`"
        );
        assert!(needs_sync_drop(24) && !needs_sync_drop(18));
    }

    #[test]
    fn last_taken_follows_releases() {
        let ev = |event: &str, run: &str, t: u64| LedgerEntry {
            event: event.into(),
            run_id: run.into(),
            actor: format!("me@{run}"),
            event_time_us: t,
            ..Default::default()
        };
        let h = vec![
            ev("lock_taken", "a", 1),
            ev("lock_released", "a", 2),
            ev("lock_taken", "b", 3_000_000),
        ];
        let info = last_taken(&h).unwrap();
        assert_eq!(info.token, "b");
        assert_eq!(info.age_secs(10_000_000), 7);
        assert!(info.describe(10_000_000).contains("held by me@b for 7s"));
        assert_eq!(last_taken(&h[..2]), None);
    }
}
