//! Xen hypercalls used by the guest, with their argument structures laid out
//! as in xen/include/public/{xen.h, version.h, memory.h, sched.h,
//! event_channel.h, hvm/hvm_op.h, hvm/params.h}.
//!
//! The hypercall instruction itself lives behind the [`Hypervisor`] trait: the
//! guest implements it with `hvc #0xEA1`, host tests with a fake.

use super::error::{check, XenError};

/// Hypercall numbers (xen.h `__HYPERVISOR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    /// `__HYPERVISOR_memory_op`.
    MemoryOp = 12,
    /// `__HYPERVISOR_xen_version`.
    XenVersion = 17,
    /// `__HYPERVISOR_console_io`.
    ConsoleIo = 18,
    /// `__HYPERVISOR_grant_table_op`.
    GrantTableOp = 20,
    /// `__HYPERVISOR_vcpu_op`.
    VcpuOp = 24,
    /// `__HYPERVISOR_sched_op`.
    SchedOp = 29,
    /// `__HYPERVISOR_event_channel_op`.
    EventChannelOp = 32,
    /// `__HYPERVISOR_hvm_op`.
    HvmOp = 34,
}

/// Issues hypercalls. Pointers passed as arguments are guest addresses of
/// structures that live on the caller's stack for the duration of the call.
pub trait Hypervisor {
    /// Issues hypercall `op` and returns Xen's raw result.
    ///
    /// # Safety
    /// Pointer arguments must reference valid structures of the layout Xen
    /// expects for `op`, and the call must not change memory that Rust code
    /// owns behind its back.
    unsafe fn hypercall(&self, op: Op, args: [u64; 5]) -> i64;
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;
/// `XENVER_extraversion`: fills a `char[16]`.
pub const XENVER_EXTRAVERSION: u64 = 1;

/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u64 = 0;
/// `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;

/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;

/// HVM parameters (hvm/params.h `HVM_PARAM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HvmParam {
    /// `HVM_PARAM_STORE_PFN`: the xenstore ring page.
    StorePfn = 1,
    /// `HVM_PARAM_STORE_EVTCHN`: the xenstore event channel.
    StoreEvtchn = 2,
    /// `HVM_PARAM_CONSOLE_PFN`: the PV console ring page.
    ConsolePfn = 17,
    /// `HVM_PARAM_CONSOLE_EVTCHN`: the PV console event channel.
    ConsoleEvtchn = 18,
}

/// Reasons for `SCHEDOP_shutdown` (sched.h `SHUTDOWN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff = 0,
    /// `SHUTDOWN_reboot`.
    Reboot = 1,
    /// `SHUTDOWN_suspend`.
    Suspend = 2,
    /// `SHUTDOWN_crash`.
    Crash = 3,
}

/// `struct xen_add_to_physmap` (memory.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddToPhysmap {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: u16,
    /// Number of pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (grant frame number, 0 for shared_info).
    pub idx: u64,
    /// Guest frame where the page appears.
    pub gpfn: u64,
}

/// `struct xen_hvm_param` (hvm_op.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmParamArg {
    /// Domain (`DOMID_SELF`).
    pub domid: u16,
    /// Padding.
    pub pad: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// The value, written by Xen for get.
    pub value: u64,
}

/// `struct sched_shutdown` (sched.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<AddToPhysmap>() == 24);
    assert!(offset_of!(AddToPhysmap, size) == 2);
    assert!(offset_of!(AddToPhysmap, space) == 4);
    assert!(offset_of!(AddToPhysmap, idx) == 8);
    assert!(offset_of!(AddToPhysmap, gpfn) == 16);
    assert!(size_of::<HvmParamArg>() == 16);
    assert!(offset_of!(HvmParamArg, index) == 4);
    assert!(offset_of!(HvmParamArg, value) == 8);
    assert!(size_of::<SchedShutdown>() == 4);
};

fn address_of<T>(value: &mut T) -> u64 {
    core::ptr::from_mut(value) as u64
}

/// Xen's version as `(major, minor)` (`XENVER_version`).
pub fn xen_version(hv: &impl Hypervisor) -> (u16, u16) {
    // SAFETY: XENVER_version takes no buffer.
    let raw = unsafe { hv.hypercall(Op::XenVersion, [XENVER_VERSION, 0, 0, 0, 0]) };
    let raw = raw as u64;
    ((raw >> 16) as u16, raw as u16)
}

/// Xen's extra version string, such as `".7"` (`XENVER_extraversion`).
pub fn xen_extraversion(hv: &impl Hypervisor) -> Result<[u8; 16], XenError> {
    let mut buffer = [0u8; 16];
    // SAFETY: XENVER_extraversion writes at most 16 bytes to the buffer.
    let result = unsafe {
        hv.hypercall(
            Op::XenVersion,
            [XENVER_EXTRAVERSION, address_of(&mut buffer), 0, 0, 0],
        )
    };
    check(result).map(|_| buffer)
}

/// Maps page `idx` of `space` at guest frame `gpfn` (`XENMEM_add_to_physmap`).
///
/// # Safety
/// Whatever was at `gpfn` is replaced: the page must not hold anything that
/// Rust code still uses through another mapping.
pub unsafe fn add_to_physmap(
    hv: &impl Hypervisor,
    space: u32,
    idx: u64,
    gpfn: u64,
) -> Result<(), XenError> {
    let mut arg = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: `arg` is a valid xen_add_to_physmap for the whole call; the
    // caller vouches for the page at `gpfn`.
    let result = unsafe {
        hv.hypercall(
            Op::MemoryOp,
            [XENMEM_ADD_TO_PHYSMAP, address_of(&mut arg), 0, 0, 0],
        )
    };
    check(result).map(|_| ())
}

/// Reads an HVM parameter of this domain (`HVMOP_get_param`).
pub fn hvm_get_param(hv: &impl Hypervisor, param: HvmParam) -> Result<u64, XenError> {
    let mut arg = HvmParamArg {
        domid: DOMID_SELF,
        pad: 0,
        index: param as u32,
        value: 0,
    };
    // SAFETY: `arg` is a valid xen_hvm_param for the whole call.
    let result =
        unsafe { hv.hypercall(Op::HvmOp, [HVMOP_GET_PARAM, address_of(&mut arg), 0, 0, 0]) };
    check(result).map(|_| arg.value)
}

/// Asks Xen to shut this domain down (`SCHEDOP_shutdown`); returns only if
/// Xen refused.
pub fn sched_shutdown(hv: &impl Hypervisor, reason: ShutdownReason) -> XenError {
    let mut arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: `arg` is a valid sched_shutdown for the whole call.
    let result = unsafe {
        hv.hypercall(
            Op::SchedOp,
            [SCHEDOP_SHUTDOWN, address_of(&mut arg), 0, 0, 0],
        )
    };
    XenError::from_result(result).unwrap_or(XenError::Other(0))
}

/// Gives up the CPU to other domains for a while (`SCHEDOP_yield`).
pub fn sched_yield(hv: &impl Hypervisor) {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { hv.hypercall(Op::SchedOp, [SCHEDOP_YIELD, 0, 0, 0, 0]) };
}

/// Writes to Xen's own console (`CONSOLEIO_write`). Release builds of Xen
/// refuse this (`EPERM`) for domains created by the toolstack.
pub fn console_io_write(hv: &impl Hypervisor, bytes: &[u8]) -> Result<(), XenError> {
    // SAFETY: Xen only reads `bytes.len()` bytes from the buffer.
    let result = unsafe {
        hv.hypercall(
            Op::ConsoleIo,
            [
                CONSOLEIO_WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        )
    };
    check(result).map(|_| ())
}

#[cfg(test)]
#[allow(missing_docs)]
pub mod fake {
    //! A fake hypervisor that records calls and answers from a script.

    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// One recorded hypercall: the op, its arguments, and for calls that pass
    /// a structure, the structure's bytes as Xen would have read them.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Call {
        pub op: Op,
        pub args: [u64; 5],
        pub bytes: Vec<u8>,
    }

    /// Records every call; answers `HVMOP_get_param` from `params` and
    /// everything else with `result`.
    #[derive(Default)]
    pub struct FakeXen {
        pub calls: RefCell<Vec<Call>>,
        pub params: Vec<(u32, u64)>,
        pub result: i64,
    }

    fn struct_len(op: Op, cmd: u64) -> usize {
        match (op, cmd) {
            (Op::MemoryOp, XENMEM_ADD_TO_PHYSMAP) => 24,
            (Op::HvmOp, HVMOP_GET_PARAM) => 16,
            (Op::SchedOp, SCHEDOP_SHUTDOWN) => 4,
            (Op::EventChannelOp, 4) => 4,
            _ => 0,
        }
    }

    impl Hypervisor for FakeXen {
        unsafe fn hypercall(&self, op: Op, args: [u64; 5]) -> i64 {
            let len = struct_len(op, args[0]);
            let bytes = if len == 0 {
                Vec::new()
            } else {
                // SAFETY: the wrappers pass a pointer to a live structure of
                // `len` bytes.
                unsafe { std::slice::from_raw_parts(args[1] as *const u8, len) }.to_vec()
            };
            self.calls.borrow_mut().push(Call { op, args, bytes });
            if op == Op::HvmOp && args[0] == HVMOP_GET_PARAM {
                // SAFETY: as above; xen_hvm_param.value is at offset 8.
                let arg = unsafe { &mut *(args[1] as *mut HvmParamArg) };
                return match self.params.iter().find(|(index, _)| *index == arg.index) {
                    Some(&(_, value)) => {
                        arg.value = value;
                        0
                    }
                    None => -22,
                };
            }
            if op == Op::XenVersion && args[0] == XENVER_EXTRAVERSION {
                // SAFETY: the wrapper passes a 16-byte buffer.
                let buffer = unsafe { std::slice::from_raw_parts_mut(args[1] as *mut u8, 16) };
                buffer[..2].copy_from_slice(b".7");
                return 0;
            }
            if op == Op::XenVersion && args[0] == XENVER_VERSION {
                return 0x0004_0011;
            }
            self.result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeXen;
    use super::*;

    #[test]
    fn add_to_physmap_passes_the_header_layout() {
        let xen = FakeXen::default();
        // SAFETY: the fake maps nothing.
        unsafe { add_to_physmap(&xen, XENMAPSPACE_GRANT_TABLE, 3, 0x38003) }.unwrap();
        let calls = xen.calls.borrow();
        assert_eq!(calls[0].op, Op::MemoryOp);
        assert_eq!(calls[0].args[0], 7);
        let mut expected = [0u8; 24];
        expected[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes()); // domid
        expected[4..8].copy_from_slice(&1u32.to_le_bytes()); // space
        expected[8..16].copy_from_slice(&3u64.to_le_bytes()); // idx
        expected[16..24].copy_from_slice(&0x38003u64.to_le_bytes()); // gpfn
        assert_eq!(calls[0].bytes, expected);
    }

    #[test]
    fn hvm_params_come_back_or_fail_typed() {
        let xen = FakeXen {
            params: std::vec![(17, 0x39000)],
            ..FakeXen::default()
        };
        assert_eq!(hvm_get_param(&xen, HvmParam::ConsolePfn), Ok(0x39000));
        assert_eq!(
            hvm_get_param(&xen, HvmParam::StorePfn),
            Err(XenError::Invalid)
        );
        let calls = xen.calls.borrow();
        let mut expected = [0u8; 16];
        expected[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
        expected[4..8].copy_from_slice(&17u32.to_le_bytes());
        assert_eq!(calls[0].bytes, expected);
        assert_eq!((calls[0].op, calls[0].args[0]), (Op::HvmOp, 1));
    }

    #[test]
    fn shutdown_passes_the_reason_and_reports_refusal() {
        let xen = FakeXen {
            result: -1,
            ..FakeXen::default()
        };
        assert_eq!(
            sched_shutdown(&xen, ShutdownReason::Crash),
            XenError::NotPermitted
        );
        let calls = xen.calls.borrow();
        assert_eq!((calls[0].op, calls[0].args[0]), (Op::SchedOp, 2));
        assert_eq!(calls[0].bytes, 3u32.to_le_bytes());
    }

    #[test]
    fn version_and_extraversion_decode() {
        let xen = FakeXen::default();
        assert_eq!(xen_version(&xen), (4, 17));
        let extra = xen_extraversion(&xen).unwrap();
        assert_eq!(&extra[..3], b".7\0");
    }
}
