//! Arm Generic Interrupt Controller drivers for the GIC that Xen emulates for
//! its guests: GICv2 (distributor and CPU interface in MMIO) and GICv3
//! (distributor and redistributors in MMIO, CPU interface in system
//! registers).
//!
//! Arm IHI 0048B (GICv2) and IHI 0069 (GICv3). Distributor registers are
//! accessed as 32-bit words only (Xen's vGIC rejects narrower accesses): the
//! byte-wide priority and target fields are read-modify-written in word
//! `intid / 4`, byte lane `intid % 4`.

pub mod v2;
pub mod v3;

use core::fmt;

/// Priority given to interrupts the kernel enables.
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// Priority mask: every priority numerically below this is delivered.
pub const PRIORITY_MASK: u8 = 0xf0;

/// Why a GIC could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor frame in the region matches this CPU's affinity.
    NoRedistributor {
        /// This CPU's affinity (MPIDR_EL1 Aff3.Aff2.Aff1.Aff0 packed as in GICR_TYPER).
        affinity: u32,
    },
    /// The redistributor did not wake up.
    RedistributorAsleep,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GicError::NoRedistributor { affinity } => write!(
                f,
                "no GICv3 redistributor for this CPU (affinity {affinity:#x}) in the device tree's region"
            ),
            GicError::RedistributorAsleep => {
                write!(f, "the GICv3 redistributor stayed asleep (GICR_WAKER.ChildrenAsleep)")
            }
        }
    }
}

/// Word index and bit shift of `intid`'s field in a register array with
/// `bits` bits per interrupt (1 for enable bits, 2 for ICFGR, 8 for
/// IPRIORITYR and ITARGETSR).
pub fn field_position(intid: u32, bits: u32) -> (usize, u32) {
    let per_word = 32 / bits;
    ((intid / per_word) as usize, (intid % per_word) * bits)
}

/// Replaces the `bits`-wide field at `shift` of `word` with `value`.
pub fn replace_field(word: u32, shift: u32, bits: u32, value: u32) -> u32 {
    let mask = if bits == 32 {
        u32::MAX
    } else {
        ((1 << bits) - 1) << shift
    };
    (word & !mask) | ((value << shift) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fields_use_word_intid_over_4_and_lane_intid_mod_4() {
        assert_eq!(field_position(27, 8), (6, 24));
        assert_eq!(field_position(31, 8), (7, 24));
        assert_eq!(field_position(32, 8), (8, 0));
        assert_eq!(field_position(1019, 8), (254, 24));
    }

    #[test]
    fn enable_bits_and_config_fields() {
        assert_eq!(field_position(31, 1), (0, 31));
        assert_eq!(field_position(32, 1), (1, 0));
        assert_eq!(field_position(27, 2), (1, 22));
        assert_eq!(field_position(48, 2), (3, 0));
    }

    #[test]
    fn replace_field_keeps_the_other_lanes() {
        assert_eq!(replace_field(0x1122_3344, 8, 8, 0xa0), 0x1122_a044);
        assert_eq!(replace_field(0xffff_ffff, 22, 2, 0b10), 0xffbf_ffff);
    }
}
