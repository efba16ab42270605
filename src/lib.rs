//! `tko` turns Autotest results directories into a TKO-compatible results
//! warehouse.
//!
//! ```text
//! discover (dedup) ─▶ ingest   (rayon: read files, run parsers) ─▶ Job trees
//!                                   │                                  │
//!                               parse (nom, pure)            table (flat rows) ─▶ store
//!                                                            (PostgreSQL binary COPY / SQLite)
//! ```
//!
//! Modules are named for their pipeline stage. `parse` and `model` do no
//! I/O; `discover` walks directories without reading results files;
//! `ingest` is the only place results files are read and the only place
//! rayon runs. `table` flattens job trees into rows; `store` loads them.
//! `backfill` drives whole results roots through parse and load, resumably.
//! `gen` writes synthetic results trees for benchmarks. `text` keeps
//! non-UTF-8 bytes losslessly (Latin-1). `query` and `report` read the
//! warehouse; `serve` puts them on HTTP.

#![warn(missing_docs)]

pub mod backfill;
pub mod discover;
pub mod export;
pub mod gen;
pub mod ingest;
pub mod lock;
pub mod model;
pub mod parse;
pub mod query;
pub mod report;
pub mod serve;
pub mod store;
pub mod table;
pub mod text;
pub mod watch;
