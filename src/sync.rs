//! One way to take a lock. darkroom's mutexes guard small in-memory views (maps of
//! signals, counters, the log ring, GPU readings) that stay usable if a thread
//! panicked while holding one, so a poisoned lock is recovered, never a reason to
//! skip an update or report nothing.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering it if a panicking thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
