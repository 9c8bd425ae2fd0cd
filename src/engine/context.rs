//! Who a run is and when it must stop: passed explicitly to every engine
//! call (no task-locals, no globals).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::runtime::store::now_us;

/// Which held locks a run may take over: the operator's own, left by an
/// instance that is provably gone.
///
/// A lock is only ever taken over when it was taken before this process
/// started (or became the leader) by an operator working on the same set,
/// and either this instance holds the leader Lease (so the holder lost it
/// and stops before its next statement) or the holder has this instance's
/// own identity (this pod's container restarted). Two operators without
/// leader election never take each other's locks: the second waits, the
/// set says `LockHeld` naming the holder.
#[derive(Debug, Clone)]
pub struct StaleLocks {
    /// Holders starting with this are instances of the same operator for
    /// the same set (`operator:<ns>/<name> (`).
    pub holder_prefix: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// Whether this instance holds the leader Lease.
    pub leader: bool,
    /// When this process started, or became the leader (µs since the
    /// epoch).
    pub started_us: u64,
    /// This leader's term, when elected (see the operator's leader
    /// election): a lock of the same set held under an earlier term is its
    /// predecessor's, which stopped acting at its renew deadline.
    pub term: Option<i32>,
}

impl StaleLocks {
    pub fn is_stale(&self, holder: &str, acquired_us: u64) -> bool {
        let Some(who) = holder
            .strip_prefix(&self.holder_prefix)
            .and_then(|rest| rest.strip_suffix(')'))
        else {
            return false;
        };
        let (who, their_term) = match who.split_once(", term ") {
            Some((id, t)) => (id, t.parse::<i32>().ok()),
            None => (who, None),
        };
        if let (Some(mine), Some(theirs)) = (self.term, their_term) {
            return theirs < mine;
        }
        acquired_us < self.started_us && (self.leader || who == self.identity)
    }
}

/// A stop request shared by every run of a process: set on SIGINT/SIGTERM
/// (or the operator's loss of leadership); runs stop before their next
/// statement, record where, and release the lock.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// Everything a run needs to know about who runs it.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Written into every ledger event and the lock: `user@machine
    /// (chmigrate V, pid N)` for a person, `operator:<ns>/<name> (<pod>)`
    /// for the operator.
    pub actor: String,
    /// Which held locks may be taken over (the operator's); `None`: never.
    pub stale_locks: Option<StaleLocks>,
    pub stop: StopFlag,
    /// Before every ledger write (so before every statement), check the
    /// lock is still this run's: a later leader may have taken it over.
    pub fence: bool,
}

impl RunContext {
    /// A run by this process on behalf of the person running it.
    pub fn local(stop: StopFlag) -> Self {
        RunContext {
            actor: local_actor(),
            stale_locks: None,
            stop,
            fence: false,
        }
    }
}

fn machine() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

/// `user@machine (chmigrate V, pid N)`.
pub fn local_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!(
        "{user}@{} (chmigrate {}, pid {})",
        machine(),
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

/// This process's boot and pid namespace, `<boot id>/<pid namespace>`:
/// where a pid means the same process (empty when unknown).
pub fn host_identity() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.is_empty() || ns.is_empty() {
        String::new()
    } else {
        format!("{boot}/{ns}")
    }
}

/// When `holder` names a run of chmigrate by this user in this very boot
/// and pid namespace (`host`, as its `lock_taken` announced it) whose
/// process no longer exists, its pid. A process that exists but is not
/// chmigrate (the pid was reused) counts as gone; one whose command line
/// cannot be read counts as alive.
pub fn local_holder_gone(holder: &str, host: &str) -> Option<u32> {
    let (user, rest) = holder.split_once('@')?;
    let (machine_name, rest) = rest.split_once(" (chmigrate ")?;
    let pid: u32 = rest
        .rsplit_once(", pid ")?
        .1
        .strip_suffix(')')?
        .parse()
        .ok()?;
    let me = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let here = host_identity();
    if machine_name != machine()
        || user != me
        || here.is_empty()
        || host != here
        || pid == std::process::id()
    {
        return None;
    }
    let proc = std::path::Path::new("/proc").join(pid.to_string());
    if !proc.exists() {
        return Some(pid);
    }
    match std::fs::read(proc.join("cmdline")) {
        Ok(cmd) if !cmd.is_empty() && !String::from_utf8_lossy(&cmd).contains("chmigrate") => {
            Some(pid)
        }
        _ => None,
    }
}

/// A run's id: unique per process and moment.
pub fn run_id() -> String {
    format!("{:x}-{:x}", now_us(), std::process::id())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{StaleLocks, host_identity, local_actor, local_holder_gone};

    #[test]
    fn only_a_vanished_process_in_this_boot_and_namespace_counts_as_gone() {
        let me = local_actor();
        let here = host_identity();
        assert!(!here.is_empty(), "procfs is there on the build machines");
        assert_eq!(local_holder_gone(&me, &here), None, "this very process");
        let (user_host, _) = me.split_once(" (chmigrate ").unwrap();
        // A pid far above any pid_max: no such process.
        let dead = format!("{user_host} (chmigrate 0.1.0, pid 4194999)");
        assert_eq!(local_holder_gone(&dead, &here), Some(4_194_999));
        // pid 1 exists and is not chmigrate: the pid was reused.
        let reused = format!("{user_host} (chmigrate 0.1.0, pid 1)");
        assert_eq!(local_holder_gone(&reused, &here), Some(1));
        // Another boot or pid namespace (a container on this host), no
        // announcement, another machine, the operator, or a holder of
        // unknown form: no judgement from here.
        assert_eq!(local_holder_gone(&dead, "other-boot/pid:[1]"), None);
        assert_eq!(local_holder_gone(&dead, ""), None);
        assert_eq!(
            local_holder_gone("ci@elsewhere-7 (chmigrate 0.1.0, pid 4194999)", &here),
            None
        );
        assert_eq!(
            local_holder_gone("operator:apps/events (op-a)", &here),
            None
        );
        assert_eq!(local_holder_gone("", &here), None);
    }

    fn rule(leader: bool) -> StaleLocks {
        StaleLocks {
            holder_prefix: "operator:apps/events (".into(),
            identity: "op-b".into(),
            leader,
            started_us: 1_000,
            term: None,
        }
    }

    #[test]
    fn an_elected_leader_takes_over_only_locks_of_earlier_terms() {
        let leader = StaleLocks {
            term: Some(5),
            ..rule(true)
        };
        // The predecessor stopped acting at its renew deadline, whenever it
        // took the lock (even after this instance started).
        assert!(leader.is_stale("operator:apps/events (op-a, term 4)", 5_000));
        // Its own term (another run of this process) or a later one: never.
        assert!(!leader.is_stale("operator:apps/events (op-b, term 5)", 1));
        assert!(!leader.is_stale("operator:apps/events (op-a, term 6)", 1));
        // Another set's lock, whatever its term: never.
        assert!(!leader.is_stale("operator:apps/other (op-a, term 1)", 1));
        // A lock of a release without terms: the older rule.
        assert!(leader.is_stale("operator:apps/events (op-a)", 999));
    }

    #[test]
    fn a_lock_is_taken_over_only_from_a_provably_gone_instance() {
        let follower = rule(false);
        let leader = rule(true);
        // This pod's own earlier life (container restart): taken over.
        assert!(follower.is_stale("operator:apps/events (op-b)", 999));
        // Another instance without the lease: maybe alive, never taken.
        assert!(!follower.is_stale("operator:apps/events (op-a)", 999));
        // The lease holder takes over what a previous leader left.
        assert!(leader.is_stale("operator:apps/events (op-a)", 999));
        // Taken after this instance started or became the leader: alive.
        assert!(!leader.is_stale("operator:apps/events (op-a)", 1_000));
        assert!(!follower.is_stale("operator:apps/events (op-b)", 1_500));
        // Other sets, the CLI and look-alike names are never taken over.
        assert!(!leader.is_stale("operator:apps/events-2 (op-a)", 1));
        assert!(!leader.is_stale("operator:apps/eventsx (op-a)", 1));
        assert!(!leader.is_stale("alice@laptop (pid 7)", 1));
        assert!(!follower.is_stale("operator:apps/events (op-b) extra", 1));
    }
}
