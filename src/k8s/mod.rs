//! The Kubernetes model and its logic: the custom resources ([`crd`]),
//! manifests read from files ([`manifest`]), rendering migrations as
//! manifests ([`render`]), the set's and each migration's status
//! ([`set_status`], [`migration_status`]) — all pure — and the reconcile of
//! one `MigrationSet` through the engine ([`reconcile`]), shared by
//! `chmigrate apply -f` and the operator.

pub mod crd;
pub mod drift_status;
pub mod guard;
pub mod manifest;
pub mod migration_status;
pub mod reconcile;
pub mod render;
pub mod set_status;
