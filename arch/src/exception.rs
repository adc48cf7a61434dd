//! Exceptions taken to EL1: the saved register frame, the decoding of the
//! exception syndrome, and the dispatch from the vector table to the handler
//! that the kernel registers.
//!
//! Arm ARM D1.10 ("Exception entry") and D17.2.37 (ESR_EL1).

use core::fmt;

/// Which of the sixteen vector table entries was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorKind(pub u64);

/// The class of exception of a vector entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// A synchronous exception (abort, trap, system call).
    Synchronous,
    /// An IRQ.
    Irq,
    /// An FIQ.
    Fiq,
    /// An SError (asynchronous external abort).
    SError,
}

impl VectorKind {
    /// The class of exception this entry handles.
    pub fn class(self) -> ExceptionClass {
        match self.0 % 4 {
            0 => ExceptionClass::Synchronous,
            1 => ExceptionClass::Irq,
            2 => ExceptionClass::Fiq,
            _ => ExceptionClass::SError,
        }
    }

    /// Whether the exception was taken from EL1 itself using SP_EL1 (how the
    /// kernel runs).
    pub fn from_kernel(self) -> bool {
        self.0 / 4 == 1
    }

    /// Where the exception came from, in the Arm ARM's words.
    pub fn origin(self) -> &'static str {
        match self.0 / 4 {
            0 => "current EL with SP_EL0",
            1 => "current EL with SP_ELx",
            2 => "lower EL using AArch64",
            _ => "lower EL using AArch32",
        }
    }
}

/// The interrupted context, as saved by the vector table (`vectors.s`).
#[repr(C)]
#[derive(Clone)]
pub struct ExceptionFrame {
    /// General-purpose registers x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL1: where execution resumes.
    pub elr: u64,
    /// SPSR_EL1: the saved processor state.
    pub spsr: u64,
    /// ESR_EL1: the exception syndrome.
    pub esr: u64,
    /// FAR_EL1: the faulting virtual address, for aborts.
    pub far: u64,
    /// The stack pointer at the time of the exception.
    pub sp: u64,
    /// FP/SIMD registers q0 to q31.
    pub q: [u128; 32],
    /// FPSR.
    pub fpsr: u64,
    /// FPCR.
    pub fpcr: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 816);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, sp) == 280);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, q) == 288);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, fpsr) == 800);

/// The exception class field of ESR_EL1 (bits 31:26), named.
pub fn syndrome_class_name(esr: u64) -> &'static str {
    match (esr >> 26) & 0x3f {
        0x00 => "unknown reason",
        0x01 => "trapped WFI/WFE",
        0x07 => "FP/SIMD access trap",
        0x0e => "illegal execution state",
        0x15 => "SVC from AArch64",
        0x16 => "HVC from AArch64",
        0x17 => "SMC from AArch64",
        0x18 => "trapped system register access",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort at the current EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort at the current EL",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x3c => "BRK instruction",
        _ => "other exception class",
    }
}

impl fmt::Display for ExceptionFrame {
    /// Prints the syndrome and every register, four to a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ESR_EL1 {:#010x} ({}, ISS {:#x})",
            self.esr,
            syndrome_class_name(self.esr),
            self.esr & 0x01ff_ffff
        )?;
        writeln!(
            f,
            "ELR_EL1 {:#018x}  FAR_EL1 {:#018x}  SPSR_EL1 {:#010x}  SP {:#018x}",
            self.elr, self.far, self.spsr, self.sp
        )?;
        for (row, regs) in self.x.chunks(4).enumerate() {
            for (column, value) in regs.iter().enumerate() {
                let index = row * 4 + column;
                write!(
                    f,
                    "{}x{index:<2} {value:#018x}",
                    if column == 0 { "" } else { "  " }
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A function that handles exceptions taken to EL1.
pub type Handler = fn(VectorKind, &mut ExceptionFrame);

static HANDLER: spin::Once<Handler> = spin::Once::new();

/// Registers the exception handler. Only the first registration counts.
pub fn set_handler(handler: Handler) {
    HANDLER.call_once(|| handler);
}

/// Called by the vector table with the kind of entry and the saved frame.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn exception_dispatch(kind: u64, frame: &mut ExceptionFrame) {
    match HANDLER.get() {
        Some(handler) => handler(VectorKind(kind), frame),
        None => crate::cpu::halt(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn vector_kinds_map_to_class_and_origin() {
        assert_eq!(VectorKind(4).class(), ExceptionClass::Synchronous);
        assert_eq!(VectorKind(5).class(), ExceptionClass::Irq);
        assert_eq!(VectorKind(11).class(), ExceptionClass::SError);
        assert_eq!(VectorKind(5).origin(), "current EL with SP_ELx");
        assert_eq!(VectorKind(13).origin(), "lower EL using AArch32");
    }

    #[test]
    fn frame_prints_syndrome_and_all_registers() {
        let mut frame = ExceptionFrame {
            x: [0; 31],
            elr: 0x4008_1234,
            spsr: 0x3c5,
            esr: 0x9600_0045,
            far: 0xdead_0000,
            sp: 0x4010_0000,
            q: [0; 32],
            fpsr: 0,
            fpcr: 0,
        };
        frame.x[30] = 0x1e;
        let text = frame.to_string();
        assert!(text.contains("data abort at the current EL"), "{text}");
        assert!(text.contains("FAR_EL1 0x00000000dead0000"), "{text}");
        assert!(text.contains("x30 0x000000000000001e"), "{text}");
        assert_eq!(text.lines().count(), 2 + 8);
    }
}
