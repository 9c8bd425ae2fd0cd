//! Per-object exponential backoff (pure). kube's controller requeues with
//! whatever `error_policy` returns; it keeps no per-object history, so the
//! operator keeps it here: the n-th consecutive failure of one set waits
//! `base · 2^(n-1)`, capped, and a success forgets the object.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: HashMap<String, u32>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: HashMap::new(),
        }
    }

    /// Records a failure of `key` and returns how long to wait.
    pub fn failed(&mut self, key: &str) -> Duration {
        let n = self.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Forgets `key`'s failures.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// Consecutive failures of `key`.
    #[cfg(test)]
    pub fn failures(&self, key: &str) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let waits: Vec<u64> = (0..6).map(|_| b.failed("ns/a").as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(
            b.failed("ns/b").as_secs(),
            5,
            "objects back off independently"
        );
        assert_eq!(b.failures("ns/a"), 6);
        b.succeeded("ns/a");
        assert_eq!(b.failures("ns/a"), 0);
        assert_eq!(b.failed("ns/a").as_secs(), 5);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for _ in 0..200 {
            assert!(b.failed("x") <= Duration::from_secs(300));
        }
    }
}
