//! Page-aligned, zeroed, physically contiguous memory from the heap, for
//! buffers shared with another domain (the identity map makes a contiguous
//! virtual range a contiguous range of guest frames).

use core::alloc::Layout;
use core::ptr::NonNull;

extern crate alloc;

/// Whole pages of the heap, freed on drop.
pub struct PageBuffer {
    start: NonNull<u8>,
    pages: usize,
}

// SAFETY: the buffer is owned memory like a Box<[u8]>; nothing ties it to a
// context.
unsafe impl Send for PageBuffer {}

impl PageBuffer {
    /// `pages` zeroed pages, or `None` when the heap has no such run.
    pub fn new(pages: usize) -> Option<PageBuffer> {
        let layout = Layout::from_size_align(pages.max(1) * 4096, 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let start = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })?;
        Some(PageBuffer {
            start,
            pages: pages.max(1),
        })
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Guest frame number of page `index`.
    pub fn frame(&self, index: usize) -> u64 {
        (self.start.as_ptr() as u64 >> 12) + index as u64
    }

    /// The pages as page arrays.
    pub fn pages_mut(&mut self) -> &mut [[u8; 4096]] {
        // SAFETY: the allocation is `pages` whole, 4096-aligned pages owned
        // by `self` and borrowed mutably here.
        unsafe {
            core::slice::from_raw_parts_mut(self.start.as_ptr().cast::<[u8; 4096]>(), self.pages)
        }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.pages * 4096, 4096) {
            // SAFETY: allocated in `new` with this very layout.
            unsafe { alloc::alloc::dealloc(self.start.as_ptr(), layout) };
        }
    }
}

/// Pages another domain granted, mapped into this domain's window for
/// foreign pages ([`super::services::map_foreign`]); unmapped only through
/// [`super::services::unmap_foreign`].
pub struct ForeignPages {
    /// Guest physical (and, identity-mapped, virtual) address of page 0.
    pub(super) base: u64,
    pub(super) pages: usize,
    /// The handle of each page's mapping.
    pub(super) handles: alloc::vec::Vec<u32>,
}

impl ForeignPages {
    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Guest frame number of page `index`.
    pub fn frame(&self, index: usize) -> u64 {
        (self.base >> 12) + index as u64
    }

    /// The pages as page arrays.
    pub fn pages_mut(&mut self) -> &mut [[u8; 4096]] {
        // SAFETY: Xen maps the peer's pages at `base` for as long as this
        // value lives (it is unmapped only when consumed by unmap_foreign),
        // the range is mapped Normal in the page tables, and `&mut self`
        // makes this the only borrow.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut [u8; 4096], self.pages) }
    }
}

// SAFETY: like a PageBuffer, the mapping is owned memory with nothing tied
// to a context.
unsafe impl Send for ForeignPages {}
