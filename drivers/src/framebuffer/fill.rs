//! Filling a run of pixels with one pixel value: `memset` for 2- and 4-byte
//! units (what Linux calls `memset16` / `memset32`).
//!
//! Each target uses the stores its own `memset` uses:
//!
//! - x86_64: for runs of [`STRING_STORE_BYTES`] or more, the string store
//!   (`rep stosd`), which moves whole cache lines per step and, for large
//!   runs, skips reading lines it overwrites; it costs a few dozen cycles to
//!   start, so shorter runs take vector stores over the run as `[u32]`.
//! - everywhere else (the aarch64 guest): 16-byte stores over the
//!   16-byte-aligned middle of the run, and byte stores for the few bytes
//!   before and after it. The guest's target is strict about alignment, so
//!   wide stores are only emitted where the compiler can see the alignment:
//!   the middle is reinterpreted as `[u128]` (a `[u32]` would be stored a
//!   word at a time).

/// Runs shorter than this many bytes are stored a pixel at a time: setting
/// up wide stores would cost more than it saves (glyph pixels, the ends of
/// small shapes' scanlines).
const NARROW_BYTES: usize = 64;

/// Fills `run`, which starts on a pixel and holds whole pixels, with
/// `pixel` (2 or 4 bytes; any other length leaves `run` untouched).
pub(super) fn fill(run: &mut [u8], pixel: &[u8]) {
    let word = match *pixel {
        [b0, b1] => [b0, b1, b0, b1],
        [b0, b1, b2, b3] => [b0, b1, b2, b3],
        _ => return,
    };
    if run.len() < NARROW_BYTES {
        // Fixed-size copies, which compile to plain stores.
        if pixel.len() == 4 {
            for bytes in run.chunks_exact_mut(4) {
                bytes.copy_from_slice(&word);
            }
        } else {
            for bytes in run.chunks_exact_mut(2) {
                bytes.copy_from_slice(&word[..2]);
            }
        }
        return;
    }
    fill_words(run, word);
}

/// Runs of at least this many bytes are written with the string store on
/// x86_64: below it, its start-up costs more than vector stores.
#[cfg(target_arch = "x86_64")]
const STRING_STORE_BYTES: usize = 1024;

/// Fills `run` with `word` repeated, `word`'s first byte at `run[0]`; a
/// partial word at the end takes the word's first bytes.
#[cfg(target_arch = "x86_64")]
fn fill_words(run: &mut [u8], word: [u8; 4]) {
    if run.len() < STRING_STORE_BYTES {
        fill_aligned::<u32>(run, word);
        return;
    }
    let words = run.len() / 4;
    let value = u32::from_le_bytes(word);
    // SAFETY: `rep stosd` stores `eax` to the `rcx` 4-byte units from `rdi`
    // upwards (the direction flag is clear, as the ABI guarantees at every
    // call), which is `words * 4 <= run.len()` bytes inside `run`, which is
    // borrowed mutably here; it touches no other memory, no stack, and only
    // the registers named as clobbered.
    unsafe {
        core::arch::asm!(
            "rep stosd",
            inout("rcx") words => _,
            inout("rdi") run.as_mut_ptr() => _,
            in("eax") value,
            options(nostack, preserves_flags),
        );
    }
    for (index, byte) in run[words * 4..].iter_mut().enumerate() {
        *byte = word[index];
    }
}

/// Fills `run` with `word` repeated, `word`'s first byte at `run[0]`; a
/// partial word at the end takes the word's first bytes.
#[cfg(not(target_arch = "x86_64"))]
fn fill_words(run: &mut [u8], word: [u8; 4]) {
    fill_aligned::<u128>(run, word);
}

/// A unit of aligned stores: a whole number of 4-byte words.
trait Unit: bytemuck::Pod {
    /// The unit holding `word` (a little-endian `u32`) repeated.
    fn repeat(word: u32) -> Self;
}

impl Unit for u32 {
    fn repeat(word: u32) -> Self {
        word
    }
}

impl Unit for u128 {
    fn repeat(word: u32) -> Self {
        u128::from(word) * 0x0000_0001_0000_0001_0000_0001_0000_0001
    }
}

/// [`fill_words`] with stores of `U` over the part of `run` aligned for it
/// and byte stores before and after.
fn fill_aligned<U: Unit>(run: &mut [u8], word: [u8; 4]) {
    let (head, middle, tail) = bytemuck::pod_align_to_mut::<u8, U>(run);
    for (index, byte) in head.iter_mut().enumerate() {
        *byte = word[index % 4];
    }
    // The middle starts `head.len()` bytes into the repeating word: rotate
    // the word so that its byte for that offset comes first.
    let phase = head.len() % 4;
    let rotated = u32::from_le_bytes(word).rotate_right(8 * phase as u32);
    middle.fill(U::repeat(rotated));
    // The middle is whole words, so the tail has the head's phase.
    for (index, byte) in tail.iter_mut().enumerate() {
        *byte = word[(phase + index) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// What `fill` must produce: `pixel` repeated, written one byte at a
    /// time.
    fn expected(len: usize, pixel: &[u8]) -> Vec<u8> {
        (0..len).map(|index| pixel[index % pixel.len()]).collect()
    }

    #[test]
    fn every_offset_and_length_repeats_the_pixel_exactly() {
        for pixel in [&[0x11u8, 0x22][..], &[0x11, 0x22, 0x33, 0x44][..]] {
            let step = pixel.len();
            // Offsets cover every alignment of the run against 16 bytes and
            // lengths cover the narrow case, the wide case and partial
            // units at either end.
            for offset in (0..32).step_by(step) {
                for len in (0..300).step_by(step).chain([1020, 1024, 1028, 5000]) {
                    let mut buffer = vec![0xeeu8; offset + len + 20];
                    fill(&mut buffer[offset..offset + len], pixel);
                    assert!(
                        buffer[..offset].iter().all(|&byte| byte == 0xee),
                        "bytes before the run written (pixel {pixel:x?}, offset {offset}, len {len})"
                    );
                    assert_eq!(
                        buffer[offset..offset + len],
                        expected(len, pixel)[..],
                        "pixel {pixel:x?}, offset {offset}, len {len}"
                    );
                    assert!(
                        buffer[offset + len..].iter().all(|&byte| byte == 0xee),
                        "bytes after the run written (pixel {pixel:x?}, offset {offset}, len {len})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_pixel_of_another_size_writes_nothing() {
        let mut buffer = vec![0xeeu8; 128];
        fill(&mut buffer, &[1, 2, 3]);
        assert!(buffer.iter().all(|&byte| byte == 0xee));
    }

    fn check_aligned_stores<U: Unit>() {
        for offset in 0..40 {
            for len in [0, 1, 3, 4, 15, 16, 17, 31, 63, 64, 65, 200, 2100] {
                let mut buffer = vec![0u8; offset + len + 4];
                fill_aligned::<U>(&mut buffer[offset..offset + len], [1, 2, 3, 4]);
                assert_eq!(
                    buffer[offset..offset + len],
                    expected(len, &[1, 2, 3, 4])[..],
                    "offset {offset} len {len}"
                );
                assert!(buffer[..offset].iter().all(|&byte| byte == 0));
                assert!(buffer[offset + len..].iter().all(|&byte| byte == 0));
            }
        }
    }

    #[test]
    fn aligned_stores_keep_the_phase_on_every_target() {
        // Both units, whichever the host uses: u128 is what the guest runs.
        check_aligned_stores::<u32>();
        check_aligned_stores::<u128>();
    }
}
