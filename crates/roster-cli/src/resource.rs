//! The JSON the CLI prints: the management API's resources, shared with the server so that both
//! print the same bytes.

pub use roster_model::resources::*;
