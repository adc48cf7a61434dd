//! CPU helpers: the virtual counter, waiting, barriers and cache maintenance
//! by virtual address (set/way operations are trapped and slow under Xen).

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};

    /// Counter frequency in Hz (CNTFRQ_EL0, set up by Xen).
    pub fn counter_frequency() -> u64 {
        CNTFRQ_EL0.get()
    }

    /// Current value of the virtual counter (CNTVCT_EL0), ordered after
    /// earlier instructions.
    pub fn counter() -> u64 {
        barrier::isb(barrier::SY);
        CNTVCT_EL0.get()
    }

    /// Waits for an interrupt or event (WFI).
    pub fn wait_for_interrupt() {
        aarch64_cpu::asm::wfi();
    }

    /// Full-system data memory barrier for memory shared with other agents
    /// (`dmb ish`): orders earlier loads and stores before later ones.
    pub fn shared_memory_barrier() {
        barrier::dmb(barrier::ISH);
    }

    /// Smallest data cache line size in bytes (CTR_EL0.DminLine).
    fn dcache_line_size() -> usize {
        let ctr: u64;
        // SAFETY: reading CTR_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
        4 << ((ctr >> 16) & 0xf)
    }

    /// Cleans and invalidates `[start, start + len)` to the point of coherency.
    pub fn clean_invalidate_dcache_range(start: usize, len: usize) {
        let line = dcache_line_size();
        let mut addr = start & !(line - 1);
        while addr < start + len {
            // SAFETY: DC CIVAC on a mapped address only moves data between the
            // cache and memory; it cannot change the contents a program sees.
            unsafe { core::arch::asm!("dc civac, {}", in(reg) addr, options(nostack)) };
            addr += line;
        }
        barrier::dsb(barrier::SY);
    }

    /// Masks IRQs and returns the previous DAIF value for [`restore_irqs`].
    pub fn mask_irqs() -> u64 {
        let daif: u64;
        // SAFETY: reading DAIF and masking IRQs only changes interrupt
        // delivery; the compiler barrier (no `nomem`) keeps memory accesses
        // of the critical section after it.
        unsafe {
            core::arch::asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nostack))
        };
        daif
    }

    /// Restores the IRQ mask saved by [`mask_irqs`].
    pub fn restore_irqs(daif: u64) {
        // SAFETY: restores a DAIF value read earlier; memory accesses of the
        // critical section stay before it (no `nomem`).
        unsafe { core::arch::asm!("msr daif, {}", in(reg) daif, options(nostack)) };
    }

    /// Unmasks IRQs.
    pub fn unmask_irqs() {
        // SAFETY: lets pending IRQs be taken; handlers save and restore the
        // whole context.
        unsafe { core::arch::asm!("msr daifclr, #2", options(nostack)) };
    }

    /// This CPU's affinity from MPIDR_EL1, packed Aff3.Aff2.Aff1.Aff0 as
    /// GICR_TYPER reports it.
    pub fn affinity() -> u32 {
        let mpidr: u64;
        // SAFETY: reading MPIDR_EL1 has no side effects.
        unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
        (((mpidr >> 32) & 0xff) << 24) as u32 | (mpidr & 0x00ff_ffff) as u32
    }

    /// Parks the CPU forever with interrupts masked.
    pub fn halt() -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use imp::*;
