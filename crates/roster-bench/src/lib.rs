//! Roster's benchmarks (issue 7): a load and data generator that starts the real server on a
//! fresh store, measures one scenario, and prints its method and figures as text or JSON.
//! `docs/benchmarks.md` describes the scenarios, the last figures and how to rerun them.

pub mod index;
pub mod load;
pub mod parse;
pub mod report;
pub mod scenarios;
pub mod seed;
pub mod standin;
pub mod system;
pub mod target;
pub mod workers;
