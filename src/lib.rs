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
//! `table` flattens jobs into rows; `store` writes them.

pub mod model;
pub mod parse;
pub mod store;
pub mod table;
