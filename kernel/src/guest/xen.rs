//! The real hypervisor behind the drivers' [`Hypervisor`] trait, and domain
//! shutdown.

use drivers::xen::hypercall::{self, Hypervisor, Op, ShutdownReason};

/// Xen, reached through `hvc #0xEA1`.
pub struct Xen;

impl Hypervisor for Xen {
    unsafe fn hypercall(&self, op: Op, args: [u64; 5]) -> i64 {
        // SAFETY: forwarded from the caller, who guarantees the arguments.
        unsafe { arch::hvc::hypercall(op as u64, args) }
    }
}

/// Shuts the domain down for `reason`; falls back to PSCI if Xen refuses,
/// and parks the CPU if even that returns.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let error = hypercall::sched_shutdown(&Xen, reason);
    crate::guest::console::emergency_print(format_args!(
        "vdispl-os: SCHEDOP_shutdown refused: {error}; trying PSCI\n"
    ));
    let function = match reason {
        ShutdownReason::Reboot => arch::hvc::PSCI_SYSTEM_RESET,
        _ => arch::hvc::PSCI_SYSTEM_OFF,
    };
    // SAFETY: SYSTEM_OFF/SYSTEM_RESET end the domain; nothing runs after.
    unsafe { arch::hvc::psci_call(function, 0, 0, 0) };
    arch::cpu::halt()
}
