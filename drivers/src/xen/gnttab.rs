//! Grant tables, version 1 (xen/include/public/grant_table.h): letting
//! another domain map or copy this guest's pages.
//!
//! Arm guests map the table's frames themselves (`XENMEM_add_to_physmap`,
//! `XENMAPSPACE_grant_table`) at the region the device tree's hypervisor node
//! gives. Granting writes the frame and domain, then (release-ordered) the
//! flags; ending access atomically clears the flags only while the peer has
//! the page neither mapped for reading nor for writing.

extern crate alloc;

use super::error::{check, XenError};
use super::hypercall::{self, Hypervisor, Op, DOMID_SELF, XENMAPSPACE_GRANT_TABLE};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

/// A grant reference: an index into the grant table.
pub type GrantRef = u32;

/// Entries per 4 KiB frame in a v1 table.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// References 0-7 are reserved (0: console, 1: xenstore, set by the toolstack).
pub const FIRST_FREE_REF: GrantRef = 8;

/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_readonly`.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: the peer has the page mapped or is copying from it.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: the peer has the page mapped writable or is copying to it.
pub const GTF_WRITING: u16 = 1 << 4;

/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;

/// `struct grant_entry_v1`.
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags, written last when granting.
    pub flags: AtomicU16,
    /// The domain being granted access.
    pub domid: AtomicU16,
    /// The guest frame number of the page.
    pub frame: AtomicU32,
}

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QuerySize {
    /// Domain (`DOMID_SELF`).
    pub dom: u16,
    _pad: u16,
    /// Frames in use (out).
    pub nr_frames: u32,
    /// Frames this domain may have (out).
    pub max_nr_frames: u32,
    /// `GNTST_*` status (out).
    pub status: i16,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<GrantEntryV1>() == 8);
    assert!(offset_of!(GrantEntryV1, domid) == 2);
    assert!(offset_of!(GrantEntryV1, frame) == 4);
    assert!(offset_of!(QuerySize, nr_frames) == 4);
    assert!(offset_of!(QuerySize, max_nr_frames) == 8);
    assert!(offset_of!(QuerySize, status) == 12);
    assert!(size_of::<QuerySize>() == 16);
};

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// A hypercall failed.
    Xen(XenError),
    /// `GNTTABOP_query_size` returned a `GNTST_*` error status.
    Status(i16),
    /// Every reference is in use.
    Exhausted {
        /// References the table holds.
        capacity: u32,
    },
    /// The peer still has the page mapped or is copying it; retry later.
    InUse(GrantRef),
    /// The reference is not one this table handed out.
    NotGranted(GrantRef),
    /// Xen allows this domain no grant frames at all.
    NoFramesAllowed,
    /// The region for the table's frames is smaller than the frames needed.
    RegionTooSmall {
        /// Frames that fit.
        fits: u32,
        /// Frames needed.
        needed: u32,
    },
}

impl From<XenError> for GrantError {
    fn from(error: XenError) -> Self {
        GrantError::Xen(error)
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GrantError::Xen(error) => write!(f, "grant table hypercall failed: {error}"),
            GrantError::Status(status) => {
                write!(f, "GNTTABOP_query_size failed with status {status}")
            }
            GrantError::Exhausted { capacity } => {
                write!(f, "all {capacity} grant references are in use")
            }
            GrantError::InUse(gref) => {
                write!(f, "grant {gref} is still mapped by its peer; retry later")
            }
            GrantError::NotGranted(gref) => write!(f, "grant {gref} was not handed out"),
            GrantError::NoFramesAllowed => write!(f, "Xen allows this domain no grant frames"),
            GrantError::RegionTooSmall { fits, needed } => write!(
                f,
                "the grant table region holds {fits} frames, {needed} are needed"
            ),
        }
    }
}

/// Frames in use and allowed, from `GNTTABOP_query_size`.
pub fn query_size(hv: &impl Hypervisor) -> Result<(u32, u32), GrantError> {
    let mut arg = QuerySize {
        dom: DOMID_SELF,
        ..QuerySize::default()
    };
    // SAFETY: `arg` is a valid gnttab_query_size for the call; count is 1.
    let result = unsafe {
        hv.hypercall(
            Op::GrantTableOp,
            [
                GNTTABOP_QUERY_SIZE,
                core::ptr::from_mut(&mut arg) as u64,
                1,
                0,
                0,
            ],
        )
    };
    check(result)?;
    if arg.status != 0 {
        return Err(GrantError::Status(arg.status));
    }
    Ok((arg.nr_frames, arg.max_nr_frames))
}

/// How many frames to map for `references` usable references (beyond the
/// reserved ones), and whether Xen allows that many.
pub fn frames_for(references: u32) -> u32 {
    (references + FIRST_FREE_REF).div_ceil(ENTRIES_PER_FRAME)
}

/// How many grant frames to map, decided from what is wanted, what Xen
/// allows and what the region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePlan {
    /// Frames to map.
    pub frames: u32,
    /// Frames the wanted references need.
    pub wanted: u32,
    /// Frames Xen allows (`max_grant_frames`).
    pub allowed: u32,
}

impl FramePlan {
    /// Whether Xen allows fewer frames than wanted (the guest runs with
    /// fewer references; the fix is `max_grant_frames=` in the xl config).
    pub fn is_short(&self) -> bool {
        self.frames < self.wanted
    }
}

/// Plans the frames for `references` usable references when Xen allows
/// `allowed` frames and the device tree's region is `region_bytes` long.
pub fn plan_frames(
    references: u32,
    allowed: u32,
    region_bytes: u64,
) -> Result<FramePlan, GrantError> {
    let wanted = frames_for(references);
    let frames = wanted.min(allowed);
    if frames == 0 {
        return Err(GrantError::NoFramesAllowed);
    }
    let fits = (region_bytes / 4096).min(u64::from(u32::MAX)) as u32;
    if frames > fits {
        return Err(GrantError::RegionTooSmall {
            fits,
            needed: frames,
        });
    }
    Ok(FramePlan {
        frames,
        wanted,
        allowed,
    })
}

/// Maps grant table frames `0..frames` at consecutive guest frames from
/// `first_gpfn` (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`).
///
/// # Safety
/// The guest frames must be the hypervisor node's grant region (not RAM that
/// Rust code uses) and mapped as Normal memory by the caller.
pub unsafe fn map_frames(
    hv: &impl Hypervisor,
    first_gpfn: u64,
    frames: u32,
) -> Result<(), GrantError> {
    for index in 0..frames {
        // SAFETY: the caller vouches for the destination frames.
        unsafe {
            hypercall::add_to_physmap(
                hv,
                XENMAPSPACE_GRANT_TABLE,
                u64::from(index),
                first_gpfn + u64::from(index),
            )
        }?;
    }
    Ok(())
}

/// The guest's side of a mapped v1 grant table.
pub struct GrantTable<'a> {
    entries: &'a [GrantEntryV1],
    free: Vec<GrantRef>,
    /// One bit per reference: handed out and not yet ended.
    granted: Vec<u64>,
}

impl<'a> GrantTable<'a> {
    /// Manages `entries` (all mapped frames). References below 8 are never
    /// handed out.
    pub fn new(entries: &'a [GrantEntryV1]) -> Self {
        let count = entries.len() as GrantRef;
        let free = (FIRST_FREE_REF..count).rev().collect();
        let granted = alloc::vec![0; entries.len().div_ceil(64)];
        GrantTable {
            entries,
            free,
            granted,
        }
    }

    /// References this table can hand out in all.
    pub fn capacity(&self) -> u32 {
        (self.entries.len() as u32).saturating_sub(FIRST_FREE_REF)
    }

    /// References currently granted.
    pub fn in_use(&self) -> u32 {
        self.capacity() - self.free.len() as u32
    }

    /// Lets `domid` map guest frame `frame`, read-only or not.
    pub fn grant_access(
        &mut self,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let gref = self.free.pop().ok_or(GrantError::Exhausted {
            capacity: self.capacity(),
        })?;
        self.granted[gref as usize / 64] |= 1 << (gref % 64);
        let entry = &self.entries[gref as usize];
        entry.frame.store(frame as u32, Ordering::Relaxed);
        entry.domid.store(domid, Ordering::Relaxed);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        // Release: the peer must see frame and domid before the flags.
        entry.flags.store(flags, Ordering::Release);
        Ok(gref)
    }

    /// Revokes `gref`. Fails with [`GrantError::InUse`] (and changes nothing)
    /// while the peer still reads or writes the page: the caller retries.
    pub fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        let entry = self
            .entries
            .get(gref as usize)
            .filter(|_| self.is_granted(gref))
            .ok_or(GrantError::NotGranted(gref))?;
        let mut flags = entry.flags.load(Ordering::Acquire);
        loop {
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse(gref));
            }
            match entry
                .flags
                .compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(current) => flags = current,
            }
        }
        self.granted[gref as usize / 64] &= !(1 << (gref % 64));
        self.free.push(gref);
        Ok(())
    }

    fn is_granted(&self, gref: GrantRef) -> bool {
        self.granted
            .get(gref as usize / 64)
            .is_some_and(|word| word & (1 << (gref % 64)) != 0)
    }

    /// Whether the peer currently has `gref` mapped or is copying it.
    pub fn is_busy(&self, gref: GrantRef) -> bool {
        self.entries.get(gref as usize).is_some_and(|entry| {
            entry.flags.load(Ordering::Acquire) & (GTF_READING | GTF_WRITING) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::hypercall::fake::FakeXen;
    use super::*;
    use std::vec;

    fn table(entries: usize) -> Vec<GrantEntryV1> {
        (0..entries)
            .map(|_| GrantEntryV1 {
                flags: AtomicU16::new(0),
                domid: AtomicU16::new(0),
                frame: AtomicU32::new(0),
            })
            .collect()
    }

    fn bytes(entry: &GrantEntryV1) -> [u8; 8] {
        // SAFETY: an entry is 8 bytes of plain integers.
        unsafe { core::ptr::from_ref(entry).cast::<[u8; 8]>().read() }
    }

    #[test]
    fn grants_never_use_reserved_refs_and_fill_the_entry_layout() {
        let entries = table(16);
        let mut grants = GrantTable::new(&entries);
        let gref = grants.grant_access(0, 0x40123, true).unwrap();
        assert_eq!(gref, 8);
        let mut expected = [0u8; 8];
        expected[0..2].copy_from_slice(&(GTF_PERMIT_ACCESS | GTF_READONLY).to_le_bytes());
        expected[2..4].copy_from_slice(&0u16.to_le_bytes());
        expected[4..8].copy_from_slice(&0x40123u32.to_le_bytes());
        assert_eq!(bytes(&entries[8]), expected);
        let writable = grants.grant_access(3, 0x40124, false).unwrap();
        assert_eq!(
            entries[writable as usize].flags.load(Ordering::SeqCst),
            GTF_PERMIT_ACCESS
        );
        assert_eq!(entries[writable as usize].domid.load(Ordering::SeqCst), 3);
        assert_eq!(grants.in_use(), 2);
    }

    #[test]
    fn end_access_refuses_while_the_peer_maps_and_succeeds_after() {
        let entries = table(16);
        let mut grants = GrantTable::new(&entries);
        let gref = grants.grant_access(0, 0x40000, false).unwrap();
        // The peer maps it: Xen sets GTF_reading|GTF_writing.
        entries[gref as usize]
            .flags
            .fetch_or(GTF_READING | GTF_WRITING, Ordering::SeqCst);
        assert!(grants.is_busy(gref));
        assert_eq!(grants.end_access(gref), Err(GrantError::InUse(gref)));
        assert_eq!(grants.in_use(), 1);
        // The peer unmaps.
        entries[gref as usize]
            .flags
            .fetch_and(!(GTF_READING | GTF_WRITING), Ordering::SeqCst);
        grants.end_access(gref).unwrap();
        assert_eq!(entries[gref as usize].flags.load(Ordering::SeqCst), 0);
        assert_eq!(grants.in_use(), 0);
        assert_eq!(grants.end_access(gref), Err(GrantError::NotGranted(gref)));
    }

    #[test]
    fn exhaustion_and_foreign_refs_are_errors() {
        let entries = table(10);
        let mut grants = GrantTable::new(&entries);
        assert_eq!(grants.capacity(), 2);
        grants.grant_access(0, 1, true).unwrap();
        grants.grant_access(0, 2, true).unwrap();
        assert_eq!(
            grants.grant_access(0, 3, true),
            Err(GrantError::Exhausted { capacity: 2 })
        );
        assert_eq!(grants.end_access(1), Err(GrantError::NotGranted(1)));
        assert_eq!(grants.end_access(99), Err(GrantError::NotGranted(99)));
    }

    #[test]
    fn frames_cover_two_1080p_buffers_on_four_connectors() {
        // 1920x1080 XRGB8888 = 2025 pages + 2 directory pages, 8 buffers,
        // plus a request and an event page per connector.
        let references = 8 * (2025 + 2) + 4 * 2;
        assert_eq!(frames_for(references), 32);
        assert_eq!(frames_for(0), 1);
    }

    #[test]
    fn frame_plan_takes_what_xen_allows_and_what_the_region_holds() {
        let wanted = 8 * (2025 + 2) + 4 * 2;
        let plan = plan_frames(wanted, 64, 16 << 20).unwrap();
        assert_eq!((plan.frames, plan.wanted, plan.is_short()), (32, 32, false));
        let short = plan_frames(wanted, 4, 16 << 20).unwrap();
        assert_eq!(
            (short.frames, short.allowed, short.is_short()),
            (4, 4, true)
        );
        assert_eq!(
            plan_frames(wanted, 64, 8 * 4096),
            Err(GrantError::RegionTooSmall {
                fits: 8,
                needed: 32
            })
        );
        assert_eq!(
            plan_frames(wanted, 0, 16 << 20),
            Err(GrantError::NoFramesAllowed)
        );
    }

    #[test]
    fn query_size_and_map_frames_issue_the_documented_calls() {
        let xen = FakeXen::default();
        assert_eq!(query_size(&xen), Ok((0, 0)));
        // SAFETY: the fake maps nothing.
        unsafe { map_frames(&xen, 0x38000, 3) }.unwrap();
        let calls = xen.calls.borrow();
        assert_eq!(
            (calls[0].op, calls[0].args[0], calls[0].args[2]),
            (Op::GrantTableOp, 6, 1)
        );
        let gpfns: Vec<u64> = calls[1..]
            .iter()
            .map(|call| u64::from_le_bytes(call.bytes[16..24].try_into().unwrap()))
            .collect();
        assert_eq!(gpfns, vec![0x38000, 0x38001, 0x38002]);
        let indexes: Vec<u64> = calls[1..]
            .iter()
            .map(|call| u64::from_le_bytes(call.bytes[8..16].try_into().unwrap()))
            .collect();
        assert_eq!(indexes, vec![0, 1, 2]);
    }
}
