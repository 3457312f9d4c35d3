//! Mutex access that survives poisoning. A poisoned lock only means that a panic
//! happened elsewhere while it was held: engine threads abort the process on a panic, and
//! the FFI turns a panic in a poll into -EIO, after which the engine must stay usable.
//! The code holding these locks keeps their data consistent between steps.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `Mutex::try_lock` that, like `lock`, takes a poisoned lock: `None` only while another
/// thread holds it. A poll that panicked must not leave the engine answering -EBUSY to
/// every later poll and to close.
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_lock_takes_a_poisoned_lock_but_not_a_held_one() {
        let role = Mutex::new(0);
        let _ = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _held = role.lock().unwrap();
                    panic!("a poll panicked while holding the submit role");
                })
                .join()
        });
        assert!(role.is_poisoned());
        let held = try_lock(&role).expect("a poisoned role is free to take");
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(try_lock(&role).is_none(), "held by this thread"));
        });
        drop(held);
    }
}
