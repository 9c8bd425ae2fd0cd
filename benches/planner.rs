//! Planner scale: 100,000 migrations against a ledger of 100,000 events.
//!
//! `cargo bench --bench planner` prints the time to fold the ledger and to
//! plan, over several rounds (min / median / max). A benchmark, not a timed
//! test: the goal (well under a second) is read from its output.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chmigrate::ledger::fold::{Direction, Event, EventKind, TargetState};
use chmigrate::model::migration::{
    Checksum, Environments, Location, Migration, SourceFormat, Statement,
};
use chmigrate::model::version::Version;
use chmigrate::plan::{Policy, Target, plan};

const MIGRATIONS: usize = 100_000;
const APPLIED: usize = 25_000; // 4 events each: started, statement done, completed… = 100,000 events
const ROUNDS: usize = 7;

fn migrations() -> Vec<Migration> {
    (1..=MIGRATIONS)
        .map(|i| {
            let up = vec![Statement {
                sql: format!("CREATE TABLE IF NOT EXISTS t{i} (x UInt8) ENGINE = Memory"),
                line: 1,
            }];
            let down = Some(vec![Statement {
                sql: format!("DROP TABLE IF EXISTS t{i}"),
                line: 2,
            }]);
            // Every tenth migration depends on the one five before it.
            let dependencies = if i % 10 == 0 && i > 5 {
                vec![Version::parse(&(i - 5).to_string()).unwrap_or_else(|_| unreachable!())]
            } else {
                Vec::new()
            };
            Migration {
                version: Version::parse(&i.to_string()).unwrap_or_else(|_| unreachable!()),
                description: format!("m{i}"),
                checksum: Checksum::of(&up, down.as_deref()),
                up,
                down,
                dependencies,
                environments: Environments::All,
                location: Location::new(format!("V{i}__m.sql"), 1),
                down_location: None,
                format: SourceFormat::Flyway,
                author: None,
                created: None,
                down_derived: false,
                irreversible: None,
                rollback_strategy: None,
                strategy: Default::default(),
                rollback_declared_none: false,
                name: None,
            }
        })
        .collect()
}

fn ledger(ms: &[Migration]) -> Vec<Event> {
    let mut events = Vec::with_capacity(APPLIED * 4);
    let mut seq = 0;
    let mut push = |v: &Version, kind: EventKind| {
        seq += 1;
        events.push(Event {
            seq,
            version: Some(v.clone()),
            kind,
        });
    };
    for m in &ms[..APPLIED] {
        push(
            &m.version,
            EventKind::Started {
                direction: Direction::Up,
                checksum: m.checksum.clone(),
                statements: 1,
            },
        );
        push(
            &m.version,
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 0,
            },
        );
        push(
            &m.version,
            EventKind::Completed {
                direction: Direction::Up,
            },
        );
        push(
            &m.version,
            EventKind::Note {
                message: "lock released".into(),
            },
        );
    }
    events
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "min {:>8.1} ms  median {:>8.1} ms  max {:>8.1} ms",
        v[0].as_secs_f64() * 1e3,
        v[v.len() / 2].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    )
}

fn main() {
    let ms = migrations();
    let events = ledger(&ms);
    let policy = Policy {
        environment: "production".into(),
        ..Default::default()
    };
    let mut fold_t = Vec::new();
    let mut plan_t = Vec::new();
    let mut steps = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let state = TargetState::fold(black_box(&events));
        fold_t.push(t.elapsed());
        let t = Instant::now();
        let p = plan(black_box(&ms), &state, &Target::Latest, &policy);
        plan_t.push(t.elapsed());
        steps = p.map(|p| p.steps.len()).unwrap_or(0);
    }
    let total: Vec<Duration> = fold_t.iter().zip(&plan_t).map(|(a, b)| *a + *b).collect();
    println!(
        "planner: {MIGRATIONS} migrations, {} ledger events, {steps} steps planned, {ROUNDS} rounds",
        events.len()
    );
    println!("  fold ledger   {}", stats(fold_t));
    println!("  plan          {}", stats(plan_t));
    println!("  fold + plan   {}", stats(total));
}
