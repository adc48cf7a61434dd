//! Transmit side of the Arm PL011 / SBSA generic UART, as Xen's vpl011
//! emulates it for guests with `vuart = "sbsa_uart"`.
//!
//! Arm PrimeCell UART (PL011) TRM, 3.3; Arm SBSA, generic UART. Only 32-bit
//! single loads and stores are used: Xen decodes nothing else.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {u32,
    /// Flag Register, UARTFR.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
}

register_structs! {
    /// The PL011 registers the SBSA generic UART keeps.
    #[allow(missing_docs)]
    pub Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => @END),
    }
}

/// How many flag-register polls a byte may wait for room in the FIFO before
/// it is dropped (a backend that never drains must not hang the guest).
pub const TX_SPIN_LIMIT: u32 = 1_000_000;

/// A PL011-compatible UART.
pub struct Pl011<'a> {
    registers: &'a Registers,
    dropped: u64,
}

// SAFETY: the registers are only touched through `&mut Pl011`, so moving the
// driver to another context cannot create concurrent accesses.
unsafe impl Send for Pl011<'_> {}

impl<'a> Pl011<'a> {
    /// Drives the UART whose registers are `registers`.
    pub fn new(registers: &'a Registers) -> Self {
        Pl011 {
            registers,
            dropped: 0,
        }
    }

    /// Sends one byte, waiting a bounded time for FIFO space.
    pub fn write_byte(&mut self, byte: u8) {
        let mut spins = 0;
        while self.registers.fr.is_set(FR::TXFF) {
            spins += 1;
            if spins == TX_SPIN_LIMIT {
                self.dropped += 1;
                return;
            }
            core::hint::spin_loop();
        }
        self.registers.dr.set(u32::from(byte));
    }

    /// Sends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_byte(byte);
        }
    }

    /// Bytes dropped because the FIFO stayed full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    #[test]
    fn register_offsets_match_the_trm() {
        assert_eq!(core::mem::size_of::<Registers>(), 0x1c);
    }

    #[test]
    fn bytes_go_to_dr_and_full_fifo_drops_after_the_limit() {
        // SAFETY: all-zero registers are a valid in-memory register block.
        let registers: Box<Registers> = Box::new(unsafe { core::mem::zeroed() });
        let mut uart = Pl011::new(&registers);
        uart.write(b"ok");
        assert_eq!(registers.dr.get(), u32::from(b'k'));
        // SAFETY: FR sits at byte offset 0x18 of the block; the test owns it.
        unsafe {
            let fr = core::ptr::from_ref(&*registers).cast::<u8>().add(0x18) as *mut u32;
            fr.write_volatile(1 << 5);
        }
        uart.write_byte(b'x');
        assert_eq!(uart.dropped(), 1);
        assert_eq!(registers.dr.get(), u32::from(b'k'));
    }
}
