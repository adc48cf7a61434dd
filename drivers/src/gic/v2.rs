//! GICv2 (Arm IHI 0048B): distributor (GICD) and CPU interface (GICC), both
//! memory-mapped. Under Xen the CPU interface is the hardware's virtual CPU
//! interface.

use super::{field_position, replace_field, GicError, PRIORITY_MASK};
use crate::irq::{Acknowledged, InterruptController, Trigger};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    /// GICD, IHI 0048B 4.1.2 "Distributor register map".
    #[allow(missing_docs)]
    pub Distributor {
        (0x000 => pub ctlr: ReadWrite<u32>),
        (0x004 => pub typer: ReadOnly<u32>),
        (0x008 => _reserved0),
        (0x080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x200 => pub ispendr: [ReadWrite<u32>; 32]),
        (0x280 => pub icpendr: [ReadWrite<u32>; 32]),
        (0x300 => _reserved1),
        (0x400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x7fc => _reserved2),
        (0x800 => pub itargetsr: [ReadWrite<u32>; 255]),
        (0xbfc => _reserved3),
        (0xc00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0xd00 => @END),
    }
}

register_structs! {
    /// GICC, IHI 0048B 4.1.3 "CPU interface register map".
    #[allow(missing_docs)]
    pub CpuInterface {
        (0x00 => pub ctlr: ReadWrite<u32>),
        (0x04 => pub pmr: ReadWrite<u32>),
        (0x08 => pub bpr: ReadWrite<u32>),
        (0x0c => pub iar: ReadOnly<u32>),
        (0x10 => pub eoir: WriteOnly<u32>),
        (0x14 => @END),
    }
}

/// GICD_CTLR / GICC_CTLR: enable group 0 and group 1 forwarding.
const ENABLE_GROUPS: u32 = 0b11;

/// A GICv2.
pub struct GicV2<'a> {
    distributor: &'a Distributor,
    cpu: &'a CpuInterface,
}

// SAFETY: the registers are only touched through `&mut GicV2`, so moving the
// driver to another context cannot create concurrent accesses.
unsafe impl Send for GicV2<'_> {}

impl<'a> GicV2<'a> {
    /// Drives the GIC whose register blocks are given.
    pub fn new(distributor: &'a Distributor, cpu: &'a CpuInterface) -> Self {
        GicV2 { distributor, cpu }
    }

    /// Number of interrupt lines the distributor implements.
    pub fn lines(&self) -> u32 {
        32 * ((self.distributor.typer.get() & 0x1f) + 1)
    }
}

impl InterruptController for GicV2<'_> {
    fn init(&mut self) -> Result<(), GicError> {
        let words = (self.lines() / 32).min(32) as usize;
        for word in 0..words {
            self.distributor.icenabler[word].set(u32::MAX);
            self.distributor.icpendr[word].set(u32::MAX);
        }
        self.distributor.ctlr.set(ENABLE_GROUPS);
        self.cpu.pmr.set(u32::from(PRIORITY_MASK));
        self.cpu.bpr.set(0);
        self.cpu.ctlr.set(ENABLE_GROUPS);
        Ok(())
    }

    fn enable(&mut self, intid: u32) {
        let (word, bit) = field_position(intid, 1);
        if intid >= 32 {
            // Route SPIs to CPU interface 0, the only vCPU.
            let (target_word, shift) = field_position(intid, 8);
            let targets = &self.distributor.itargetsr[target_word];
            targets.set(replace_field(targets.get(), shift, 8, 1));
        }
        self.distributor.isenabler[word].set(1 << bit);
    }

    fn disable(&mut self, intid: u32) {
        let (word, bit) = field_position(intid, 1);
        self.distributor.icenabler[word].set(1 << bit);
    }

    fn set_priority(&mut self, intid: u32, priority: u8) {
        let (word, shift) = field_position(intid, 8);
        let register = &self.distributor.ipriorityr[word];
        register.set(replace_field(register.get(), shift, 8, u32::from(priority)));
    }

    fn set_trigger(&mut self, intid: u32, trigger: Trigger) {
        if intid < 16 {
            return;
        }
        let (word, shift) = field_position(intid, 2);
        let edge = u32::from(trigger == Trigger::Edge) << 1;
        let register = &self.distributor.icfgr[word];
        register.set(replace_field(register.get(), shift, 2, edge));
    }

    fn acknowledge(&mut self) -> Option<Acknowledged> {
        let raw = self.cpu.iar.get();
        let intid = raw & 0x3ff;
        (!crate::irq::is_special(intid)).then_some(Acknowledged { intid, raw })
    }

    fn end_of_interrupt(&mut self, interrupt: Acknowledged) {
        self.cpu.eoir.set(interrupt.raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn blocks() -> (Box<Distributor>, Box<CpuInterface>) {
        // SAFETY: all-zero register blocks are valid in memory.
        unsafe { (Box::new(core::mem::zeroed()), Box::new(core::mem::zeroed())) }
    }

    /// Reads the 32-bit word at byte offset `offset` of a register block.
    fn word<T>(block: &T, offset: usize) -> u32 {
        // SAFETY: the offset is inside the block; the test owns it.
        unsafe {
            core::ptr::from_ref(block)
                .cast::<u8>()
                .add(offset)
                .cast::<u32>()
                .read_volatile()
        }
    }

    #[test]
    fn register_offsets_match_the_specification() {
        assert_eq!(core::mem::size_of::<Distributor>(), 0xd00);
        assert_eq!(core::mem::size_of::<CpuInterface>(), 0x14);
    }

    #[test]
    fn enabling_an_spi_sets_its_bit_and_routes_it_to_cpu0() {
        let (distributor, cpu) = blocks();
        let mut gic = GicV2::new(&distributor, &cpu);
        gic.enable(33);
        assert_eq!(word(&*distributor, 0x104), 1 << 1);
        assert_eq!(word(&*distributor, 0x820), 0x0000_0100);
        gic.disable(31);
        assert_eq!(word(&*distributor, 0x180), 1 << 31);
    }

    #[test]
    fn priority_and_trigger_touch_only_their_lane() {
        let (distributor, cpu) = blocks();
        let mut gic = GicV2::new(&distributor, &cpu);
        gic.set_priority(27, 0xa0);
        gic.set_priority(31, 0x80);
        assert_eq!(word(&*distributor, 0x400 + 6 * 4), 0xa000_0000);
        assert_eq!(word(&*distributor, 0x400 + 7 * 4), 0x8000_0000);
        gic.set_trigger(40, Trigger::Edge);
        assert_eq!(word(&*distributor, 0xc00 + 2 * 4), 0b10 << 16);
    }

    #[test]
    fn init_enables_both_interfaces_and_masks_nothing_urgent() {
        let (distributor, cpu) = blocks();
        let mut gic = GicV2::new(&distributor, &cpu);
        gic.init().unwrap();
        assert_eq!(word(&*distributor, 0), 0b11);
        assert_eq!(word(&*cpu, 0), 0b11);
        assert_eq!(word(&*cpu, 4), 0xf0);
        assert_eq!(word(&*distributor, 0x180), u32::MAX);
    }

    #[test]
    fn spurious_interrupts_are_not_acknowledged() {
        let (distributor, cpu) = blocks();
        let mut gic = GicV2::new(&distributor, &cpu);
        // SAFETY: GICC_IAR sits at offset 0x0c of the block the test owns.
        let iar = unsafe { core::ptr::from_ref(&*cpu).cast::<u8>().add(0x0c) as *mut u32 };
        // SAFETY: as above.
        unsafe { iar.write_volatile(1023) };
        assert_eq!(gic.acknowledge(), None);
        // SAFETY: as above.
        unsafe { iar.write_volatile(0x400 | 27) };
        let taken = gic.acknowledge().unwrap();
        assert_eq!(taken.intid, 27);
        gic.end_of_interrupt(taken);
        assert_eq!(word(&*cpu, 0x10), 0x400 | 27);
    }
}
