//! Parallel waves within one target (pure): with `parallel: N`, consecutive
//! migrations of a plan that neither depend on each other nor touch a common
//! table run at once, at most N together. Everything else keeps the serial
//! order: a migration waits for every earlier wave to finish.
//!
//! What a migration touches is read from its prepared statements: the
//! object it creates, alters, drops or inserts into, every `db.name` it
//! mentions, and every name after `FROM`, `JOIN`, `INTO`, `TO` and `TABLE`
//! (unqualified names are the target database's). Reading counts as
//! touching: two migrations that only read one table still run one after
//! the other. Statements whose reach cannot be read (`SYSTEM`, `SET`,
//! database DDL, anything unrecognised) make the migration run alone.
//! Rollbacks and baselines always run alone, in plan order.

use std::collections::BTreeSet;

use crate::model::migration::Migration;
use crate::plan::Step;
use crate::plan::prepare::PreparedStep;
use crate::sql::ident::split_qualified;
use crate::sql::lexer::{TokenKind, tokenize};
use crate::sql::statement::{ObjectKind, StatementKind, analyze};

/// What a step touches, or `None` when it must run alone.
pub fn touched(step: &PreparedStep, default_db: &str) -> Option<BTreeSet<String>> {
    if !matches!(step.step, Step::Apply { .. }) {
        return None;
    }
    let mut out = BTreeSet::new();
    for st in &step.statements {
        let info = analyze(&st.sql).ok()?;
        match info.kind {
            StatementKind::Other | StatementKind::Session => return None,
            StatementKind::Ddl {
                object: ObjectKind::Database | ObjectKind::Function,
                ..
            } => return None,
            _ => {}
        }
        let qualify = |name: &str| -> String {
            match split_qualified(name) {
                (Some(db), t) => format!("{db}.{t}"),
                (None, t) => format!("{default_db}.{t}"),
            }
        };
        if let Some(name) = &info.object_name {
            out.insert(qualify(name));
        }
        let tokens = tokenize(&st.sql).ok()?;
        let words: Vec<(TokenKind, &str)> = tokens
            .iter()
            .filter(|t| !t.kind.is_trivia())
            .map(|t| (t.kind, t.text(&st.sql)))
            .collect();
        let is_name = |k: TokenKind| matches!(k, TokenKind::Word | TokenKind::QuotedIdent);
        let is_list = matches!(
            info.kind,
            StatementKind::Ddl {
                verb: crate::sql::statement::Verb::Rename | crate::sql::statement::Verb::Exchange,
                ..
            }
        );
        let mut i = 0;
        let mut depth = 0usize;
        let mut seen_select = false;
        while i < words.len() {
            let (k, w) = words[i];
            if is_name(k) && i + 2 < words.len() && words[i + 1].1 == "." && is_name(words[i + 2].0)
            {
                out.insert(qualify(&format!("{w}.{}", words[i + 2].1)));
                i += 3;
                continue;
            }
            // dictGet('db.dict', …), joinGet('db.t', …): a name in a string.
            if k == TokenKind::Word
                && (w.len() > 4 && w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("dict"))
                    || w.eq_ignore_ascii_case("joinGet"))
                && words.get(i + 1).is_some_and(|n| n.1 == "(")
                && let Some(&(TokenKind::String, lit)) = words.get(i + 2)
                && lit.len() > 2
            {
                out.insert(qualify(&lit[1..lit.len() - 1]));
            }
            // ENGINE = Distributed(cluster, db, t, …) / Buffer(db, t, …):
            // the table they read and write. Merge(db, regex) and other
            // engines over tables named by pattern cannot be read: alone.
            if k == TokenKind::Word
                && i > 0
                && words[i - 1].1 == "="
                && words.get(i + 1).is_some_and(|n| n.1 == "(")
            {
                let args = engine_args(&words[i + 2..]);
                let arg = |n: usize| args.get(n).map(|a| a.trim_matches(['\'', '"', '`']));
                let named = if w.eq_ignore_ascii_case("Distributed") {
                    arg(1).zip(arg(2))
                } else if w.eq_ignore_ascii_case("Buffer") {
                    arg(0).zip(arg(1))
                } else if ["Merge", "Dictionary", "Join", "Set", "View"]
                    .iter()
                    .any(|e| w.eq_ignore_ascii_case(e))
                    && !args.is_empty()
                {
                    return None;
                } else {
                    None
                };
                if let Some((db, t)) = named {
                    out.insert(qualify(&format!("{db}.{t}")));
                }
            }
            match w {
                "(" => depth += 1,
                ")" => depth = depth.saturating_sub(1),
                _ if w.eq_ignore_ascii_case("SELECT") => seen_select = true,
                _ => {}
            }
            // `CREATE TABLE d AS src`: AS before any SELECT and outside
            // parentheses (not a column alias).
            let copy_of = w.eq_ignore_ascii_case("AS") && depth == 0 && !seen_select;
            let keyword = k == TokenKind::Word
                && (copy_of
                    || ["FROM", "JOIN", "INTO", "TO", "TABLE"]
                        .iter()
                        .any(|kw| w.eq_ignore_ascii_case(kw)));
            let table_function_position =
                ["FROM", "JOIN"].iter().any(|kw| w.eq_ignore_ascii_case(kw));
            if keyword
                && let Some(&(nk, nw)) = words.get(i + 1)
                && is_name(nk)
                // `db.t` is read above; `numbers(3)` after FROM is a table
                // function (after TO or INTO, `(` opens a column list).
                && words.get(i + 2).is_none_or(|n| {
                    n.1 != "." && !(table_function_position && n.1 == "(")
                })
                && !is_keyword(nw)
            {
                out.insert(qualify(nw));
            }
            // RENAME TABLE a TO b, c TO d / EXCHANGE TABLES a AND b: every
            // name in the list.
            if is_list
                && (w == "," || w.eq_ignore_ascii_case("AND"))
                && let Some(&(nk, nw)) = words.get(i + 1)
                && is_name(nk)
                && words.get(i + 2).is_none_or(|n| n.1 != ".")
            {
                out.insert(qualify(nw));
            }
            i += 1;
        }
    }
    Some(out)
}

/// The top-level, comma-separated arguments of an engine after its `(`
/// (up to the matching `)`), each as its words joined.
fn engine_args(words: &[(TokenKind, &str)]) -> Vec<String> {
    let mut args = vec![String::new()];
    let mut depth = 0usize;
    for &(_, w) in words {
        match w {
            "(" => depth += 1,
            ")" if depth == 0 => break,
            ")" => depth -= 1,
            "," if depth == 0 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = args.last_mut() {
            last.push_str(w);
        }
    }
    if args.len() == 1 && args[0].is_empty() {
        args.clear();
    }
    args
}

/// Words that follow FROM/INTO/TABLE/AS without being a table name.
fn is_keyword(w: &str) -> bool {
    [
        "SELECT", "IF", "FUNCTION", "NOT", "EXISTS", "VALUES", "FORMAT", "OUTFILE", "WITH",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

/// The existing tables a step changes: the object of each `ALTER`,
/// `DROP`, `RENAME`, `EXCHANGE`, `TRUNCATE`, mutation or `INSERT` that an
/// earlier statement of the same step did not create.
pub fn changed(step: &PreparedStep, default_db: &str) -> BTreeSet<String> {
    use crate::sql::statement::Verb;
    let mut created = BTreeSet::new();
    let mut out = BTreeSet::new();
    for st in &step.statements {
        let Ok(info) = analyze(&st.sql) else { continue };
        let Some(name) = &info.object_name else {
            continue;
        };
        let name = match split_qualified(name) {
            (Some(db), t) => format!("{db}.{t}"),
            (None, t) => format!("{default_db}.{t}"),
        };
        match info.kind {
            StatementKind::Ddl {
                verb: Verb::Create | Verb::Attach,
                ..
            } => {
                created.insert(name);
            }
            StatementKind::Ddl {
                verb: Verb::Alter | Verb::Drop | Verb::Rename | Verb::Exchange | Verb::Truncate,
                object: ObjectKind::Table,
            }
            | StatementKind::Mutation
            | StatementKind::Insert
                if !created.contains(&name) =>
            {
                out.insert(name);
            }
            _ => {}
        }
    }
    out
}

/// Two pending migrations close enough in the plan to share a wave (fewer
/// than `parallel` apart), neither depending on the other, that change the
/// same existing table: the earlier and later step's index and the tables.
/// They never share a wave (what they touch overlaps), so they run in plan
/// order; `validate --check-conflicts` names them, because two branches
/// changing one table each without knowing of the other is how conflicting
/// migrations are made.
pub fn same_table_changes(
    steps: &[PreparedStep],
    migrations: &[Migration],
    parallel: usize,
    default_db: &str,
) -> Vec<(usize, usize, Vec<String>)> {
    let mut out = Vec::new();
    if parallel <= 1 {
        return out;
    }
    let deps = |v: &crate::model::version::Version| -> &[crate::model::version::Version] {
        migrations
            .iter()
            .find(|m| &m.version == v)
            .map_or(&[], |m| m.dependencies.as_slice())
    };
    let changes: Vec<BTreeSet<String>> = steps
        .iter()
        .map(|s| match s.step {
            Step::Apply { .. } => changed(s, default_db),
            _ => BTreeSet::new(),
        })
        .collect();
    for i in 0..steps.len() {
        for j in i + 1..steps.len().min(i + parallel) {
            let (a, b) = (steps[i].step.version(), steps[j].step.version());
            if deps(b).contains(a) || deps(a).contains(b) {
                continue;
            }
            let common: Vec<String> = changes[i].intersection(&changes[j]).cloned().collect();
            if !common.is_empty() {
                out.push((i, j, common));
            }
        }
    }
    out
}

/// The wave of each step (0-based, in plan order). With `parallel` ≤ 1
/// every step is its own wave.
pub fn assign(
    steps: &[PreparedStep],
    migrations: &[Migration],
    parallel: usize,
    default_db: &str,
) -> Vec<usize> {
    let mut waves = Vec::with_capacity(steps.len());
    let mut wave = 0usize;
    let mut members: Vec<(&crate::model::version::Version, BTreeSet<String>)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let t = if parallel > 1 {
            touched(step, default_db)
        } else {
            None
        };
        let deps: &[crate::model::version::Version] = migrations
            .iter()
            .find(|m| &m.version == step.step.version())
            .map_or(&[], |m| m.dependencies.as_slice());
        let joins = match &t {
            Some(t) => {
                !members.is_empty()
                    && members.len() < parallel
                    && members
                        .iter()
                        .all(|(v, other)| other.is_disjoint(t) && !deps.contains(v))
            }
            None => false,
        };
        if i > 0 && !joins {
            wave += 1;
            members.clear();
        }
        if let Some(t) = t {
            members.push((step.step.version(), t));
        }
        waves.push(wave);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::TargetState;
    use crate::plan::prepare::{PrepareSettings, prepare};
    use crate::plan::{Policy, Target, plan};
    use crate::source::memory::load_named;
    use crate::sql::statement::OnClusterMode;
    use crate::sql::vars::Variables;
    use std::collections::BTreeMap;

    fn waves_of(files: &[(&str, &str)], parallel: usize) -> Vec<(String, usize)> {
        let (steps, migrations) = prepared(files);
        let w = assign(&steps, &migrations, parallel, "db");
        steps
            .iter()
            .zip(w)
            .map(|(s, w)| (s.step.version().to_string(), w))
            .collect()
    }

    const FILES: [(&str, &str); 7] = [
        (
            "V1__a.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        ("V2__b.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;"),
        (
            "V3__c.sql",
            "CREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;",
        ),
        // Reads a: waits for V1's wave.
        (
            "V4__fill_a.sql",
            "INSERT INTO ${database}.c SELECT x FROM a;",
        ),
        // Table functions are not tables: no conflict through numbers().
        (
            "V5__d.sql",
            "-- Dependencies: 3\nCREATE TABLE ${database}.d (x UInt8) ENGINE = Memory;\nINSERT INTO ${database}.d SELECT number FROM numbers(3);",
        ),
        (
            "V6__e.sql",
            "CREATE TABLE ${database}.e (x UInt8) ENGINE = Memory;\nINSERT INTO ${database}.e SELECT number FROM numbers(3);",
        ),
        ("V7__sys.sql", "SYSTEM FLUSH LOGS;"),
    ];

    #[test]
    fn independent_migrations_share_a_wave_up_to_the_limit() {
        let w = waves_of(&FILES, 8);
        assert_eq!(
            w,
            [
                ("1".into(), 0),
                ("2".into(), 0),
                ("3".into(), 0),
                ("4".into(), 1),
                ("5".into(), 1),
                ("6".into(), 1),
                ("7".into(), 2)
            ]
        );
        let w = waves_of(&FILES, 2);
        let only: Vec<usize> = w.iter().map(|(_, w)| *w).collect();
        assert_eq!(only, [0, 0, 1, 2, 2, 3, 4]);
    }

    #[test]
    fn serial_by_default_and_dependencies_split_waves() {
        let w: Vec<usize> = waves_of(&FILES, 1).iter().map(|(_, w)| *w).collect();
        assert_eq!(w, [0, 1, 2, 3, 4, 5, 6]);
        let w: Vec<usize> = waves_of(
            &[
                (
                    "V1__a.sql",
                    "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
                ),
                (
                    "V2__b.sql",
                    "-- Dependencies: 1\nCREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
                ),
            ],
            4,
        )
        .iter()
        .map(|(_, w)| *w)
        .collect();
        assert_eq!(w, [0, 1]);
    }

    fn prepared(files: &[(&str, &str)]) -> (Vec<PreparedStep>, Vec<Migration>) {
        let migrations = load_named(files);
        let policy = Policy {
            environment: "dev".into(),
            ..Default::default()
        };
        let p = plan(
            &migrations,
            &TargetState::default(),
            &Target::Latest,
            &policy,
        )
        .unwrap();
        let settings = PrepareSettings {
            lookups: Default::default(),
            cluster: None,
            on_cluster: OnClusterMode::Auto,
            variables: Variables::new("db", None, "dev", &BTreeMap::new()).unwrap(),
        };
        (prepare(&p, &migrations, &settings).unwrap(), migrations)
    }

    #[test]
    fn changes_of_one_table_by_unrelated_neighbours_are_named() {
        let (steps, ms) = prepared(&[
            // Creates and fills its own table: changes nothing that existed.
            (
                "V1__a.sql",
                "CREATE TABLE a (x UInt8) ENGINE = Memory;\nINSERT INTO a VALUES (1);",
            ),
            ("V2__a_col.sql", "ALTER TABLE a ADD COLUMN y UInt8;"),
            ("V3__a_other.sql", "ALTER TABLE db.a ADD COLUMN z UInt8;"),
            (
                "V4__a_dep.sql",
                "-- Dependencies: 3\nALTER TABLE a DELETE WHERE x = 0;",
            ),
            ("V5__b.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;"),
        ]);
        assert_eq!(
            changed(&steps[0], "db"),
            BTreeSet::new(),
            "what a step creates is not a change of an existing table"
        );
        let found = same_table_changes(&steps, &ms, 4, "db");
        let pairs: Vec<(usize, usize)> = found.iter().map(|(i, j, _)| (*i, *j)).collect();
        // V2/V3 and V2/V4 (no dependency); V3/V4 declared theirs.
        assert_eq!(pairs, [(1, 2), (1, 3)]);
        assert_eq!(found[0].2, ["db.a"]);
        // Serial mode has no waves to share; a window of 2 only neighbours.
        assert!(same_table_changes(&steps, &ms, 1, "db").is_empty());
        let pairs: Vec<(usize, usize)> = same_table_changes(&steps, &ms, 2, "db")
            .iter()
            .map(|(i, j, _)| (*i, *j))
            .collect();
        assert_eq!(pairs, [(1, 2)]);
    }

    #[test]
    fn words_with_non_ascii_characters_do_not_break_the_reading() {
        // A non-breaking space pasted into a statement is a word character
        // to the lexer: "di\u{a0}ct" must not be cut inside a character.
        let (steps, _) = prepared(&[(
            "V1__a.sql",
            "CREATE TABLE a (x UInt8) ENGINE = Memory;\nALTER TABLE a ADD\u{a0}COLUMN y UInt8;\nSELECT dic\u{e9}t FROM a;",
        )]);
        assert!(touched(&steps[0], "db").is_some_and(|t| t.contains("db.a")));
        let _ = changed(&steps[0], "db");
    }

    #[test]
    fn names_in_engines_copies_and_lists_are_touched() {
        let touched_by = |sql: &str| -> Option<Vec<String>> {
            let (steps, _) = prepared(&[("V1__x.sql", sql)]);
            touched(&steps[0], "db").map(|t| t.into_iter().collect())
        };
        assert_eq!(
            touched_by(
                "CREATE TABLE events AS events_local ENGINE = Distributed(c, db, events_local, rand());"
            )
            .unwrap(),
            ["db.events", "db.events_local"]
        );
        assert_eq!(
            touched_by(
                "CREATE TABLE buf AS other.t ENGINE = Buffer(other, t, 16, 10, 100, 1, 10, 1, 10);"
            )
            .unwrap(),
            ["db.buf", "other.t"]
        );
        assert_eq!(
            touched_by("RENAME TABLE a TO b, c TO d;").unwrap(),
            ["db.a", "db.b", "db.c", "db.d"]
        );
        assert_eq!(
            touched_by("EXCHANGE TABLES a AND b;").unwrap(),
            ["db.a", "db.b"]
        );
        assert_eq!(
            touched_by("CREATE MATERIALIZED VIEW mv TO dest (x UInt8) AS SELECT x FROM src;")
                .unwrap(),
            ["db.dest", "db.mv", "db.src"]
        );
        // Tables named by a pattern: the migration runs alone.
        assert_eq!(
            touched_by("CREATE TABLE all_logs (x UInt8) ENGINE = Merge(db, '^logs_');"),
            None
        );
        // Plain engines and table functions stay what they were.
        assert_eq!(
            touched_by("CREATE TABLE t (x UInt8) ENGINE = ReplicatedMergeTree('/p/{shard}', '{replica}') ORDER BY x;\nINSERT INTO t SELECT number FROM numbers(3);")
                .unwrap(),
            ["db.t"]
        );
    }

    #[test]
    fn names_in_dictionary_and_join_lookups_are_touched() {
        let (steps, _) = prepared(&[(
            "V1__mv.sql",
            "CREATE MATERIALIZED VIEW mv TO t AS SELECT dictGetString('geo.cities', 'name', id) AS c, joinGet('j', 'v', id) AS v FROM src;",
        )]);
        let t: Vec<String> = touched(&steps[0], "db").unwrap().into_iter().collect();
        assert_eq!(t, ["db.j", "db.mv", "db.src", "db.t", "geo.cities"]);
    }

    #[test]
    fn touched_names_are_qualified_and_quoted_ones_unquoted() {
        let files = [(
            "V1__mv.sql",
            "CREATE MATERIALIZED VIEW ${database}.`mv` TO ${database}.t AS SELECT * FROM src JOIN other.dim USING id;",
        )];
        let (steps, _) = prepared(&files);
        let t: Vec<String> = touched(&steps[0], "db").unwrap().into_iter().collect();
        assert_eq!(t, ["db.mv", "db.src", "db.t", "other.dim"]);
    }
}
