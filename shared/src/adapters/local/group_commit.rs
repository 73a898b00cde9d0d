//! Group commit for redb: one writer thread applies every write of the process, and the writes that
//! queue up while a commit is being flushed go into the next transaction together, so they share one
//! fsync. Each caller is answered only after the transaction holding its write is durable (redb's
//! `Durability::Immediate`), as if it had committed alone.
//!
//! Why: a redb commit costs one fsync (1-4 ms on this machine's virtual disk), and redb runs one
//! write transaction at a time. With a commit per call, 8 concurrent uploads waited for each other's
//! fsyncs in turn (about 7 commits per small upload: 480 uploads/s). Batched, they wait for about
//! one fsync each time.
//!
//! The writes of a batch are applied one after the other in the same transaction, so each sees the
//! ones before it, exactly as if they had committed in that order. A write that answers a condition
//! failure (`StoreError::Conflict`, `QuotaExceeded`) must do so before writing anything, so its batch
//! mates commit unaffected; one that fails with `StoreError::Backend` (or panics) may have written
//! half of itself, so the whole transaction is dropped and every write in it is answered with an
//! error: nothing of the batch is stored, and each caller knows it.
//!
//! A write may be deferred (`write_deferred`): answered once committed but before it is flushed. A
//! batch holding only deferred writes is committed without a flush (`Durability::None`); redb's
//! commits become durable in order, so the next flushed commit makes it durable too. That is for
//! writes whose loss in a crash is harmless or repaired: followed by a flushed write of the same
//! request, or recovered from elsewhere (a chunk's progress from its partial file, `progress`).
//! Every `MAX_DEFERRED`-th commit is flushed all the same, which bounds what redb keeps unflushed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use crate::domain::StoreError;

/// At most this many writes in one transaction: bounds the wait of the last one.
const MAX_BATCH: usize = 256;

/// At most this many unflushed commits in a row.
const MAX_DEFERRED: usize = 64;

/// The writer thread and its queue. Dropping it lets the thread finish the queued writes and waits
/// for it, so that the database file is closed (and may be opened again) once the store is gone.
pub(super) struct GroupCommit {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    pub(super) fn start(db: Arc<Database>) -> anyhow::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || write_batches(&db, &jobs))
            .context("starting the database's writer thread")?;
        Ok(GroupCommit {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `write` in a write transaction (shared with other writes queued at the same time) and
    /// answers once that transaction is durable. See the module doc for what `write` may do.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue_write(write, true).await
    }

    /// Like `write`, but answered once committed, possibly before the commit is flushed (see the
    /// module doc for when that is right).
    pub(super) async fn write_deferred<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue_write(write, false).await
    }

    async fn queue_write<T, F>(&self, write: F, durable: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job = Box::new(Pending {
            write: Some(write),
            durable,
            result: None,
            answer,
        });
        self.queue
            .as_ref()
            .and_then(|q| q.send(job).ok())
            .ok_or_else(|| StoreError::Backend(anyhow!("the database's writer thread is gone")))?;
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(anyhow!(
                "the database's writer thread dropped the write (it panicked)"
            )))
        })
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One queued write, its result kept until its transaction's fate is known.
trait Job: Send {
    /// Whether its caller waits for the flush (`GroupCommit::write`).
    fn durable(&self) -> bool;
    /// Applies the write; false if it failed in a way that may have left part of it in `txn`.
    fn apply(&mut self, txn: &WriteTransaction) -> bool;
    /// Answers the caller: the write's own result if it failed or its transaction committed,
    /// otherwise why the transaction was not committed.
    fn answer(self: Box<Self>, committed: Result<(), &str>);
}

struct Pending<T, F> {
    write: Option<F>,
    durable: bool,
    result: Option<Result<T, StoreError>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn apply(&mut self, txn: &WriteTransaction) -> bool {
        let Some(write) = self.write.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| write(txn))).unwrap_or_else(|_| {
            Err(StoreError::Backend(anyhow!(
                "a database write panicked; its transaction was dropped"
            )))
        });
        let clean = !matches!(result, Err(StoreError::Backend(_)));
        self.result = Some(result);
        clean
    }

    fn answer(self: Box<Self>, committed: Result<(), &str>) {
        let answer = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(why)) => Err(StoreError::Backend(anyhow!("{why}"))),
            (None, Ok(())) => Err(StoreError::Backend(anyhow!("a write was never applied"))),
        };
        // The caller may have gone away (its request was dropped); the write stands regardless.
        let _ = self.answer.send(answer);
    }
}

/// The writer thread: waits for a write, takes every write queued behind it, commits them as one.
fn write_batches(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    let mut unflushed = 0;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let flush = unflushed >= MAX_DEFERRED || batch.iter().any(|job| job.durable());
        if commit(db, batch, flush) {
            unflushed = if flush { 0 } else { unflushed + 1 };
        }
    }
}

/// Commits the batch as one transaction, flushed or not; answers whether it was committed.
fn commit(db: &Database, mut batch: Vec<Box<dyn Job>>, flush: bool) -> bool {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            answer_all(batch, Err(&format!("starting a transaction: {e}")));
            return false;
        }
    };
    let durability = if flush {
        Durability::Immediate
    } else {
        Durability::None
    };
    if let Err(e) = txn.set_durability(durability) {
        answer_all(batch, Err(&format!("setting the durability: {e}")));
        return false;
    }
    if let Some(failed) = batch.iter_mut().position(|job| !job.apply(&txn)) {
        let _ = txn.abort();
        tracing::warn!(
            failed,
            batch = batch.len(),
            "a database write failed; its transaction was dropped"
        );
        // The failed write answers its own error; the others say why they were not stored.
        answer_all(
            batch,
            Err("not stored: another write in the same transaction failed"),
        );
        return false;
    }
    match txn.commit() {
        Ok(()) => {
            answer_all(batch, Ok(()));
            true
        }
        Err(e) => {
            answer_all(batch, Err(&format!("committing: {e}")));
            false
        }
    }
}

fn answer_all(batch: Vec<Box<dyn Job>>, committed: Result<(), &str>) {
    for job in batch {
        job.answer(committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn put(txn: &WriteTransaction, key: &str, v: u64) -> Result<(), StoreError> {
        let mut t = txn
            .open_table(T)
            .map_err(|e| StoreError::Backend(e.into()))?;
        t.insert(key, v)
            .map_err(|e| StoreError::Backend(e.into()))?;
        Ok(())
    }

    fn stored(db: &Database, key: &str) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).ok()?;
        let v = t.get(key).unwrap().map(|v| v.value());
        v
    }

    /// Holds the writer thread inside a first write until `release` is sent, so that the writes
    /// queued meanwhile form one batch.
    async fn hold(
        writer: &Arc<GroupCommit>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), StoreError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = oneshot::channel::<()>();
        let w = writer.clone();
        let first = tokio::spawn(async move {
            w.write(move |txn| {
                let _ = entered.send(());
                held.recv().unwrap();
                put(txn, "first", 1)
            })
            .await
        });
        inside.await.unwrap();
        (release, first)
    }

    /// Queues a write and waits until it is in the writer's queue.
    fn queue<T: Send + 'static>(
        writer: &Arc<GroupCommit>,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, StoreError>> {
        let w = writer.clone();
        let h = tokio::spawn(async move { w.write(f).await });
        std::thread::sleep(std::time::Duration::from_millis(50));
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_commits_in_order_and_a_failed_condition_leaves_the_others_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("db")).unwrap());
        let writer = Arc::new(GroupCommit::start(db.clone()).unwrap());
        let (release, first) = hold(&writer).await;
        let a = queue(&writer, |txn| put(txn, "a", 1));
        // Sees the write queued before it, in the same transaction.
        let b = queue(&writer, |txn| {
            let seen = txn
                .open_table(T)
                .unwrap()
                .get("a")
                .unwrap()
                .map(|v| v.value());
            put(txn, "b", seen.unwrap_or(0) + 1)
        });
        let conflict = queue(&writer, |_| -> Result<(), StoreError> {
            Err(StoreError::Conflict)
        });
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        assert!(matches!(conflict.await.unwrap(), Err(StoreError::Conflict)));
        assert_eq!((stored(&db, "a"), stored(&db, "b")), (Some(1), Some(2)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_fails_half_way_takes_its_batch_down_and_nothing_of_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("db")).unwrap());
        let writer = Arc::new(GroupCommit::start(db.clone()).unwrap());
        let (release, first) = hold(&writer).await;
        let before = queue(&writer, |txn| put(txn, "before", 1));
        let failing = queue(&writer, |txn| -> Result<(), StoreError> {
            put(txn, "half", 1)?;
            Err(StoreError::Backend(anyhow!(
                "injected: the second half failed"
            )))
        });
        let after = queue(&writer, |txn| put(txn, "after", 1));
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for (name, r) in [
            ("before", before.await.unwrap()),
            ("failing", failing.await.unwrap()),
            ("after", after.await.unwrap()),
        ] {
            assert!(matches!(r, Err(StoreError::Backend(_))), "{name}: {r:?}");
        }
        for key in ["before", "half", "after"] {
            assert_eq!(stored(&db, key), None, "{key}");
        }
        // A write that panics is answered with an error, and the writer carries on.
        let panicked = writer
            .write(|_| -> Result<(), StoreError> { panic!("injected") })
            .await;
        assert!(matches!(panicked, Err(StoreError::Backend(_))));
        writer.write(|txn| put(txn, "later", 1)).await.unwrap();
        assert_eq!(stored(&db, "later"), Some(1));
        assert_eq!(stored(&db, "first"), Some(1));
    }

    #[tokio::test]
    async fn dropping_the_store_closes_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Arc::new(Database::create(&path).unwrap());
        let writer = GroupCommit::start(db.clone()).unwrap();
        writer.write(|txn| put(txn, "k", 7)).await.unwrap();
        drop(db);
        drop(writer);
        // redb refuses a second open of a file this process still holds.
        let again = Database::create(&path).unwrap();
        assert_eq!(stored(&again, "k"), Some(7));
    }
}
