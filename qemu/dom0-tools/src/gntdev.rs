//! `/dev/xen/gntdev`: mapping, from Dom0 user space, a page another domain granted to Dom0.
//!
//! Linux `include/uapi/xen/gntdev.h` (the ioctls and their structs) and
//! `drivers/xen/gntdev.c`. Mapping takes two steps: IOCTL_GNTDEV_MAP_GRANT_REF records the
//! grant references and returns an offset into the device (`index`), then mmap() at that offset
//! performs the grant map hypercall; a mapping without PROT_WRITE is a read-only grant map.
//! Unmapping is the reverse: munmap() first, then IOCTL_GNTDEV_UNMAP_GRANT_REF.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// The device node (module `xen-gntdev`).
pub const DEVICE: &CStr = c"/dev/xen/gntdev";

/// Bytes in one grant: a Xen page (XEN_PAGE_SIZE).
pub const GRANT_SIZE: usize = 4096;

/// `_IOC_NONE`: an ioctl that does not say which way its argument goes.
pub const IOC_NONE: u32 = 0;

/// `_IOC(dir, type, nr, size)` of `include/uapi/asm-generic/ioctl.h` (the layout arm64 and x86
/// use): number in bits 0-7, type in 8-15, size in 16-29, direction in 30-31.
pub const fn ioc(direction: u32, kind: u8, number: u8, size: usize) -> u32 {
    assert!(
        direction < 4 && size < 1 << 14,
        "does not fit an ioctl number"
    );
    (direction << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | number as u32
}

/// `struct ioctl_gntdev_grant_ref`: one grant of one domain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantRef {
    /// `domid`: the domain that granted the page.
    pub domid: u32,
    /// `ref`: the grant reference.
    pub gref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` with room for exactly one reference (`refs[1]`, as the
/// header declares it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapGrantRef {
    /// `count`: number of references in `refs` (IN).
    pub count: u32,
    /// `pad`.
    pub pad: u32,
    /// `index`: the offset to mmap() (OUT).
    pub index: u64,
    /// `refs`: the references (IN).
    pub refs: [GrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnmapGrantRef {
    /// `index`: the offset the map ioctl returned.
    pub index: u64,
    /// `count`: number of pages to remove.
    pub count: u32,
    /// `pad`.
    pub pad: u32,
}

const _: () = assert!(size_of::<GrantRef>() == 8);
const _: () = assert!(size_of::<MapGrantRef>() == 24);
const _: () = assert!(offset_of!(MapGrantRef, index) == 8);
const _: () = assert!(offset_of!(MapGrantRef, refs) == 16);
const _: () = assert!(size_of::<UnmapGrantRef>() == 16);
const _: () = assert!(offset_of!(UnmapGrantRef, count) == 8);

/// `IOCTL_GNTDEV_MAP_GRANT_REF`: `_IOC(_IOC_NONE, 'G', 0, sizeof(struct
/// ioctl_gntdev_map_grant_ref))`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc(IOC_NONE, b'G', 0, size_of::<MapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`: `_IOC(_IOC_NONE, 'G', 1, sizeof(struct
/// ioctl_gntdev_unmap_grant_ref))`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = ioc(IOC_NONE, b'G', 1, size_of::<UnmapGrantRef>());

/// The step that failed: mapping or unmapping a grant (gntdev), or granting a page of
/// Dom0's own (gntalloc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// open() of [`DEVICE`].
    Open,
    /// IOCTL_GNTDEV_MAP_GRANT_REF.
    AddGrant,
    /// mmap() of the device at the index (the grant map hypercall happens here).
    Map,
    /// munmap().
    Unmap,
    /// IOCTL_GNTDEV_UNMAP_GRANT_REF.
    RemoveGrant,
    /// open() of `/dev/xen/gntalloc`.
    OpenGntalloc,
    /// IOCTL_GNTALLOC_ALLOC_GREF.
    AllocGrant,
    /// mmap() of the page just granted.
    MapOwnPage,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Open => "open /dev/xen/gntdev",
            Step::AddGrant => "add the grant to gntdev (IOCTL_GNTDEV_MAP_GRANT_REF)",
            Step::Map => "map the grant (mmap PROT_READ MAP_SHARED)",
            Step::Unmap => "unmap the grant (munmap)",
            Step::RemoveGrant => "remove the grant from gntdev (IOCTL_GNTDEV_UNMAP_GRANT_REF)",
            Step::OpenGntalloc => "open /dev/xen/gntalloc",
            Step::AllocGrant => "grant a page (IOCTL_GNTALLOC_ALLOC_GREF)",
            Step::MapOwnPage => "map the granted page (mmap PROT_READ|PROT_WRITE MAP_SHARED)",
        })
    }
}

/// A failed step and the error the kernel gave.
#[derive(Debug)]
pub struct Error {
    /// What was being done.
    pub step: Step,
    /// The OS error.
    pub source: io::Error,
}

impl Error {
    /// The error of the last failed system call (errno), for `step`.
    pub(crate) fn last(step: Step) -> Self {
        Self {
            step,
            source: io::Error::last_os_error(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.step, self.source)?;
        if self.source.kind() == io::ErrorKind::NotFound {
            match self.step {
                Step::Open => f.write_str(" (is this Dom0 with the xen-gntdev module loaded?)")?,
                Step::OpenGntalloc => {
                    f.write_str(" (is this Dom0 with the xen-gntalloc module loaded?)")?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// An open `/dev/xen/gntdev`. Closing it (drop) releases whatever is still mapped through it.
#[derive(Debug)]
pub struct Gntdev {
    fd: OwnedFd,
}

impl Gntdev {
    /// Opens [`DEVICE`] read-write (the driver wants that even for read-only maps).
    pub fn open() -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe { libc::open(DEVICE.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last(Step::Open));
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Maps one page that `grant.domid` granted to this domain, read-only.
    pub fn map_read_only(&self, grant: GrantRef) -> Result<Mapping<'_>, Error> {
        let mut request = MapGrantRef {
            count: 1,
            refs: [grant],
            ..MapGrantRef::default()
        };
        // SAFETY: the argument is a live struct ioctl_gntdev_map_grant_ref laid out as the
        // header says (checked above) with count = 1, so the kernel reads one reference and
        // writes `index`, all within the struct.
        let result = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                IOCTL_GNTDEV_MAP_GRANT_REF as libc::Ioctl,
                &mut request as *mut MapGrantRef,
            )
        };
        if result != 0 {
            return Err(Error::last(Step::AddGrant));
        }
        let Ok(offset) = libc::off_t::try_from(request.index) else {
            let _ = self.remove(request.index);
            return Err(Error {
                step: Step::Map,
                source: io::Error::other(format!(
                    "index {:#x} does not fit an mmap offset",
                    request.index
                )),
            });
        };
        // SAFETY: a new shared, read-only mapping of the device at the offset the map ioctl
        // returned; the kernel picks the address, so no existing memory is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                GRANT_SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        let address = match NonNull::new(address.cast::<u8>()) {
            Some(address) if address.as_ptr().cast() != libc::MAP_FAILED => address,
            _ => {
                let error = Error::last(Step::Map);
                let _ = self.remove(request.index);
                return Err(error);
            }
        };
        Ok(Mapping {
            gntdev: self,
            index: request.index,
            address,
            mapped: true,
            added: true,
        })
    }

    /// IOCTL_GNTDEV_UNMAP_GRANT_REF for one page at `index`.
    fn remove(&self, index: u64) -> Result<(), Error> {
        let mut request = UnmapGrantRef {
            index,
            count: 1,
            pad: 0,
        };
        // SAFETY: the argument is a live struct ioctl_gntdev_unmap_grant_ref laid out as the
        // header says (checked above); the kernel only reads it.
        let result = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                IOCTL_GNTDEV_UNMAP_GRANT_REF as libc::Ioctl,
                &mut request as *mut UnmapGrantRef,
            )
        };
        if result != 0 {
            return Err(Error::last(Step::RemoveGrant));
        }
        Ok(())
    }
}

/// One granted page mapped read-only. [`Mapping::unmap`] releases it and reports errors; drop
/// releases it quietly.
#[derive(Debug)]
pub struct Mapping<'a> {
    gntdev: &'a Gntdev,
    index: u64,
    /// The mapped page.
    address: NonNull<u8>,
    /// munmap() not done yet. Only `unmap` (which takes the mapping) and drop clear it, so it is
    /// true whenever a method borrows the mapping.
    mapped: bool,
    /// Still recorded in gntdev (IOCTL_GNTDEV_UNMAP_GRANT_REF not done yet).
    added: bool,
}

impl Mapping<'_> {
    /// A copy of the page's [`GRANT_SIZE`] bytes.
    ///
    /// The granting domain may still write the page, so it is read with volatile loads and
    /// copied, never borrowed as a Rust slice.
    pub fn copy(&self) -> Vec<u8> {
        debug_assert!(self.mapped);
        (0..GRANT_SIZE)
            // SAFETY: `offset < GRANT_SIZE`, and the mapping covers GRANT_SIZE readable bytes
            // while `mapped` holds, which it does whenever `self` can be borrowed.
            .map(|offset| unsafe { self.address.as_ptr().add(offset).read_volatile() })
            .collect()
    }

    /// munmap(), then IOCTL_GNTDEV_UNMAP_GRANT_REF: after this the granting domain can end its
    /// grant.
    pub fn unmap(mut self) -> Result<(), Error> {
        self.release()
    }

    fn release(&mut self) -> Result<(), Error> {
        if self.mapped {
            // SAFETY: `address` is the start of the GRANT_SIZE-byte mapping made by
            // `map_read_only`, still mapped; nothing points into it (`copy` returns copies).
            if unsafe { libc::munmap(self.address.as_ptr().cast(), GRANT_SIZE) } != 0 {
                return Err(Error::last(Step::Unmap));
            }
            self.mapped = false;
        }
        if self.added {
            self.gntdev.remove(self.index)?;
            self.added = false;
        }
        Ok(())
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_those_of_the_header() {
        // _IOC(_IOC_NONE, 'G', 0, 24) and _IOC(_IOC_NONE, 'G', 1, 16).
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
    }

    #[test]
    fn ioc_places_every_field() {
        // BLKGETSIZE64 = _IOR(0x12, 114, size_t) on 64-bit Linux, _IOC_READ = 2.
        assert_eq!(ioc(2, 0x12, 114, 8), 0x8008_1272);
        assert_eq!(ioc(IOC_NONE, 0, 0xff, 0), 0xff);
        assert_eq!(ioc(IOC_NONE, 0, 0, (1 << 14) - 1), 0x3fff_0000);
    }

    #[test]
    fn map_request_bytes_are_little_endian_as_the_kernel_reads_them() {
        let request = MapGrantRef {
            count: 1,
            pad: 0,
            index: 0x1122_3344_5566_7788,
            refs: [GrantRef {
                domid: 7,
                gref: 0x0102_0304,
            }],
        };
        // SAFETY: MapGrantRef is repr(C) plain data of 24 bytes without padding (asserted).
        let bytes: [u8; 24] = unsafe { std::mem::transmute(request) };
        if cfg!(target_endian = "little") {
            assert_eq!(
                bytes,
                [
                    1, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 7, 0,
                    0, 0, 4, 3, 2, 1
                ]
            );
        }
    }

    #[test]
    fn open_errors_name_the_step() {
        let error = Error {
            step: Step::Open,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = error.to_string();
        assert!(text.starts_with("cannot open /dev/xen/gntdev: "), "{text}");
        assert!(text.contains("xen-gntdev module"), "{text}");
        let error = Error {
            step: Step::Map,
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(error
            .to_string()
            .starts_with("cannot map the grant (mmap PROT_READ MAP_SHARED): "));
    }
}
