//! Why a reconcile is retried, and the error that sends a set to backoff.

use chmigrate::k8s::crd::MigrationSet;
use chmigrate::k8s::reconcile::SetResult;

use super::context::key_of;

/// Why a reconcile has to be retried; the category labels metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("MigrationSet {set}: {reason}: {message}")]
    Target {
        set: String,
        reason: String,
        message: String,
    },
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Target { .. } => "clickhouse",
        }
    }
}

/// The error that sends a set to backoff, when trying again may help.
pub fn retry_error(set: &MigrationSet, result: &SetResult) -> Option<Error> {
    if !result.retry {
        return None;
    }
    let ready = result.status.conditions.iter().find(|c| c.type_ == "Ready");
    Some(Error::Target {
        set: key_of(set),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
    })
}
