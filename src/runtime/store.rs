//! The ledger on the server: created on first use, shape-checked, read with
//! read-your-writes across replicas, appended to with monotonic sequence
//! numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use super::client::Connection;
use super::error::ChError;
use crate::ledger::{LedgerEntry, LedgerTable, Record, shape_mismatches};
use crate::model::secret::Masker;

/// Failures of the ledger itself.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Ch(#[from] ChError),
    #[error(
        "ledger table {table} exists but has a different shape ({}); it was not created by chmigrate \
         — choose another table with --history-table or move it away",
        problems.join("; ")
    )]
    Shape {
        table: String,
        problems: Vec<String>,
    },
    #[error("ledger table {table}: {message}")]
    Row { table: String, message: String },
}

/// Microseconds since the Unix epoch.
pub use crate::clock::now_us;

#[derive(Deserialize)]
struct Count {
    n: u64,
}

#[derive(Deserialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Deserialize)]
struct MaxSeq {
    seq: u64,
}

/// Whether the ledger table exists on this node.
pub async fn exists(conn: &Connection, table: &LedgerTable) -> Result<bool, LedgerError> {
    let rows: Vec<Count> = conn.rows(&table.exists_sql()).await?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}

/// Creates the database and ledger when missing, then checks the shape.
pub async fn ensure(
    conn: &Connection,
    table: &LedgerTable,
    ddl_timeout_s: u64,
) -> Result<(), LedgerError> {
    if !exists(conn, table).await? {
        let settings = [("distributed_ddl_task_timeout", ddl_timeout_s.to_string())];
        conn.execute_with(&table.create_database_sql(), &settings)
            .await?;
        conn.execute_with(&table.create_sql(), &settings).await?;
        tracing::info!(table = %table.qualified(), "ledger created");
    }
    check_shape(conn, table).await
}

/// Fails when the table is not a chmigrate ledger.
pub async fn check_shape(conn: &Connection, table: &LedgerTable) -> Result<(), LedgerError> {
    let cols: Vec<Column> = conn.rows(&table.columns_sql()).await?;
    let actual: Vec<(String, String)> = cols.into_iter().map(|c| (c.name, c.ty)).collect();
    let problems = shape_mismatches(&actual);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LedgerError::Shape {
            table: table.qualified(),
            problems,
        })
    }
}

/// Reads every row, after making this replica catch up with the others.
pub async fn read(conn: &Connection, table: &LedgerTable) -> Result<Vec<LedgerEntry>, LedgerError> {
    if let Some(sync) = table.sync_replica_sql() {
        conn.execute(&sync).await?;
    }
    let rows: Vec<LedgerEntry> = conn.rows(&table.select_sql()).await.map_err(|e| match e {
        ChError::Decode { reason, .. } => LedgerError::Row {
            table: table.qualified(),
            message: reason,
        },
        other => LedgerError::Ch(other),
    })?;
    Ok(rows)
}

/// Reads the ledger, or nothing when it does not exist yet.
pub async fn read_if_exists(
    conn: &Connection,
    table: &LedgerTable,
) -> Result<Vec<LedgerEntry>, LedgerError> {
    if !exists(conn, table).await? {
        return Ok(Vec::new());
    }
    check_shape(conn, table).await?;
    read(conn, table).await
}

/// Appends events. The caller holds the lock, so sequence numbers continue
/// from the highest one recorded.
///
/// Events are staged and sent together by [`Writer::flush`]: the runner
/// flushes before every statement it sends, so everything that happened
/// before a statement is durable before the statement runs, while a
/// migration costs one ledger insert (its completion and the next one's
/// start travel together) instead of three.
pub struct Writer {
    conn: Connection,
    table: LedgerTable,
    next_seq: u64,
    settings: Vec<(&'static str, String)>,
    staged: Vec<LedgerEntry>,
    pub template: LedgerEntry,
    /// Set when the run can no longer show that it holds the lock (its
    /// lease could not be renewed): the run stops before its next
    /// statement.
    lost: Arc<AtomicBool>,
    /// Secret values never written to the ledger.
    masker: Masker,
    /// The lock token this run holds, when every write must first check
    /// the lock is still this run's (the operator's runs: a later leader
    /// may have taken the lock over).
    fence_token: Option<String>,
    /// The lock is another run's: nothing more is written.
    fenced: bool,
}

impl Writer {
    /// `template` carries the run's fields (run id, actor, environment, user).
    pub async fn open(
        conn: Connection,
        table: LedgerTable,
        template: LedgerEntry,
    ) -> Result<Self, LedgerError> {
        if let Some(sync) = table.sync_replica_sql() {
            conn.execute(&sync).await?;
        }
        let rows: Vec<MaxSeq> = conn.rows(&table.max_seq_sql()).await?;
        let next_seq = rows.first().map_or(0, |r| r.seq) + 1;
        // On a cluster each event is acknowledged by two replicas before the
        // run goes on, so losing the entry node loses no history.
        let settings = if table.cluster.is_some() {
            vec![("insert_quorum", "2".to_string())]
        } else {
            Vec::new()
        };
        Ok(Writer {
            conn,
            table,
            next_seq,
            settings,
            staged: Vec::new(),
            template,
            lost: Arc::new(AtomicBool::new(false)),
            masker: Masker::default(),
            fence_token: None,
            fenced: false,
        })
    }

    /// The flag a lease keeper sets when the lock may no longer be this
    /// run's.
    pub fn fence(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Whether the run may have lost the lock (see [`Writer::fence`]).
    pub fn lock_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// From now on every write first checks that the lock is still held
    /// with `token`; once it is not, the run counts as having lost the lock
    /// and nothing more is written.
    pub fn fence_with(&mut self, token: String) {
        self.fence_token = Some(token);
    }

    /// Whether the lock was found to be another run's.
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// Checks the fence (see [`Writer::fence_with`]).
    pub async fn verify_fence(&mut self) -> Result<(), LedgerError> {
        let Some(token) = &self.fence_token else {
            return Ok(());
        };
        if self.fenced {
            return Ok(());
        }
        let holder = super::lock::inspect(&self.conn, &self.table, &[]).await?;
        if holder.as_ref().is_none_or(|h| &h.token != token) {
            tracing::error!(
                holder = holder.as_ref().map_or("nobody", |h| h.holder.as_str()),
                "the lock is no longer this run's: stopping without writing"
            );
            self.fenced = true;
            self.lost.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Masks these secret values in every event this writer writes.
    pub fn mask_with(&mut self, masker: Masker) {
        self.masker = masker;
    }

    /// Stages one event built from the template; nothing is sent yet.
    pub fn stage(&mut self, record: Record) -> LedgerEntry {
        let mut e = self.template.clone();
        record.fill(&mut e);
        if !self.masker.is_empty() {
            for text in [&mut e.error, &mut e.description] {
                *text = self.masker.mask(text);
            }
            // JSON columns are masked value by value, so that a secret
            // holding a quote or a backslash is caught in its decoded form.
            for json in [&mut e.details, &mut e.hosts] {
                match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(mut v) => {
                        // The rollback kept for later is stored as written
                        // (no substituted value) and must replay intact.
                        let kept = v.get_mut("rollback").map(serde_json::Value::take);
                        self.masker.mask_json(&mut v);
                        if let (Some(kept), Some(obj)) = (kept, v.as_object_mut()) {
                            obj.insert("rollback".into(), kept);
                        }
                        *json = v.to_string();
                    }
                    Err(_) => *json = self.masker.mask(json),
                }
            }
        }
        e.seq = self.next_seq;
        if e.event_time_us == 0 {
            e.event_time_us = now_us();
        }
        self.next_seq += 1;
        self.staged.push(e.clone());
        e
    }

    /// Sends every staged event in one insert.
    pub async fn flush(&mut self) -> Result<(), LedgerError> {
        self.verify_fence().await?;
        if self.fenced {
            self.staged.clear();
            return Ok(());
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        self.conn
            .insert_json(&self.table.insert_sql(), &self.staged, &self.settings)
            .await?;
        self.staged.clear();
        Ok(())
    }

    /// Stages one event and sends everything staged.
    pub async fn write(&mut self, record: Record) -> Result<LedgerEntry, LedgerError> {
        let e = self.stage(record);
        self.flush().await?;
        Ok(e)
    }

    /// Writes several rows as they are (import), renumbering them after the
    /// current history.
    pub async fn write_all(&mut self, mut rows: Vec<LedgerEntry>) -> Result<usize, LedgerError> {
        self.flush().await?;
        for r in &mut rows {
            r.seq = self.next_seq;
            self.next_seq += 1;
        }
        self.conn
            .insert_json(&self.table.insert_sql(), &rows, &self.settings)
            .await?;
        Ok(rows.len())
    }
}
