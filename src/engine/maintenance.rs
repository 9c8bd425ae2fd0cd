//! The ledger's other writers, each under the lock and each recorded:
//! `baseline`, `repair`, `rollback --manual`, `clean`, `import` and
//! `backups prune`. They return what they did; the caller prints it.

use crate::config::Settings;
use crate::ledger::backups::{self, Backup};
use crate::ledger::fold::{TargetState, VersionState};
use crate::ledger::{LedgerEntry, Record};
use crate::model::migration::Migration;
use crate::model::version::Version;
use crate::runtime::Session;
use crate::runtime::backup::{hosts, unfreeze};
use crate::runtime::store::{self, Writer, now_us};

use super::context::RunContext;
use super::error::EngineError;
use super::lock::with_lock;
use super::session::events;

/// `baseline --version V`: records V as the baseline of an existing schema
/// (an empty ledger only).
pub async fn baseline(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    version: &Version,
) -> Result<(), EngineError> {
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let state = TargetState::fold(&events(&history)?);
            if let Some(v) = state.applied_version() {
                return Err(EngineError::Invalid(format!(
                    "cannot baseline: V{v} is already applied on this target (baseline only an empty ledger)"
                )));
            }
            writer
                .write(Record::Baselined {
                    version: version.clone(),
                })
                .await?;
            Ok(())
        },
    )
    .await
}

/// `baseline --from-pillar`: records every migration that Pillar's table
/// (`table`, in the target database) lists as applied and the ledger does
/// not record yet, one `baselined` event each naming the table and carrying
/// the file's checksum. Every listed version must have its migration file;
/// otherwise nothing is written. Returns the adopted versions.
pub async fn adopt_pillar(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    migrations: &[Migration],
    table: &crate::sql::ident::Ident,
) -> Result<Vec<Version>, EngineError> {
    let database = settings.database.as_str();
    let source = format!("{database}.{}", table.as_str());
    let exists: Vec<serde_json::Value> = session
        .conn
        .rows(&crate::runtime::queries::table_exists_sql(
            database,
            table.as_str(),
        ))
        .await?;
    let found = exists
        .first()
        .and_then(|r| r.as_object()?.values().next().cloned())
        .is_some_and(|n| n != 0 && n != "0");
    if !found {
        return Err(EngineError::Invalid(format!(
            "there is no table {source} to adopt (Pillar's table is pillar_migrations in the target database; name another with --pillar-table)"
        )));
    }
    let rows: Vec<serde_json::Value> = session
        .conn
        .rows(&crate::runtime::queries::pillar_rows_sql(
            &settings.database,
            table,
        ))
        .await?;
    let listed =
        crate::ledger::adopt::pillar_listed(&source, &rows).map_err(EngineError::Invalid)?;
    let check = |history: &[LedgerEntry]| -> Result<Vec<(crate::ledger::adopt::Listed, Migration)>, EngineError> {
        let state = TargetState::fold(&events(history)?);
        crate::ledger::adopt::to_adopt(&source, &listed, migrations, &state)
            .map(|v| v.into_iter().map(|(l, m)| (l.clone(), m.clone())).collect())
            .map_err(EngineError::Invalid)
    };
    // A refused adoption writes nothing, not even lock events.
    if check(&store::read_if_exists(&session.conn, &session.cfg.ledger).await?)?.is_empty() {
        return Ok(Vec::new());
    }
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let mut done = Vec::new();
            for (l, m) in check(&history)? {
                writer
                    .write(Record::Adopted {
                        version: m.version.clone(),
                        checksum: m.checksum.clone(),
                        description: m.description.clone(),
                        source: source.clone(),
                        applied_at: l.applied_at.clone(),
                    })
                    .await?;
                done.push(m.version.clone());
            }
            Ok(done)
        },
    )
    .await
}

/// `repair --version V --statement N --done|--not-done`.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub version: Version,
    /// 1-based.
    pub statement: usize,
    pub took_effect: bool,
}

/// `repair`: records whether the statement a stopped run left in flight
/// took effect, or (without `resolve`) accepts the changed checksums of
/// applied migrations. Returns one line per change.
pub async fn repair(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    migrations: &[Migration],
    resolve: Option<Resolution>,
) -> Result<Vec<String>, EngineError> {
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let state = TargetState::fold(&events(&history)?);
            let mut done = Vec::new();
            if let Some(r) = &resolve {
                let version = &r.version;
                let Some(VersionState::InProgress(p)) = state.get(version) else {
                    return Err(EngineError::Invalid(format!(
                        "V{version} is not half-applied; nothing to resolve"
                    )));
                };
                if p.completed + 1 != r.statement {
                    return Err(EngineError::Invalid(format!(
                        "V{version} stopped at statement {}; --statement {} does not match",
                        p.completed + 1,
                        r.statement
                    )));
                }
                writer
                    .write(Record::StatementResolved {
                        version: version.clone(),
                        direction: p.direction,
                        index: r.statement - 1,
                        done: r.took_effect,
                    })
                    .await?;
                done.push(format!(
                    "V{version} statement {} recorded as {}",
                    r.statement,
                    if r.took_effect { "done" } else { "not done" }
                ));
                return Ok(done);
            }
            for m in migrations {
                let recorded = match state.get(&m.version) {
                    Some(VersionState::Applied {
                        checksum: Some(c),
                        baselined: false,
                    }) => c,
                    Some(VersionState::InProgress(p)) => &p.checksum,
                    _ => continue,
                };
                if *recorded != m.checksum {
                    writer
                        .write(Record::ChecksumRepaired {
                            version: m.version.clone(),
                            checksum: m.checksum.clone(),
                            previous: recorded.clone(),
                        })
                        .await?;
                    done.push(format!(
                        "V{}: checksum {} -> {}",
                        m.version,
                        recorded.short(),
                        m.checksum.short()
                    ));
                }
            }
            Ok(done)
        },
    )
    .await
}

/// `rollback --manual --version V`: records that a person already undid V
/// by hand (nothing runs). Audited like any event: who, when, why. Refused,
/// writing nothing, when V is not applied or when an applied migration that
/// stays applied depends on it.
pub async fn manual_rollback(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    migrations: &[Migration],
    version: &Version,
    reason: Option<String>,
) -> Result<(), EngineError> {
    let check = |history: &[LedgerEntry]| -> Result<(), EngineError> {
        let state = TargetState::fold(&events(history)?);
        let applied = |v: &Version| matches!(state.get(v), Some(VersionState::Applied { .. }));
        if !applied(version) {
            return Err(EngineError::Invalid(format!(
                "V{version} is not applied on this target; there is nothing to record"
            )));
        }
        if let Some(dependent) = migrations
            .iter()
            .find(|m| m.dependencies.contains(version) && applied(&m.version))
        {
            return Err(EngineError::Invalid(format!(
                "V{version} cannot be recorded as rolled back: V{}, which stays applied, depends on it",
                dependent.version
            )));
        }
        Ok(())
    };
    // A refused request writes nothing, not even lock events; the same
    // check runs again under the lock.
    check(&store::read_if_exists(&session.conn, &session.cfg.ledger).await?)?;
    let checksum = migrations
        .iter()
        .find(|m| &m.version == version)
        .map(|m| m.checksum.0.clone())
        .unwrap_or_default();
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            check(&history)?;
            writer
                .write(Record::ManualRollback {
                    version: version.clone(),
                    checksum: checksum.clone(),
                    reason: reason.clone(),
                })
                .await?;
            Ok(())
        },
    )
    .await
}

/// The time `age_s` seconds ago, in the ledger's microseconds.
pub fn cutoff_us(age_s: u64) -> u64 {
    now_us().saturating_sub(age_s.saturating_mul(1_000_000))
}

/// What `clean` removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    pub removed: usize,
    pub events: usize,
}

/// `clean --older-than D [--dry-run]`: deletes ledger events older than
/// `age_s` that no longer define the current state
/// ([`crate::ledger::clean`]), under the lock, and records how many.
pub async fn clean(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    age_s: u64,
    dry_run: bool,
) -> Result<Cleaned, EngineError> {
    let cutoff = cutoff_us(age_s);
    if dry_run {
        let history = store::read_if_exists(&session.conn, &session.cfg.ledger).await?;
        let gone = crate::ledger::clean::removable(&history, cutoff, "")
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        return Ok(Cleaned {
            removed: gone.len(),
            events: history.len(),
        });
    }
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let run = writer.template.run_id.clone();
            let gone = crate::ledger::clean::removable(&history, cutoff, &run)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            if gone.is_empty() {
                return Ok(Cleaned {
                    removed: 0,
                    events: history.len(),
                });
            }
            let ledger = &session.cfg.ledger;
            for chunk in gone.chunks(10_000) {
                session.conn.execute(&ledger.delete_sql(chunk)).await?;
            }
            // Recorded before waiting: on a replicated ledger the newest
            // part written with insert_quorum is not mutated until another
            // quorum insert follows it (seen on 18.16), and this record's
            // block comes after the deletion's, so the deletion skips it.
            writer
                .write(Record::LedgerCleaned {
                    removed: gone.len(),
                    older_than_s: age_s,
                    before_us: cutoff,
                })
                .await?;
            // 18.16 has no mutations_sync: wait until the deletion is done
            // everywhere, so the next reader sees it.
            super::execute::wait_for_table_mutations(
                session,
                ledger.database.as_str(),
                ledger.table.as_str(),
            )
            .await
            .map_err(|e| {
                EngineError::Failed(format!("deleting {} ledger event(s): {e}", gone.len()))
            })?;
            Ok(Cleaned {
                removed: gone.len(),
                events: history.len(),
            })
        },
    )
    .await
}

/// Every exported event can be read by this release.
pub fn check_import(file: &str, entries: &[LedgerEntry]) -> Result<(), EngineError> {
    for (i, e) in entries.iter().enumerate() {
        e.to_event()
            .map_err(|err| EngineError::Invalid(format!("{file}: entry {}: {err}", i + 1)))?;
    }
    Ok(())
}

/// `import`: writes every exported event into an empty ledger, lock
/// events included (the audit trail of who ran what, when), each with its
/// original time, run and actor and a new `seq` after this run's
/// `lock_taken`; then records the import. Returns how many events were
/// written.
pub async fn import(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    file: &str,
    entries: &[LedgerEntry],
) -> Result<usize, EngineError> {
    check_import(file, entries)?;
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            if history.iter().any(|e| !e.version.is_empty()) {
                return Err(EngineError::Invalid(format!(
                    "{} already has migration history; import only into an empty ledger",
                    session.cfg.ledger.qualified()
                )));
            }
            let n = writer.write_all(entries.to_vec()).await?;
            writer
                .write(Record::Imported {
                    file: file.to_string(),
                    events: n,
                })
                .await?;
            Ok(n)
        },
    )
    .await
}

/// What `backups prune` did: the backups removed, and those kept with each
/// host's error.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<Backup>,
    pub kept: Vec<(Backup, Vec<String>)>,
}

/// `backups prune --older-than D [--forget]`: removes backups taken more
/// than `age_s` ago on every host that has them and records each removal.
/// With `forget`, records them as removed without touching the hosts (a
/// person deleted the folders; the only way on servers without
/// `UNFREEZE`, such as 18.16).
pub async fn prune_backups(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    age_s: u64,
    forget: bool,
) -> Result<Pruned, EngineError> {
    let cutoff = cutoff_us(age_s);
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let due: Vec<Backup> = backups::list(&history)
                .into_iter()
                .filter(|b| !b.pruned && b.taken_us <= cutoff)
                .collect();
            let targets = if due.is_empty() || forget {
                Vec::new()
            } else {
                hosts(session)
                    .await
                    .map_err(|e| EngineError::Failed(e.to_string()))?
            };
            let mut out = Pruned::default();
            for b in due {
                let failed = if forget {
                    Vec::new()
                } else {
                    unfreeze(&targets, &b.details).await
                };
                if failed.is_empty() {
                    writer
                        .write(Record::BackupPruned {
                            version: b.version.clone(),
                            name: b.details.name.clone(),
                            database: b.details.database.clone(),
                            table: b.details.table.clone(),
                            how: if forget {
                                "removed by hand (--forget)"
                            } else {
                                "UNFREEZE on every host"
                            },
                        })
                        .await?;
                    out.removed.push(b);
                } else {
                    let why = failed.iter().map(|(h, e)| format!("{h}: {e}")).collect();
                    out.kept.push((b, why));
                }
            }
            Ok(out)
        },
    )
    .await
}
