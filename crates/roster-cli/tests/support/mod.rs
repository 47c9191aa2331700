//! Shared by the reliability tests of the real binary (multiprocess.rs, crash.rs): the `roster`
//! process harness and the mixed-load generator.
#![allow(dead_code)]

pub mod load;
pub mod process;
