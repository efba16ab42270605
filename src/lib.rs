//! `tko` turns Autotest results directories into a TKO-compatible results
//! warehouse.
//!
//! ```text
//! discover (walkdir) ─▶ ingest (rayon: read files, run parsers) ─▶ tree (assemble Job)
//!                                   │                                    │
//!                               parse (nom, pure)                    store (PostgreSQL COPY / SQLite)
//! ```
//!
//! Modules are named for their pipeline stage. `parse`, `model` and `tree`
//! do no I/O; `discover` walks directories without reading contents;
//! `ingest` is the only place files are read and the only place rayon runs.
//! `gen` is not a pipeline stage: it writes synthetic results trees for
//! benchmarks and tests.

pub mod gen;
pub mod model;
pub mod parse;
