//! Interrupts: the GIC the device tree names, a handler per interrupt ID, and
//! the dispatch from the IRQ vector.

use super::sync::IrqMutex;
use arch::exception::ExceptionFrame;
use core::sync::atomic::{AtomicU32, Ordering};
use drivers::gic::v2::{self, GicV2};
use drivers::gic::v3::{self, CpuSystemRegisters, GicV3, REDISTRIBUTOR_STRIDE};
use drivers::gic::{GicError, DEFAULT_PRIORITY};
use drivers::irq::{Acknowledged, InterruptController, IrqContext, Trigger};
use kernel::platform::{Gic, Region};

/// Interrupts taken that had no handler (each is then disabled).
static UNHANDLED: AtomicU32 = AtomicU32::new(0);

/// How many interrupts arrived without a handler.
pub fn unhandled() -> u32 {
    UNHANDLED.load(Ordering::Relaxed)
}

/// A handler for one interrupt ID, run in IRQ context.
pub type Handler = fn(&IrqContext);

/// Highest interrupt ID with a handler slot (PPIs and the first SPIs).
const HANDLER_SLOTS: usize = 64;

/// The GICv3 CPU interface through `arch`'s system register accessors.
pub struct ArchIcc;

impl CpuSystemRegisters for ArchIcc {
    fn enable_system_registers(&mut self) {
        arch::gicv3::enable_system_registers();
    }
    fn set_priority_mask(&mut self, mask: u8) {
        arch::gicv3::set_priority_mask(mask);
    }
    fn set_binary_point(&mut self, value: u8) {
        arch::gicv3::set_binary_point(value);
    }
    fn enable_group1(&mut self, enable: bool) {
        arch::gicv3::enable_group1(enable);
    }
    fn acknowledge(&mut self) -> u32 {
        arch::gicv3::acknowledge()
    }
    fn end_of_interrupt(&mut self, intid: u32) {
        arch::gicv3::end_of_interrupt(intid);
    }
    fn affinity(&self) -> u32 {
        arch::cpu::affinity()
    }
}

enum Driver {
    V2(GicV2<'static>),
    V3(GicV3<'static, ArchIcc>),
}

impl Driver {
    fn controller(&mut self) -> &mut dyn InterruptController {
        match self {
            Driver::V2(gic) => gic,
            Driver::V3(gic) => gic,
        }
    }
}

struct State {
    driver: Option<Driver>,
    handlers: [Option<Handler>; HANDLER_SLOTS],
}

static STATE: IrqMutex<State> = IrqMutex::new(State {
    driver: None,
    handlers: [None; HANDLER_SLOTS],
});

/// Why interrupts could not be set up.
#[derive(Debug)]
pub enum IrqError {
    /// A GIC register region is smaller than its registers.
    RegionTooSmall(&'static str, Region),
    /// The GIC refused to come up.
    Gic(GicError),
    /// No slot for this interrupt ID.
    NoSlot(u32),
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::RegionTooSmall(what, region) => {
                write!(
                    f,
                    "the GIC {what} region {region} is smaller than its registers"
                )
            }
            IrqError::Gic(error) => write!(f, "{error}"),
            IrqError::NoSlot(intid) => write!(f, "interrupt {intid} has no handler slot"),
        }
    }
}

/// Brings up the GIC described by `gic` (its regions already mapped as
/// Device memory) with every interrupt disabled.
pub fn init(gic: Gic) -> Result<(), IrqError> {
    let driver = match gic {
        Gic::V2 {
            distributor,
            cpu_interface,
        } => {
            check_size(
                "distributor",
                distributor,
                core::mem::size_of::<v2::Distributor>(),
            )?;
            check_size(
                "CPU interface",
                cpu_interface,
                core::mem::size_of::<v2::CpuInterface>(),
            )?;
            // SAFETY: the regions come from the device tree, are mapped
            // Device-nGnRE, are at least as large as the register blocks, and
            // are driven by nothing else.
            let (distributor, cpu) = unsafe {
                (
                    &*(distributor.base as *const v2::Distributor),
                    &*(cpu_interface.base as *const v2::CpuInterface),
                )
            };
            Driver::V2(GicV2::new(distributor, cpu))
        }
        Gic::V3 {
            distributor,
            redistributor,
        } => {
            check_size(
                "distributor",
                distributor,
                core::mem::size_of::<v3::Distributor>(),
            )?;
            let frames = (redistributor.size / REDISTRIBUTOR_STRIDE) as usize;
            if frames == 0 {
                return Err(IrqError::RegionTooSmall("redistributor", redistributor));
            }
            // SAFETY: as for GICv2; the redistributor region holds `frames`
            // whole 128 KiB frames.
            let (distributor, redistributors) = unsafe {
                (
                    &*(distributor.base as *const v3::Distributor),
                    core::slice::from_raw_parts(
                        redistributor.base as *const v3::Redistributor,
                        frames,
                    ),
                )
            };
            Driver::V3(GicV3::new(distributor, redistributors, ArchIcc))
        }
    };
    let mut state = STATE.lock();
    let driver = state.driver.insert(driver);
    driver.controller().init().map_err(IrqError::Gic)
}

fn check_size(what: &'static str, region: Region, needed: usize) -> Result<(), IrqError> {
    if region.size < needed as u64 {
        return Err(IrqError::RegionTooSmall(what, region));
    }
    Ok(())
}

/// Installs `handler` for `intid` and enables it with the given trigger.
pub fn register(intid: u32, trigger: Trigger, handler: Handler) -> Result<(), IrqError> {
    let mut state = STATE.lock();
    let slot = state
        .handlers
        .get_mut(intid as usize)
        .ok_or(IrqError::NoSlot(intid))?;
    *slot = Some(handler);
    if let Some(driver) = state.driver.as_mut() {
        let controller = driver.controller();
        controller.set_priority(intid, DEFAULT_PRIORITY);
        controller.set_trigger(intid, trigger);
        controller.enable(intid);
    }
    Ok(())
}

/// The IRQ vector: acknowledges and runs handlers until nothing is pending.
pub fn handle(_frame: &mut ExceptionFrame) {
    // SAFETY: this is the IRQ exception path; PSTATE.I is set on entry.
    let context = unsafe { IrqContext::new() };
    loop {
        let (taken, handler): (Acknowledged, Option<Handler>) = {
            let mut state = STATE.lock();
            let Some(driver) = state.driver.as_mut() else {
                return;
            };
            let Some(taken) = driver.controller().acknowledge() else {
                return;
            };
            let handler = state.handlers.get(taken.intid as usize).copied().flatten();
            (taken, handler)
        };
        let mut state = match handler {
            Some(handler) => {
                handler(&context);
                STATE.lock()
            }
            None => {
                // Nothing will ever handle it: keep it from firing again.
                UNHANDLED.fetch_add(1, Ordering::Relaxed);
                let mut state = STATE.lock();
                if let Some(driver) = state.driver.as_mut() {
                    driver.controller().disable(taken.intid);
                }
                state
            }
        };
        if let Some(driver) = state.driver.as_mut() {
            driver.controller().end_of_interrupt(taken);
        }
    }
}
