//! `tko` turns Autotest results directories into a TKO-compatible results
//! warehouse.
//!
//! ```text
//! discover (walkdir) ─▶ ingest (rayon: read files, run parsers) ─▶ Job trees
//!                                   │
//!                               parse (nom, pure)
//! ```
//!
//! Modules are named for their pipeline stage. `parse` and `model` do no
//! I/O; `discover` walks directories without reading results files;
//! `ingest` is the only place results files are read and the only place
//! rayon runs. `gen` writes synthetic results trees for benchmarks.

#![warn(missing_docs)]

pub mod discover;
pub mod gen;
pub mod ingest;
pub mod model;
pub mod parse;
