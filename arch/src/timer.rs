//! The EL1 virtual timer of the Arm generic timer (Arm ARM D11.2): a
//! comparator against CNTVCT_EL0 that raises its PPI when reached.

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    use aarch64_cpu::registers::{Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0};

    /// Fires the timer interrupt once the virtual counter reaches `counter`.
    pub fn set_deadline(counter: u64) {
        CNTV_CVAL_EL0.set(counter);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    }

    /// Stops the timer (its interrupt deasserts).
    pub fn disable() {
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use imp::*;
