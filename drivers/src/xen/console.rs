//! The PV console ring shared with xenconsoled (xen/include/public/io/console.h).
//!
//! `struct xencons_interface { char in[1024]; char out[2048]; XENCONS_RING_IDX
//! in_cons, in_prod, out_cons, out_prod; }`. Indexes are free-running 32-bit
//! counters masked with the ring size. The guest produces `out` and consumes
//! `in`; the page is written concurrently by Dom0, so every access is atomic
//! and the producer index is published with release ordering after the data.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Size of the `in` ring.
pub const IN_RING_SIZE: usize = 1024;
/// Size of the `out` ring.
pub const OUT_RING_SIZE: usize = 2048;

/// `struct xencons_interface`.
#[repr(C)]
pub struct ConsoleInterface {
    input: [AtomicU8; IN_RING_SIZE],
    output: [AtomicU8; OUT_RING_SIZE],
    in_cons: AtomicU32,
    in_prod: AtomicU32,
    out_cons: AtomicU32,
    out_prod: AtomicU32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(ConsoleInterface, output) == 1024);
    assert!(offset_of!(ConsoleInterface, in_cons) == 3072);
    assert!(offset_of!(ConsoleInterface, in_prod) == 3076);
    assert!(offset_of!(ConsoleInterface, out_cons) == 3080);
    assert!(offset_of!(ConsoleInterface, out_prod) == 3084);
    assert!(core::mem::size_of::<ConsoleInterface>() <= 4096);
};

impl ConsoleInterface {
    /// Copies as much of `bytes` into the `out` ring as fits and publishes
    /// it; returns how many bytes were taken. The caller notifies the event
    /// channel afterwards.
    pub fn write(&self, bytes: &[u8]) -> usize {
        let producer = self.out_prod.load(Ordering::Relaxed);
        // A consumer index past the producer means a broken peer: the ring
        // counts as full rather than overwrite unread data.
        let count = self.free_space().min(bytes.len());
        for (offset, &byte) in bytes[..count].iter().enumerate() {
            let index = producer.wrapping_add(offset as u32) as usize % OUT_RING_SIZE;
            self.output[index].store(byte, Ordering::Relaxed);
        }
        self.out_prod
            .store(producer.wrapping_add(count as u32), Ordering::Release);
        count
    }

    /// Bytes the `out` ring can take now.
    pub fn free_space(&self) -> usize {
        let consumer = self.out_cons.load(Ordering::Acquire);
        let producer = self.out_prod.load(Ordering::Relaxed);
        OUT_RING_SIZE.saturating_sub(producer.wrapping_sub(consumer) as usize)
    }

    /// Whether the peer has consumed everything written so far.
    pub fn is_drained(&self) -> bool {
        self.out_cons.load(Ordering::Acquire) == self.out_prod.load(Ordering::Relaxed)
    }

    /// Takes up to `buffer.len()` bytes from the `in` ring; returns the count.
    pub fn read(&self, buffer: &mut [u8]) -> usize {
        let producer = self.in_prod.load(Ordering::Acquire);
        let consumer = self.in_cons.load(Ordering::Relaxed);
        let available = (producer.wrapping_sub(consumer) as usize).min(IN_RING_SIZE);
        let count = available.min(buffer.len());
        for (offset, slot) in buffer[..count].iter_mut().enumerate() {
            let index = consumer.wrapping_add(offset as u32) as usize % IN_RING_SIZE;
            *slot = self.input[index].load(Ordering::Relaxed);
        }
        self.in_cons
            .store(consumer.wrapping_add(count as u32), Ordering::Release);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A page-sized, zeroed console interface, as Xen hands it over.
    fn new_page() -> Box<ConsoleInterface> {
        // SAFETY: all-zero bytes are a valid ConsoleInterface (atomics of 0).
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn page_bytes(page: &ConsoleInterface) -> &[u8] {
        // SAFETY: the interface is plain bytes and integers; reading it as
        // bytes while no one writes is sound.
        unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref(page).cast::<u8>(),
                core::mem::size_of::<ConsoleInterface>(),
            )
        }
    }

    /// Plays xenconsoled: consumes the `out` ring.
    fn drain(page: &ConsoleInterface) -> Vec<u8> {
        let bytes = page_bytes(page);
        let cons = u32::from_le_bytes(bytes[3080..3084].try_into().unwrap());
        let prod = u32::from_le_bytes(bytes[3084..3088].try_into().unwrap());
        let out: Vec<u8> = (0..prod.wrapping_sub(cons))
            .map(|offset| bytes[1024 + cons.wrapping_add(offset) as usize % OUT_RING_SIZE])
            .collect();
        page.out_cons.store(prod, Ordering::Release);
        out
    }

    #[test]
    fn output_lands_at_the_header_offsets() {
        let page = new_page();
        assert_eq!(page.write(b"hello\n"), 6);
        let bytes = page_bytes(&page);
        assert_eq!(&bytes[1024..1030], b"hello\n");
        assert_eq!(&bytes[3084..3088], &6u32.to_le_bytes());
        assert!(!page.is_drained());
        assert_eq!(drain(&page), b"hello\n");
        assert!(page.is_drained());
    }

    #[test]
    fn full_ring_takes_only_what_fits_and_wraps() {
        let page = new_page();
        let big = [b'x'; OUT_RING_SIZE + 10];
        assert_eq!(page.write(&big), OUT_RING_SIZE);
        assert_eq!(page.free_space(), 0);
        assert_eq!(page.write(b"y"), 0);
        assert_eq!(drain(&page).len(), OUT_RING_SIZE);
        assert_eq!(page.write(b"wrapped"), 7);
        assert_eq!(drain(&page), b"wrapped");
    }

    #[test]
    fn indexes_wrap_around_u32() {
        let page = new_page();
        page.out_cons.store(u32::MAX - 2, Ordering::Relaxed);
        page.out_prod.store(u32::MAX - 2, Ordering::Relaxed);
        assert_eq!(page.write(b"abcdef"), 6);
        assert_eq!(page.out_prod.load(Ordering::Relaxed), 3);
        assert_eq!(drain(&page), b"abcdef");
    }

    #[test]
    fn hostile_consumer_index_never_overwrites() {
        let page = new_page();
        page.out_cons.store(100, Ordering::Relaxed); // past the producer
        assert_eq!(page.write(b"data"), 0);
    }

    #[test]
    fn input_is_consumed_in_order() {
        let page = new_page();
        for (index, byte) in b"ls\n".iter().enumerate() {
            page.input[index].store(*byte, Ordering::Relaxed);
        }
        page.in_prod.store(3, Ordering::Release);
        let mut buffer = [0u8; 8];
        assert_eq!(page.read(&mut buffer), 3);
        assert_eq!(&buffer[..3], b"ls\n");
        assert_eq!(page.read(&mut buffer), 0);
    }
}
