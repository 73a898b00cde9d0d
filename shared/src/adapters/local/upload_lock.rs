//! One chunk writer per upload at a time, in this process. The local backend writes every chunk of an
//! upload into one file at its offset, so two attempts at the same offset with different bytes must
//! never overlap: the second must read the session only after the first has committed (and then finds
//! its chunk accepted, or the offset moved on). redb is held by exactly one process, so an in-process
//! lock is mutual exclusion enough, and none needs to survive a crash (a durable lease would cost a
//! database commit per chunk).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ports::ChunkGuard;

/// Upload id -> its lock, present only while someone holds or waits for it.
#[derive(Default)]
pub struct UploadLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

struct Held {
    id: String,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Nobody else holds or waits for it (they would hold a clone): forget it.
        if locks
            .get(&self.id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

impl UploadLocks {
    /// Waits until no other writer of `upload_id` holds its lock, and holds it until the guard drops.
    pub async fn lock(&self, upload_id: &str) -> ChunkGuard {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(upload_id.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        Box::new(Held {
            id: upload_id.to_string(),
            locks: self.locks.clone(),
            guard: Some(guard),
        })
    }

    /// How many uploads have a lock held or awaited (none are kept once released).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writers_of_one_upload_take_turns_and_nothing_is_kept() {
        let locks = Arc::new(UploadLocks::default());
        let first = locks.lock("a").await;
        // Another upload is not held up.
        let other = locks.lock("b").await;
        drop(other);
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("a").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second writer got in");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the second writer gets in once the first is done")
            .unwrap();
        assert_eq!(locks.held(), 1);
        drop(second);
        assert_eq!(locks.held(), 0);
    }
}
