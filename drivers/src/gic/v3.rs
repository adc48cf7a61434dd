//! GICv3 (Arm IHI 0069): distributor (GICD) and redistributors (GICR) in
//! MMIO, the CPU interface in `ICC_*_EL1` system registers, reached through
//! [`CpuSystemRegisters`] so that host tests can fake them.

use super::{field_position, replace_field, GicError, PRIORITY_MASK};
use crate::irq::{Acknowledged, InterruptController, Trigger};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// GICD, IHI 0069 12.8 "The GIC Distributor register map".
    #[allow(missing_docs)]
    pub Distributor {
        (0x0000 => pub ctlr: ReadWrite<u32>),
        (0x0004 => pub typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => pub ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => pub icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => _reserved1),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x07fc => _reserved2),
        (0x0c00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved3),
        (0x6000 => pub irouter: [ReadWrite<u64>; 1020]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    /// One redistributor: the RD_base frame and the SGI_base frame
    /// (IHI 0069 12.10 and 12.11), 128 KiB in all.
    #[allow(missing_docs)]
    pub Redistributor {
        (0x00000 => pub ctlr: ReadWrite<u32>),
        (0x00004 => pub iidr: ReadOnly<u32>),
        (0x00008 => pub typer: ReadOnly<u64>),
        (0x00010 => _reserved0),
        (0x00014 => pub waker: ReadWrite<u32>),
        (0x00018 => _reserved1),
        (0x10080 => pub igroupr0: ReadWrite<u32>),
        (0x10084 => _reserved2),
        (0x10100 => pub isenabler0: ReadWrite<u32>),
        (0x10104 => _reserved3),
        (0x10180 => pub icenabler0: ReadWrite<u32>),
        (0x10184 => _reserved4),
        (0x10280 => pub icpendr0: ReadWrite<u32>),
        (0x10284 => _reserved5),
        (0x10400 => pub ipriorityr: [ReadWrite<u32>; 8]),
        (0x10420 => _reserved6),
        (0x10c00 => pub icfgr: [ReadWrite<u32>; 2]),
        (0x10c08 => _reserved7),
        (0x20000 => @END),
    }
}

/// Size of one redistributor (two 64 KiB frames, no virtual LPI frames).
pub const REDISTRIBUTOR_STRIDE: u64 = 0x20000;

/// GICD_CTLR: affinity routing (ARE_NS) and group 1 enables.
const GICD_CTLR_ARE_NS_ENABLE_G1: u32 = (1 << 4) | (1 << 1) | (1 << 0);
/// GICD_CTLR.RWP: a register write is still taking effect.
const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICR_TYPER.Last: this is the last redistributor of the region.
const GICR_TYPER_LAST: u64 = 1 << 4;
/// GICR_WAKER.ProcessorSleep and ChildrenAsleep.
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// Polls of RWP or ChildrenAsleep before giving up.
const POLL_LIMIT: u32 = 100_000;

/// The CPU interface system registers (`ICC_*_EL1`) and the CPU's affinity.
pub trait CpuSystemRegisters {
    /// ICC_SRE_EL1.SRE = 1: use the system register interface.
    fn enable_system_registers(&mut self);
    /// ICC_PMR_EL1.
    fn set_priority_mask(&mut self, mask: u8);
    /// ICC_BPR1_EL1.
    fn set_binary_point(&mut self, value: u8);
    /// ICC_IGRPEN1_EL1.
    fn enable_group1(&mut self, enable: bool);
    /// ICC_IAR1_EL1.
    fn acknowledge(&mut self) -> u32;
    /// ICC_EOIR1_EL1.
    fn end_of_interrupt(&mut self, intid: u32);
    /// This CPU's affinity packed as in GICR_TYPER[63:32]: Aff3.Aff2.Aff1.Aff0.
    fn affinity(&self) -> u32;
}

/// A GICv3.
pub struct GicV3<'a, S: CpuSystemRegisters> {
    distributor: &'a Distributor,
    redistributors: &'a [Redistributor],
    own: Option<usize>,
    system: S,
}

// SAFETY: the registers are only touched through `&mut GicV3`, so moving the
// driver to another context cannot create concurrent accesses.
unsafe impl<S: CpuSystemRegisters + Send> Send for GicV3<'_, S> {}

impl<'a, S: CpuSystemRegisters> GicV3<'a, S> {
    /// Drives the GIC whose distributor and redistributor region are given.
    pub fn new(
        distributor: &'a Distributor,
        redistributors: &'a [Redistributor],
        system: S,
    ) -> Self {
        GicV3 {
            distributor,
            redistributors,
            own: None,
            system,
        }
    }

    fn redistributor(&self) -> Option<&'a Redistributor> {
        self.own.map(|index| &self.redistributors[index])
    }

    fn find_redistributor(&self) -> Result<usize, GicError> {
        let affinity = self.system.affinity();
        for (index, frame) in self.redistributors.iter().enumerate() {
            let typer = frame.typer.get();
            if (typer >> 32) as u32 == affinity {
                return Ok(index);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
        }
        Err(GicError::NoRedistributor { affinity })
    }

    fn wait_for_distributor(&self) {
        let mut polls = 0;
        while self.distributor.ctlr.get() & GICD_CTLR_RWP != 0 && polls < POLL_LIMIT {
            polls += 1;
            core::hint::spin_loop();
        }
    }
}

impl<S: CpuSystemRegisters> InterruptController for GicV3<'_, S> {
    fn init(&mut self) -> Result<(), GicError> {
        let own = self.find_redistributor()?;
        self.own = Some(own);
        let redistributor = &self.redistributors[own];

        // Wake the redistributor.
        let waker = redistributor.waker.get();
        redistributor.waker.set(waker & !GICR_WAKER_PROCESSOR_SLEEP);
        let mut polls = 0;
        while redistributor.waker.get() & GICR_WAKER_CHILDREN_ASLEEP != 0 {
            polls += 1;
            if polls == POLL_LIMIT {
                return Err(GicError::RedistributorAsleep);
            }
            core::hint::spin_loop();
        }

        // SGIs and PPIs: disabled, not pending, group 1.
        redistributor.icenabler0.set(u32::MAX);
        redistributor.icpendr0.set(u32::MAX);
        redistributor.igroupr0.set(u32::MAX);

        // SPIs: disabled, not pending, group 1; then affinity routing on.
        let lines = 32 * ((self.distributor.typer.get() & 0x1f) + 1);
        for word in 1..(lines / 32).min(32) as usize {
            self.distributor.icenabler[word].set(u32::MAX);
            self.distributor.icpendr[word].set(u32::MAX);
            self.distributor.igroupr[word].set(u32::MAX);
        }
        self.distributor.ctlr.set(GICD_CTLR_ARE_NS_ENABLE_G1);
        self.wait_for_distributor();

        self.system.enable_system_registers();
        self.system.set_priority_mask(PRIORITY_MASK);
        self.system.set_binary_point(0);
        self.system.enable_group1(true);
        Ok(())
    }

    fn enable(&mut self, intid: u32) {
        if intid < 32 {
            if let Some(redistributor) = self.redistributor() {
                redistributor.isenabler0.set(1 << intid);
            }
            return;
        }
        let affinity = u64::from(self.system.affinity());
        // IROUTER: Aff3 in bits 39:32, Aff2.Aff1.Aff0 in bits 23:0.
        let route = ((affinity & 0xff00_0000) << 8) | (affinity & 0x00ff_ffff);
        if let Some(router) = self.distributor.irouter.get(intid as usize) {
            router.set(route);
        }
        let (word, bit) = field_position(intid, 1);
        self.distributor.isenabler[word].set(1 << bit);
    }

    fn disable(&mut self, intid: u32) {
        if intid < 32 {
            if let Some(redistributor) = self.redistributor() {
                redistributor.icenabler0.set(1 << intid);
            }
            return;
        }
        let (word, bit) = field_position(intid, 1);
        self.distributor.icenabler[word].set(1 << bit);
        self.wait_for_distributor();
    }

    fn set_priority(&mut self, intid: u32, priority: u8) {
        let (word, shift) = field_position(intid, 8);
        let register = if intid < 32 {
            match self.redistributor() {
                Some(redistributor) => &redistributor.ipriorityr[word],
                None => return,
            }
        } else {
            &self.distributor.ipriorityr[word]
        };
        register.set(replace_field(register.get(), shift, 8, u32::from(priority)));
    }

    fn set_trigger(&mut self, intid: u32, trigger: Trigger) {
        if intid < 16 {
            return;
        }
        let (word, shift) = field_position(intid, 2);
        let register = if intid < 32 {
            match self.redistributor() {
                Some(redistributor) => &redistributor.icfgr[word],
                None => return,
            }
        } else {
            &self.distributor.icfgr[word]
        };
        let edge = u32::from(trigger == Trigger::Edge) << 1;
        register.set(replace_field(register.get(), shift, 2, edge));
    }

    fn acknowledge(&mut self) -> Option<Acknowledged> {
        let raw = self.system.acknowledge();
        let intid = raw & 0x00ff_ffff;
        (!crate::irq::is_special(intid)).then_some(Acknowledged { intid, raw })
    }

    fn end_of_interrupt(&mut self, interrupt: Acknowledged) {
        self.system.end_of_interrupt(interrupt.raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    #[derive(Default)]
    struct FakeIcc {
        sre: bool,
        pmr: u8,
        group1: bool,
        pending: Vec<u32>,
        ended: Vec<u32>,
        affinity: u32,
    }

    impl CpuSystemRegisters for &mut FakeIcc {
        fn enable_system_registers(&mut self) {
            self.sre = true;
        }
        fn set_priority_mask(&mut self, mask: u8) {
            self.pmr = mask;
        }
        fn set_binary_point(&mut self, _: u8) {}
        fn enable_group1(&mut self, enable: bool) {
            self.group1 = enable;
        }
        fn acknowledge(&mut self) -> u32 {
            self.pending.pop().unwrap_or(1023)
        }
        fn end_of_interrupt(&mut self, intid: u32) {
            self.ended.push(intid);
        }
        fn affinity(&self) -> u32 {
            self.affinity
        }
    }

    fn zeroed<T>() -> Box<T> {
        // SAFETY: all-zero register blocks are valid in memory.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn poke<T>(block: &T, offset: usize, value: u64) {
        // SAFETY: the offset is inside the block; the test owns it.
        unsafe {
            core::ptr::from_ref(block)
                .cast::<u8>()
                .add(offset)
                .cast_mut()
                .cast::<u64>()
                .write_volatile(value)
        }
    }

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
        assert_eq!(
            core::mem::size_of::<Redistributor>() as u64,
            REDISTRIBUTOR_STRIDE
        );
        assert_eq!(core::mem::offset_of!(Distributor, irouter), 0x6000);
    }

    #[test]
    fn init_finds_this_cpus_redistributor_and_enables_the_cpu_interface() {
        let distributor: Box<Distributor> = zeroed();
        let mut frames: Vec<Redistributor> = (0..2).map(|_| *zeroed::<Redistributor>()).collect();
        poke(&frames[0], 8, 0); // affinity 0
        poke(&frames[1], 8, (1u64 << 32) | GICR_TYPER_LAST); // affinity 1, last
        let mut icc = FakeIcc {
            affinity: 1,
            ..FakeIcc::default()
        };
        {
            let mut gic = GicV3::new(&distributor, &frames, &mut icc);
            gic.init().unwrap();
            gic.enable(31);
            gic.set_priority(27, 0xa0);
            gic.enable(40);
        }
        assert!(icc.sre && icc.group1);
        assert_eq!(icc.pmr, 0xf0);
        assert_eq!(word(&frames[1], 0x10100), 1 << 31, "ISENABLER0 of frame 1");
        assert_eq!(word(&frames[0], 0x10100), 0, "frame 0 untouched");
        assert_eq!(
            word(&frames[1], 0x10400 + 6 * 4),
            0xa000_0000,
            "IPRIORITYR6 lane 3"
        );
        assert_eq!(
            word(&*distributor, 0x100 + 4),
            1 << 8,
            "GICD_ISENABLER1 bit 8"
        );
        assert_eq!(
            word(&*distributor, 0x6000 + 40 * 8),
            1,
            "IROUTER40 = affinity 1"
        );
        assert_eq!(word(&*distributor, 0), 0b1_0011);
        frames.clear();
    }

    #[test]
    fn missing_redistributor_is_reported() {
        let distributor: Box<Distributor> = zeroed();
        let frames: Vec<Redistributor> = (0..1).map(|_| *zeroed::<Redistributor>()).collect();
        poke(&frames[0], 8, (5u64 << 32) | GICR_TYPER_LAST);
        let mut icc = FakeIcc::default();
        let mut gic = GicV3::new(&distributor, &frames, &mut icc);
        assert_eq!(gic.init(), Err(GicError::NoRedistributor { affinity: 0 }));
    }

    #[test]
    fn acknowledge_skips_spurious_and_ends_with_the_raw_value() {
        let distributor: Box<Distributor> = zeroed();
        let frames: Vec<Redistributor> = (0..1).map(|_| *zeroed::<Redistributor>()).collect();
        let mut icc = FakeIcc {
            pending: std::vec![31],
            ..FakeIcc::default()
        };
        {
            let mut gic = GicV3::new(&distributor, &frames, &mut icc);
            let taken = gic.acknowledge().unwrap();
            assert_eq!(taken.intid, 31);
            gic.end_of_interrupt(taken);
            assert_eq!(gic.acknowledge(), None);
        }
        assert_eq!(icc.ended, [31]);
    }
}
