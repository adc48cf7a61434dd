//! The shared info page: a page of the guest's RAM given to Xen with
//! `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`, as Arm guests get no
//! start_info to find it.

use super::init::alloc_free::Error;
use super::xen::Xen;
use drivers::xen::hypercall::{self, XENMAPSPACE_SHARED_INFO};
use drivers::xen::shared_info::SharedInfo;
use kernel::report::SharedInfoFacts;

extern crate alloc;

static SHARED_INFO: spin::Once<&'static SharedInfo> = spin::Once::new();

/// Maps the shared info page (once) and reads the wall clock from it.
pub fn map() -> Result<SharedInfoFacts, Error> {
    let page = match SHARED_INFO.get() {
        Some(page) => *page,
        None => {
            let layout = core::alloc::Layout::from_size_align(4096, 4096)
                .map_err(|_| Error::OutOfMemory("shared info page"))?;
            // SAFETY: the layout has a non-zero size.
            let frame = unsafe { alloc::alloc::alloc(layout) };
            if frame.is_null() {
                return Err(Error::OutOfMemory("shared info page"));
            }
            let gpfn = frame as u64 >> 12;
            // SAFETY: the page was just allocated and is never freed or
            // touched through another pointer; Xen replaces it with the
            // shared info page, which stays mapped (Normal RAM) forever.
            unsafe { hypercall::add_to_physmap(&Xen, XENMAPSPACE_SHARED_INFO, 0, gpfn) }
                .map_err(Error::SharedInfo)?;
            // SAFETY: the frame now holds Xen's shared_info, valid for the
            // life of the domain, and is only accessed through atomics.
            let page: &'static SharedInfo = unsafe { &*frame.cast::<SharedInfo>() };
            *SHARED_INFO.call_once(|| page)
        }
    };
    Ok(SharedInfoFacts {
        gpfn: core::ptr::from_ref(page) as u64 >> 12,
        wallclock: page
            .wallclock()
            .map(|(seconds, _)| seconds)
            .filter(|&seconds| seconds != 0),
    })
}

/// The shared info page, once mapped.
pub fn page() -> Option<&'static SharedInfo> {
    SHARED_INFO.get().copied()
}
