//! Monotonic time from the virtual counter, one-shot deadlines on the virtual
//! timer, and the wait primitive everything blocks in: "until this condition
//! holds or this deadline passes", sleeping in WFI, never spinning.

use core::sync::atomic::{AtomicU64, Ordering};
use drivers::irq::IrqContext;

/// Nanoseconds per second.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

static FREQUENCY: AtomicU64 = AtomicU64::new(1);

/// Reads the counter frequency once; call before anything else here.
pub fn init() {
    FREQUENCY.store(arch::cpu::counter_frequency().max(1), Ordering::Relaxed);
    arch::timer::disable();
}

/// Nanoseconds since the counter started (boot of the domain).
pub fn now_ns() -> u64 {
    ticks_to_ns(arch::cpu::counter())
}

fn ticks_to_ns(ticks: u64) -> u64 {
    let frequency = u128::from(FREQUENCY.load(Ordering::Relaxed));
    (u128::from(ticks) * u128::from(NANOS_PER_SECOND) / frequency) as u64
}

fn ns_to_ticks(ns: u64) -> u64 {
    let frequency = u128::from(FREQUENCY.load(Ordering::Relaxed));
    (u128::from(ns) * frequency).div_ceil(u128::from(NANOS_PER_SECOND)) as u64
}

/// The virtual timer's interrupt: the deadline passed; stop the timer (the
/// waiter re-arms it if it still needs one).
pub fn handle_timer_interrupt(_context: &IrqContext) {
    arch::timer::disable();
}

/// Waits until `condition()` is true (returns true) or the clock reaches
/// `deadline_ns` (returns false). `condition` is checked with IRQs masked,
/// then the CPU sleeps in WFI, which wakes on a pending interrupt even while
/// masked, so an interrupt between the check and the sleep is not missed.
pub fn wait_until(deadline_ns: u64, mut condition: impl FnMut() -> bool) -> bool {
    loop {
        let daif = arch::cpu::mask_irqs();
        if condition() {
            arch::cpu::restore_irqs(daif);
            return true;
        }
        if now_ns() >= deadline_ns {
            arch::cpu::restore_irqs(daif);
            return false;
        }
        arch::timer::set_deadline(ns_to_ticks(deadline_ns));
        arch::cpu::wait_for_interrupt();
        // Unmasking lets the pending interrupt's handler run; then check again.
        arch::cpu::restore_irqs(daif);
    }
}

/// Sleeps for `duration_ns`.
pub fn sleep_ns(duration_ns: u64) {
    wait_until(now_ns().saturating_add(duration_ns), || false);
}
