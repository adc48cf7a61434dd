//! Calls into the hypervisor: Xen hypercalls (`hvc #0xEA1`) and PSCI
//! (`hvc #0`, SMC Calling Convention).
//!
//! Xen ABI (xen/include/public/arch-arm.h, "Hypercall calling convention"):
//! x16 holds the hypercall number, x0-x4 the arguments, x0 the result; Xen may
//! clobber x16 and every argument register.

/// PSCI 0.2 `SYSTEM_OFF` function id.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI 0.2 `SYSTEM_RESET` function id.
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;

/// Issues Xen hypercall `op` with five arguments and returns Xen's result
/// (zero or positive on success, `-errno` on failure).
///
/// # Safety
/// Arguments that are guest addresses must point to memory that is valid, and
/// laid out as Xen expects for `op`, for the whole call; the operation itself
/// must not break the guest's memory model (for example by mapping a page
/// over memory that Rust code owns).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[inline]
pub unsafe fn hypercall(op: u64, args: [u64; 5]) -> i64 {
    let result: i64;
    // SAFETY: the caller guarantees the arguments are valid for `op`; every
    // register Xen may clobber is declared as an output, and the asm block may
    // read or write memory (no `nomem`), so the compiler keeps argument
    // structures in memory around the call.
    unsafe {
        core::arch::asm!(
            "hvc #0xEA1",
            inout("x0") args[0] => result,
            inout("x1") args[1] => _,
            inout("x2") args[2] => _,
            inout("x3") args[3] => _,
            inout("x4") args[4] => _,
            inout("x16") op => _,
            options(nostack),
        );
    }
    result
}

/// Issues a PSCI call through `hvc #0` and returns x0.
///
/// # Safety
/// `function` must be a PSCI function whose effect the caller is prepared
/// for (`SYSTEM_OFF` and `SYSTEM_RESET` do not return on success).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[inline]
pub unsafe fn psci_call(function: u32, arg0: u64, arg1: u64, arg2: u64) -> i64 {
    let result: i64;
    // SAFETY: SMCCC 1.0 allows the callee to clobber x0-x17; all of them are
    // declared as outputs.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") u64::from(function) => result,
            inout("x1") arg0 => _,
            inout("x2") arg1 => _,
            inout("x3") arg2 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    result
}
