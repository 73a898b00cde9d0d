//! One memory budget for decoding images, shared by everything in the process.
//!
//! A decoded image can be a hundred times its file (a 35-byte GIF may claim a 134 MB canvas), so
//! the memory decoding takes is reserved before it starts: each decode asks for what its image's
//! header says it will hold at its peak (`domain::thumbnail::Probe::cost`) and runs only once that
//! much is free. Requests queue in arrival order (tokio's semaphore is fair), so a large image is not
//! starved by small ones; a request larger than the whole budget is refused at once, and one that
//! waits too long gives up (the media is made without a thumbnail, never refused for it). The number
//! of decodes running at once is also capped at the number of CPUs: more would only share them.
//!
//! Memory belongs to the process, not to one `App`: tests and tools that build several Apps in one
//! process must still share one budget, hence a process-wide instance (`for_process`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in KiB so that any size fits the semaphore's `u32` permit counts.
const UNIT: u64 = 1024;

pub struct DecodeBudget {
    bytes: Arc<Semaphore>,
    capacity_units: u32,
    slots: Arc<Semaphore>,
}

/// A reservation; the memory counts as free again when it is dropped. Move it into the blocking task
/// that decodes, so that it is held for as long as the decode runs (even if the request that asked
/// for it has gone).
#[derive(Debug)]
pub struct Grant {
    _bytes: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("decoding needs {need} bytes, more than the whole budget of {capacity}")]
    TooBig { need: u64, capacity: u64 },
    #[error("decoding needs {need} bytes and the budget stayed in use for {waited:?}")]
    Busy { need: u64, waited: Duration },
}

static PROCESS: OnceLock<DecodeBudget> = OnceLock::new();

impl DecodeBudget {
    /// A budget of `capacity` bytes for at most `slots` decodes at once.
    pub fn new(capacity: u64, slots: usize) -> Self {
        let capacity_units = u32::try_from(capacity / UNIT).unwrap_or(u32::MAX);
        DecodeBudget {
            bytes: Arc::new(Semaphore::new(capacity_units as usize)),
            capacity_units,
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// The process's budget. The first caller's capacity is the one used (every entry point builds
    /// its settings once, from the same environment).
    pub fn for_process(capacity: u64) -> &'static DecodeBudget {
        PROCESS.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            DecodeBudget::new(capacity, cpus)
        })
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity_units) * UNIT
    }

    /// Reserves `need` bytes (rounded up to whole KiB), waiting at most `wait` for them.
    pub async fn reserve(&self, need: u64, wait: Duration) -> Result<Grant, Refusal> {
        let units = need.div_ceil(UNIT);
        let units = match u32::try_from(units) {
            Ok(u) if u <= self.capacity_units => u,
            _ => {
                return Err(Refusal::TooBig {
                    need,
                    capacity: self.capacity(),
                })
            }
        };
        let acquire = async {
            let bytes = self.bytes.clone().acquire_many_owned(units).await;
            let slot = self.slots.clone().acquire_owned().await;
            match (bytes, slot) {
                (Ok(b), Ok(s)) => Some(Grant {
                    _bytes: b,
                    _slot: s,
                }),
                // The semaphores are never closed.
                _ => None,
            }
        };
        match tokio::time::timeout(wait, acquire).await {
            Ok(Some(grant)) => Ok(grant),
            Ok(None) | Err(_) => Err(Refusal::Busy { need, waited: wait }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn reservations_wait_for_each_other_and_the_oversized_are_refused() {
        let budget = DecodeBudget::new(100 * MIB, 4);
        let a = budget
            .reserve(60 * MIB, Duration::from_secs(1))
            .await
            .unwrap();
        // 60 + 60 > 100: the second waits, and gives up when the first is held too long.
        let e = budget
            .reserve(60 * MIB, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, Refusal::Busy { .. }), "{e}");
        // Once the first is released, the second gets its share.
        let waiting = budget.reserve(60 * MIB, Duration::from_secs(5));
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(a);
        };
        let (b, ()) = tokio::join!(waiting, release);
        b.unwrap();
        let e = budget
            .reserve(101 * MIB, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            Refusal::TooBig {
                need: 101 * MIB,
                capacity: 100 * MIB
            }
        );
    }

    #[tokio::test]
    async fn no_more_decodes_than_slots_run_at_once() {
        let budget = DecodeBudget::new(100 * MIB, 1);
        let _a = budget.reserve(1, Duration::from_secs(1)).await.unwrap();
        assert!(budget.reserve(1, Duration::from_millis(50)).await.is_err());
    }
}
