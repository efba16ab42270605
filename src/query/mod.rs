//! The one read layer of the warehouse, shared by `tko export`, `stats`,
//! `summary`, `diagnostics`, `compare`, `history` and `serve`:
//! [`filter`] turns flag values into a validated [`Filter`] (dates through
//! `jiff`, status words, globs), [`plan`] writes one SELECT per dialect
//! whose columns are already the output text, and [`rows`] streams the rows
//! of either store into a [`Sink`]; [`joblist`] pages through jobs with
//! their status counts and [`jobdetail`] reads one job in full,
//! [`perfseries`] one perf key over time, and [`perfcache`] keeps `tko
//! compare`'s exact perf moments per kernel. Both stores give
//! byte-identical rows for the same query ([`float`] formats SQLite's
//! doubles as PostgreSQL does). Nothing here prints; sinks (CSV and JSON Lines in
//! [`crate::export`], aggregations in [`crate::report`]) decide what the
//! rows become.

pub mod filter;
pub mod float;
pub mod jobdetail;
pub mod joblist;
pub mod moments;
pub mod perfcache;
pub mod perfseries;
pub mod plan;
pub mod rows;

pub use filter::{glob_escape, parse_status, parse_time, Filter};
pub use float::pg_float;
pub use jobdetail::JobDetail;
pub use joblist::{JobPage, JobSummary};
pub use moments::{ExactSum, Moments};
pub use perfseries::PerfPoint;
pub use plan::{
    pg_literal, plan, ColType, Column, Dialect, Kind, PerfGroup, Plan, Query, INFORMATION_COLUMNS,
    TEST_COLUMNS,
};
pub use rows::{Sink, Warehouse};

use crate::store::{self, BoxError};
use std::io;

/// What went wrong in a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filter value cannot be used.
    #[error("{0}")]
    Filter(String),
    /// The query cannot be run as asked (on either store).
    #[error("{0}")]
    Unsupported(String),
    /// Opening the warehouse failed.
    #[error(transparent)]
    Open(#[from] store::Error),
    /// A statement failed.
    #[error("database error during export ({what})")]
    Db {
        /// What was running.
        what: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// Writing the output failed.
    #[error("writing the export")]
    Io(#[from] io::Error),
}
