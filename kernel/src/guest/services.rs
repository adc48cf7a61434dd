//! The Xen services a PV frontend builds on, brought up once: event channels
//! (the upcall interrupt feeding the fired set) and the grant table.

extern crate alloc;

use super::pages::ForeignPages;
use super::xen::Xen;
use super::{irq, mmu, time};
use alloc::boxed::Box;
use alloc::vec::Vec;
use arch::mmu::MemoryKind;
use drivers::irq::{IrqContext, Trigger};
use drivers::xen::evtchn::EventChannels;
use drivers::xen::gnttab::{self, GrantError, GrantFrame, GrantRef, GrantTable};
use drivers::xen::shared_info::SharedInfo;
use drivers::xen::vdispl::env::ForeignError;
use kernel::platform::{Interrupt, Region};

static EVENTS: spin::Once<EventChannels<'static>> = spin::Once::new();
static GRANTS: spin::Mutex<Option<GrantTable<'static>>> = spin::Mutex::new(None);

fn upcall(context: &IrqContext) {
    if let Some(events) = EVENTS.get() {
        events.handle_upcall(context);
    }
}

/// Starts taking event channel upcalls on `interrupt`.
pub fn init_events(
    shared_info: &'static SharedInfo,
    interrupt: Interrupt,
) -> Result<(), irq::IrqError> {
    EVENTS.call_once(|| EventChannels::new(shared_info));
    irq::register(interrupt.intid, Trigger::Level, upcall)
}

/// The event channels (after [`init_events`]).
pub fn events() -> Option<&'static EventChannels<'static>> {
    EVENTS.get()
}

/// Waits until `port` fires (true, and the mark is taken) or the deadline.
pub fn wait_for_port(port: u32, deadline_ns: u64) -> bool {
    match EVENTS.get() {
        Some(events) => time::wait_until(deadline_ns, || events.take(port)),
        None => false,
    }
}

/// Why the grant table could not be set up.
pub enum GrantSetupError {
    /// Xen refused or the plan does not fit.
    Grant(GrantError),
    /// The first frames could not be mapped (the console says why).
    FirstFrames,
}

impl From<GrantError> for GrantSetupError {
    fn from(error: GrantError) -> Self {
        GrantSetupError::Grant(error)
    }
}

impl core::fmt::Display for GrantSetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantSetupError::Grant(error) => write!(f, "{error}"),
            GrantSetupError::FirstFrames => write!(f, "cannot map the first grant frames"),
        }
    }
}

/// Notifies `port`'s peer; a failure is logged (callers could only retry).
pub fn notify(port: u32) {
    if let Err(error) = drivers::xen::evtchn::send(&Xen, port) {
        log::warn!("EVTCHNOP_send on port {port} failed: {error}");
    }
}

/// What setting up the grant table found.
pub struct GrantSetup {
    /// Frames mapped at start.
    pub frames: u32,
    /// Frames the table may grow to.
    pub limit_frames: u32,
    /// Frames Xen allows this domain.
    pub max_frames: u32,
    /// References available to hand out before the table first grows.
    pub capacity: u32,
}

/// Maps grant frame `index` at its place in the device tree's grant region
/// (Xen grows the table to it) and hands back its entries.
fn map_grant_frame(region: Region, index: u32) -> Option<&'static GrantFrame> {
    let address = region.base + u64::from(index) * 4096;
    if let Err(error) = mmu::map(Region::new(address, 4096), MemoryKind::Normal) {
        log::error!("cannot map grant frame {index} at {address:#x}: {error}");
        return None;
    }
    // SAFETY: the frame lies in the hypervisor node's grant region (no RAM),
    // just mapped Normal.
    if let Err(error) = unsafe { gnttab::map_frames(&Xen, index, address >> 12, 1) } {
        log::error!(
            "cannot grow the grant table to {} frames: {error}",
            index + 1
        );
        return None;
    }
    // SAFETY: Xen now backs the frame with grant table frame `index` for the
    // life of the domain; entries are only accessed through atomics.
    Some(unsafe { &*(address as *const GrantFrame) })
}

/// Maps the first grant frames at the device tree's grant region; the table
/// grows a frame at a time as references run out, up to what Xen allows.
pub fn init_grants(region: Region) -> Result<GrantSetup, GrantSetupError> {
    let (_, max_frames) = gnttab::query_size(&Xen)?;
    let plan = gnttab::plan_frames(max_frames, region.size)?;
    let mut frames = Vec::new();
    for index in 0..plan.initial {
        frames.push(map_grant_frame(region, index).ok_or(GrantSetupError::FirstFrames)?);
    }
    let grow = Box::new(move |index| map_grant_frame(region, index));
    let table = GrantTable::growable(frames, plan.limit, grow);
    let setup = GrantSetup {
        frames: table.frames(),
        limit_frames: table.limit(),
        max_frames,
        capacity: table.capacity(),
    };
    *GRANTS.lock() = Some(table);
    Ok(setup)
}

/// Runs `f` on the grant table.
pub fn with_grants<R>(f: impl FnOnce(&mut GrantTable<'static>) -> R) -> Option<R> {
    GRANTS.lock().as_mut().map(f)
}

/// The guest physical window where pages other domains grant are mapped
/// (the largest extended region of the device tree's hypervisor node): free
/// runs of pages, first fit.
struct Window {
    /// Free runs: (first address, pages), in address order.
    free: Vec<(u64, usize)>,
    /// Pages in all.
    pages: usize,
}

static WINDOW: spin::Mutex<Option<Window>> = spin::Mutex::new(None);

/// Free runs the window's list has room for from boot on: the display maps at most two
/// buffers per connector, so its runs stay well within it and the heap does not grow as
/// buffers come and go.
const WINDOW_RUNS: usize = 16;

/// Takes the largest of `regions` as the window for foreign pages; returns
/// it, or `None` when the device tree gives none.
pub fn init_foreign_window(regions: &[Region]) -> Option<Region> {
    let region = regions.iter().max_by_key(|region| region.size).copied()?;
    let base = region.base.next_multiple_of(4096);
    let pages = ((region.size - (base - region.base)) / 4096) as usize;
    let mut free = Vec::with_capacity(WINDOW_RUNS);
    free.push((base, pages));
    *WINDOW.lock() = Some(Window { free, pages });
    Some(region)
}

/// Maps `refs` of domain `domid` at a free run of the window.
pub fn map_foreign(domid: u16, refs: &[GrantRef]) -> Result<ForeignPages, ForeignError> {
    let pages = refs.len();
    let base = {
        let mut window = WINDOW.lock();
        let free = window.as_mut().map(|window| &mut window.free);
        let Some(free) = free else {
            return Err(ForeignError::Window { pages, free: 0 });
        };
        let longest = free.iter().map(|&(_, len)| len).max().unwrap_or(0);
        let Some(run) = free.iter().position(|&(_, len)| len >= pages) else {
            return Err(ForeignError::Window {
                pages,
                free: longest,
            });
        };
        let (base, len) = free[run];
        if len == pages {
            free.remove(run);
        } else {
            free[run] = (base + pages as u64 * 4096, len - pages);
        }
        base
    };
    let give_back = |base| release_window(base, pages);
    if let Err(error) = mmu::map(Region::new(base, pages as u64 * 4096), MemoryKind::Normal) {
        log::error!("cannot map the window for foreign pages at {base:#x}: {error}");
        give_back(base);
        return Err(ForeignError::Window { pages, free: 0 });
    }
    // SAFETY: the run is part of the extended region, which holds no RAM
    // and nothing else maps; it is ours until given back.
    match unsafe { gnttab::map_foreign(&Xen, domid, refs, base, false) } {
        Ok(handles) => Ok(ForeignPages {
            base,
            pages,
            handles,
        }),
        Err(error) => {
            give_back(base);
            Err(ForeignError::Map(error))
        }
    }
}

/// Pages of the window mapped now (0 without a window).
pub fn foreign_in_use() -> usize {
    WINDOW.lock().as_ref().map_or(0, |window| {
        let free: usize = window.free.iter().map(|&(_, pages)| pages).sum();
        window.pages - free
    })
}

/// Unmaps pages [`map_foreign`] mapped and gives their run back.
pub fn unmap_foreign(pages: ForeignPages) -> Result<(), ForeignError> {
    // SAFETY: the pages are mapped there with these handles, and consuming
    // `pages` ends every use of them.
    unsafe { gnttab::unmap_foreign(&Xen, pages.base, &pages.handles) }
        .map_err(ForeignError::Map)?;
    release_window(pages.base, pages.pages);
    Ok(())
}

/// Puts a run back into the window's free list, merged with its
/// neighbours.
fn release_window(base: u64, pages: usize) {
    let mut window = WINDOW.lock();
    let Some(window) = window.as_mut() else {
        return;
    };
    let free = &mut window.free;
    let at = free.partition_point(|&(start, _)| start < base);
    free.insert(at, (base, pages));
    // Merged in place: the list keeps the room it was given at boot, so giving runs back
    // leaves the heap as it was (the display's per-connection figures compare it).
    let mut index = 0;
    while index + 1 < free.len() {
        let (start, len) = free[index];
        let (next, next_len) = free[index + 1];
        if start + len as u64 * 4096 == next {
            free[index].1 += next_len;
            free.remove(index + 1);
        } else {
            index += 1;
        }
    }
}
