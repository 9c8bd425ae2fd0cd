//! One module per command (or family of commands): each reads its
//! arguments, calls the library, and prints.

pub mod apply;
pub mod authoring;
pub mod backups;
pub mod doctor;
pub mod drift;
pub mod ledger;
pub mod migrate;
pub mod profile;
pub mod repair;
pub mod status;
pub mod test;
pub mod validate;
