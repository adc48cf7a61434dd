//! The Xen services a PV frontend builds on, brought up once: event channels
//! (the upcall interrupt feeding the fired set) and the grant table.

use super::xen::Xen;
use super::{irq, mmu, time};
use arch::mmu::MemoryKind;
use drivers::irq::{IrqContext, Trigger};
use drivers::xen::evtchn::EventChannels;
use drivers::xen::gnttab::{self, GrantEntryV1, GrantError, GrantTable};
use drivers::xen::shared_info::SharedInfo;
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
    /// The grant region could not be mapped.
    Map(arch::mmu::MapError),
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
            GrantSetupError::Map(error) => write!(f, "cannot map the grant region: {error}"),
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
    /// Frames mapped.
    pub frames: u32,
    /// Frames Xen allows this domain.
    pub max_frames: u32,
    /// Frames wanted for the references asked for.
    pub wanted_frames: u32,
    /// References available to hand out.
    pub capacity: u32,
}

/// Maps as many grant frames as `references` need (at most what Xen allows)
/// at the device tree's grant region.
pub fn init_grants(region: Region, references: u32) -> Result<GrantSetup, GrantSetupError> {
    let (_, max_frames) = gnttab::query_size(&Xen)?;
    let plan = gnttab::plan_frames(references, max_frames, region.size)?;
    let frames = plan.frames;
    let wanted_frames = plan.wanted;
    let bytes = u64::from(frames) * 4096;
    mmu::map(Region::new(region.base, bytes), MemoryKind::Normal).map_err(GrantSetupError::Map)?;
    // SAFETY: the frames are the hypervisor node's grant region (no RAM), just
    // mapped Normal.
    unsafe { gnttab::map_frames(&Xen, region.base >> 12, frames) }?;
    // SAFETY: Xen now backs the region with the grant table's frames for the
    // life of the domain; entries are only accessed through atomics.
    let entries = unsafe {
        core::slice::from_raw_parts(
            region.base as *const GrantEntryV1,
            (frames * gnttab::ENTRIES_PER_FRAME) as usize,
        )
    };
    let table = GrantTable::new(entries);
    let capacity = table.capacity();
    *GRANTS.lock() = Some(table);
    Ok(GrantSetup {
        frames,
        max_frames,
        wanted_frames,
        capacity,
    })
}

/// Runs `f` on the grant table.
pub fn with_grants<R>(f: impl FnOnce(&mut GrantTable<'static>) -> R) -> Option<R> {
    GRANTS.lock().as_mut().map(f)
}
