//! The kernel heap: a linked-list allocator over the largest free RAM range.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands `[base, base + size)` to the allocator.
///
/// # Safety
/// The range must be mapped Normal memory that nothing else uses, for the
/// rest of the guest's life; `init` must be called once.
pub unsafe fn init(base: u64, size: u64) {
    // SAFETY: the caller guarantees the range is unused, mapped RAM.
    unsafe { ALLOCATOR.lock().init(base as *mut u8, size as usize) };
}

/// Bytes currently allocated.
pub fn used() -> usize {
    ALLOCATOR.lock().used()
}

/// Bytes free (in all; the largest run of them may be smaller).
pub fn free() -> usize {
    ALLOCATOR.lock().free()
}
