//! The reliability promises in one place, each proved with real `tko`
//! processes on real stores: loaders never deadlock, a held lock is waited
//! for with a bound, a full descriptor table never empties a loaded job,
//! exit statuses mean what README says. (The kill -9 and lost-connection
//! tests live in `tests/backfill.rs` and `tests/store.rs`; README's
//! "Reliability" section lists them all.)

mod support;

#[path = "faults/locks.rs"]
mod locks;
