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
        /// Frames mapped: as many as the domain may have.
        frames: u32,
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
            GrantError::Exhausted { capacity, frames } => write!(
                f,
                "all {capacity} grant references are in use ({frames} grant frames, as many \
                 as the domain may have: raise max_grant_frames in the xl config)"
            ),
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

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
/// `GNTMAP_host_map`: map at `host_addr` (a guest physical address on Arm).
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Mappings per hypercall.
const MAP_BATCH: usize = 32;

/// `struct gnttab_map_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapGrantRef {
    /// Where to map the page (in): a guest physical address.
    pub host_addr: u64,
    /// `GNTMAP_*` (in).
    pub flags: u32,
    /// The peer's grant reference (in).
    pub gref: u32,
    /// The domain that granted it (in).
    pub dom: u16,
    /// `GNTST_*` (out).
    pub status: i16,
    /// The mapping's handle, for the unmap (out).
    pub handle: u32,
    /// Bus address (out; unused here).
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnmapGrantRef {
    /// Where the page is mapped (in).
    pub host_addr: u64,
    /// Bus address (in; 0 here).
    pub dev_bus_addr: u64,
    /// The handle the map gave (in).
    pub handle: u32,
    /// `GNTST_*` (out).
    pub status: i16,
    _pad: u16,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(MapGrantRef, flags) == 8);
    assert!(offset_of!(MapGrantRef, gref) == 12);
    assert!(offset_of!(MapGrantRef, dom) == 16);
    assert!(offset_of!(MapGrantRef, status) == 18);
    assert!(offset_of!(MapGrantRef, handle) == 20);
    assert!(offset_of!(MapGrantRef, dev_bus_addr) == 24);
    assert!(size_of::<MapGrantRef>() == 32);
    assert!(offset_of!(UnmapGrantRef, dev_bus_addr) == 8);
    assert!(offset_of!(UnmapGrantRef, handle) == 16);
    assert!(offset_of!(UnmapGrantRef, status) == 20);
    assert!(size_of::<UnmapGrantRef>() == 24);
};

/// Why pages another domain granted could not be mapped or unmapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignMapError {
    /// The hypercall itself failed.
    Xen(XenError),
    /// Xen refused one page: its reference and `GNTST_*` status.
    Status {
        /// The page's index among those asked for.
        index: usize,
        /// Its grant reference.
        gref: GrantRef,
        /// `GNTST_*` (-1 general, -2 bad domain, -4 bad reference, ...).
        status: i16,
    },
}

impl fmt::Display for ForeignMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ForeignMapError::Xen(error) => write!(f, "grant table hypercall failed: {error}"),
            ForeignMapError::Status {
                index,
                gref,
                status,
            } => write!(
                f,
                "page {index} (grant {gref}) refused with status {status} ({})",
                gnttab_status_name(status)
            ),
        }
    }
}

/// The name of a `GNTST_*` status (grant_table.h).
pub fn gnttab_status_name(status: i16) -> &'static str {
    match status {
        0 => "GNTST_okay",
        -1 => "GNTST_general_error",
        -2 => "GNTST_bad_domain",
        -3 => "GNTST_bad_handle",
        -4 => "GNTST_bad_gntref",
        -5 => "GNTST_bad_dev_addr",
        -6 => "GNTST_no_device_space",
        -7 => "GNTST_permission_denied",
        -8 => "GNTST_bad_page",
        -9 => "GNTST_bad_copy_arg",
        -10 => "GNTST_address_too_big",
        -11 => "GNTST_eagain",
        _ => "unknown",
    }
}

/// Maps the pages `refs` of domain `dom` at consecutive guest frames from
/// `first_gpa` (`GNTTABOP_map_grant_ref`, `GNTMAP_host_map`, in batches);
/// returns their handles. When Xen refuses a page, what was mapped is
/// unmapped again and the error names the page.
///
/// # Safety
/// `first_gpa` .. `first_gpa + refs.len() * 4096` must be guest physical
/// space that holds no RAM or other mapping (a window the device tree
/// leaves free), for as long as the pages stay mapped.
pub unsafe fn map_foreign(
    hv: &impl Hypervisor,
    dom: u16,
    refs: &[GrantRef],
    first_gpa: u64,
    readonly: bool,
) -> Result<Vec<u32>, ForeignMapError> {
    let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
    let mut handles = Vec::with_capacity(refs.len());
    for (batch, chunk) in refs.chunks(MAP_BATCH).enumerate() {
        let first = batch * MAP_BATCH;
        let mut ops = [MapGrantRef::default(); MAP_BATCH];
        for (slot, (op, &gref)) in ops.iter_mut().zip(chunk).enumerate() {
            *op = MapGrantRef {
                host_addr: first_gpa + ((first + slot) as u64) * 4096,
                flags,
                gref,
                dom,
                ..MapGrantRef::default()
            };
        }
        // SAFETY: `ops` holds `chunk.len()` valid gnttab_map_grant_ref for
        // the call; the caller vouches for the destination addresses.
        let result = unsafe {
            hv.hypercall(
                Op::GrantTableOp,
                [
                    GNTTABOP_MAP_GRANT_REF,
                    core::ptr::from_mut(&mut ops) as u64,
                    chunk.len() as u64,
                    0,
                    0,
                ],
            )
        };
        let failed = match check(result) {
            Err(error) => Some(ForeignMapError::Xen(error)),
            Ok(_) => ops[..chunk.len()]
                .iter()
                .enumerate()
                .find(|(_, op)| op.status != 0)
                .map(|(slot, op)| ForeignMapError::Status {
                    index: first + slot,
                    gref: op.gref,
                    status: op.status,
                }),
        };
        // The pages of this batch that did map are kept, to be undone
        // with the rest on a failure.
        let mapped: Vec<(usize, u32)> = ops[..chunk.len()]
            .iter()
            .enumerate()
            .filter(|(_, op)| failed.is_none() || (op.status == 0 && result >= 0))
            .map(|(slot, op)| (first + slot, op.handle))
            .collect();
        if let Some(error) = failed {
            let mut undo: Vec<(u64, u32)> = handles
                .iter()
                .enumerate()
                .map(|(index, &handle)| (first_gpa + index as u64 * 4096, handle))
                .collect();
            undo.extend(
                mapped
                    .iter()
                    .map(|&(index, handle)| (first_gpa + index as u64 * 4096, handle)),
            );
            // SAFETY: these are the mappings just made, at their addresses.
            let _ = unsafe { unmap_each(hv, &undo) };
            return Err(error);
        }
        handles.extend(mapped.iter().map(|&(_, handle)| handle));
    }
    Ok(handles)
}

/// Unmaps pages mapped by [`map_foreign`] from `first_gpa` with their
/// `handles` (`GNTTABOP_unmap_grant_ref`). Every page is tried; the first
/// refusal is returned.
///
/// # Safety
/// The pages must be mapped there with these handles, and nothing may use
/// them any more.
pub unsafe fn unmap_foreign(
    hv: &impl Hypervisor,
    first_gpa: u64,
    handles: &[u32],
) -> Result<(), ForeignMapError> {
    let pages: Vec<(u64, u32)> = handles
        .iter()
        .enumerate()
        .map(|(index, &handle)| (first_gpa + index as u64 * 4096, handle))
        .collect();
    // SAFETY: the caller vouches for the mappings.
    unsafe { unmap_each(hv, &pages) }
}

/// Unmaps `(address, handle)` pairs in batches; every one is tried.
unsafe fn unmap_each(hv: &impl Hypervisor, pages: &[(u64, u32)]) -> Result<(), ForeignMapError> {
    let mut first_error = None;
    for (batch, chunk) in pages.chunks(MAP_BATCH).enumerate() {
        let mut ops = [UnmapGrantRef::default(); MAP_BATCH];
        for (op, &(host_addr, handle)) in ops.iter_mut().zip(chunk) {
            *op = UnmapGrantRef {
                host_addr,
                handle,
                ..UnmapGrantRef::default()
            };
        }
        // SAFETY: `ops` holds `chunk.len()` valid gnttab_unmap_grant_ref.
        let result = unsafe {
            hv.hypercall(
                Op::GrantTableOp,
                [
                    GNTTABOP_UNMAP_GRANT_REF,
                    core::ptr::from_mut(&mut ops) as u64,
                    chunk.len() as u64,
                    0,
                    0,
                ],
            )
        };
        let error = match check(result) {
            Err(error) => Some(ForeignMapError::Xen(error)),
            Ok(_) => ops[..chunk.len()]
                .iter()
                .enumerate()
                .find(|(_, op)| op.status != 0)
                .map(|(slot, op)| ForeignMapError::Status {
                    index: batch * MAP_BATCH + slot,
                    gref: 0,
                    status: op.status,
                }),
        };
        first_error = first_error.or(error);
    }
    first_error.map_or(Ok(()), Err)
}

/// Frames to map at start: enough for the rings and a small buffer or two
/// (2040 references); the table grows one frame at a time after that.
pub const INITIAL_FRAMES: u32 = 4;

/// Frames needed for `references` usable references beyond the reserved ones.
pub fn frames_for(references: u32) -> u32 {
    (references + FIRST_FREE_REF).div_ceil(ENTRIES_PER_FRAME)
}

/// How far the grant table may grow, decided from what Xen allows
/// (`GNTTABOP_query_size`) and what the device tree's region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePlan {
    /// Frames to map at start.
    pub initial: u32,
    /// Frames the table may grow to: Xen's limit, or the region's if smaller.
    pub limit: u32,
    /// Frames Xen allows (`max_grant_frames`).
    pub allowed: u32,
}

/// Plans the table when Xen allows `allowed` frames and the device tree's
/// region is `region_bytes` long.
pub fn plan_frames(allowed: u32, region_bytes: u64) -> Result<FramePlan, GrantError> {
    if allowed == 0 {
        return Err(GrantError::NoFramesAllowed);
    }
    let fits = (region_bytes / 4096).min(u64::from(u32::MAX)) as u32;
    let initial = INITIAL_FRAMES.min(allowed);
    if fits < initial {
        return Err(GrantError::RegionTooSmall {
            fits,
            needed: initial,
        });
    }
    Ok(FramePlan {
        initial,
        limit: allowed.min(fits),
        allowed,
    })
}

/// Maps grant table frames `first..first + frames` at the guest frames from
/// `first_gpfn` on, one frame per guest frame (`XENMEM_add_to_physmap`,
/// `XENMAPSPACE_grant_table`). Mapping an index beyond the table's current
/// size makes Xen grow the table to it, up to the domain's
/// `max_grant_frames`: on Arm this is how a guest grows its table
/// (`GNTTABOP_setup_table` would grow it too, but places no frame).
///
/// # Safety
/// The guest frames must be the hypervisor node's grant region (not RAM that
/// Rust code uses) and mapped as Normal memory by the caller.
pub unsafe fn map_frames(
    hv: &impl Hypervisor,
    first: u32,
    first_gpfn: u64,
    frames: u32,
) -> Result<(), GrantError> {
    for index in first..first + frames {
        // SAFETY: the caller vouches for the destination frames.
        unsafe {
            hypercall::add_to_physmap(
                hv,
                XENMAPSPACE_GRANT_TABLE,
                u64::from(index),
                first_gpfn + u64::from(index - first),
            )
        }?;
    }
    Ok(())
}

/// One 4 KiB frame of v1 entries.
pub type GrantFrame = [GrantEntryV1; ENTRIES_PER_FRAME as usize];

/// Maps grant table frame `index` (the next one) and hands back its entries;
/// `None` when it cannot (the mapper says why on its own console).
pub type FrameMapper<'a> = alloc::boxed::Box<dyn FnMut(u32) -> Option<&'a GrantFrame> + Send + 'a>;

/// The guest's side of a mapped v1 grant table, growing on demand.
pub struct GrantTable<'a> {
    frames: Vec<&'a GrantFrame>,
    /// Frames the table may grow to.
    limit: u32,
    grow: Option<FrameMapper<'a>>,
    free: Vec<GrantRef>,
    /// One bit per reference: handed out and not yet ended.
    granted: Vec<u64>,
}

impl<'a> GrantTable<'a> {
    /// Manages the mapped `frames`; grows no further. References below 8 are
    /// never handed out.
    pub fn new(frames: Vec<&'a GrantFrame>) -> Self {
        let limit = frames.len() as u32;
        let mut table = GrantTable {
            frames: Vec::new(),
            limit,
            grow: None,
            free: Vec::new(),
            granted: Vec::new(),
        };
        for frame in frames {
            table.add_frame(frame);
        }
        table
    }

    /// Manages the mapped `frames`, and when every reference is in use maps
    /// the next frame with `grow`, up to `limit` frames in all.
    pub fn growable(frames: Vec<&'a GrantFrame>, limit: u32, grow: FrameMapper<'a>) -> Self {
        let mut table = GrantTable::new(frames);
        table.limit = table.limit.max(limit);
        table.grow = Some(grow);
        table
    }

    fn add_frame(&mut self, frame: &'a GrantFrame) {
        let first = self.frames.len() as GrantRef * ENTRIES_PER_FRAME;
        self.frames.push(frame);
        self.granted
            .extend(core::iter::repeat_n(0, ENTRIES_PER_FRAME as usize / 64));
        // Popped from the end: lowest references first.
        let start = first.max(FIRST_FREE_REF);
        let end = first + ENTRIES_PER_FRAME;
        let mut added: Vec<GrantRef> = (start..end).rev().collect();
        added.append(&mut self.free);
        self.free = added;
    }

    /// Maps one more frame; false when the limit is reached or mapping failed.
    fn grow_once(&mut self) -> bool {
        let index = self.frames.len() as u32;
        if index >= self.limit {
            return false;
        }
        let Some(frame) = self.grow.as_mut().and_then(|grow| grow(index)) else {
            // Do not try again: Xen refused below the limit it reported.
            self.limit = index;
            return false;
        };
        self.add_frame(frame);
        true
    }

    /// Frames mapped.
    pub fn frames(&self) -> u32 {
        self.frames.len() as u32
    }

    /// Frames the table may grow to.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// References this table can hand out now, without growing.
    pub fn capacity(&self) -> u32 {
        (self.frames() * ENTRIES_PER_FRAME).saturating_sub(FIRST_FREE_REF)
    }

    /// References currently granted.
    pub fn in_use(&self) -> u32 {
        self.capacity() - self.free.len() as u32
    }

    fn entry(&self, gref: GrantRef) -> Option<&'a GrantEntryV1> {
        let frame = self.frames.get((gref / ENTRIES_PER_FRAME) as usize)?;
        Some(&frame[(gref % ENTRIES_PER_FRAME) as usize])
    }

    /// Lets `domid` map guest frame `frame`, read-only or not. Grows the
    /// table when every reference is in use and the limit allows.
    pub fn grant_access(
        &mut self,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        if self.free.is_empty() && !self.grow_once() {
            return Err(GrantError::Exhausted {
                capacity: self.capacity(),
                frames: self.frames(),
            });
        }
        let gref = self.free.pop().ok_or(GrantError::Exhausted {
            capacity: self.capacity(),
            frames: self.frames(),
        })?;
        let entry = self.entry(gref).ok_or(GrantError::NotGranted(gref))?;
        self.granted[gref as usize / 64] |= 1 << (gref % 64);
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
            .entry(gref)
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
        self.entry(gref).is_some_and(|entry| {
            entry.flags.load(Ordering::Acquire) & (GTF_READING | GTF_WRITING) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::hypercall::fake::FakeXen;
    use super::*;
    use std::boxed::Box;
    use std::string::ToString;
    use std::vec;

    fn frame() -> &'static GrantFrame {
        Box::leak(Box::new(core::array::from_fn(|_| GrantEntryV1 {
            flags: AtomicU16::new(0),
            domid: AtomicU16::new(0),
            frame: AtomicU32::new(0),
        })))
    }

    fn bytes(entry: &GrantEntryV1) -> [u8; 8] {
        // SAFETY: an entry is 8 bytes of plain integers.
        unsafe { core::ptr::from_ref(entry).cast::<[u8; 8]>().read() }
    }

    #[test]
    fn grants_never_use_reserved_refs_and_fill_the_entry_layout() {
        let first = frame();
        let mut grants = GrantTable::new(vec![first]);
        let gref = grants.grant_access(0, 0x40123, true).unwrap();
        assert_eq!(gref, 8);
        let mut expected = [0u8; 8];
        expected[0..2].copy_from_slice(&(GTF_PERMIT_ACCESS | GTF_READONLY).to_le_bytes());
        expected[2..4].copy_from_slice(&0u16.to_le_bytes());
        expected[4..8].copy_from_slice(&0x40123u32.to_le_bytes());
        assert_eq!(bytes(&first[8]), expected);
        let writable = grants.grant_access(3, 0x40124, false).unwrap();
        assert_eq!(
            first[writable as usize].flags.load(Ordering::SeqCst),
            GTF_PERMIT_ACCESS
        );
        assert_eq!(first[writable as usize].domid.load(Ordering::SeqCst), 3);
        assert_eq!(grants.in_use(), 2);
    }

    #[test]
    fn end_access_refuses_while_the_peer_maps_and_succeeds_after() {
        let entries = frame();
        let mut grants = GrantTable::new(vec![entries]);
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
        let mut grants = GrantTable::new(vec![frame()]);
        assert_eq!(grants.capacity(), 504);
        for _ in 0..504 {
            grants.grant_access(0, 1, true).unwrap();
        }
        assert_eq!(
            grants.grant_access(0, 3, true),
            Err(GrantError::Exhausted {
                capacity: 504,
                frames: 1
            })
        );
        assert_eq!(grants.end_access(1), Err(GrantError::NotGranted(1)));
        assert_eq!(grants.end_access(9999), Err(GrantError::NotGranted(9999)));
    }

    #[test]
    fn the_table_grows_one_frame_at_a_time_up_to_its_limit() {
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        let mut grants = GrantTable::growable(
            vec![frame()],
            3,
            Box::new(move |index| {
                log.lock().unwrap().push(index);
                Some(frame())
            }),
        );
        let mut refs = Vec::new();
        for _ in 0..504 {
            refs.push(grants.grant_access(0, 7, false).unwrap());
        }
        assert!(asked.lock().unwrap().is_empty());
        // The 505th reference needs frame 1; the first of its references is 512.
        assert_eq!(grants.grant_access(0, 7, false), Ok(512));
        assert_eq!(*asked.lock().unwrap(), vec![1]);
        assert_eq!((grants.frames(), grants.capacity()), (2, 1016));
        for _ in 0..1023 {
            grants.grant_access(0, 7, false).unwrap();
        }
        assert_eq!(*asked.lock().unwrap(), vec![1, 2]);
        assert_eq!(
            grants.grant_access(0, 7, false),
            Err(GrantError::Exhausted {
                capacity: 1528,
                frames: 3
            })
        );
        // An ended reference is reused before the table grows again.
        grants.end_access(refs[0]).unwrap();
        assert_eq!(grants.grant_access(0, 8, false), Ok(refs[0]));
        assert_eq!(grants.in_use(), 1528);
    }

    #[test]
    fn a_refused_growth_stops_growing_and_names_the_frames() {
        let mut grants = GrantTable::growable(vec![frame()], 64, Box::new(|_| None));
        for _ in 0..504 {
            grants.grant_access(0, 1, false).unwrap();
        }
        assert_eq!(
            grants.grant_access(0, 1, false),
            Err(GrantError::Exhausted {
                capacity: 504,
                frames: 1
            })
        );
        assert_eq!(grants.limit(), 1);
    }

    #[test]
    fn a_4k_double_buffer_needs_32_frames() {
        // 3840x2160 XRGB8888 = 8100 pages + 8 directory pages (1023 references
        // each), two buffers, plus a request and an event page.
        let references = 2 * (8100 + 8100_u32.div_ceil(1023)) + 2;
        assert_eq!(frames_for(references), 32);
        assert_eq!(frames_for(0), 1);
    }

    #[test]
    fn frame_plan_starts_small_and_grows_to_what_xen_allows_and_the_region_holds() {
        let plan = plan_frames(64, 16 << 20).unwrap();
        assert_eq!((plan.initial, plan.limit, plan.allowed), (4, 64, 64));
        let small = plan_frames(2, 16 << 20).unwrap();
        assert_eq!((small.initial, small.limit), (2, 2));
        assert_eq!(plan_frames(64, 8 * 4096).unwrap().limit, 8);
        assert_eq!(
            plan_frames(64, 2 * 4096),
            Err(GrantError::RegionTooSmall { fits: 2, needed: 4 })
        );
        assert_eq!(plan_frames(0, 16 << 20), Err(GrantError::NoFramesAllowed));
    }

    /// A hypervisor that plays the map and unmap side for a peer (domain 0)
    /// that granted references 100..100 + granted.
    struct Peer {
        granted: u32,
        /// Mapped pages: address to (reference, handle).
        mapped: std::cell::RefCell<std::collections::BTreeMap<u64, (u32, u32)>>,
        next_handle: core::cell::Cell<u32>,
        calls: core::cell::Cell<usize>,
    }

    impl Peer {
        fn new(granted: u32) -> Self {
            Peer {
                granted,
                mapped: Default::default(),
                next_handle: core::cell::Cell::new(1),
                calls: core::cell::Cell::new(0),
            }
        }
    }

    impl Hypervisor for Peer {
        unsafe fn hypercall(&self, op: Op, args: [u64; 5]) -> i64 {
            assert_eq!(op, Op::GrantTableOp);
            self.calls.set(self.calls.get() + 1);
            let count = args[2] as usize;
            let mut mapped = self.mapped.borrow_mut();
            match args[0] {
                GNTTABOP_MAP_GRANT_REF => {
                    // SAFETY: map_foreign passes `count` structures.
                    let ops = unsafe {
                        std::slice::from_raw_parts_mut(args[1] as *mut MapGrantRef, count)
                    };
                    for op in ops {
                        op.status = if op.dom != 0 {
                            -2
                        } else if !(100..100 + self.granted).contains(&op.gref) {
                            -4
                        } else if op.flags & GNTMAP_HOST_MAP == 0
                            || op.host_addr % 4096 != 0
                            || mapped.contains_key(&op.host_addr)
                        {
                            -1
                        } else {
                            let handle = self.next_handle.get();
                            self.next_handle.set(handle + 1);
                            mapped.insert(op.host_addr, (op.gref, handle));
                            op.handle = handle;
                            0
                        };
                    }
                }
                GNTTABOP_UNMAP_GRANT_REF => {
                    // SAFETY: unmap_each passes `count` structures.
                    let ops = unsafe {
                        std::slice::from_raw_parts_mut(args[1] as *mut UnmapGrantRef, count)
                    };
                    for op in ops {
                        op.status = match mapped.get(&op.host_addr) {
                            Some(&(_, handle)) if handle == op.handle => {
                                mapped.remove(&op.host_addr);
                                0
                            }
                            _ => -3,
                        };
                    }
                }
                other => panic!("unexpected GNTTABOP {other}"),
            }
            0
        }
    }

    #[test]
    fn foreign_pages_map_at_consecutive_addresses_in_batches_and_unmap() {
        let peer = Peer::new(100);
        let refs: Vec<GrantRef> = (100..170).collect();
        // SAFETY: the fake maps nothing.
        let handles = unsafe { map_foreign(&peer, 0, &refs, 0x2_0000_0000, false) }.unwrap();
        assert_eq!(handles.len(), 70);
        // 70 pages in batches of 32: three calls.
        assert_eq!(peer.calls.get(), 3);
        let mapped = peer.mapped.borrow().clone();
        assert_eq!(mapped.len(), 70);
        assert_eq!(mapped.get(&0x2_0000_0000), Some(&(100, handles[0])));
        assert_eq!(
            mapped.get(&(0x2_0000_0000 + 69 * 4096)),
            Some(&(169, handles[69]))
        );
        // SAFETY: as above.
        unsafe { unmap_foreign(&peer, 0x2_0000_0000, &handles) }.unwrap();
        assert!(peer.mapped.borrow().is_empty());
        // A second unmap names the bad handle.
        assert_eq!(
            // SAFETY: as above.
            unsafe { unmap_foreign(&peer, 0x2_0000_0000, &handles[..1]) },
            Err(ForeignMapError::Status {
                index: 0,
                gref: 0,
                status: -3
            })
        );
    }

    #[test]
    fn a_refused_page_is_named_and_what_was_mapped_is_undone() {
        let peer = Peer::new(40);
        // Reference 140 was never granted: page 40 of 50, in the second batch.
        let refs: Vec<GrantRef> = (100..150).collect();
        // SAFETY: the fake maps nothing.
        let error = unsafe { map_foreign(&peer, 0, &refs, 0x4200_0000, true) }.unwrap_err();
        assert_eq!(
            error,
            ForeignMapError::Status {
                index: 40,
                gref: 140,
                status: -4
            }
        );
        assert_eq!(
            error.to_string(),
            "page 40 (grant 140) refused with status -4 (GNTST_bad_gntref)"
        );
        assert!(peer.mapped.borrow().is_empty(), "every mapping undone");
        // Another domain's references: bad domain.
        // SAFETY: as above.
        let error = unsafe { map_foreign(&peer, 7, &refs[..1], 0x4200_0000, false) };
        assert!(matches!(
            error,
            Err(ForeignMapError::Status { status: -2, .. })
        ));
    }

    #[test]
    fn query_size_and_map_frames_issue_the_documented_calls() {
        let xen = FakeXen::default();
        assert_eq!(query_size(&xen), Ok((0, 0)));
        // SAFETY: the fake maps nothing.
        unsafe { map_frames(&xen, 0, 0x38000, 3) }.unwrap();
        // SAFETY: as above.
        unsafe { map_frames(&xen, 5, 0x38005, 1) }.unwrap();
        let calls = xen.calls.borrow();
        assert_eq!(
            (calls[0].op, calls[0].args[0], calls[0].args[2]),
            (Op::GrantTableOp, 6, 1)
        );
        let gpfns: Vec<u64> = calls[1..]
            .iter()
            .map(|call| u64::from_le_bytes(call.bytes[16..24].try_into().unwrap()))
            .collect();
        assert_eq!(gpfns, vec![0x38000, 0x38001, 0x38002, 0x38005]);
        let indexes: Vec<u64> = calls[1..]
            .iter()
            .map(|call| u64::from_le_bytes(call.bytes[8..16].try_into().unwrap()))
            .collect();
        assert_eq!(indexes, vec![0, 1, 2, 5]);
    }
}
