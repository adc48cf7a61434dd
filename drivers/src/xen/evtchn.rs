//! Event channels, 2-level ABI (xen/include/public/event_channel.h and
//! xen.h "Event channel endpoints").
//!
//! The upcall interrupt handler ([`EventChannels::handle_upcall`]) moves
//! pending, unmasked ports from shared_info into a `fired` bitmap of the
//! guest's own; thread code then takes fired ports ([`EventChannels::take`])
//! and runs whatever handles them. A port that fires before anyone looks at it
//! stays fired until taken, so no notification is lost.

use super::error::{check, XenError};
use super::hypercall::{Hypervisor, Op};
use super::shared_info::{SharedInfo, EVTCHN_WORDS};
use crate::irq::IrqContext;
use core::sync::atomic::{AtomicU64, Ordering};

/// Number of ports the 2-level ABI addresses on 64-bit guests.
pub const MAX_PORTS: u32 = (EVTCHN_WORDS * 64) as u32;

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u64 = 9;

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocUnbound {
    /// Local domain (`DOMID_SELF`).
    pub dom: u16,
    /// Domain allowed to bind.
    pub remote_dom: u16,
    /// Allocated port (out).
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BindInterdomain {
    /// Remote domain.
    pub remote_dom: u16,
    _pad: u16,
    /// Remote port, allocated unbound to this domain.
    pub remote_port: u32,
    /// Local port (out).
    pub local_port: u32,
}

/// `struct evtchn_close`, `evtchn_send` and `evtchn_unmask`: one port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PortArg {
    /// The port.
    pub port: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<AllocUnbound>() == 8);
    assert!(offset_of!(AllocUnbound, remote_dom) == 2);
    assert!(offset_of!(AllocUnbound, port) == 4);
    assert!(size_of::<BindInterdomain>() == 12);
    assert!(offset_of!(BindInterdomain, remote_port) == 4);
    assert!(offset_of!(BindInterdomain, local_port) == 8);
};

fn event_channel_op<T>(hv: &impl Hypervisor, command: u64, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: `arg` is the structure Xen expects for `command` (the callers
    // below pair them) and lives on the caller's stack for the whole call.
    let result = unsafe {
        hv.hypercall(
            Op::EventChannelOp,
            [command, core::ptr::from_mut(arg) as u64, 0, 0, 0],
        )
    };
    check(result)
}

/// Allocates a port that `remote_domain` may bind (`EVTCHNOP_alloc_unbound`).
pub fn alloc_unbound(hv: &impl Hypervisor, remote_domain: u16) -> Result<u32, XenError> {
    let mut arg = AllocUnbound {
        dom: super::hypercall::DOMID_SELF,
        remote_dom: remote_domain,
        port: 0,
    };
    event_channel_op(hv, EVTCHNOP_ALLOC_UNBOUND, &mut arg)?;
    Ok(arg.port)
}

/// Binds a local port to `remote_port` of `remote_domain`
/// (`EVTCHNOP_bind_interdomain`).
pub fn bind_interdomain(
    hv: &impl Hypervisor,
    remote_domain: u16,
    remote_port: u32,
) -> Result<u32, XenError> {
    let mut arg = BindInterdomain {
        remote_dom: remote_domain,
        remote_port,
        ..BindInterdomain::default()
    };
    event_channel_op(hv, EVTCHNOP_BIND_INTERDOMAIN, &mut arg)?;
    Ok(arg.local_port)
}

/// Notifies the other end of `port` (`EVTCHNOP_send`).
pub fn send(hv: &impl Hypervisor, port: u32) -> Result<(), XenError> {
    event_channel_op(hv, EVTCHNOP_SEND, &mut PortArg { port }).map(|_| ())
}

/// Closes `port` (`EVTCHNOP_close`).
pub fn close(hv: &impl Hypervisor, port: u32) -> Result<(), XenError> {
    event_channel_op(hv, EVTCHNOP_CLOSE, &mut PortArg { port }).map(|_| ())
}

/// Unmasks `port`; Xen re-raises the upcall if it is pending (`EVTCHNOP_unmask`).
pub fn unmask(hv: &impl Hypervisor, port: u32) -> Result<(), XenError> {
    event_channel_op(hv, EVTCHNOP_UNMASK, &mut PortArg { port }).map(|_| ())
}

/// The guest's view of its event channels over the shared info page.
pub struct EventChannels<'a> {
    shared: &'a SharedInfo,
    fired: [AtomicU64; EVTCHN_WORDS],
}

impl<'a> EventChannels<'a> {
    /// Uses the event channel bitmaps of `shared` (vCPU 0).
    pub fn new(shared: &'a SharedInfo) -> Self {
        EventChannels {
            shared,
            fired: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
        }
    }

    /// The upcall: moves every pending, unmasked port to the fired set.
    /// Returns how many ports fired.
    pub fn handle_upcall(&self, _context: &IrqContext) -> u32 {
        let vcpu = &self.shared.vcpu_info[0];
        let mut count = 0;
        // Clear the upcall flag first: an event set after this point raises
        // it again, and the selector read below sees it.
        vcpu.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        let mut selector = vcpu.evtchn_pending_sel.swap(0, Ordering::AcqRel);
        while selector != 0 {
            let word = selector.trailing_zeros() as usize;
            selector &= selector - 1;
            let pending = self.shared.evtchn_pending[word].load(Ordering::Acquire)
                & !self.shared.evtchn_mask[word].load(Ordering::Acquire);
            let mut bits = pending;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                // Clear before handling: a new event re-sets it.
                self.shared.evtchn_pending[word].fetch_and(!(1u64 << bit), Ordering::AcqRel);
                self.fired[word].fetch_or(1u64 << bit, Ordering::AcqRel);
                count += 1;
            }
        }
        count
    }

    /// Takes the fired mark of `port`: true if it fired since the last take.
    pub fn take(&self, port: u32) -> bool {
        let Some(word) = self.fired.get(port as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (port % 64);
        word.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Whether `port` has fired and not been taken yet.
    pub fn is_fired(&self, port: u32) -> bool {
        self.fired
            .get(port as usize / 64)
            .is_some_and(|word| word.load(Ordering::Acquire) & (1u64 << (port % 64)) != 0)
    }

    /// Takes any fired port, lowest first.
    pub fn take_any(&self) -> Option<u32> {
        for (index, word) in self.fired.iter().enumerate() {
            let value = word.load(Ordering::Acquire);
            if value != 0 {
                let port = index as u32 * 64 + value.trailing_zeros();
                if self.take(port) {
                    return Some(port);
                }
            }
        }
        None
    }

    /// Forgets a fired mark and the pending bit of a port being closed.
    pub fn forget(&self, port: u32) {
        self.take(port);
        if let Some(word) = self.shared.evtchn_pending.get(port as usize / 64) {
            word.fetch_and(!(1u64 << (port % 64)), Ordering::AcqRel);
        }
    }

    /// Masks `port` in shared_info (no upcall while masked).
    pub fn mask(&self, port: u32) {
        if let Some(word) = self.shared.evtchn_mask.get(port as usize / 64) {
            word.fetch_or(1u64 << (port % 64), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hypercall::fake::FakeXen;
    use super::*;
    use std::boxed::Box;

    fn page() -> Box<SharedInfo> {
        // SAFETY: zero is a valid value for every atomic in the page.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    /// Plays Xen: marks `port` pending and raises the upcall.
    fn raise(shared: &SharedInfo, port: u32) {
        let word = port as usize / 64;
        shared.evtchn_pending[word].fetch_or(1 << (port % 64), Ordering::SeqCst);
        if shared.evtchn_mask[word].load(Ordering::SeqCst) & (1 << (port % 64)) == 0 {
            shared.vcpu_info[0]
                .evtchn_pending_sel
                .fetch_or(1 << word, Ordering::SeqCst);
            shared.vcpu_info[0]
                .evtchn_upcall_pending
                .store(1, Ordering::SeqCst);
        }
    }

    fn context() -> IrqContext {
        // SAFETY: tests stand in for the IRQ path.
        unsafe { IrqContext::new() }
    }

    #[test]
    fn upcall_moves_pending_ports_to_fired_and_clears_xen_state() {
        let shared = page();
        let channels = EventChannels::new(&shared);
        raise(&shared, 1);
        raise(&shared, 130);
        assert_eq!(channels.handle_upcall(&context()), 2);
        assert_eq!(shared.evtchn_pending[0].load(Ordering::SeqCst), 0);
        assert_eq!(shared.evtchn_pending[2].load(Ordering::SeqCst), 0);
        assert_eq!(
            shared.vcpu_info[0]
                .evtchn_upcall_pending
                .load(Ordering::SeqCst),
            0
        );
        assert_eq!(
            shared.vcpu_info[0]
                .evtchn_pending_sel
                .load(Ordering::SeqCst),
            0
        );
        assert_eq!(channels.take_any(), Some(1));
        assert!(channels.take(130));
        assert!(!channels.take(130));
        assert_eq!(channels.take_any(), None);
    }

    #[test]
    fn events_before_anyone_listens_are_kept_until_taken() {
        let shared = page();
        let channels = EventChannels::new(&shared);
        raise(&shared, 7);
        channels.handle_upcall(&context());
        raise(&shared, 7);
        channels.handle_upcall(&context());
        assert!(channels.is_fired(7));
        assert!(channels.take(7));
        assert!(!channels.is_fired(7));
    }

    #[test]
    fn masked_ports_stay_pending_and_are_not_fired() {
        let shared = page();
        let channels = EventChannels::new(&shared);
        channels.mask(5);
        raise(&shared, 5);
        // A selector bit set for another reason must not deliver it.
        shared.vcpu_info[0]
            .evtchn_pending_sel
            .store(1, Ordering::SeqCst);
        assert_eq!(channels.handle_upcall(&context()), 0);
        assert!(!channels.is_fired(5));
        assert_eq!(shared.evtchn_pending[0].load(Ordering::SeqCst), 1 << 5);
    }

    #[test]
    fn out_of_range_ports_are_ignored() {
        let shared = page();
        let channels = EventChannels::new(&shared);
        assert!(!channels.take(MAX_PORTS));
        assert!(!channels.is_fired(u32::MAX));
        channels.forget(u32::MAX);
        channels.mask(u32::MAX);
    }

    #[test]
    fn operations_pass_the_header_layouts() {
        let xen = FakeXen::default();
        alloc_unbound(&xen, 0).unwrap();
        bind_interdomain(&xen, 0, 9).unwrap();
        close(&xen, 4).unwrap();
        unmask(&xen, 4).unwrap();
        send(&xen, 2).unwrap();
        let calls = xen.calls.borrow();
        assert_eq!(
            calls
                .iter()
                .map(|call| call.args[0])
                .collect::<std::vec::Vec<_>>(),
            [6, 0, 3, 9, 4]
        );
        assert_eq!(calls[4].bytes, 2u32.to_le_bytes());
        assert!(calls.iter().all(|call| call.op == Op::EventChannelOp));
    }
}
