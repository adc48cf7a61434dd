//! `/dev/xen/gntalloc`: granting, from Dom0 user space, a page of Dom0's own to a domain.
//!
//! Linux `include/uapi/xen/gntalloc.h` and `drivers/xen/gntalloc.c`. IOCTL_GNTALLOC_ALLOC_GREF
//! allocates pages, grants them (read-only unless GNTALLOC_FLAG_WRITABLE) and returns their
//! grant references and an offset (`index`) to mmap() them at. Closing the device (process
//! exit included) ends the grants; the kernel defers that while the peer still maps them.
//!
//! IOCTL_GNTALLOC_DEALLOC_GREF drops the file's hold on pages; a page is freed, and its grant
//! ended, once nothing holds it any more: neither the file, nor an mmap() of it, nor the peer
//! domain's mapping (the kernel does not end a grant the peer still maps; it frees the page
//! later, once the peer has unmapped it).
//!
//! The rig uses it for a Dom0-only stand-in of the guest's side of the grant test (Dom0 grants
//! a page to itself and `vdispl-grant-check` reads it back through gntdev), and the display
//! backend allocates backend-allocated display buffers with it ([`GntallocDevice`],
//! `crate::be_alloc`).

use crate::gntdev::{ioc, Error, Step, GRANT_SIZE, IOC_NONE};
use std::ffi::CStr;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

#[cfg(test)]
pub mod fake;

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

/// `GNTALLOC_FLAG_WRITABLE`: the peer may map the pages writable.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DeallocGref {
    /// `index`: the offset IOCTL_GNTALLOC_ALLOC_GREF returned (IN).
    pub index: u64,
    /// `count`: pages to let go of (IN).
    pub count: u32,
}

const _: () = assert!(size_of::<DeallocGref>() == 16);
const _: () = assert!(offset_of!(DeallocGref, count) == 8);

/// `IOCTL_GNTALLOC_DEALLOC_GREF`: `_IOC(_IOC_NONE, 'G', 6, sizeof(struct
/// ioctl_gntalloc_dealloc_gref))`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 = ioc(IOC_NONE, b'G', 6, size_of::<DeallocGref>());

/// The argument of IOCTL_GNTALLOC_ALLOC_GREF for `count` pages: `{ domid u16, flags u16,
/// count u32, index u64, gref_ids[count] u32 }` as little-endian 64-bit words (words keep the
/// index aligned, as the kernel's struct has it).
pub fn alloc_request(domid: u16, flags: u16, count: u32) -> Vec<u64> {
    let mut words = vec![0u64; 2 + (count as usize).div_ceil(2)];
    words[0] = u64::from(domid) | u64::from(flags) << 16 | u64::from(count) << 32;
    words
}

/// The grant references the kernel wrote into an [`alloc_request`] of `count` pages.
pub fn alloc_reply_refs(words: &[u64], count: usize) -> Vec<u32> {
    words
        .iter()
        .skip(2)
        .flat_map(|word| [*word as u32, (*word >> 32) as u32])
        .take(count)
        .collect()
}

/// The steps of `/dev/xen/gntalloc` a backend-allocated buffer goes through, so that the
/// allocation code runs against the kernel's device in Dom0 and against the test-only
/// `fake::FakeGntalloc` (which keeps the driver's rules) in host tests.
pub trait GntallocDevice: Send + Sync {
    /// IOCTL_GNTALLOC_ALLOC_GREF with GNTALLOC_FLAG_WRITABLE: `count` new zeroed pages granted
    /// to `domid`; returns the offset to mmap them at and their grant references, in order.
    fn alloc(&self, domid: u16, count: usize) -> io::Result<(u64, Vec<u32>)>;

    /// mmap() of `pages` pages at `index`, shared, read-write.
    fn map(&self, index: u64, pages: usize) -> io::Result<NonNull<u8>>;

    /// munmap() of a region [`GntallocDevice::map`] returned.
    ///
    /// # Safety
    /// `address` and `pages` are those of a region `map` returned and not yet unmapped, and
    /// nothing reads or writes the region any more.
    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()>;

    /// IOCTL_GNTALLOC_DEALLOC_GREF: the file lets go of the `pages` pages at `index`.
    fn dealloc(&self, index: u64, pages: usize) -> io::Result<()>;
}

/// `/dev/xen/gntalloc`, opened (read-write, close-on-exec).
pub struct GntallocFile(OwnedFd);

impl GntallocFile {
    /// Opens the device.
    pub fn open() -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe { libc::open(DEVICE.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last(Step::OpenGntalloc));
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

impl GntallocDevice for GntallocFile {
    fn alloc(&self, domid: u16, count: usize) -> io::Result<(u64, Vec<u32>)> {
        let pages = u32::try_from(count)
            .ok()
            .filter(|&pages| pages > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut request = alloc_request(domid, GNTALLOC_FLAG_WRITABLE, pages);
        // SAFETY: the argument is a struct ioctl_gntalloc_alloc_gref with room for `count`
        // references after its header (alloc_request), all within `request`; the kernel reads
        // the header and writes `index` (word 1) and `count` references.
        let result = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                IOCTL_GNTALLOC_ALLOC_GREF as libc::Ioctl,
                request.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((request[1], alloc_reply_refs(&request, count)))
    }

    fn map(&self, index: u64, pages: usize) -> io::Result<NonNull<u8>> {
        let offset = libc::off_t::try_from(index).map_err(|_| {
            io::Error::other(format!("index {index:#x} does not fit an mmap offset"))
        })?;
        // SAFETY: a new shared mapping of pages this file allocated, at the offset the alloc
        // ioctl returned; the kernel picks the address, so no existing memory is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * GRANT_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.0.as_raw_fd(),
                offset,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(address.cast()).ok_or_else(|| io::Error::other("mmap returned address 0"))
    }

    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()> {
        // SAFETY: the caller vouches that this is a live region `map` made, no longer used.
        if unsafe { libc::munmap(address.as_ptr().cast(), pages * GRANT_SIZE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn dealloc(&self, index: u64, pages: usize) -> io::Result<()> {
        let mut request = DeallocGref {
            index,
            count: u32::try_from(pages).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        };
        // SAFETY: the argument is a live struct ioctl_gntalloc_dealloc_gref laid out as the
        // header says (checked above); the kernel only reads it.
        let result = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                IOCTL_GNTALLOC_DEALLOC_GREF as libc::Ioctl,
                &mut request as *mut DeallocGref,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

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
        // _IOC(_IOC_NONE, 'G', 6, 16).
        assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
    }

    #[test]
    fn the_alloc_request_is_the_header_struct_with_count_references() {
        let words = alloc_request(0x0102, GNTALLOC_FLAG_WRITABLE, 3);
        let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
        assert_eq!(
            bytes,
            [
                2, 1, 1, 0, 3, 0, 0, 0, // domid, flags, count
                0, 0, 0, 0, 0, 0, 0, 0, // index (OUT)
                0, 0, 0, 0, 0, 0, 0, 0, // gref_ids[0..2] (OUT)
                0, 0, 0, 0, 0, 0, 0, 0, // gref_ids[2], then room to the word's end
            ]
        );
        // What the kernel writes back: gref_ids[i] at byte 16 + 4 i.
        let mut reply = bytes.clone();
        for (i, gref) in [0x11u32, 0x2222, 0x0303_0303].into_iter().enumerate() {
            reply[16 + 4 * i..20 + 4 * i].copy_from_slice(&gref.to_le_bytes());
        }
        let words: Vec<u64> = reply
            .chunks(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap()))
            .collect();
        assert_eq!(alloc_reply_refs(&words, 3), [0x11, 0x2222, 0x0303_0303]);
    }
}
