//! Every query the runtime sends besides the ledger's and the lock's own
//! statements (pure builders; names are quoted or passed as literals), and
//! the catalogue of everything chmigrate sends on a single node, which CI
//! runs on current ClickHouse (chdb) as well as on 18.16.

use serde::Serialize;

use super::error::ChError;
use crate::ledger::{LedgerEntry, LedgerTable};
use crate::sql::effect::Check;
use crate::sql::ident::{Ident, string_literal};

pub fn version_sql() -> &'static str {
    "SELECT version() AS version"
}

pub fn readonly_sql() -> &'static str {
    "SELECT value FROM system.settings WHERE name = 'readonly'"
}

pub fn cluster_hosts_sql(cluster: &str) -> String {
    format!(
        "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = {} ORDER BY shard_num, replica_num",
        string_literal(cluster)
    )
}

/// The host of `cluster` this server is (the drift check's entry node).
pub fn local_cluster_host_sql(cluster: &str) -> String {
    format!(
        "SELECT host_name, port FROM system.clusters WHERE cluster = {} AND is_local = 1",
        string_literal(cluster)
    )
}

pub fn zookeeper_children_sql(path: &str) -> String {
    format!(
        "SELECT name, value FROM system.zookeeper WHERE path = {}",
        string_literal(path)
    )
}

pub fn table_exists_sql(database: &str, table: &str) -> String {
    format!(
        "SELECT count() AS n FROM system.tables WHERE database = {} AND name = {}",
        string_literal(database),
        string_literal(table)
    )
}

/// Every row of Pillar's table (`baseline --from-pillar`), whatever its
/// columns.
pub fn pillar_rows_sql(database: &Ident, table: &Ident) -> String {
    format!("SELECT * FROM {}.{}", database.minimal(), table.minimal())
}

/// Seconds since the lock table last got a part (its holder's latest
/// renewal), by this server's clock, and how many parts it has (none: no
/// lock table here).
pub fn lock_renewed_parts_sql(database: &str, table: &str) -> String {
    format!(
        "SELECT toInt32(toInt64(now()) - toInt64(max(modification_time))) AS age, toUInt32(count()) AS n \
         FROM system.parts WHERE database = {} AND table = {} AND active",
        string_literal(database),
        string_literal(table)
    )
}

/// On a cluster: seconds since the replicated lock table's newest
/// replication log entry (its holder's latest renewal, by ZooKeeper's
/// clock against this server's), read from any node.
pub fn lock_renewed_zk_sql(log_path: &str) -> String {
    format!(
        "SELECT toInt32(toInt64(now()) - toInt64(max(ctime))) AS age, toUInt32(count()) AS n \
         FROM system.zookeeper WHERE path = {}",
        string_literal(log_path)
    )
}

/// Whether a database (`database`) or a table (`table`) exists on one
/// replica of any shard of `cluster`.
pub fn exists_on_cluster_sql(
    cluster: &str,
    database: Option<&str>,
    table: Option<(&str, &str)>,
) -> String {
    match (database, table) {
        (Some(d), _) => format!(
            "SELECT count() AS n FROM cluster({}, system.databases) WHERE name = {}",
            string_literal(cluster),
            string_literal(d)
        ),
        (None, Some((d, t))) => format!(
            "SELECT count() AS n FROM cluster({}, system.tables) WHERE database = {} AND name = {}",
            string_literal(cluster),
            string_literal(d),
            string_literal(t)
        ),
        (None, None) => "SELECT 0 AS n".to_string(),
    }
}

/// How many hosts see `check`'s object: this node alone, or one replica
/// of every shard of `cluster` (see [`cluster_shards_sql`]). Whether the
/// check holds is the caller's: a count of 0 means gone everywhere.
pub fn observe_sql(check: &Check, cluster: Option<&str>) -> String {
    let from = |t: &str| match cluster {
        Some(c) => format!("cluster({}, system.{t})", string_literal(c)),
        None => format!("system.{t}"),
    };
    match check {
        Check::Table { database, name, .. } => format!(
            "SELECT toUInt32(count()) AS n FROM {} WHERE database = {} AND name = {}",
            from("tables"),
            string_literal(database),
            string_literal(name)
        ),
        Check::Database { name, .. } => format!(
            "SELECT toUInt32(count()) AS n FROM {} WHERE name = {}",
            from("databases"),
            string_literal(name)
        ),
        Check::Column {
            database,
            table,
            column,
            ..
        } => format!(
            "SELECT toUInt32(count()) AS n FROM {} WHERE database = {} AND table = {} AND name = {}",
            from("columns"),
            string_literal(database),
            string_literal(table),
            string_literal(column)
        ),
    }
}

/// How many hosts a `cluster()` query asks: one replica of every shard.
pub fn cluster_shards_sql(cluster: &str) -> String {
    format!(
        "SELECT count() AS n FROM cluster({}, system.one)",
        string_literal(cluster)
    )
}

pub fn database_exists_sql(database: &str) -> String {
    format!(
        "SELECT count() AS n FROM system.databases WHERE name = {}",
        string_literal(database)
    )
}

/// Whether a replicated table on this node lost its ZooKeeper session (one
/// row per replicated table; none for other engines).
pub fn replica_readonly_sql(database: &str, table: &str) -> String {
    format!(
        "SELECT toUInt8(is_readonly) AS readonly FROM system.replicas WHERE database = {} AND table = {}",
        string_literal(database),
        string_literal(table)
    )
}

/// The engine of every table of a database (what `ALTER … ON CLUSTER` may
/// be refused for).
pub fn table_engines_sql(database: &str) -> String {
    format!(
        "SELECT database, name, engine FROM system.tables WHERE database = {}",
        string_literal(database)
    )
}

pub fn database_engine_sql(database: &str) -> String {
    format!(
        "SELECT engine FROM system.databases WHERE name = {}",
        string_literal(database)
    )
}

/// The objects of a database (`chmigrate test`'s snapshot), chmigrate's
/// own ledger and lock tables left out.
pub fn schema_objects_sql(database: &str, ledger_table: &str) -> String {
    format!(
        "SELECT name FROM system.tables WHERE database = {} AND name != {} AND name != {} ORDER BY name",
        string_literal(database),
        string_literal(ledger_table),
        string_literal(&format!("{ledger_table}_lock"))
    )
}

/// Every column of a database, in table order.
pub fn schema_columns_sql(database: &str) -> String {
    format!(
        "SELECT table, name, type FROM system.columns WHERE database = {}",
        string_literal(database)
    )
}

pub fn show_create_sql(database: &Ident, table: &str) -> String {
    format!(
        "SHOW CREATE TABLE {database}.{}",
        crate::sql::ident::quote(table)
    )
}

/// A `system` table of one host of the cluster, read through the entry node
/// with `remote('host:port', system, table)` (the host's native port from
/// `system.clusters`); `None`: the entry node's own table.
pub fn system_table(host: Option<(&str, u16)>, table: &Ident) -> String {
    match host {
        None => format!("system.{table}"),
        Some((name, port)) => {
            let addr = if name.contains(':') {
                format!("[{name}]:{port}")
            } else {
                format!("{name}:{port}")
            };
            format!("remote({}, system, {table})", string_literal(&addr))
        }
    }
}

/// Settings of the drift check's `remote()` reads: a host that is down or
/// frozen answers "unreachable" within seconds instead of holding the check
/// for the server's default five-minute receive timeout.
pub fn remote_read_settings() -> Vec<(&'static str, String)> {
    vec![
        ("connect_timeout_with_failover_ms", "1000".into()),
        ("connections_with_failover_max_tries", "1".into()),
        ("receive_timeout", "3".into()),
        ("send_timeout", "3".into()),
    ]
}

fn in_list(values: &[String]) -> String {
    if values.is_empty() {
        return "('')".into();
    }
    let list: Vec<String> = values.iter().map(|v| string_literal(v)).collect();
    format!("({})", list.join(", "))
}

/// The drift check: which of `databases` a host has (`from`: a
/// [`system_table`] of `databases`).
pub fn drift_databases_sql(from: &str, databases: &[String]) -> String {
    format!(
        "SELECT name FROM {from} WHERE name IN {}",
        in_list(databases)
    )
}

/// The drift check: a host's objects in `databases` (`from`: `tables`).
pub fn drift_tables_sql(from: &str, databases: &[String]) -> String {
    format!(
        "SELECT database, name, engine, engine_full, create_table_query AS create_query FROM {from} \
         WHERE database IN {} AND is_temporary = 0",
        in_list(databases)
    )
}

/// The drift check: a host's columns in `databases` (`from`: `columns`),
/// in each table's order.
pub fn drift_columns_sql(from: &str, databases: &[String]) -> String {
    format!(
        "SELECT database, table, name, type FROM {from} WHERE database IN {}",
        in_list(databases)
    )
}

/// `sync-hosts`: a host's macros (`from`: `macros`), to find the ZooKeeper
/// path of its replica of a replicated table.
pub fn macros_sql(from: &str) -> String {
    format!("SELECT macro, substitution FROM {from}")
}

/// `DROP DATABASE IF EXISTS`, on every host of `cluster` when there is one.
pub fn drop_database_sql(database: &Ident, cluster: Option<&Ident>) -> String {
    match cluster {
        Some(c) => format!("DROP DATABASE IF EXISTS {database} ON CLUSTER {c}"),
        None => format!("DROP DATABASE IF EXISTS {database}"),
    }
}

/// The tables of `database` (only `table`, when given) a freeze can back
/// up: `*MergeTree` tables, and materialized views that keep their rows in
/// an inner `*MergeTree` table (no `TO`), whose `FREEZE` goes to that inner
/// table. Listing a whole database leaves the inner tables themselves out:
/// their views stand for them.
pub fn freezable_tables_sql(database: &str, table: Option<&str>) -> String {
    let only = match table {
        Some(t) => format!(" AND name = {}", string_literal(t)),
        None => " AND NOT startsWith(name, '.inner')".to_string(),
    };
    format!(
        "SELECT name FROM system.tables WHERE database = {}{only} AND (endsWith(engine, 'MergeTree') \
         OR (engine = 'MaterializedView' \
         AND NOT match(create_table_query, '^CREATE MATERIALIZED VIEW \\\\S+ TO ') \
         AND match(create_table_query, '\\\\sENGINE = \\\\w*MergeTree'))) ORDER BY name",
        string_literal(database)
    )
}

/// Hard-links the table's parts into `shadow/<name>/` on this host.
pub fn freeze_sql(database: &str, table: &str, name: &str) -> String {
    format!(
        "ALTER TABLE {}.{} FREEZE WITH NAME {}",
        crate::sql::ident::quote(database),
        crate::sql::ident::quote(table),
        string_literal(name)
    )
}

/// Removes `shadow/<name>/` of the table on this host (ClickHouse 22+).
pub fn unfreeze_sql(database: &str, table: &str, name: &str) -> String {
    format!(
        "ALTER TABLE {}.{} UNFREEZE WITH NAME {}",
        crate::sql::ident::quote(database),
        crate::sql::ident::quote(table),
        string_literal(name)
    )
}

/// Removes `shadow/<name>/` of every table on this host, also of tables
/// dropped since (ClickHouse 22+, with the server setting
/// `enable_system_unfreeze`).
pub fn system_unfreeze_sql(name: &str) -> String {
    format!("SYSTEM UNFREEZE WITH NAME {}", string_literal(name))
}

/// What the server's query log recorded for statements sent with these
/// query ids (`profile`): finished queries (type 2, `QueryFinish`; a number
/// on 18.16, an enum since). Fails when the server never logged a query.
pub fn query_log_sql(query_ids: &[String]) -> String {
    let ids: Vec<String> = query_ids.iter().map(|q| string_literal(q)).collect();
    format!(
        "SELECT query_id, query_duration_ms, read_rows, read_bytes, written_rows, memory_usage \
         FROM system.query_log WHERE toUInt8(type) = 2 AND query_id IN ({})",
        if ids.is_empty() {
            "''".to_string()
        } else {
            ids.join(", ")
        }
    )
}

pub fn log_queries_sql() -> &'static str {
    "SELECT value FROM system.settings WHERE name = 'log_queries'"
}

/// Unfinished mutations of a table: on one replica of every shard of
/// `cluster`, or on this server.
pub fn mutations_pending_sql(cluster: Option<&str>, database: &str, table: &str) -> String {
    let source = match cluster {
        Some(c) => format!("cluster({}, system, mutations)", string_literal(c)),
        None => "system.mutations".to_string(),
    };
    format!(
        "SELECT count() AS n FROM {source} WHERE database = {} AND table = {} AND NOT is_done",
        string_literal(database),
        string_literal(table)
    )
}

pub fn lock_holder_sql(ledger: &LedgerTable, lock: &Ident) -> String {
    format!(
        "SELECT token, holder, acquired_us FROM {}.{} ORDER BY acquired_us LIMIT 1",
        ledger.database, lock
    )
}

/// Stops, on the server it is sent to, every statement a run sent (the
/// statements of run `token` carry query ids `chmigrate-<token>-…`): a lock
/// taken over from a holder that may still be running one.
pub fn kill_run_queries_sql(token: &str) -> String {
    let pattern: String = token
        .chars()
        .map(|c| match c {
            '%' | '_' | '\\' => format!("\\{c}"),
            c => c.to_string(),
        })
        .collect();
    format!(
        "KILL QUERY WHERE query_id LIKE {} ASYNC",
        crate::sql::ident::string_literal(&format!("chmigrate-{pattern}-%"))
    )
}

pub fn lock_insert_sql(ledger: &LedgerTable, lock: &Ident) -> String {
    format!(
        "INSERT INTO {}.{} FORMAT JSONEachRow",
        ledger.database, lock
    )
}

/// One statement of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub name: String,
    pub sql: String,
    /// `ok` or `error` (the lock's second create must fail).
    pub expect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

fn entry(name: &str, sql: String) -> CatalogEntry {
    CatalogEntry {
        name: name.into(),
        sql,
        expect: "ok",
        contains: None,
    }
}

/// Everything chmigrate sends to a single node, in the order a run sends it,
/// for a server of major version `server_major`.
pub fn single_node_catalog(database: &str, server_major: u32) -> Result<Vec<CatalogEntry>, String> {
    let ledger = LedgerTable {
        database: Ident::new("database name", database).map_err(|e| e.to_string())?,
        table: Ident::new("history table name", "schema_migrations").map_err(|e| e.to_string())?,
        cluster: None,
    };
    let lock = lock_table(&ledger).map_err(|e| e.to_string())?;
    let row = LedgerEntry {
        seq: 1,
        event_time_us: 1_748_433_600_000_000,
        run_id: "catalog".into(),
        version: "1".into(),
        event: "started".into(),
        direction: "up".into(),
        statement: -1,
        checksum: "ab".repeat(32),
        environment: "development".into(),
        actor: "catalog@ci".into(),
        details: "{\"statements\":1}".into(),
        ..Default::default()
    };
    let row2 = LedgerEntry {
        seq: 2,
        event: "completed".into(),
        ..row.clone()
    };
    let json = |r: &LedgerEntry| serde_json::to_string(&r.to_stored()).map_err(|e| e.to_string());
    let json_v1 = |r: &LedgerEntry| serde_json::to_string(r).map_err(|e| e.to_string());
    let mut out = vec![
        entry("server version", version_sql().into()),
        entry("read-only check", readonly_sql().into()),
        entry("ledger exists?", ledger.exists_sql()),
        entry("create database", ledger.create_database_sql()),
        entry("create ledger", ledger.create_sql()),
        entry("ledger columns", ledger.columns_sql()),
        // `baseline --from-pillar` reads Pillar's table whatever its
        // columns; the ledger stands in for it here.
        entry(
            "Pillar table rows (baseline --from-pillar)",
            pillar_rows_sql(&ledger.database, &ledger.table),
        ),
        CatalogEntry {
            contains: Some("engine".into()),
            ..entry(
                "database engine",
                database_engine_sql(ledger.database.as_str()),
            )
        },
        CatalogEntry {
            contains: Some("\"n\":".into()),
            ..entry(
                "database exists? (before CREATE DATABASE IF NOT EXISTS)",
                database_exists_sql(ledger.database.as_str()),
            )
        },
        entry(
            "lock exists?",
            table_exists_sql(ledger.database.as_str(), lock.as_str()),
        ),
        entry(
            "lock replica read-only?",
            replica_readonly_sql(ledger.database.as_str(), lock.as_str()),
        ),
        entry(
            "take lock",
            create_lock_sql(&ledger).map_err(|e| e.to_string())?,
        ),
        CatalogEntry {
            expect: "error",
            ..entry(
                "second runner cannot take the lock",
                create_lock_sql(&ledger).map_err(|e| e.to_string())?,
            )
        },
        entry(
            "lock holder row",
            format!(
                "{}\n{{\"token\":\"t1\",\"holder\":\"catalog@ci\",\"acquired_us\":1}}\n",
                lock_insert_sql(&ledger, &lock)
            ),
        ),
        CatalogEntry {
            contains: Some("catalog@ci".into()),
            ..entry("read lock holder", lock_holder_sql(&ledger, &lock))
        },
        entry(
            "stop a taken-over holder's statements",
            kill_run_queries_sql("20261204T170000-1a2b"),
        ),
        CatalogEntry {
            contains: Some("\"n\":1".into()),
            ..entry(
                "lock last renewed",
                lock_renewed_parts_sql(ledger.database.as_str(), lock.as_str()),
            )
        },
        entry("max seq (empty)", ledger.max_seq_sql()),
        entry(
            "append events",
            format!(
                "{}\n{}\n{}\n",
                ledger.insert_sql(),
                json(&row)?,
                json(&row2)?
            ),
        ),
        CatalogEntry {
            contains: Some("2".into()),
            ..entry("max seq", ledger.max_seq_sql())
        },
        CatalogEntry {
            contains: Some("completed".into()),
            ..entry("read ledger", ledger.select_sql())
        },
        entry("clean: delete superseded events", ledger.delete_sql(&[1])),
        entry("cluster hosts", cluster_hosts_sql("default")),
        CatalogEntry {
            contains: Some("MergeTree".into()),
            ..entry("table engines", table_engines_sql(ledger.database.as_str()))
        },
        entry(
            "unfinished mutations",
            mutations_pending_sql(None, ledger.database.as_str(), ledger.table.as_str()),
        ),
        entry(
            "release lock",
            drop_lock_sql(&ledger, false, false, needs_sync_drop(server_major))
                .map_err(|e| e.to_string())?,
        ),
        entry(
            "force unlock (nothing held)",
            drop_lock_sql(&ledger, true, false, needs_sync_drop(server_major))
                .map_err(|e| e.to_string())?,
        ),
        entry(
            "take lock again",
            create_lock_sql(&ledger).map_err(|e| e.to_string())?,
        ),
        entry(
            "release again",
            drop_lock_sql(&ledger, false, false, needs_sync_drop(server_major))
                .map_err(|e| e.to_string())?,
        ),
    ];
    // A format-1 ledger (an earlier release's) upgraded in place.
    let old = LedgerTable {
        table: Ident::new("history table name", "v1_ledger").map_err(|e| e.to_string())?,
        ..ledger.clone()
    };
    let (new, kept) = old.upgrade_names().map_err(|e| e.to_string())?;
    out.push(entry("upgrade: a format-1 ledger", old.create_v1_sql()));
    out.push(entry(
        "upgrade: format-1 rows",
        format!("{}\n{}\n", old.insert_sql(), json_v1(&row)?),
    ));
    out.push(CatalogEntry {
        contains: Some("started".into()),
        ..entry(
            "upgrade: read format 1",
            old.select_format_sql(crate::ledger::Format::V1),
        )
    });
    out.push(entry(
        "upgrade: drop a half-built table",
        old.drop_beside_sql(&new),
    ));
    out.push(entry("upgrade: new table", old.create_sql_named(&new)));
    out.push(entry(
        "upgrade: rows in format 2",
        format!("{}\n{}\n", old.insert_into_sql(&new), json(&row)?),
    ));
    out.push(entry(
        "upgrade: swap",
        old.rename_sql(&[(&old.table, &kept), (&new, &old.table)]),
    ));
    out.push(CatalogEntry {
        contains: Some("payload".into()),
        ..entry("upgrade: the ledger's new columns", old.columns_sql())
    });
    // Settling a stopped run's grouped statements looks at the schema.
    let d = ledger.database.as_str().to_string();
    for (what, check, n) in [
        (
            "settle: a table exists",
            crate::sql::effect::Check::Table {
                database: d.clone(),
                name: "schema_migrations".into(),
                present: true,
            },
            1,
        ),
        (
            "settle: a column exists",
            crate::sql::effect::Check::Column {
                database: d.clone(),
                table: "schema_migrations".into(),
                column: "payload".into(),
                present: true,
            },
            1,
        ),
        (
            "settle: a database exists",
            crate::sql::effect::Check::Database {
                name: d.clone(),
                present: true,
            },
            1,
        ),
        (
            "settle: a table is gone",
            crate::sql::effect::Check::Table {
                database: d.clone(),
                name: "never_created".into(),
                present: false,
            },
            0,
        ),
    ] {
        out.push(CatalogEntry {
            contains: Some(format!("\"n\":{n}")),
            ..entry(what, observe_sql(&check, None))
        });
    }
    // Rollbacks chmigrate derives (sql::inverse) are statements it builds
    // too: each forward statement, then what it derives to undo it.
    let db = ledger.database.as_str();
    let forward = [
        format!("CREATE TABLE {db}.derived_t (id UInt64) ENGINE = MergeTree ORDER BY id"),
        format!("ALTER TABLE {db}.derived_t ADD COLUMN note String DEFAULT ''"),
        format!("CREATE VIEW {db}.derived_v AS SELECT id FROM {db}.derived_t"),
        format!("RENAME TABLE {db}.derived_t TO {db}.derived_t2"),
    ];
    let up: Vec<crate::model::migration::Statement> = forward
        .iter()
        .map(|sql| crate::model::migration::Statement {
            sql: sql.clone(),
            line: 1,
        })
        .collect();
    let down = crate::sql::inverse::derive_rollback(&up).map_err(|e| e.to_string())?;
    for sql in forward {
        out.push(entry("derived rollback: forward statement", sql));
    }
    for st in down {
        out.push(entry("derived rollback", st.sql));
    }
    // backup: freeze, and backups prune where the server has UNFREEZE.
    out.push(entry(
        "backup: table to freeze",
        format!("CREATE TABLE {db}.backup_t (id UInt64) ENGINE = MergeTree ORDER BY id"),
    ));
    out.push(entry(
        "backup: a row",
        format!("INSERT INTO {db}.backup_t VALUES (1)"),
    ));
    out.push(CatalogEntry {
        contains: Some("backup_t".into()),
        ..entry(
            "backup: tables at risk",
            freezable_tables_sql(db, Some("backup_t")),
        )
    });
    out.push(entry(
        "backup: freeze",
        freeze_sql(db, "backup_t", "V1_20250101000000_s1"),
    ));
    out.push(entry(
        "backup: a materialized view keeping its rows",
        format!(
            "CREATE MATERIALIZED VIEW {db}.backup_mv ENGINE = MergeTree ORDER BY id AS SELECT id FROM {db}.backup_t"
        ),
    ));
    out.push(CatalogEntry {
        contains: Some("backup_mv".into()),
        ..entry(
            "backup: every table at risk in a database",
            freezable_tables_sql(db, None),
        )
    });
    out.push(entry(
        "backup: freeze a materialized view's inner table",
        freeze_sql(db, "backup_mv", "V1_20250101000000_s2"),
    ));
    if server_major >= 22 {
        out.push(entry(
            "backups prune: unfreeze",
            unfreeze_sql(db, "backup_t", "V1_20250101000000_s1"),
        ));
        out.push(entry(
            "backups prune: unfreeze a materialized view",
            unfreeze_sql(db, "backup_mv", "V1_20250101000000_s2"),
        ));
        // Parsed and known; off unless the server enables it.
        out.push(CatalogEntry {
            expect: "error",
            contains: Some("enable_system_unfreeze".into()),
            ..entry(
                "backups prune: SYSTEM UNFREEZE of a dropped table's backup",
                system_unfreeze_sql("V1_20250101000000_s1"),
            )
        });
    }
    out.push(entry("profile: log_queries", log_queries_sql().into()));
    if server_major >= 20 {
        // Servers log queries by default since 20.x; 18.16 creates the
        // table only once it logs one.
        out.push(entry(
            "profile: query log",
            query_log_sql(&["chmigrate-catalog-V1-up-1".into()]),
        ));
    }
    out.push(entry(
        "test: schema objects",
        schema_objects_sql(db, ledger.table.as_str()),
    ));
    out.push(entry("test: schema columns", schema_columns_sql(db)));
    out.push(CatalogEntry {
        contains: Some("backup_t".into()),
        ..entry(
            "test: show create",
            show_create_sql(&ledger.database, "backup_t"),
        )
    });
    let dbs = [db.to_string()];
    let sys = |t: &str| {
        Ident::new("system table", t)
            .map(|t| system_table(None, &t))
            .map_err(|e| e.to_string())
    };
    out.push(entry(
        "drift: databases",
        drift_databases_sql(&sys("databases")?, &dbs),
    ));
    out.push(CatalogEntry {
        contains: Some("backup_t".into()),
        ..entry("drift: tables", drift_tables_sql(&sys("tables")?, &dbs))
    });
    out.push(CatalogEntry {
        contains: Some("backup_t".into()),
        ..entry("drift: columns", drift_columns_sql(&sys("columns")?, &dbs))
    });
    out.push(entry("sync-hosts: macros", macros_sql(&sys("macros")?)));
    out.push(entry(
        "drop test database",
        drop_database_sql(&ledger.database, None),
    ));
    Ok(out)
}

/// The lock table for a ledger.
pub fn lock_table(ledger: &LedgerTable) -> Result<Ident, ChError> {
    Ident::new(
        "lock table name",
        &format!("{}_lock", ledger.table.as_str()),
    )
    .map_err(|e| ChError::Config(e.to_string()))
}

pub fn lock_zk_path(ledger: &LedgerTable) -> String {
    format!("{}_lock", ledger.zookeeper_path())
}

/// `CREATE TABLE` of the lock (no `IF NOT EXISTS`: failing is the point).
pub fn create_lock_sql(ledger: &LedgerTable) -> Result<String, ChError> {
    let engine = match &ledger.cluster {
        Some(_) => format!(
            "ReplicatedMergeTree({}, 'lock')",
            string_literal(&lock_zk_path(ledger))
        ),
        None => "MergeTree()".to_string(),
    };
    Ok(format!(
        "CREATE TABLE {}.{} (`token` String, `holder` String, `acquired_us` UInt64) ENGINE = {engine} ORDER BY token",
        ledger.database,
        lock_table(ledger)?
    ))
}

/// `DROP TABLE` of the lock; `sync` for servers that delay drops (20.x+).
pub fn drop_lock_sql(
    ledger: &LedgerTable,
    if_exists: bool,
    on_cluster: bool,
    sync: bool,
) -> Result<String, ChError> {
    let mut s = format!(
        "DROP TABLE {}{}.{}",
        if if_exists { "IF EXISTS " } else { "" },
        ledger.database,
        lock_table(ledger)?
    );
    if on_cluster && let Some(c) = &ledger.cluster {
        s.push_str(&format!(" ON CLUSTER {c}"));
    }
    if sync {
        s.push_str(" SYNC");
    }
    Ok(s)
}

/// Whether the server delays `DROP TABLE` (Atomic databases, 20.x and later).
pub fn needs_sync_drop(server_major: u32) -> bool {
    server_major >= 20
}

/// `ATTACH TABLE` of the lock with its definition: takes up files left
/// behind by a drop that did not finish.
pub fn attach_lock_sql(ledger: &LedgerTable) -> Result<String, ChError> {
    Ok(create_lock_sql(ledger)?.replacen("CREATE TABLE", "ATTACH TABLE", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_covers_the_run_in_order() {
        let c = single_node_catalog("chm_compat", 26).unwrap();
        let names: Vec<&str> = c.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"server version"));
        assert!(
            names.iter().position(|n| *n == "create ledger")
                < names.iter().position(|n| *n == "append events")
        );
        // The lock's second create, and SYSTEM UNFREEZE (off by default).
        assert_eq!(c.iter().filter(|e| e.expect == "error").count(), 2);
        assert!(
            c.iter().any(|e| e.sql.ends_with(" SYNC")),
            "current servers drop the lock with SYNC"
        );
        let old = single_node_catalog("chm_compat", 18).unwrap();
        assert!(!old.iter().any(|e| e.sql.ends_with(" SYNC")));
        assert!(single_node_catalog("bad`name", 26).is_err());
    }

    #[test]
    fn drift_reads_go_to_each_host_through_remote() {
        let t = Ident::new("system table", "tables").unwrap();
        assert_eq!(system_table(None, &t), "system.`tables`");
        assert_eq!(
            system_table(Some(("127.0.0.12", 9002)), &t),
            "remote('127.0.0.12:9002', system, `tables`)"
        );
        assert_eq!(
            system_table(Some(("::1", 9000)), &t),
            "remote('[::1]:9000', system, `tables`)"
        );
        assert_eq!(
            system_table(Some(("evil', x) --", 9)), &t),
            "remote('evil\\', x) --:9', system, `tables`)"
        );
        assert!(
            drift_columns_sql("system.columns", &["a'b".into()])
                .ends_with("WHERE database IN ('a\\'b')")
        );
    }

    #[test]
    fn mutation_query_per_topology() {
        assert_eq!(
            mutations_pending_sql(Some("c"), "d", "t"),
            "SELECT count() AS n FROM cluster('c', system, mutations) WHERE database = 'd' AND table = 't' AND NOT is_done"
        );
        assert!(mutations_pending_sql(None, "d", "t").contains("FROM system.mutations WHERE"));
    }
}
