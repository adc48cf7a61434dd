//! The GICv3 CPU interface system registers (Arm IHI 0069 12.2), by their
//! generic encodings so that no assembler GIC extension is needed.

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    macro_rules! write_sysreg {
        ($name:literal, $value:expr) => {
            // SAFETY: writes a GIC CPU interface register; these only change
            // how interrupts are signalled to this CPU.
            unsafe {
                core::arch::asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) $value, options(nostack))
            }
        };
    }

    /// ICC_SRE_EL1 (S3_0_C12_C12_5): enable the system register interface.
    pub fn enable_system_registers() {
        let sre: u64;
        // SAFETY: reading ICC_SRE_EL1 has no side effects.
        unsafe {
            core::arch::asm!("mrs {}, S3_0_C12_C12_5", out(reg) sre, options(nomem, nostack))
        };
        write_sysreg!("S3_0_C12_C12_5", sre | 1);
    }

    /// ICC_PMR_EL1 (S3_0_C4_C6_0): priority mask.
    pub fn set_priority_mask(mask: u8) {
        write_sysreg!("S3_0_C4_C6_0", u64::from(mask));
    }

    /// ICC_BPR1_EL1 (S3_0_C12_C12_3): binary point for group 1.
    pub fn set_binary_point(value: u8) {
        write_sysreg!("S3_0_C12_C12_3", u64::from(value));
    }

    /// ICC_IGRPEN1_EL1 (S3_0_C12_C12_7): group 1 interrupts on or off.
    pub fn enable_group1(enable: bool) {
        write_sysreg!("S3_0_C12_C12_7", u64::from(enable));
    }

    /// ICC_IAR1_EL1 (S3_0_C12_C12_0): acknowledge the highest pending interrupt.
    pub fn acknowledge() -> u32 {
        let intid: u64;
        // SAFETY: acknowledging only changes the GIC's active state; the
        // caller ends the interrupt.
        unsafe {
            core::arch::asm!("mrs {}, S3_0_C12_C12_0", "dsb sy", out(reg) intid, options(nostack))
        };
        intid as u32
    }

    /// ICC_EOIR1_EL1 (S3_0_C12_C12_1): end an interrupt.
    pub fn end_of_interrupt(intid: u32) {
        write_sysreg!("S3_0_C12_C12_1", u64::from(intid));
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use imp::*;
