//! Checks of prepared statements against the target, before anything runs
//! (pure; the engine reads the facts): what the server is known to refuse
//! half-way through a migration is refused before its first statement.
//!
//! ClickHouse before 20.x refuses `ALTER … ON CLUSTER` of a table that is
//! not `Replicated*` (a `Distributed` table, a plain `MergeTree`) when the
//! cluster's shards replicate internally: "Table t isn't replicated, but
//! shard #2 is replicated according to its cluster definition" (code 371),
//! on every host, after earlier statements of the migration already ran.

use std::collections::BTreeMap;

use crate::model::diagnostic::Diagnostic;
use crate::plan::prepare::{OnClusterNote, PreparedStep};
use crate::sql::ident::split_qualified;
use crate::sql::lexer::{TokenKind, tokenize};
use crate::sql::statement::{ObjectKind, StatementKind, Verb, analyze};

/// What the target is, as far as the checks go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFacts {
    /// The server's major version.
    pub server_major: u32,
    /// A shard of the cluster has more than one replica.
    pub replicated_shards: bool,
    /// `(database, table)` → engine of the tables that exist.
    pub engines: BTreeMap<(String, String), String>,
    /// The target database (for unqualified names).
    pub database: String,
}

/// The engine a `CREATE TABLE` statement gives its table: `ENGINE = X`,
/// or for `CREATE TABLE t AS u` without one, `u`'s.
fn created_engine(
    sql: &str,
    known: &BTreeMap<(String, String), String>,
    db: &str,
) -> Option<String> {
    let toks: Vec<_> = tokenize(sql)
        .ok()?
        .into_iter()
        .filter(|t| !t.kind.is_trivia())
        .collect();
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| t.is_word(sql, w));
    // `ENGINE` outside the column list's parentheses (a column may be
    // called `engine`).
    let mut depth = 0i32;
    let mut engine_at = None;
    for (i, t) in toks.iter().enumerate() {
        if t.is_punct(sql, '(') {
            depth += 1;
        } else if t.is_punct(sql, ')') {
            depth -= 1;
        } else if depth == 0 && word(i, "ENGINE") {
            engine_at = Some(i);
            break;
        }
    }
    if let Some(i) = engine_at {
        let at = if toks.get(i + 1).is_some_and(|t| t.is_punct(sql, '=')) {
            i + 2
        } else {
            i + 1
        };
        return toks
            .get(at)
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text(sql).to_string());
    }
    let as_at = (0..toks.len()).find(|&i| word(i, "AS"))?;
    let mut name = toks.get(as_at + 1)?.text(sql).to_string();
    if toks.get(as_at + 2).is_some_and(|t| t.is_punct(sql, '.')) {
        name = format!("{name}.{}", toks.get(as_at + 3)?.text(sql));
    }
    let (d, t) = split_qualified(&name);
    known
        .get(&(d.unwrap_or_else(|| db.to_string()), t))
        .cloned()
}

/// Every statement of `steps` the target is known to refuse, with its
/// file and line and the way around it.
pub fn check(steps: &[PreparedStep], facts: &TargetFacts) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if facts.server_major >= 20 || !facts.replicated_shards {
        return out;
    }
    // Tables created by earlier statements of the plan, with their engines.
    let mut engines = facts.engines.clone();
    for step in steps {
        for ps in &step.statements {
            let Ok(info) = analyze(&ps.sql) else { continue };
            let Some(name) = &info.object_name else {
                continue;
            };
            let (db, table) = split_qualified(name);
            let key = (db.unwrap_or_else(|| facts.database.clone()), table);
            match info.kind {
                StatementKind::Ddl {
                    verb: Verb::Create,
                    object: ObjectKind::Table,
                } => {
                    if let Some(engine) = created_engine(&ps.sql, &engines, &facts.database) {
                        engines.insert(key, engine);
                    }
                }
                StatementKind::Ddl {
                    verb: Verb::Drop, ..
                } => {
                    engines.remove(&key);
                }
                StatementKind::Ddl {
                    verb: Verb::Alter, ..
                }
                | StatementKind::Mutation
                    if matches!(
                        ps.note,
                        OnClusterNote::Added | OnClusterNote::AlreadyPresent
                    ) && ps
                        .sql
                        .trim_start()
                        .get(..5)
                        .is_some_and(|w| w.eq_ignore_ascii_case("ALTER")) =>
                {
                    let Some(engine) = engines.get(&key) else {
                        continue;
                    };
                    if engine.starts_with("Replicated") {
                        continue;
                    }
                    let how = if engine == "Distributed" {
                        format!(
                            "a Distributed table holds no data: instead of ALTER, drop it and create it again from its local table (`DROP TABLE {t}`, then `CREATE TABLE {t} AS <local table> ENGINE = Distributed(…)`) after altering the local table",
                            t = key.1
                        )
                    } else {
                        format!(
                            "make {} a Replicated{engine} table, or run this ALTER without ON CLUSTER on each host (on_cluster: never)",
                            key.1
                        )
                    };
                    out.push(Diagnostic::error(
                        Some(ps.location.clone()),
                        format!(
                            "ClickHouse {} refuses ALTER … ON CLUSTER of {}.{} (engine {engine}, not replicated) because the cluster's shards replicate internally (code 371), after the statements before it ran; {how}",
                            facts.server_major, key.0, key.1
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::migration::Location;
    use crate::model::version::Version;
    use crate::plan::Step;
    use crate::plan::prepare::PreparedStatement;

    fn step(sqls: &[&str]) -> PreparedStep {
        PreparedStep {
            step: Step::Apply {
                version: Version::parse("7").unwrap(),
                from_statement: 0,
            },
            description: "x".into(),
            checksum: None,
            derived: false,
            freeze: false,
            statements: sqls
                .iter()
                .enumerate()
                .map(|(i, s)| PreparedStatement {
                    index: i,
                    sql: s.to_string(),
                    location: Location::new("V7__x.sql", i + 1),
                    kind: analyze(s).unwrap().kind,
                    note: OnClusterNote::Added,
                })
                .collect(),
        }
    }

    fn facts(major: u32, replicated_shards: bool) -> TargetFacts {
        TargetFacts {
            server_major: major,
            replicated_shards,
            engines: [(("db".into(), "local".into()), "ReplicatedMergeTree".into())].into(),
            database: "db".into(),
        }
    }

    #[test]
    fn alter_on_cluster_of_an_unreplicated_table_is_refused_before_anything_runs() {
        let steps = [step(&[
            "CREATE TABLE db.events ON CLUSTER c AS db.local ENGINE = Distributed(c, 'db', local)",
            "ALTER TABLE db.local ON CLUSTER c ADD COLUMN x UInt8",
            "ALTER TABLE db.events ON CLUSTER c ADD COLUMN x UInt8",
            "CREATE TABLE db.copy ON CLUSTER c AS db.local",
            "ALTER TABLE db.copy ON CLUSTER c DELETE WHERE 1",
        ])];
        let d = check(&steps, &facts(18, true));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].location.as_ref().unwrap().line, 3);
        assert!(d[0].message.contains("engine Distributed"), "{}", d[0]);
        assert!(
            d[0].message.contains("drop it and create it again"),
            "{}",
            d[0]
        );
        // A plain MergeTree is refused too; newer servers and clusters
        // without replicas are not checked.
        // A column named `engine` is not the engine.
        let column = [step(&[
            "CREATE TABLE db.r ON CLUSTER c (id UInt64, engine String) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY id",
            "ALTER TABLE db.r ON CLUSTER c ADD COLUMN y UInt8",
        ])];
        assert!(check(&column, &facts(18, true)).is_empty());
        let plain = [step(&[
            "CREATE TABLE db.m ON CLUSTER c (x UInt8) ENGINE = MergeTree ORDER BY x",
            "ALTER TABLE db.m ON CLUSTER c ADD COLUMN y UInt8",
        ])];
        assert_eq!(check(&plain, &facts(18, true)).len(), 1);
        assert!(check(&plain, &facts(24, true)).is_empty());
        assert!(check(&plain, &facts(18, false)).is_empty());
    }
}
