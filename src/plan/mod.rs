//! The planner (pure): desired migrations + a target's folded ledger + a
//! target version + a policy → an ordered list of steps, or every problem
//! that blocks it.
//!
//! Rules:
//! - An applied (or half-applied) migration whose checksum changed, or whose
//!   source is gone, blocks the plan.
//! - A pending migration older than the newest applied one blocks the plan
//!   unless out-of-order is allowed.
//! - Dependencies must exist, be in this environment, and not form a cycle
//!   (the cycle is named). Order: dependencies first, then version order.
//! - Migrations restricted to other environments are skipped and reported.
//! - A target below the applied version means rolling back, in reverse
//!   order, only when the policy allows it and every migration on the way
//!   down has down statements.
//! - A half-applied migration resumes at the first statement not recorded as
//!   completed. If the run stopped while that statement was in flight (no
//!   completion and no server error recorded), it is re-run only when it is
//!   safe to repeat (`IF [NOT] EXISTS`, `CREATE OR REPLACE`, …); otherwise
//!   the plan is blocked until `repair` records whether it took effect.

pub mod drift;
pub mod preflight;
pub mod prepare;
pub mod rollbacks;
pub mod sandbox;
pub mod snapshot;
pub mod sync;
pub mod validate;
pub mod waves;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::ledger::fold::{Direction, Progress, TargetState, VersionState};
use crate::model::migration::{Checksum, Location, Migration};
use crate::model::version::Version;
use crate::sql::statement::analyze;

/// What the plan may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub environment: String,
    pub allow_rollback: bool,
    pub out_of_order: bool,
    /// When the target's ledger is empty, record this version as the
    /// baseline and apply only later migrations.
    pub baseline: Option<Version>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    /// Record `version` as the baseline without running anything.
    Baseline { version: Version },
    /// Run up statements `from_statement..` of `version` (0: from the start).
    Apply {
        version: Version,
        from_statement: usize,
    },
    /// Run down statements `from_statement..` of `version`.
    Rollback {
        version: Version,
        from_statement: usize,
    },
}

impl Step {
    pub fn version(&self) -> &Version {
        match self {
            Step::Baseline { version }
            | Step::Apply { version, .. }
            | Step::Rollback { version, .. } => version,
        }
    }
}

/// A migration left out of the plan, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub version: Version,
    pub reason: String,
}

/// The planner's answer when nothing blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub skipped: Vec<Skipped>,
    /// Highest applied version before the plan runs.
    pub applied_version: Option<Version>,
    /// Highest version applied once the plan has run.
    pub target_version: Option<Version>,
}

/// Something that blocks a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    ChecksumChanged {
        version: Version,
        recorded: Checksum,
        current: Checksum,
        location: Location,
    },
    MissingSource {
        version: Version,
    },
    OutOfOrder {
        version: Version,
        newest_applied: Version,
        location: Location,
    },
    MissingDependency {
        version: Version,
        dependency: Version,
        location: Location,
    },
    DependencyInOtherEnvironment {
        version: Version,
        dependency: Version,
        environment: String,
        location: Location,
    },
    DependencyCycle {
        cycle: Vec<Version>,
        /// Where each member of the cycle is defined, in cycle order.
        locations: Vec<Location>,
    },
    DependencyAboveTarget {
        version: Version,
        dependency: Version,
        target: Version,
    },
    RollbackNotAllowed {
        versions: Vec<Version>,
        environment: String,
    },
    NoDownStatements {
        version: Version,
        location: Location,
        /// Why no rollback could be derived.
        why: Option<String>,
    },
    RollbackBreaksDependent {
        version: Version,
        dependent: Version,
    },
    /// `migrate --version V`: V is not a pending migration of this
    /// environment.
    NotPending {
        version: Version,
        why: String,
    },
    /// `migrate --version V`: a dependency of V is not applied yet.
    DependencyNotApplied {
        version: Version,
        dependency: Version,
        location: Location,
    },
    /// The migration's rollback strategy (or its environment's) is
    /// forward-only.
    ForwardOnly {
        version: Version,
        location: Location,
    },
    BaselinedRollback {
        version: Version,
    },
    HalfApplied {
        version: Version,
        direction: Direction,
    },
    InFlightUnsafe {
        version: Version,
        direction: Direction,
        /// 1-based statement number, as people count.
        statement: usize,
        location: Location,
    },
}

impl Problem {
    /// Where the problem is, when it has a place in the sources.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Problem::ChecksumChanged { location, .. }
            | Problem::OutOfOrder { location, .. }
            | Problem::MissingDependency { location, .. }
            | Problem::DependencyInOtherEnvironment { location, .. }
            | Problem::NoDownStatements { location, .. }
            | Problem::ForwardOnly { location, .. }
            | Problem::DependencyNotApplied { location, .. }
            | Problem::InFlightUnsafe { location, .. } => Some(location),
            Problem::DependencyCycle { locations, .. } => locations.first(),
            _ => None,
        }
    }
}

fn list(vs: &[Version]) -> String {
    vs.iter()
        .map(|v| format!("V{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ChecksumChanged {
                version,
                recorded,
                current,
                ..
            } => write!(
                f,
                "V{version} was applied with checksum {} but its source now has {}: \
                 revert the change, or run `chmigrate repair` to accept it",
                recorded.short(),
                current.short()
            ),
            Problem::MissingSource { version } => write!(
                f,
                "V{version} is recorded in the ledger but no source defines it"
            ),
            Problem::OutOfOrder {
                version,
                newest_applied,
                ..
            } => write!(
                f,
                "V{version} is pending but older than the newest applied V{newest_applied} \
                 (allow out-of-order to apply it)"
            ),
            Problem::MissingDependency {
                version,
                dependency,
                ..
            } => {
                write!(
                    f,
                    "V{version} depends on V{dependency}, which no source defines"
                )
            }
            Problem::DependencyInOtherEnvironment {
                version,
                dependency,
                environment,
                ..
            } => write!(
                f,
                "V{version} depends on V{dependency}, which does not run in environment {environment:?}"
            ),
            Problem::DependencyCycle { cycle, locations } => {
                // Every member with where it is defined, so each file to
                // fix is named.
                let mut names: Vec<String> = cycle
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match locations.get(i) {
                        Some(l) => format!("V{v} ({l})"),
                        None => format!("V{v}"),
                    })
                    .collect();
                if let Some(first) = cycle.first() {
                    names.push(format!("V{first}"));
                }
                write!(
                    f,
                    "dependency cycle: {}; remove one of these dependencies",
                    names.join(" -> ")
                )
            }
            Problem::DependencyAboveTarget {
                version,
                dependency,
                target,
            } => write!(
                f,
                "V{version} depends on V{dependency}, which is above the target V{target}"
            ),
            Problem::RollbackNotAllowed {
                versions,
                environment,
            } => write!(
                f,
                "reaching the target means rolling back {}, but rollback is not allowed in environment {environment:?}",
                list(versions)
            ),
            Problem::NoDownStatements { version, why, .. } => {
                write!(
                    f,
                    "V{version} must be rolled back to reach the target but has no rollback statements"
                )?;
                match why {
                    Some(why) => write!(f, ", and none can be derived: {why}"),
                    None => Ok(()),
                }
            }
            Problem::NotPending { version, why } => {
                write!(f, "V{version} cannot be applied on its own: {why}")
            }
            Problem::DependencyNotApplied {
                version,
                dependency,
                ..
            } => write!(
                f,
                "V{version} depends on V{dependency}, which is not applied: apply it first (or migrate without --version)"
            ),
            Problem::ForwardOnly { version, .. } => write!(
                f,
                "V{version} must be rolled back to reach the target, but its rollback strategy is forward-only: the way back is a new migration"
            ),
            Problem::RollbackBreaksDependent { version, dependent } => write!(
                f,
                "V{version} cannot be rolled back: V{dependent}, which stays applied, depends on it"
            ),
            Problem::BaselinedRollback { version } => write!(
                f,
                "V{version} is part of the baseline and cannot be rolled back"
            ),
            Problem::HalfApplied { version, direction } => write!(
                f,
                "V{version} stopped half way through its {} run; finish it (migrate{}) or run `chmigrate repair` before moving past it",
                match direction {
                    Direction::Up => "apply",
                    Direction::Down => "rollback",
                },
                match direction {
                    Direction::Up => "",
                    Direction::Down => " with a lower target",
                },
            ),
            Problem::InFlightUnsafe {
                version,
                direction,
                statement,
                ..
            } => write!(
                f,
                "V{version} stopped while its {} statement {statement} was running, and it is not safe to run twice; \
                 check the schema, then record what happened with \
                 `chmigrate repair --version {version} --statement {statement} --done` (or `--not-done`)",
                match direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                },
            ),
        }
    }
}

/// Which version to end at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    #[default]
    Latest,
    Version(Version),
}

/// `migrate --version V`: the plan that applies V alone (or finishes it,
/// when a run stopped half way), when every dependency of V is applied.
/// Everything that blocks the full plan blocks this one too.
pub fn plan_only(
    migrations: &[Migration],
    state: &TargetState,
    version: &Version,
    policy: &Policy,
) -> Result<Plan, Vec<Problem>> {
    let Some(m) = migrations.iter().find(|m| &m.version == version) else {
        return Err(vec![Problem::NotPending {
            version: version.clone(),
            why: "no such migration".into(),
        }]);
    };
    let missing: Vec<Problem> = m
        .dependencies
        .iter()
        .filter(|d| !state.is_applied(d))
        .map(|d| Problem::DependencyNotApplied {
            version: version.clone(),
            dependency: d.clone(),
            location: m.location.clone(),
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut full = plan(migrations, state, &Target::Latest, policy)?;
    full.steps.retain(|s| s.version() == version);
    if full.steps.is_empty() {
        let why = if state.is_applied(version) {
            "it is already applied".to_string()
        } else if !m.environments.includes(&policy.environment) {
            format!("it does not run in environment {}", policy.environment)
        } else {
            "it is not pending".to_string()
        };
        return Err(vec![Problem::NotPending {
            version: version.clone(),
            why,
        }]);
    }
    full.target_version = Some(version.clone());
    Ok(full)
}

/// Computes the plan. Pure and deterministic.
pub fn plan(
    migrations: &[Migration],
    state: &TargetState,
    target: &Target,
    policy: &Policy,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let by_version: HashMap<&Version, &Migration> =
        migrations.iter().map(|m| (&m.version, m)).collect();
    let env = policy.environment.as_str();
    let active: Vec<&Migration> = migrations
        .iter()
        .filter(|m| m.environments.includes(env))
        .collect();
    let active_set: HashSet<&Version> = active.iter().map(|m| &m.version).collect();
    let mut skipped: Vec<Skipped> = migrations
        .iter()
        .filter(|m| !m.environments.includes(env))
        .map(|m| Skipped {
            version: m.version.clone(),
            reason: format!(
                "runs only in environment(s) {}, not {env:?}",
                m.environments
            ),
        })
        .collect();

    // Recorded state against the sources.
    for (version, st) in &state.versions {
        let recorded = match st {
            VersionState::Applied {
                checksum,
                baselined,
            } => {
                if *baselined {
                    None
                } else {
                    checksum.as_ref()
                }
            }
            // Failed before its first statement: nothing of it ran, so its
            // source may be fixed; the next run records the new checksum.
            VersionState::InProgress(p)
                if p.direction == Direction::Up
                    && p.completed == 0
                    && p.next_known_not_run
                    && !p.partial =>
            {
                None
            }
            VersionState::InProgress(p) => Some(&p.checksum),
            VersionState::RolledBack => continue,
        };
        match by_version.get(version) {
            None => {
                if !matches!(
                    st,
                    VersionState::Applied {
                        baselined: true,
                        ..
                    }
                ) {
                    problems.push(Problem::MissingSource {
                        version: version.clone(),
                    });
                }
            }
            Some(m) => {
                if let Some(recorded) = recorded
                    && *recorded != m.checksum
                {
                    problems.push(Problem::ChecksumChanged {
                        version: version.clone(),
                        recorded: recorded.clone(),
                        current: m.checksum.clone(),
                        location: m.location.clone(),
                    });
                }
            }
        }
    }

    // Dependencies.
    for m in &active {
        for dep in &m.dependencies {
            match by_version.get(dep) {
                None => problems.push(Problem::MissingDependency {
                    version: m.version.clone(),
                    dependency: dep.clone(),
                    location: m.location.clone(),
                }),
                Some(_) if !active_set.contains(dep) => {
                    problems.push(Problem::DependencyInOtherEnvironment {
                        version: m.version.clone(),
                        dependency: dep.clone(),
                        environment: env.to_string(),
                        location: m.location.clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    let order = match topo_order(&active, &active_set) {
        Ok(o) => o,
        Err(cycle) => {
            let locations = cycle
                .iter()
                .filter_map(|v| by_version.get(v).map(|m| m.location.clone()))
                .collect();
            problems.push(Problem::DependencyCycle { cycle, locations });
            return Err(problems);
        }
    };

    let baseline = if state.is_empty() {
        policy.baseline.clone()
    } else {
        None
    };
    // Versions at or below a baseline (the one about to be recorded, or one
    // already in the ledger) count as applied without ledger rows of their own.
    let recorded_baseline = state
        .versions
        .iter()
        .filter(|(_, s)| {
            matches!(
                s,
                VersionState::Applied {
                    baselined: true,
                    ..
                }
            )
        })
        .map(|(v, _)| v)
        .max();
    let baseline_floor = baseline.as_ref().or(recorded_baseline);
    let is_applied =
        |v: &Version| -> bool { state.is_applied(v) || baseline_floor.is_some_and(|b| v <= b) };
    let applied_version = state.applied_version().cloned().max(baseline.clone());
    let target_version = match target {
        Target::Latest => active
            .iter()
            .map(|m| &m.version)
            .max()
            .cloned()
            .max(applied_version.clone()),
        Target::Version(v) => Some(v.clone()),
    };

    let mut steps = Vec::new();
    if let Some(b) = &baseline {
        steps.push(Step::Baseline { version: b.clone() });
        for m in &active {
            if &m.version <= b {
                skipped.push(Skipped {
                    version: m.version.clone(),
                    reason: format!("at or below the baseline V{b}"),
                });
            }
        }
    }

    // Down: everything applied (or half-applied) above the target, newest
    // dependents first.
    let mut down_versions: Vec<&Version> = Vec::new();
    if let Some(tv) = &target_version {
        let mut above: Vec<&Version> = state
            .versions
            .iter()
            .filter(|(v, s)| *v > tv && !matches!(s, VersionState::RolledBack))
            .map(|(v, _)| v)
            .collect();
        // Reverse of the apply order: dependents before what they depend on.
        let pos: HashMap<&Version, usize> = order
            .iter()
            .enumerate()
            .map(|(i, m)| (&m.version, i))
            .collect();
        above.sort_by_key(|v| Reverse((pos.get(v).copied().unwrap_or(usize::MAX), *v)));
        if !above.is_empty() && !policy.allow_rollback {
            problems.push(Problem::RollbackNotAllowed {
                versions: above.iter().rev().map(|v| (*v).clone()).collect(),
                environment: env.to_string(),
            });
        }
        let going: HashSet<&Version> = above.iter().copied().collect();
        let mut dependents: HashMap<&Version, Vec<&Version>> = HashMap::new();
        if !above.is_empty() {
            for m in migrations {
                for d in &m.dependencies {
                    dependents.entry(d).or_default().push(&m.version);
                }
            }
        }
        for v in &above {
            match state.get(v) {
                Some(VersionState::Applied {
                    baselined: true, ..
                }) => {
                    problems.push(Problem::BaselinedRollback {
                        version: (*v).clone(),
                    });
                    continue;
                }
                Some(VersionState::InProgress(p)) if p.direction == Direction::Up => {
                    problems.push(Problem::HalfApplied {
                        version: (*v).clone(),
                        direction: Direction::Up,
                    });
                    continue;
                }
                _ => {}
            }
            let Some(m) = by_version.get(v) else { continue };
            if m.strategy == crate::model::strategy::RollbackStrategy::ForwardOnly {
                problems.push(Problem::ForwardOnly {
                    version: (*v).clone(),
                    location: m.location.clone(),
                });
            } else if m.down.is_none() {
                problems.push(Problem::NoDownStatements {
                    version: (*v).clone(),
                    location: m.location.clone(),
                    why: m.irreversible.clone(),
                });
            }
            for dependent in dependents.get(*v).into_iter().flatten() {
                if is_applied(dependent) && !going.contains(dependent) {
                    problems.push(Problem::RollbackBreaksDependent {
                        version: (*v).clone(),
                        dependent: (*dependent).clone(),
                    });
                }
            }
            let from_statement = match state.get(v) {
                Some(VersionState::InProgress(p)) => resume_point(m, p, &mut problems),
                _ => 0,
            };
            steps.push(Step::Rollback {
                version: (*v).clone(),
                from_statement,
            });
        }
        down_versions = above;
    }
    let down_set: HashSet<&Version> = down_versions.into_iter().collect();

    // Up: pending migrations at or below the target, in dependency order.
    let newest_applied = state.applied_version();
    for m in &order {
        let v = &m.version;
        if target_version.as_ref().is_some_and(|t| v > t) || down_set.contains(v) {
            continue;
        }
        if is_applied(v) {
            continue;
        }
        let from_statement = match state.get(v) {
            Some(VersionState::InProgress(p)) if p.direction == Direction::Down => {
                problems.push(Problem::HalfApplied {
                    version: v.clone(),
                    direction: Direction::Down,
                });
                continue;
            }
            Some(VersionState::InProgress(p)) => resume_point(m, p, &mut problems),
            // A migration rolled back while a later one stays applied (a
            // manual rollback: `rollback --manual`) is applied again, as its
            // record says; that is not out of order.
            Some(VersionState::RolledBack) => 0,
            _ => {
                if let Some(newest) = newest_applied
                    && v < newest
                    && !policy.out_of_order
                {
                    problems.push(Problem::OutOfOrder {
                        version: v.clone(),
                        newest_applied: newest.clone(),
                        location: m.location.clone(),
                    });
                }
                0
            }
        };
        if let Some(t) = &target_version {
            for dep in &m.dependencies {
                if dep > t && !is_applied(dep) && active_set.contains(dep) {
                    problems.push(Problem::DependencyAboveTarget {
                        version: v.clone(),
                        dependency: dep.clone(),
                        target: t.clone(),
                    });
                }
            }
        }
        steps.push(Step::Apply {
            version: v.clone(),
            from_statement,
        });
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    skipped.sort_by(|a, b| a.version.cmp(&b.version));
    let final_version = if steps.is_empty() {
        applied_version.clone()
    } else {
        let mut applied: Vec<&Version> = state
            .versions
            .iter()
            .filter(|(_, s)| matches!(s, VersionState::Applied { .. }))
            .map(|(v, _)| v)
            .filter(|v| !down_set.contains(v))
            .collect();
        applied.extend(steps.iter().filter_map(|s| match s {
            Step::Apply { version, .. } | Step::Baseline { version } => Some(version),
            Step::Rollback { .. } => None,
        }));
        applied.into_iter().max().cloned()
    };
    Ok(Plan {
        steps,
        skipped,
        applied_version,
        target_version: final_version,
    })
}

/// Where a half-run migration resumes; reports an unsafe in-flight statement.
fn resume_point(m: &Migration, p: &Progress, problems: &mut Vec<Problem>) -> usize {
    let k = p.completed;
    if p.next_known_not_run {
        return k;
    }
    let stmts = match p.direction {
        Direction::Up => Some(&m.up),
        Direction::Down => m.down.as_ref(),
    };
    let Some(stmt) = stmts.and_then(|s| s.get(k)) else {
        // Every statement completed; only the completion record is missing.
        return k;
    };
    let safe = analyze(&stmt.sql).map(|i| i.rerun_safe).unwrap_or(false);
    if !safe {
        problems.push(Problem::InFlightUnsafe {
            version: m.version.clone(),
            direction: p.direction,
            statement: k + 1,
            location: match p.direction {
                Direction::Up => m.up_location(k),
                Direction::Down => m.down_statement_location(k),
            },
        });
    }
    k
}

/// Dependencies first, then version order (Kahn's algorithm with the lowest
/// ready version first). On a cycle, returns one cycle.
fn topo_order<'a>(
    active: &[&'a Migration],
    active_set: &HashSet<&Version>,
) -> Result<Vec<&'a Migration>, Vec<Version>> {
    let index: HashMap<&Version, usize> = active
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.version, i))
        .collect();
    let n = active.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, m) in active.iter().enumerate() {
        let mut seen = HashSet::new();
        for dep in &m.dependencies {
            if !active_set.contains(dep) || !seen.insert(dep) {
                continue;
            }
            if let Some(&j) = index.get(dep) {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(&Version, usize)>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| Reverse((&active[i].version, i)))
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        out.push(active[i]);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse((&active[j].version, j)));
            }
        }
    }
    if out.len() == n {
        return Ok(out);
    }
    // Walk dependencies from any node left over until one repeats.
    let Some(start) = (0..n).find(|&i| indegree[i] > 0) else {
        return Ok(out);
    };
    let mut path: Vec<usize> = Vec::new();
    let mut on_path: HashMap<usize, usize> = HashMap::new();
    let mut cur = start;
    loop {
        if let Some(&pos) = on_path.get(&cur) {
            let mut cycle: Vec<Version> = path[pos..]
                .iter()
                .map(|&i| active[i].version.clone())
                .collect();
            // Name the cycle from its lowest version, in dependency order.
            cycle.reverse();
            if let Some(min_pos) = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| *v)
                .map(|(i, _)| i)
            {
                cycle.rotate_left(min_pos);
            }
            return Err(cycle);
        }
        on_path.insert(cur, path.len());
        path.push(cur);
        // Follow a dependency that is itself stuck in the cycle.
        let next = active[cur]
            .dependencies
            .iter()
            .filter_map(|d| index.get(d).copied())
            .find(|&j| indegree[j] > 0);
        match next {
            Some(j) => cur = j,
            None => return Err(vec![active[cur].version.clone()]),
        }
    }
}

impl From<Problem> for crate::model::diagnostic::Diagnostic {
    fn from(p: Problem) -> Self {
        crate::model::diagnostic::Diagnostic::error(p.location().cloned(), p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::EventKind;
    use crate::ledger::fold::tests::{Log, sum, v};
    use crate::model::migration::{Environments, SourceFormat, Statement};

    fn mig(version: &str, deps: &[&str]) -> Migration {
        let up = vec![Statement {
            sql: format!("CREATE TABLE t{version} (x UInt8) ENGINE = Memory"),
            line: 1,
        }];
        let down = Some(vec![Statement {
            sql: format!("DROP TABLE t{version}"),
            line: 2,
        }]);
        let mut m = Migration {
            version: v(version),
            description: String::new(),
            checksum: Checksum::of(&up, down.as_deref()),
            up,
            down,
            dependencies: deps.iter().map(|d| v(d)).collect(),
            environments: Environments::All,
            location: Location::new(format!("V{version}__t.sql"), 1),
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
        };
        m.checksum = m.compute_checksum();
        m
    }

    fn policy() -> Policy {
        Policy {
            environment: "development".into(),
            allow_rollback: true,
            ..Default::default()
        }
    }

    fn applied(log: &mut Log, m: &Migration) {
        log.applied(m.version.as_str(), &m.checksum.0, m.up.len());
    }

    fn steps(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| match s {
                Step::Apply {
                    version,
                    from_statement: 0,
                } => format!("+{version}"),
                Step::Apply {
                    version,
                    from_statement,
                } => format!("+{version}@{from_statement}"),
                Step::Rollback {
                    version,
                    from_statement: 0,
                } => format!("-{version}"),
                Step::Rollback {
                    version,
                    from_statement,
                } => format!("-{version}@{from_statement}"),
                Step::Baseline { version } => format!("={version}"),
            })
            .collect()
    }

    #[test]
    fn empty_target_applies_everything_in_version_order() {
        let ms = vec![
            mig("2", &[]),
            mig("1.10", &[]),
            mig("1.2", &[]),
            mig("1", &[]),
        ];
        let p = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap();
        assert_eq!(steps(&p), ["+1", "+1.2", "+1.10", "+2"]);
        assert_eq!(p.applied_version, None);
        assert_eq!(p.target_version, Some(v("2")));
    }

    #[test]
    fn dependencies_come_first_then_version_order() {
        let ms = vec![
            mig("1", &["3"]),
            mig("2", &[]),
            mig("3", &[]),
            mig("4", &["1"]),
        ];
        let p = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap();
        assert_eq!(steps(&p), ["+2", "+3", "+1", "+4"]);
    }

    #[test]
    fn nothing_to_do_when_everything_is_applied() {
        let ms = vec![mig("1", &[]), mig("2", &[])];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        applied(&mut log, &ms[1]);
        let p = plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap();
        assert!(p.steps.is_empty());
        assert_eq!(p.applied_version, Some(v("2")));
        assert_eq!(p.target_version, Some(v("2")));
    }

    #[test]
    fn changed_checksum_blocks() {
        let ms = vec![mig("1", &[])];
        let mut log = Log::default();
        log.applied("1", "0000", 1);
        let err = plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap_err();
        assert!(
            matches!(&err[..], [Problem::ChecksumChanged { version, .. }] if *version == v("1"))
        );
        assert!(
            err[0]
                .to_string()
                .contains("was applied with checksum 0000")
        );
        assert_eq!(err[0].location().unwrap().to_string(), "V1__t.sql:1");
    }

    #[test]
    fn applied_migration_missing_from_sources_blocks() {
        let ms = vec![mig("1", &[])];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        log.applied("2", "x", 1);
        let err = plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap_err();
        assert_eq!(err, vec![Problem::MissingSource { version: v("2") }]);
    }

    #[test]
    fn out_of_order_blocks_unless_allowed() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("3", &[])];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        applied(&mut log, &ms[2]);
        let err = plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap_err();
        assert!(
            matches!(&err[..], [Problem::OutOfOrder { version, newest_applied, .. }]
            if *version == v("2") && *newest_applied == v("3"))
        );
        let mut p = policy();
        p.out_of_order = true;
        assert_eq!(
            steps(&plan(&ms, &log.state(), &Target::Latest, &p).unwrap()),
            ["+2"]
        );
    }

    #[test]
    fn missing_and_cyclic_dependencies_are_named() {
        let ms = vec![mig("1", &["9"])];
        let err = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "V1 depends on V9, which no source defines"
        );

        let ms = vec![
            mig("1", &[]),
            mig("2", &["4"]),
            mig("3", &["2"]),
            mig("4", &["3"]),
            mig("5", &["4"]),
        ];
        let err = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap_err();
        assert_eq!(
            err,
            vec![Problem::DependencyCycle {
                cycle: vec![v("2"), v("3"), v("4")],
                locations: ["2", "3", "4"]
                    .iter()
                    .map(|n| Location::new(format!("V{n}__t.sql"), 1))
                    .collect(),
            }]
        );
        assert_eq!(
            err[0].to_string(),
            "dependency cycle: V2 (V2__t.sql:1) -> V3 (V3__t.sql:1) -> V4 (V4__t.sql:1) -> V2; \
             remove one of these dependencies"
        );
        assert_eq!(
            err[0].location().map(ToString::to_string),
            Some("V2__t.sql:1".into())
        );

        let ms = vec![mig("1", &["1"])];
        let err = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "dependency cycle: V1 (V1__t.sql:1) -> V1; remove one of these dependencies"
        );
    }

    #[test]
    fn deep_dependency_chains_and_long_cycles_are_handled_without_recursion() {
        // 20,000 migrations, each depending on the next higher one: the
        // order is the reverse of the versions; nothing recurses.
        let n = 20_000;
        let ms: Vec<Migration> = (1..=n)
            .map(|i| {
                let dep = (i + 1).to_string();
                let deps: Vec<&str> = if i < n { vec![dep.as_str()] } else { vec![] };
                mig(&i.to_string(), &deps)
            })
            .collect();
        let p = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap();
        let order = steps(&p);
        assert_eq!(order.len(), n);
        assert_eq!(order[0], format!("+{n}"));
        assert_eq!(order[n - 1], "+1");

        // The same chain closed into one cycle of 20,000: named from V1.
        let ms: Vec<Migration> = (1..=n)
            .map(|i| {
                let dep = if i < n {
                    (i + 1).to_string()
                } else {
                    "1".into()
                };
                mig(&i.to_string(), &[dep.as_str()])
            })
            .collect();
        let err = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap_err();
        let [Problem::DependencyCycle { cycle, .. }] = err.as_slice() else {
            panic!("{err:?}");
        };
        assert_eq!(cycle.len(), n);
        assert_eq!(cycle[0], v("1"));
        assert_eq!(cycle[1], v(&n.to_string()), "in dependency order");
    }

    #[test]
    fn environment_restricted_migrations_are_skipped_and_reported() {
        let mut prod_only = mig("2", &[]);
        prod_only.environments = Environments::Only(vec!["production".into()]);
        let ms = vec![mig("1", &[]), prod_only, mig("3", &[])];
        let p = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap();
        assert_eq!(steps(&p), ["+1", "+3"]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].version, v("2"));
        assert!(p.skipped[0].reason.contains("production"));

        let ms = vec![ms[1].clone(), mig("4", &["2"])];
        let err = plan(&ms, &TargetState::default(), &Target::Latest, &policy()).unwrap_err();
        assert!(matches!(
            &err[..],
            [Problem::DependencyInOtherEnvironment { .. }]
        ));
    }

    #[test]
    fn only_applies_one_migration_once_its_dependencies_are_applied() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("3", &["1"])];
        let mut log = Log::default();
        let p = plan_only(&ms, &log.state(), &v("3"), &policy()).unwrap_err();
        assert_eq!(
            p.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "V3 depends on V1, which is not applied: apply it first (or migrate without --version)"
            ]
        );
        applied(&mut log, &ms[0]);
        let p = plan_only(&ms, &log.state(), &v("3"), &policy()).unwrap();
        assert_eq!(steps(&p), ["+3"], "V2 stays pending");
        assert_eq!(p.target_version, Some(v("3")));
        let err = plan_only(&ms, &log.state(), &v("1"), &policy()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "V1 cannot be applied on its own: it is already applied"
        );
        let err = plan_only(&ms, &log.state(), &v("9"), &policy()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "V9 cannot be applied on its own: no such migration"
        );
    }

    #[test]
    fn target_below_applied_rolls_back_in_reverse_order() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("3", &[])];
        let mut log = Log::default();
        for m in &ms {
            applied(&mut log, m);
        }
        let p = plan(&ms, &log.state(), &Target::Version(v("1")), &policy()).unwrap();
        assert_eq!(steps(&p), ["-3", "-2"]);
        assert_eq!(p.target_version, Some(v("1")));
        // Target 0 rolls back everything.
        let p = plan(&ms, &log.state(), &Target::Version(v("0")), &policy()).unwrap();
        assert_eq!(steps(&p), ["-3", "-2", "-1"]);
        assert_eq!(p.target_version, None);
    }

    #[test]
    fn target_above_applied_applies_only_up_to_it() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("3", &[])];
        let p = plan(
            &ms,
            &TargetState::default(),
            &Target::Version(v("2")),
            &policy(),
        )
        .unwrap();
        assert_eq!(steps(&p), ["+1", "+2"]);
        let ms = vec![mig("1", &["3"]), mig("3", &[])];
        let err = plan(
            &ms,
            &TargetState::default(),
            &Target::Version(v("2")),
            &policy(),
        )
        .unwrap_err();
        assert!(matches!(&err[..], [Problem::DependencyAboveTarget { .. }]));
    }

    #[test]
    fn rollback_refused_by_policy_or_missing_down() {
        let mut no_down = mig("2", &[]);
        no_down.down = None;
        no_down.checksum = no_down.compute_checksum();
        let ms = vec![mig("1", &[]), no_down];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        applied(&mut log, &ms[1]);
        let err = plan(&ms, &log.state(), &Target::Version(v("1")), &policy()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "V2 must be rolled back to reach the target but has no rollback statements"
        );
        let mut prod = policy();
        prod.environment = "production".into();
        prod.allow_rollback = false;
        let err = plan(&ms, &log.state(), &Target::Version(v("0")), &prod).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "reaching the target means rolling back V1, V2, but rollback is not allowed in environment \"production\""
        );
    }

    #[test]
    fn rollback_must_not_strand_a_dependent() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("1.5", &["2"])];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        applied(&mut log, &ms[1]);
        let mut p = policy();
        p.out_of_order = true;
        log.applied("1.5", &ms[2].checksum.0, 1);
        let err = plan(&ms, &log.state(), &Target::Version(v("1.5")), &p).unwrap_err();
        assert_eq!(
            err,
            vec![Problem::RollbackBreaksDependent {
                version: v("2"),
                dependent: v("1.5")
            }]
        );
    }

    #[test]
    fn resumes_at_the_first_incomplete_statement() {
        let mut m = mig("1", &[]);
        m.up = vec![
            Statement {
                sql: "CREATE TABLE a (x UInt8) ENGINE = Memory".into(),
                line: 1,
            },
            Statement {
                sql: "CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Memory".into(),
                line: 2,
            },
            Statement {
                sql: "INSERT INTO b SELECT 1".into(),
                line: 3,
            },
        ];
        m.checksum = m.compute_checksum();
        let ms = vec![m.clone()];
        let started = EventKind::Started {
            direction: Direction::Up,
            checksum: m.checksum.clone(),
            statements: 3,
        };
        let done = |index| EventKind::StatementDone {
            direction: Direction::Up,
            index,
        };

        // Killed while statement 2 (idempotent) was in flight: re-run it.
        let mut log = Log::default();
        log.push("1", started.clone()).push("1", done(0));
        assert_eq!(
            steps(&plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap()),
            ["+1@1"]
        );

        // Killed while statement 3 (an INSERT) was in flight: blocked.
        log.push("1", done(1));
        let err = plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap_err();
        assert_eq!(
            err,
            vec![Problem::InFlightUnsafe {
                version: v("1"),
                direction: Direction::Up,
                statement: 3,
                location: Location::new("V1__t.sql", 3)
            }]
        );
        assert!(
            err[0]
                .to_string()
                .contains("chmigrate repair --version 1 --statement 3 --done")
        );

        // The server reported statement 3 failed: it did not run, so retry it.
        let mut failed = Log(log.0.clone());
        failed.push(
            "1",
            EventKind::Failed {
                direction: Direction::Up,
                index: 2,
                error: "boom".into(),
                partial: false,
            },
        );
        assert_eq!(
            steps(&plan(&ms, &failed.state(), &Target::Latest, &policy()).unwrap()),
            ["+1@2"]
        );

        // A person recorded that it took effect: nothing left but completion.
        log.push(
            "1",
            EventKind::StatementResolved {
                direction: Direction::Up,
                index: 2,
                done: true,
            },
        );
        assert_eq!(
            steps(&plan(&ms, &log.state(), &Target::Latest, &policy()).unwrap()),
            ["+1@3"]
        );
    }

    #[test]
    fn half_applied_migration_cannot_be_rolled_past() {
        let ms = vec![mig("1", &[]), mig("2", &[])];
        let mut log = Log::default();
        applied(&mut log, &ms[0]);
        log.push(
            "2",
            EventKind::Started {
                direction: Direction::Up,
                checksum: ms[1].checksum.clone(),
                statements: 1,
            },
        );
        let err = plan(&ms, &log.state(), &Target::Version(v("1")), &policy()).unwrap_err();
        assert!(matches!(&err[..], [Problem::HalfApplied { .. }]), "{err:?}");
    }

    #[test]
    fn baseline_on_an_empty_target() {
        let ms = vec![mig("1", &[]), mig("2", &[]), mig("3", &[])];
        let mut p = policy();
        p.baseline = Some(v("2"));
        let out = plan(&ms, &TargetState::default(), &Target::Latest, &p).unwrap();
        assert_eq!(steps(&out), ["=2", "+3"]);
        assert_eq!(
            out.skipped
                .iter()
                .map(|s| s.version.to_string())
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        // A baselined ledger is not baselined again, and its versions are not checked.
        let mut log = Log::default();
        log.push(
            "2",
            EventKind::Baselined {
                checksum: None,
                adopted: false,
            },
        );
        let out = plan(&ms, &log.state(), &Target::Latest, &p).unwrap();
        assert_eq!(steps(&out), ["+3"], "V1 is below the baseline");
        let _ = sum("x");
    }
}
