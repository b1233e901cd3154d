//! migrate: zero-downtime PostgreSQL schema changes by expand and contract.
//!
//! Data flows one way: files → statements (`sql`) → operations (`model`) → findings (`lint`)
//! and plan (`plan`) → reports (`report`). A rule never talks to the database. `engine` runs a
//! plan on one database; `fleet` runs a command over many.

pub mod analyze;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod files;
pub mod fleet;
pub mod lint;
pub mod load;
pub mod model;
pub mod plan;
pub mod rehearse;
pub mod report;
pub mod sql;
pub mod vocab;
