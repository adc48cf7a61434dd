//! The panic handler and the handler for unexpected exceptions: print once,
//! then shut the domain down as crashed.

use super::console::emergency_print;
use super::xen::shutdown;
use core::sync::atomic::{AtomicBool, Ordering};
use drivers::xen::hypercall::ShutdownReason;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: printing again could recurse.
        shutdown(ShutdownReason::Crash);
    }
    match info.location() {
        Some(location) => emergency_print(format_args!(
            "vdispl-os: panic at {}:{}: {}\n",
            location.file(),
            location.line(),
            info.message()
        )),
        None => emergency_print(format_args!("vdispl-os: panic: {}\n", info.message())),
    }
    shutdown(ShutdownReason::Crash)
}

/// Handles every exception taken to EL1: IRQs from the kernel itself go to
/// the interrupt dispatcher; anything else is a bug, reported and fatal.
pub fn handle_exception(
    kind: arch::exception::VectorKind,
    frame: &mut arch::exception::ExceptionFrame,
) {
    if kind.class() == arch::exception::ExceptionClass::Irq && kind.from_kernel() {
        super::irq::handle(frame);
        return;
    }
    if PANICKING.swap(true, Ordering::SeqCst) {
        shutdown(ShutdownReason::Crash);
    }
    emergency_print(format_args!(
        "vdispl-os: unexpected {:?} exception from {}\n{}",
        kind.class(),
        kind.origin(),
        frame
    ));
    shutdown(ShutdownReason::Crash)
}
