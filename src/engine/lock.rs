//! Holding the target lock around a piece of work: lock events in the
//! ledger, takeover of a stale operator lock, release whatever happens.

use serde_json::json;

use crate::config::Settings;
use crate::ledger::{LedgerEntry, Record};
use crate::runtime::Session;
use crate::runtime::lock::{self, LockError, LockInfo};
use crate::runtime::store::{self, Writer};

use super::context::{RunContext, run_id};
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
    store::ensure(&session.conn, ledger, session.cfg.ddl_timeout.as_secs())
        .await
        .map_err(EngineError::from)?;
    let before = store::read(&session.conn, ledger)
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
    let mut held = acquire().await;
    if let Err(LockError::Held { info, .. }) = &held
        && let Some(rule) = &ctx.stale_locks
        && rule.is_stale(&info.holder, info.acquired_us)
    {
        // A previous instance of this operator died holding the lock; only
        // one instance runs at a time (leader Lease), so it is not coming
        // back. Take it over, on the record.
        tracing::warn!(holder = %info.holder, "taking over a lock left by a previous operator instance");
        lock::force(
            &session.conn,
            ledger,
            session.server.major,
            session.cfg.ddl_timeout.as_secs(),
        )
        .await
        .map_err(EngineError::from)?;
        record_lock_forced(
            session,
            settings,
            ctx,
            &run,
            json!({
                "previous": info,
                "reason": "held by a previous instance of this operator, which is gone",
            }),
        )
        .await?;
        held = acquire().await;
    }
    let lock = match held {
        Ok(l) => l,
        Err(LockError::Held { info, now_us }) => {
            return Err(EngineError::Locked(held_by(info, now_us)).into());
        }
        Err(e) => return Err(EngineError::from(e).into()),
    };
    let result = async {
        let history = store::read(&session.conn, ledger)
            .await
            .map_err(EngineError::from)?;
        let mut writer = Writer::open(
            session.conn.clone(),
            ledger.clone(),
            template(settings, ctx, &run),
        )
        .await
        .map_err(EngineError::from)?;
        writer
            .write(Record::LockTaken { token: run.clone() })
            .await
            .map_err(EngineError::from)?;
        let r = f(&mut writer, history).await;
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
    if let Err(e) = lock::release(lock).await {
        tracing::warn!(error = %e, "could not release the lock");
        if result.is_ok() {
            return Err(EngineError::from(e).into());
        }
    }
    result
}

/// The lock as a refusal to run.
pub(crate) fn held_by(info: LockInfo, now_us: u64) -> LockHeld {
    LockHeld {
        message: format!(
            "target is locked: {} — if that runner is gone, run `chmigrate unlock`",
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
