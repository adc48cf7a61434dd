//! A spin lock that also masks IRQs while held, for state shared between
//! thread code and interrupt handlers (on one vCPU, a handler spinning on a
//! lock its interrupted thread holds would never return).

use core::ops::{Deref, DerefMut};

/// A value behind a spin lock taken with IRQs masked.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Access to an [`IrqMutex`]'s value; IRQs stay masked until it drops.
pub struct IrqGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    daif: u64,
}

impl<T> IrqMutex<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Self {
        IrqMutex {
            inner: spin::Mutex::new(value),
        }
    }

    /// Masks IRQs and takes the lock.
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let daif = arch::cpu::mask_irqs();
        IrqGuard {
            guard: Some(self.inner.lock()),
            daif,
        }
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // Release the lock before letting IRQs in again.
        self.guard.take();
        arch::cpu::restore_irqs(self.daif);
    }
}
