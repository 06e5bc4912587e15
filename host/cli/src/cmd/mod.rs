//! One file per command group: its arguments and what it does, side by side.

pub mod backup;
pub mod build;
pub mod data;
pub mod demo;
pub mod follow;
pub mod generate;
pub mod log;
pub mod serve;
pub mod snapshot;
