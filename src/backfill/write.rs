//! The writer stage of a backfill: parsed chunks are taken from the
//! scanner by one or more writers, each with its own connection
//! ([`Store`]), which load them ([`Store::load_jobs`], one transaction per
//! batch) and record their signatures; what each chunk came to is handed
//! back to the calling thread, which alone keeps the [`Summary`] and talks
//! to the [`Observer`]. With two writers on PostgreSQL one streams its batch
//! while the server still works through the other's (the machine rows, the
//! one thing two batches share, are locked only at the end of a batch).
//! Chunks are taken in order but may be committed out of order: each job
//! is atomic and recorded in the ledger, so a killed run resumes the same.

use super::{Chunk, JobOutcome, Observer, Options, Ready, Summary, Todo};
use crate::store::postgres::timing;
use crate::store::{Action, Error, LoadItem, LoadOutcome, Signature, Store};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::Instant;

/// What a writer made of one chunk: the chunk itself (for the accounting)
/// and the results of its loadable jobs ([`loadable`]), in order; `Err`
/// when the store failed as a whole (the run stops).
pub(super) struct Written {
    pub chunk: Chunk,
    pub loaded: Result<Vec<Result<LoadOutcome, Error>>, Error>,
}

impl Written {
    /// `chunk` written by `store` ([`store_chunk`]).
    pub(super) fn by(store: &mut dyn Store, chunk: Chunk, opts: &Options) -> Written {
        let loaded = store_chunk(store, &chunk, opts);
        Written { chunk, loaded }
    }
}

/// The jobs of a chunk that are loaded: those with a status file.
fn loadable(ready: &[Ready]) -> impl Iterator<Item = &Ready> {
    ready.iter().filter(|r| r.parsed.status_file.is_some())
}

/// The store's part of one chunk (nothing in a dry run): records the
/// listings the walk took (and forgets those of directories gone), the
/// jobs that could not be read as failed, loads the loadable ones and
/// records the signatures of those now in the warehouse. `Err` when the
/// store failed as a whole.
fn store_chunk(
    store: &mut dyn Store,
    chunk: &Chunk,
    opts: &Options,
) -> Result<Vec<Result<LoadOutcome, Error>>, Error> {
    if opts.dry_run {
        return Ok(Vec::new());
    }
    let t0 = Instant::now();
    store.record_top_listings(&chunk.listings, &chunk.gone)?;
    timing::add("backfill: recording listings", t0);
    if !chunk.failed.is_empty() {
        store.record_failures(&chunk.failed)?;
    }
    let ready: Vec<&Ready> = loadable(&chunk.ready).collect();
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<LoadItem<'_>> = ready
        .iter()
        .map(|r| LoadItem {
            job: &r.parsed.job,
            source: r.parsed.path.clone(),
            fingerprint: r.parsed.fingerprint.clone(),
            force: opts.force,
            read_at: r.read_at,
        })
        .collect();
    let results = store.load_jobs(&items);
    let signatures: Vec<Signature> = ready
        .iter()
        .zip(&items)
        .zip(&results)
        .filter(|(_, result)| result.is_ok())
        .map(|((r, item), _)| Signature {
            tag: item.job.tag.clone(),
            signature: r.signature.clone(),
            fingerprint: item.fingerprint.clone(),
        })
        .collect();
    store.record_signatures(&signatures)?;
    Ok(results)
}

/// Runs `writers` (at least one) on the chunks of `chunks` until it is
/// closed, each writer on its own scoped thread, and hands each [`Written`]
/// to `apply` on the calling thread. Stops at the first error `apply`
/// returns (the writers finish their current chunk and stop; the scanner
/// stops when its channel closes).
pub(super) fn run_writers<'scope, 'env: 'scope, 'w: 'env>(
    scope: &'scope Scope<'scope, 'env>,
    writers: Vec<&'env mut (dyn Store + 'w)>,
    chunks: Receiver<Chunk>,
    opts: &'env Options,
    mut apply: impl FnMut(Written) -> Result<(), Error>,
) -> Result<(), Error> {
    let chunks = Arc::new(Mutex::new(chunks));
    let (done_tx, done_rx) = channel::<Written>();
    for store in writers {
        let chunks = Arc::clone(&chunks);
        let done_tx = done_tx.clone();
        scope.spawn(move || loop {
            let t0 = Instant::now();
            let next = chunks.lock().map(|rx| rx.recv());
            let Ok(Ok(chunk)) = next else {
                return;
            };
            timing::add("backfill: writer waits for a parsed chunk", t0);
            let written = Written::by(store, chunk, opts);
            let fatal = written.loaded.is_err();
            if done_tx.send(written).is_err() || fatal {
                return;
            }
        });
    }
    drop(done_tx);
    drop(chunks);
    for written in done_rx {
        apply(written)?;
    }
    Ok(())
}

/// Accounts for one written chunk in `summary` and tells `observer`; the
/// chunk's jobs whose lock was held go to `locked`. A dry run classifies
/// the jobs from the chunk's ledger rows instead.
pub(super) fn account(
    written: Written,
    opts: &Options,
    summary: &mut Summary,
    observer: &mut dyn Observer,
    locked: &mut Vec<Todo>,
) -> Result<(), Error> {
    let Written { chunk, loaded } = written;
    summary.units_done += chunk.units_done;
    summary.found += chunk.found;
    summary.unchanged_by_metadata += chunk.unchanged_by_metadata;
    summary.done += chunk.unchanged_by_metadata + chunk.busy.len();
    summary.walk_errors.extend(chunk.walk_errors);
    for f in &chunk.failed {
        observer.unread(&f.tag, &f.error);
    }
    summary.done += chunk.failed.len();
    summary
        .failed
        .extend(chunk.failed.into_iter().map(|f| (f.tag, f.error)));
    for n in &chunk.notices {
        observer.notice(n);
    }
    locked.extend(chunk.busy);
    let mut results = loaded?.into_iter();
    let force = opts.force;
    for r in &chunk.ready {
        summary.done += 1;
        let p = &r.parsed;
        if p.status_file.is_none() {
            summary.no_status_file.push(p.job.tag.clone());
            observer.job(&p.job, JobOutcome::NoStatusFile);
            continue;
        }
        if opts.dry_run {
            // What would be done, from the ledger.
            let action = match chunk.ledger.get(&p.job.tag) {
                Some(l) if l.deleted && !force => {
                    summary.deleted_earlier += 1;
                    Action::DeletedEarlier
                }
                Some(l) if l.loaded && l.fingerprint == p.fingerprint && !force => {
                    summary.unchanged_by_content += 1;
                    Action::Skipped
                }
                Some(_) => {
                    summary.replaced += 1;
                    Action::Replaced
                }
                None => {
                    summary.inserted += 1;
                    Action::Inserted
                }
            };
            observer.job(&p.job, JobOutcome::WouldBe(action));
            continue;
        }
        let tag = &p.job.tag;
        match results.next().expect("a result for each loadable job") {
            Ok(outcome) => {
                match outcome.action {
                    Action::Inserted => summary.inserted += 1,
                    Action::Replaced => summary.replaced += 1,
                    Action::Skipped => summary.unchanged_by_content += 1,
                    Action::DeletedEarlier => summary.deleted_earlier += 1,
                }
                summary.rows.add(&outcome.rows);
                if p.job.has_errors()
                    && !matches!(outcome.action, Action::Skipped | Action::DeletedEarlier)
                {
                    summary.with_errors.push(tag.clone());
                }
                observer.job(&p.job, JobOutcome::Loaded(&outcome));
            }
            Err(e) => {
                let text = crate::store::error_chain(&e);
                observer.job(&p.job, JobOutcome::Failed(&text));
                summary.failed.push((tag.clone(), text));
            }
        }
    }
    Ok(())
}

/// After a run that loaded `loaded_jobs`: brings the planner's statistics
/// up to date when the store says they are stale (see
/// [`Store::stale_statistics`]), the tables shared among `writers`
/// (largest first, each to the writer with the fewest pages so far), each
/// writer analyzing its share on its own thread. Returns whether it did.
pub(super) fn refresh_statistics(
    writers: &mut [&mut (dyn Store + '_)],
    loaded_jobs: usize,
) -> Result<bool, Error> {
    let mut tables = writers[0].stale_statistics(loaded_jobs)?;
    if tables.is_empty() {
        return Ok(false);
    }
    tables.sort_by_key(|t| std::cmp::Reverse(t.1));
    let mut shares: Vec<(u64, Vec<&str>)> = vec![(0, Vec::new()); writers.len()];
    for (table, pages) in tables {
        let least = shares
            .iter_mut()
            .min_by_key(|s| s.0)
            .expect("at least one writer");
        least.0 += pages.max(1);
        least.1.push(table);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = writers
            .iter_mut()
            .zip(&shares)
            .map(|(w, (_, share))| scope.spawn(move || w.analyze(share)))
            .collect();
        running
            .into_iter()
            .try_for_each(|h| h.join().expect("a writer's ANALYZE does not panic"))
    })?;
    Ok(true)
}
