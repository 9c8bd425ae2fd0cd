//! The engine as a library, against the real single node: what a program
//! other than the command line gets from `chmigrate::engine` — typed
//! outcomes, and a typed error that carries what ran before a failure.

mod support;

use chmigrate::config::{ConnectionSection, Overrides, Settings};
use chmigrate::engine::{
    self, EngineError, Outcome, RunContext, RunError, Silent, StopFlag, TargetSpec,
};
use chmigrate::source;
use support::{SINGLE, count, folder, require, unique_db};

fn settings(db: &str, dir: &std::path::Path) -> Settings {
    Settings::resolve(
        None,
        &Overrides {
            connection: ConnectionSection {
                url: Some(SINGLE.into()),
                database: Some(db.into()),
                ..Default::default()
            },
            migrations: chmigrate::config::MigrationsSection {
                dir: Some(dir.to_path_buf()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .expect("settings resolve")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_engine_reports_typed_outcomes_and_a_failure_with_what_ran_before_it() {
    require(&[SINGLE]);
    let db = unique_db("engine");
    let dir = folder(&[
        (
            "V1__events.sql",
            "CREATE TABLE events (id UInt64) ENGINE = MergeTree ORDER BY id;",
        ),
        (
            "V2__sessions.sql",
            "CREATE TABLE sessions (id UInt64) ENGINE = MergeTree ORDER BY id;\n\
             CREATE TABLE broken (id UInt64) ENGINE = NoSuchEngine;",
        ),
    ]);
    let s = settings(&db, dir.path());
    let loaded = source::load_dir(dir.path(), s.max_file_size);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let ctx = RunContext::local(StopFlag::default());
    let rt = runtime();
    let session = rt.block_on(engine::connect(&s)).expect("connects");
    // Planning reads only: no ledger is created.
    let planned = rt.block_on(async {
        engine::plan(
            &session,
            &s,
            &loaded.migrations,
            TargetSpec::Version(chmigrate::Version::parse("1").unwrap()),
        )
        .await
        .expect("plans")
    });
    assert!(!planned.nothing_to_do());
    assert_eq!(
        count(
            SINGLE,
            &format!("SELECT count() FROM system.tables WHERE database = '{db}'")
        ),
        0
    );
    rt.block_on(async {
        let outcome = engine::migrate(&session, &s, &planned, &ctx, &Silent)
            .await
            .expect("V1 applies");
        let Outcome::Done(report) = outcome else {
            panic!("expected Done, got {outcome:?}");
        };
        assert_eq!(report.applied.len(), 1);
        assert_eq!(
            report.applied_version.as_ref().map(|v| v.to_string()),
            Some("1".into())
        );

        // The same target again: nothing to do, decided without the lock.
        let again = engine::plan(
            &session,
            &s,
            &loaded.migrations,
            TargetSpec::Version(chmigrate::Version::parse("1").unwrap()),
        )
        .await
        .expect("plans");
        assert!(again.nothing_to_do());
        assert!(matches!(
            engine::migrate(&session, &s, &again, &ctx, &Silent).await,
            Ok(Outcome::NothingToDo(_))
        ));

        // V2's second statement fails: the error names it and carries the
        // report of what ran (V2's first statement), read back from the
        // ledger.
        let latest = engine::plan(&session, &s, &loaded.migrations, TargetSpec::Latest)
            .await
            .expect("plans");
        let err = engine::migrate(&session, &s, &latest, &ctx, &Silent)
            .await
            .expect_err("V2 fails on its second statement");
        let EngineError::Run { failure, report } = &err else {
            panic!("expected a run failure, got {err:?}");
        };
        let RunError::Statement {
            version,
            number,
            location,
            ..
        } = failure.as_ref()
        else {
            panic!("expected a statement failure, got {failure:?}");
        };
        assert_eq!(version.to_string(), "2");
        assert_eq!(*number, 2);
        assert_eq!(location.line, 2);
        assert_eq!(
            report.applied_version.as_ref().map(|v| v.to_string()),
            Some("1".into())
        );
        assert!(report.applied.is_empty());
        assert!(
            report
                .history
                .iter()
                .any(|e| e.event == "failed" && e.version == "2" && e.statement == 1),
            "the report holds the ledger after the failure"
        );
        assert!(!err.is_invalid(), "a server error is not bad input");
    });
    assert_eq!(
        count(
            SINGLE,
            &format!(
                "SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'sessions'"
            )
        ),
        1,
        "the statement before the failure took effect"
    );
    support::drop_db(SINGLE, &db, false);
}
