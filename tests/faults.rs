//! The reliability promises in one place, each proved with real `tko`
//! processes on real stores: loaders never deadlock, a held lock is waited
//! for with a bound, a full descriptor table never empties a loaded job,
//! exit statuses mean what README says (`locks`); a backfill killed at
//! random points ends as one uninterrupted load, machine rows included
//! (`kills`). Lost connections are in `tests/store.rs`; README's
//! "Reliability" section lists every promise and its test.

mod support;

#[path = "faults/kills.rs"]
mod kills;
#[path = "faults/locks.rs"]
mod locks;
