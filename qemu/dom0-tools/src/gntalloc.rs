//! `/dev/xen/gntalloc`: granting, from Dom0 user space, a page of Dom0's own to a domain.
//!
//! Linux `include/uapi/xen/gntalloc.h` and `drivers/xen/gntalloc.c`. IOCTL_GNTALLOC_ALLOC_GREF
//! allocates pages, grants them (read-only unless GNTALLOC_FLAG_WRITABLE) and returns their
//! grant references and an offset (`index`) to mmap() them at. Closing the device (process
//! exit included) ends the grants; the kernel defers that while the peer still maps them.
//!
//! The rig uses it for a Dom0-only stand-in of the guest's side of the grant test: Dom0 grants a
//! page to itself and `vdispl-grant-check` reads it back through gntdev.

use crate::gntdev::{ioc, Error, Step, GRANT_SIZE, IOC_NONE};
use std::ffi::CStr;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// The device node (module `xen-gntalloc`).
pub const DEVICE: &CStr = c"/dev/xen/gntalloc";

/// `struct ioctl_gntalloc_alloc_gref` with room for one reference (`gref_ids[1]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocGref {
    /// `domid`: the domain given access (IN).
    pub domid: u16,
    /// `flags`: GNTALLOC_FLAG_WRITABLE or 0 for read-only (IN).
    pub flags: u16,
    /// `count`: pages to allocate (IN).
    pub count: u32,
    /// `index`: the offset to mmap() (OUT).
    pub index: u64,
    /// `gref_ids`: the grant references, one per page (OUT).
    pub gref_ids: [u32; 1],
}

const _: () = assert!(size_of::<AllocGref>() == 24);
const _: () = assert!(offset_of!(AllocGref, count) == 4);
const _: () = assert!(offset_of!(AllocGref, index) == 8);
const _: () = assert!(offset_of!(AllocGref, gref_ids) == 16);

/// `IOCTL_GNTALLOC_ALLOC_GREF`: `_IOC(_IOC_NONE, 'G', 5, sizeof(struct
/// ioctl_gntalloc_alloc_gref))`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 = ioc(IOC_NONE, b'G', 5, size_of::<AllocGref>());

/// An open `/dev/xen/gntalloc` with one page granted read-only to a domain and mapped here
/// read-write. Dropping it unmaps the page and closes the device, which ends the grant.
#[derive(Debug)]
pub struct GrantedPage {
    address: NonNull<u8>,
    gref: u32,
    /// Held open for the grant's lifetime; closed after `drop` has unmapped the page.
    _device: OwnedFd,
}

impl GrantedPage {
    /// Allocates one page and grants it read-only to `domid`.
    pub fn grant_read_only(domid: u16) -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe { libc::open(DEVICE.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last(Step::OpenGntalloc));
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut request = AllocGref {
            domid,
            flags: 0,
            count: 1,
            ..AllocGref::default()
        };
        // SAFETY: the argument is a live struct ioctl_gntalloc_alloc_gref laid out as the
        // header says (checked above) with count = 1, so the kernel writes `index` and one
        // reference, all within the struct.
        let result = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                IOCTL_GNTALLOC_ALLOC_GREF as libc::Ioctl,
                &mut request as *mut AllocGref,
            )
        };
        if result != 0 {
            return Err(Error::last(Step::AllocGrant));
        }
        let offset = libc::off_t::try_from(request.index).map_err(|_| Error {
            step: Step::MapOwnPage,
            source: std::io::Error::other("index does not fit an mmap offset"),
        })?;
        // SAFETY: a new shared mapping of our own granted page at the offset the ioctl
        // returned; the kernel picks the address, so no existing memory is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                GRANT_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        let address = match NonNull::new(address.cast::<u8>()) {
            Some(address) if address.as_ptr().cast() != libc::MAP_FAILED => address,
            _ => return Err(Error::last(Step::MapOwnPage)),
        };
        Ok(Self {
            address,
            gref: request.gref_ids[0],
            _device: fd,
        })
    }

    /// The grant reference the peer maps.
    pub fn gref(&self) -> u32 {
        self.gref
    }

    /// Writes `bytes` into the page from its start (at most [`GRANT_SIZE`] of them).
    pub fn write(&mut self, bytes: &[u8]) {
        for (offset, &byte) in bytes.iter().take(GRANT_SIZE).enumerate() {
            // SAFETY: `offset < GRANT_SIZE`, inside the read-write mapping that lives as long
            // as `self`; volatile because the peer may map the page at the same time.
            unsafe { self.address.as_ptr().add(offset).write_volatile(byte) };
        }
    }
}

impl Drop for GrantedPage {
    fn drop(&mut self) {
        // SAFETY: `address` is the GRANT_SIZE-byte mapping made in `grant_read_only`, and
        // nothing points into it (`write` copies in). The device closes after this.
        unsafe { libc::munmap(self.address.as_ptr().cast(), GRANT_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_ioctl_number_is_that_of_the_header() {
        // _IOC(_IOC_NONE, 'G', 5, 24).
        assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
    }
}
