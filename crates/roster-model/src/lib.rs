//! Roster's wire and domain types, shared by the server and the client SDK so that both agree on
//! the wire byte for byte. No I/O lives here.

pub mod domain;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resources;
pub mod validate;
pub mod values;
pub mod wire;

pub use domain::*;
pub use error::{ApiError, ErrorCode};
