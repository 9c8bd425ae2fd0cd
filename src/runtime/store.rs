//! The ledger on the server: created on first use, shape-checked, read with
//! read-your-writes across replicas, appended to with monotonic sequence
//! numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use super::client::Connection;
use super::error::ChError;
use crate::ledger::{Format, LedgerEntry, LedgerTable, Record, StoredRow, format_of};
use crate::model::secret::Masker;
use crate::sql::effect::{Effect, Key, conflicts};

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

/// The format of the ledger table on this node; `None` when it does not
/// exist. A table that is neither format is [`LedgerError::Shape`].
pub async fn format(conn: &Connection, table: &LedgerTable) -> Result<Option<Format>, LedgerError> {
    let cols: Vec<Column> = conn.rows(&table.columns_sql()).await?;
    if cols.is_empty() {
        return Ok(None);
    }
    let actual: Vec<(String, String)> = cols.into_iter().map(|c| (c.name, c.ty)).collect();
    format_of(&actual)
        .map(Some)
        .map_err(|problems| LedgerError::Shape {
            table: table.qualified(),
            problems,
        })
}

/// Whether the ledger table exists on this node.
pub async fn exists(conn: &Connection, table: &LedgerTable) -> Result<bool, LedgerError> {
    let rows: Vec<Count> = conn.rows(&table.exists_sql()).await?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}

/// Creates the database and ledger when missing (finishing an upgrade a
/// killed run left between its two renames), then checks the shape.
/// Returns the ledger's format: a format-1 ledger is upgraded by
/// [`upgrade`], under the lock.
pub async fn ensure(
    conn: &Connection,
    table: &LedgerTable,
    ddl_timeout_s: u64,
) -> Result<Format, LedgerError> {
    if let Some(f) = format(conn, table).await? {
        return Ok(f);
    }
    let settings = [("distributed_ddl_task_timeout", ddl_timeout_s.to_string())];
    if let Ok((new, _)) = table.upgrade_names()
        && is_v2_table(conn, table, &new).await?
    {
        // An upgrade stopped after the old table was renamed away: the new
        // one is complete (it is renamed only once filled).
        tracing::warn!(table = %table.qualified(), "finishing a ledger upgrade a stopped run left half done");
        conn.execute_with(&table.rename_sql(&[(&new, &table.table)]), &settings)
            .await?;
    } else {
        conn.execute_with(&table.create_database_sql(), &settings)
            .await?;
        conn.execute_with(&table.create_sql(), &settings).await?;
        tracing::info!(table = %table.qualified(), "ledger created");
    }
    format(conn, table).await?.ok_or_else(|| LedgerError::Row {
        table: table.qualified(),
        message: "the ledger table is missing right after it was created".into(),
    })
}

async fn is_v2_table(
    conn: &Connection,
    table: &LedgerTable,
    name: &crate::sql::ident::Ident,
) -> Result<bool, LedgerError> {
    let cols: Vec<Column> = conn.rows(&table.columns_of_sql(name)).await?;
    let actual: Vec<(String, String)> = cols.into_iter().map(|c| (c.name, c.ty)).collect();
    Ok(!actual.is_empty() && format_of(&actual) == Ok(Format::V2))
}

/// Fails when the table is not a chmigrate ledger (of either format).
pub async fn check_shape(conn: &Connection, table: &LedgerTable) -> Result<(), LedgerError> {
    format(conn, table).await.map(|_| ())
}

/// Reads every row, after making this replica catch up with the others.
pub async fn read(conn: &Connection, table: &LedgerTable) -> Result<Vec<LedgerEntry>, LedgerError> {
    let f = format(conn, table).await?.unwrap_or(Format::V2);
    read_format(conn, table, f).await
}

/// Reads every row of a ledger known to be in `format`.
pub async fn read_format(
    conn: &Connection,
    table: &LedgerTable,
    format: Format,
) -> Result<Vec<LedgerEntry>, LedgerError> {
    if let Some(sync) = table.sync_replica_sql() {
        conn.execute(&sync).await?;
    }
    let undecodable = |e: ChError| match e {
        ChError::Decode { reason, .. } => LedgerError::Row {
            table: table.qualified(),
            message: reason,
        },
        other => LedgerError::Ch(other),
    };
    let sql = table.select_format_sql(format);
    match format {
        Format::V1 => conn.rows(&sql).await.map_err(undecodable),
        Format::V2 => {
            let rows: Vec<StoredRow> = conn.rows(&sql).await.map_err(undecodable)?;
            rows.into_iter()
                .map(LedgerEntry::from_stored)
                .collect::<Result<_, _>>()
                .map_err(|e| LedgerError::Row {
                    table: table.qualified(),
                    message: e.to_string(),
                })
        }
    }
}

/// Reads the ledger, or nothing when it does not exist yet.
pub async fn read_if_exists(
    conn: &Connection,
    table: &LedgerTable,
) -> Result<Vec<LedgerEntry>, LedgerError> {
    match format(conn, table).await? {
        None => Ok(Vec::new()),
        Some(f) => read_format(conn, table, f).await,
    }
}

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    pub rows: usize,
    /// Where the format-1 table is kept.
    pub kept_as: String,
}

/// Upgrades a format-1 ledger to format 2 in place. The caller holds the
/// lock. The new table is built beside the old one (`<table>__v2`), filled
/// with every row (same `seq`, same fields), and the two are swapped with
/// one `RENAME`; the old table stays as `<table>_v1` (or `<table>_v1_<time>`
/// when that name is taken). A run killed part-way leaves either the old
/// ledger in place (the next run starts over) or, between the renames, the
/// full new table, which [`ensure`] renames into place.
pub async fn upgrade(
    conn: &Connection,
    table: &LedgerTable,
    ddl_timeout_s: u64,
) -> Result<Upgraded, LedgerError> {
    let naming = |e: crate::sql::ident::IdentError| LedgerError::Row {
        table: table.qualified(),
        message: format!("cannot name the upgrade's tables: {e}"),
    };
    let (new, mut old) = table.upgrade_names().map_err(naming)?;
    let probe = LedgerTable {
        table: old.clone(),
        ..table.clone()
    };
    if exists(conn, &probe).await? {
        old = crate::sql::ident::Ident::new(
            "history table name",
            &format!("{}_{}", old.as_str(), now_us() / 1_000_000),
        )
        .map_err(naming)?;
    }
    let rows = read_format(conn, table, Format::V1).await?;
    let settings = [("distributed_ddl_task_timeout", ddl_timeout_s.to_string())];
    // A table a stopped upgrade left half filled is rebuilt.
    conn.execute_with(&table.drop_beside_sql(&new), &settings)
        .await?;
    conn.execute_with(&table.create_sql_named(&new), &settings)
        .await?;
    if !rows.is_empty() {
        let stored: Vec<StoredRow> = rows.iter().map(LedgerEntry::to_stored).collect();
        let quorum = quorum_settings(table);
        conn.insert_json(&table.insert_into_sql(&new), &stored, &quorum)
            .await?;
    }
    conn.execute_with(
        &table.rename_sql(&[(&table.table, &old), (&new, &table.table)]),
        &settings,
    )
    .await?;
    tracing::info!(table = %table.qualified(), rows = rows.len(), kept_as = %old.as_str(), "ledger upgraded to format 2");
    Ok(Upgraded {
        rows: rows.len(),
        kept_as: format!("{}.{}", table.database, old),
    })
}

/// On a cluster a durable write is acknowledged by two replicas before the
/// run goes on, so losing the entry node loses none of it.
fn quorum_settings(table: &LedgerTable) -> Vec<(&'static str, String)> {
    if table.cluster.is_some() {
        vec![("insert_quorum", "2".to_string())]
    } else {
        Vec::new()
    }
}

/// Appends events. The caller holds the lock, so sequence numbers continue
/// from the highest one recorded.
///
/// Events are staged and sent together. Two kinds of sending exist:
///
/// - [`Writer::flush`], a durable point: everything staged is written (on a
///   cluster acknowledged by two replicas) before the caller goes on. The
///   runner calls it before a statement whose effect it could not tell
///   afterwards (an `INSERT`, a mutation), after such a statement, and at
///   the end of a run.
/// - [`Writer::group`], before a statement whose effect can be observed
///   afterwards or that is safe to repeat (`sql::effect`): the first one
///   makes a `progress_grouped` record durable (so a later run knows to
///   look at the schema), the next ones send nothing, except what has been
///   staged for longer than [`GROUPED_INTERVAL`] (without a quorum: those
///   records can be recovered by observation).
pub struct Writer {
    conn: Connection,
    table: LedgerTable,
    format: Format,
    next_seq: u64,
    /// Durable writes: `insert_quorum=2` on a cluster.
    settings: Vec<(&'static str, String)>,
    staged: Vec<LedgerEntry>,
    /// A `progress_grouped` record is in the ledger and no
    /// `progress_recorded` after it.
    grouping: bool,
    /// What the statements of the open group touch.
    group_keys: Vec<Key>,
    /// When records were last sent.
    sent_at: std::time::Instant,
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

/// How long grouped records wait at most before they are sent.
pub const GROUPED_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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
        let format = format(&conn, &table)
            .await?
            .ok_or_else(|| LedgerError::Row {
                table: table.qualified(),
                message: "the ledger table does not exist".into(),
            })?;
        let rows: Vec<MaxSeq> = conn.rows(&table.max_seq_sql()).await?;
        let next_seq = rows.first().map_or(0, |r| r.seq) + 1;
        let settings = quorum_settings(&table);
        Ok(Writer {
            conn,
            table,
            format,
            next_seq,
            settings,
            staged: Vec::new(),
            grouping: false,
            group_keys: Vec::new(),
            sent_at: std::time::Instant::now(),
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

    /// A durable point: sends every staged event in one insert (closing a
    /// group of statements with `progress_recorded`) and returns once it
    /// is written.
    pub async fn flush(&mut self) -> Result<(), LedgerError> {
        self.verify_fence().await?;
        if self.fenced {
            self.staged.clear();
            return Ok(());
        }
        self.close_group();
        self.send(true).await
    }

    fn close_group(&mut self) {
        if self.grouping {
            self.grouping = false;
            self.group_keys.clear();
            self.stage(Record::ProgressRecorded {
                recovered_from: None,
            });
        }
    }

    /// Before a statement with `effect`: a durable point when its record
    /// cannot wait, or when it touches what an earlier statement of the
    /// open group touched (after a crash, what the earlier one's check
    /// sees would then depend on the later one); else it joins the group
    /// (see [`Writer`]).
    pub async fn before_statement(&mut self, effect: &Effect) -> Result<(), LedgerError> {
        if !effect.groupable() {
            return self.flush().await;
        }
        let keys = effect.keys();
        if self.grouping && conflicts(&self.group_keys, &keys) {
            // Closing this group and opening the next travel in one insert.
            self.close_group();
        }
        self.group_keys.extend(keys);
        self.group().await
    }

    /// The first statement of a group makes `progress_grouped` durable
    /// with what is staged; later ones send what has waited for
    /// [`GROUPED_INTERVAL`]. Fenced runs check the lock before every
    /// statement all the same.
    async fn group(&mut self) -> Result<(), LedgerError> {
        if self.fence_token.is_some() {
            self.verify_fence().await?;
            if self.fenced {
                self.staged.clear();
                return Ok(());
            }
        }
        if !self.grouping {
            self.grouping = true;
            self.stage(Record::ProgressGrouped);
            return self.send(true).await;
        }
        if !self.staged.is_empty() && self.sent_at.elapsed() >= GROUPED_INTERVAL {
            return self.send(false).await;
        }
        Ok(())
    }

    /// Whether the statements running now are in a group.
    pub fn grouping(&self) -> bool {
        self.grouping
    }

    /// Writes the staged rows; `durable`: with the quorum on a cluster.
    async fn send(&mut self, durable: bool) -> Result<(), LedgerError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let settings: &[(&str, String)] = if durable { &self.settings } else { &[] };
        insert_rows(&self.conn, &self.table, self.format, &self.staged, settings).await?;
        self.staged.clear();
        self.sent_at = std::time::Instant::now();
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
        insert_rows(&self.conn, &self.table, self.format, &rows, &self.settings).await?;
        Ok(rows.len())
    }
}

/// One insert of `rows` in the table's format.
async fn insert_rows(
    conn: &Connection,
    table: &LedgerTable,
    format: Format,
    rows: &[LedgerEntry],
    settings: &[(&str, String)],
) -> Result<(), LedgerError> {
    match format {
        Format::V1 => {
            conn.insert_json(&table.insert_sql(), rows, settings)
                .await?
        }
        Format::V2 => {
            let stored: Vec<StoredRow> = rows.iter().map(LedgerEntry::to_stored).collect();
            conn.insert_json(&table.insert_sql(), &stored, settings)
                .await?
        }
    }
    Ok(())
}
