//! The web view (issue 18). Placeholder for this branch: the router, sessions and the list
//! page come with the full `ui/mod.rs`; here only the detail document and its helpers.

pub mod detail;
pub mod diff;
pub mod yaml;
