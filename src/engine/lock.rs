//! Holding the target lock around a piece of work: lock events in the
//! ledger, a lease renewed while the work runs, takeover of a lock whose
//! holder is gone (its lease expired, its process on this machine no longer
//! exists, or it was a previous instance of this operator), waiting for a
//! live holder (`--lock-wait`), and release whatever happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Settings;
use crate::ledger::{Format, LedgerEntry, Record};
use crate::runtime::Session;
use crate::runtime::lock::{self, Lock, LockError, LockInfo};
use crate::runtime::store::{self, Writer};

use super::context::{RunContext, host_identity, local_holder_gone, run_id};
use super::error::{EngineError, LockHeld};

/// The fields every event of a run shares.
pub(crate) fn template(settings: &Settings, ctx: &RunContext, run: &str) -> LedgerEntry {
    LedgerEntry {
        run_id: run.to_string(),
        environment: settings.environment.clone(),
        actor: ctx.actor.clone(),
        db_user: settings.user.clone(),
        statement: -1,
        ..Default::default()
    }
}

/// Records in the ledger that a lock was broken, and why.
pub(crate) async fn record_lock_forced(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    run: &str,
    details: serde_json::Value,
) -> Result<(), EngineError> {
    let mut writer = Writer::open(
        session.conn.clone(),
        session.cfg.ledger.clone(),
        template(settings, ctx, run),
    )
    .await?;
    writer.write(Record::LockForced { details }).await?;
    Ok(())
}

/// Runs `f` holding the target's lock, with `lock_taken`/`lock_released`
/// events around it; the lock is released whatever `f` returns. A lock held
/// by another runner is [`EngineError::Locked`] (the run's context may take
/// over a stale operator lock, on the record).
pub async fn with_lock<T, E: From<EngineError>>(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    f: impl AsyncFnOnce(&mut Writer, Vec<LedgerEntry>) -> Result<T, E>,
) -> Result<T, E> {
    let ledger = &session.cfg.ledger;
    let format = store::ensure(&session.conn, ledger, session.cfg.ddl_timeout.as_secs())
        .await
        .map_err(EngineError::from)?;
    let before = store::read_format(&session.conn, ledger, format)
        .await
        .map_err(EngineError::from)?;
    let run = run_id();
    let acquire = || {
        lock::acquire(
            &session.conn,
            ledger,
            &ctx.actor,
            &run,
            session.server.major,
            &before,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(settings.lock_wait_s);
    let mut takeovers = 0;
    // The ledger as re-read when a holder newer than `before` appears.
    let mut fresh: Vec<LedgerEntry> = Vec::new();
    let lock = loop {
        match acquire().await {
            Ok(l) => break l,
            Err(LockError::Held { info, now_us }) => {
                if takeovers < 3
                    && let Some(reason) =
                        takeover_reason(session, settings, ctx, &info, &before, &mut fresh).await?
                {
                    // The holder is gone: take its lock over, on the record.
                    // The run resumes under the in-flight rule, so a
                    // statement the holder left running is repeated only
                    // when that is safe. Another runner may have taken it
                    // over first: only the lock that was judged is dropped.
                    takeovers += 1;
                    let now = lock::inspect(&session.conn, ledger, &before)
                        .await
                        .map_err(EngineError::from)?;
                    if now.as_ref().is_some_and(|n| n.token != info.token) {
                        continue;
                    }
                    tracing::warn!(holder = %info.holder, %reason, "taking over a lock whose holder is gone");
                    lock::force(
                        &session.conn,
                        ledger,
                        session.server.major,
                        session.cfg.ddl_timeout.as_secs(),
                    )
                    .await
                    .map_err(EngineError::from)?;
                    // A holder that stopped acting may still have a statement
                    // running (a frozen process, a partitioned leader):
                    // stop it before anything of this run starts.
                    lock::kill_run_queries(&session.conn, &info.token).await;
                    record_lock_forced(
                        session,
                        settings,
                        ctx,
                        &run,
                        json!({ "previous": info, "reason": reason }),
                    )
                    .await?;
                    continue;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    tracing::info!(holder = %info.holder, waiting_s = left.as_secs(), "the lock is held; waiting (--lock-wait)");
                    tokio::time::sleep(left.min(Duration::from_secs(1))).await;
                    continue;
                }
                let renewed = lock::renewed_ago(&session.conn, ledger)
                    .await
                    .ok()
                    .flatten();
                return Err(EngineError::Locked(held_by(info, now_us, renewed, settings)).into());
            }
            Err(e) => return Err(EngineError::from(e).into()),
        }
    };
    // Whether the lock is still this run's when the work is done.
    let mut ours = true;
    let result = async {
        // A ledger an earlier release wrote is upgraded first, under the
        // lock (the record follows in this run's first insert).
        let upgraded = match format {
            Format::V1 => Some(
                store::upgrade(&session.conn, ledger, session.cfg.ddl_timeout.as_secs())
                    .await
                    .map_err(EngineError::from)?,
            ),
            Format::V2 => None,
        };
        // The format is known: format 2 from here on.
        let history = store::read_format(&session.conn, ledger, Format::V2)
            .await
            .map_err(EngineError::from)?;
        let mut writer = Writer::open(
            session.conn.clone(),
            ledger.clone(),
            template(settings, ctx, &run),
        )
        .await
        .map_err(EngineError::from)?;
        writer.mask_with(settings.masker());
        if ctx.fence {
            writer.fence_with(run.clone());
        }
        if let Some(u) = upgraded {
            writer.stage(Record::LedgerUpgraded {
                from: Format::V1.number(),
                to: Format::V2.number(),
                rows: u.rows,
                kept_as: u.kept_as,
            });
        }
        writer
            .write(Record::LockTaken {
                token: run.clone(),
                lease_s: settings.lock_lease_s,
                host: host_identity(),
            })
            .await
            .map_err(EngineError::from)?;
        let keeper = keep_lease(&lock, writer.fence(), settings.lock_lease_s);
        let r = f(&mut writer, history).await;
        keeper.abort();
        // A lock taken over meanwhile (this run's lease lapsed) is not
        // released by this run: it is someone else's now.
        ours = lock::still_ours(&lock).await.unwrap_or(false);
        if !ours {
            tracing::warn!(
                "the lock was taken over while this run held it; leaving it to its new holder"
            );
            return r;
        }
        let released = writer
            .write(Record::LockReleased { token: run.clone() })
            .await;
        match (r, released) {
            (Ok(v), Ok(_)) => Ok(v),
            (Ok(_), Err(e)) => Err(EngineError::from(e).into()),
            (Err(e), _) => Err(e),
        }
    }
    .await;
    if !ours {
        return result;
    }
    if let Err(e) = lock::release(lock).await {
        tracing::warn!(error = %e, "could not release the lock");
        if result.is_ok() {
            return Err(EngineError::from(e).into());
        }
    }
    result
}

/// Renews the lock every fifth of its lease while the work runs. When it
/// cannot renew for six tenths of the lease, it sets the run's fence: the
/// run stops before its next statement, before anyone may take the lock
/// over.
fn keep_lease(lock: &Lock, fence: Arc<AtomicBool>, lease_s: u64) -> tokio::task::JoinHandle<()> {
    let renewal = lock.renewal();
    let every = Duration::from_millis((lease_s * 1000 / 5).max(500));
    let limit = Duration::from_millis(lease_s * 600);
    tokio::spawn(async move {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match tokio::time::timeout(every, renewal.renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("the lock was taken over: stopping before the next statement");
                    fence.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the lock's lease"),
                Err(_) => tracing::warn!("renewing the lock's lease timed out"),
            }
            if renewed.elapsed() > limit && !fence.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    unrenewed_s = renewed.elapsed().as_secs(),
                    "the lock's lease could not be renewed: stopping before the next statement"
                );
            }
        }
    })
}

/// Why a held lock may be taken over, if it may: its holder is a previous
/// instance of this operator that is gone, a chmigrate process on this
/// machine that no longer exists, or any runner whose lease expired.
async fn takeover_reason(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    info: &LockInfo,
    before: &[LedgerEntry],
    fresh: &mut Vec<LedgerEntry>,
) -> Result<Option<String>, EngineError> {
    if let Some(rule) = &ctx.stale_locks
        && rule.is_stale(&info.holder, info.acquired_us)
    {
        return Ok(Some(
            "held by a previous instance of this operator, which is gone".into(),
        ));
    }
    // Only a holder that announced its lease (and where it runs) renews
    // one: a lock of a release before leases, or one made by hand, is left
    // to `unlock`.
    // The ledger read before is re-read only for a holder newer than it.
    let of_holder = |h: &[LedgerEntry]| lock::announcement(h).filter(|a| a.token == info.token);
    let announced = match of_holder(before).or_else(|| of_holder(fresh)) {
        Some(a) => Some(a),
        None => {
            *fresh = store::read(&session.conn, &session.cfg.ledger).await?;
            of_holder(fresh)
        }
    };
    let Some(announced) = announced else {
        return Ok(None);
    };
    if let Some(pid) = local_holder_gone(&info.holder, &announced.host) {
        return Ok(Some(format!(
            "its process (pid {pid} on this machine) no longer exists"
        )));
    }
    // The holder's lease is the one it announced (it renews at that pace),
    // never shorter than ours.
    let lease = announced.lease_s.max(settings.lock_lease_s);
    match lock::renewed_ago(&session.conn, &session.cfg.ledger).await? {
        Some(age) if age > lease => Ok(Some(format!(
            "its lease expired: last renewed {age}s ago (lease {lease}s)"
        ))),
        _ => Ok(None),
    }
}

/// The lock as a refusal to run.
pub(crate) fn held_by(
    info: LockInfo,
    now_us: u64,
    renewed_s: Option<u64>,
    settings: &Settings,
) -> LockHeld {
    let lease = match renewed_s {
        Some(s) => format!(
            "; its lease was renewed {s}s ago and is taken over once it is {}s old",
            settings.lock_lease_s
        ),
        None => String::new(),
    };
    LockHeld {
        message: format!(
            "target is locked: {}{lease} — wait for it with --lock-wait SECONDS; if that runner is gone, run `chmigrate unlock`",
            info.describe(now_us)
        ),
        age_secs: info.age_secs(now_us),
        info,
    }
}

/// `unlock`: drops a lock left by a runner that died, and records it.
/// Returns the lock that was released (`None`: none was held).
pub async fn unlock(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
) -> Result<Option<LockInfo>, EngineError> {
    let ledger = session.cfg.ledger.clone();
    let history = store::read_if_exists(&session.conn, &ledger).await?;
    let Some(info) = lock::inspect(&session.conn, &ledger, &history).await? else {
        return Ok(None);
    };
    lock::force(
        &session.conn,
        &ledger,
        session.server.major,
        session.cfg.ddl_timeout.as_secs(),
    )
    .await?;
    if store::exists(&session.conn, &ledger).await? {
        record_lock_forced(
            session,
            settings,
            ctx,
            &run_id(),
            json!({ "previous": info }),
        )
        .await?;
    }
    Ok(Some(info))
}
