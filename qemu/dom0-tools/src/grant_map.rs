//! Many granted pages of one domain mapped as one contiguous region through `/dev/xen/gntdev`,
//! read-only or writable, and safe ways to read and write them while the granting domain
//! may be writing too.
//!
//! Linux `include/uapi/xen/gntdev.h`: IOCTL_GNTDEV_MAP_GRANT_REF takes `count` references
//! and returns one offset for all of them; mmap() of `count` pages at that offset maps them in
//! order (PROT_WRITE asks for a writable grant map). Unmapping is munmap() then
//! IOCTL_GNTDEV_UNMAP_GRANT_REF with the same offset and count.

use crate::be_alloc::Allocator;
use crate::gntdev::{GRANT_SIZE, IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_UNMAP_GRANT_REF};
use drivers::xen::kbdif::KbdPage;
use drivers::xen::ring::{EventPage, SharedRing};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[cfg(test)]
pub mod fake;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a region is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// PROT_READ: a read-only grant map.
    ReadOnly,
    /// PROT_READ | PROT_WRITE.
    ReadWrite,
}

/// A failed map or unmap, naming the grants.
#[derive(Debug)]
pub struct Error {
    /// What was being done, e.g. `map 900 grants of domain 1 (first 123)`.
    pub what: String,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.what, self.source)?;
        if self.what.starts_with("open") && self.source.kind() == io::ErrorKind::NotFound {
            f.write_str(" (is this Dom0 with the xen-gntdev module loaded?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The argument of IOCTL_GNTDEV_MAP_GRANT_REF for `refs`: `{ count u32, pad u32, index u64,
/// refs[count] { domid u32, ref u32 } }` as little-endian 64-bit words (words keep the index
/// aligned, as the kernel's struct has it).
pub fn map_request(domid: u32, refs: &[u32]) -> Vec<u64> {
    let mut words = Vec::with_capacity(2 + refs.len());
    words.push(refs.len() as u64);
    words.push(0);
    words.extend(
        refs.iter()
            .map(|&gref| u64::from(domid) | (u64::from(gref) << 32)),
    );
    words
}

/// How a mapped region is let go of, in two steps: munmap(), then telling the device it may
/// forget the pages. gntdev ([`GntdevDevice`]) and gntalloc (`crate::be_alloc`) regions both
/// go this way, so one [`GrantMapping`] serves both.
pub trait RegionDevice: Send + Sync {
    /// munmap() of a region the device mapped.
    ///
    /// # Safety
    /// `address` and `pages` are those of a region the device mapped and not yet unmapped, and
    /// nothing reads or writes the region any more.
    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()>;

    /// The device forgets the `pages` pages recorded at `offset` (for gntdev
    /// IOCTL_GNTDEV_UNMAP_GRANT_REF).
    fn remove(&self, offset: u64, pages: usize) -> io::Result<()>;
}

/// The four steps of `/dev/xen/gntdev` a mapping goes through, so that the mapping code
/// runs against the kernel's device in Dom0 and against the test-only `fake::FakeGntdev`
/// (which enforces the driver's rules) in host tests: [`GntdevDevice::add`], [`GntdevDevice::map`], then
/// [`RegionDevice::unmap`] and [`RegionDevice::remove`]. A device is shared between threads: a
/// display buffer's mapping may be read, and then unmapped, by the thread that copies a frame
/// out of it.
pub trait GntdevDevice: RegionDevice {
    /// IOCTL_GNTDEV_MAP_GRANT_REF: records `refs` of `domid`; returns the offset to mmap.
    fn add(&self, domid: u32, refs: &[u32]) -> io::Result<u64>;

    /// mmap() of `pages` pages at `offset` (where the grant map hypercall happens).
    fn map(&self, offset: u64, pages: usize, access: Access) -> io::Result<NonNull<u8>>;
}

/// `/dev/xen/gntdev`, opened.
pub struct DeviceFile(OwnedFd);

impl GntdevDevice for DeviceFile {
    fn add(&self, domid: u32, refs: &[u32]) -> io::Result<u64> {
        let mut request = map_request(domid, refs);
        // SAFETY: the argument is a struct ioctl_gntdev_map_grant_ref with `count` = refs.len()
        // references following it (map_request), all within `request`; the kernel reads the
        // references and writes `index` (word 1).
        let result = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                IOCTL_GNTDEV_MAP_GRANT_REF as libc::Ioctl,
                request.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(request[1])
    }

    fn map(&self, offset: u64, pages: usize, access: Access) -> io::Result<NonNull<u8>> {
        let offset = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::other(format!("index {offset:#x} does not fit an mmap offset"))
        })?;
        let protection = match access {
            Access::ReadOnly => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: a new shared mapping of the device at the offset the map ioctl returned, as
        // long as the grants it recorded; the kernel picks the address, so no existing memory
        // is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * GRANT_SIZE,
                protection,
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
}

impl RegionDevice for DeviceFile {
    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()> {
        // SAFETY: the caller vouches that this is a live region `map` made, no longer used.
        if unsafe { libc::munmap(address.as_ptr().cast(), pages * GRANT_SIZE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self, offset: u64, pages: usize) -> io::Result<()> {
        let mut request = [offset, pages as u64];
        // SAFETY: the argument is a struct ioctl_gntdev_unmap_grant_ref `{ index u64,
        // count u32, pad u32 }` as two little-endian words; the kernel only reads it.
        let result = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                IOCTL_GNTDEV_UNMAP_GRANT_REF as libc::Ioctl,
                request.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What opened `/dev/xen/gntdev` (or a fake of it) maps through. Mappings keep it open.
#[derive(Clone)]
pub struct GrantMapper {
    device: Arc<dyn GntdevDevice>,
    /// Where backend-allocated buffers come from (`crate::be_alloc`), if this mapper offers
    /// them.
    allocator: Option<Allocator>,
}

impl GrantMapper {
    /// Opens `/dev/xen/gntdev`.
    pub fn open() -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe {
            libc::open(
                crate::gntdev::DEVICE.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error {
                what: "open /dev/xen/gntdev".into(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self::over(Arc::new(DeviceFile(fd))))
    }

    /// Maps through `device`.
    pub fn over(device: Arc<dyn GntdevDevice>) -> Self {
        Self {
            device,
            allocator: None,
        }
    }

    /// This mapper, offering backend-allocated buffers from `allocator`.
    pub fn with_allocator(self, allocator: Allocator) -> Self {
        Self {
            allocator: Some(allocator),
            ..self
        }
    }

    /// Where backend-allocated buffers come from, if this mapper offers them.
    pub fn allocator(&self) -> Option<&Allocator> {
        self.allocator.as_ref()
    }

    /// Maps the pages `refs` of `domid`, in order, as one region. On failure nothing stays
    /// recorded in the device (the references are removed again).
    pub fn map(&self, domid: u32, refs: &[u32], access: Access) -> Result<GrantMapping, Error> {
        let what = || match refs {
            [gref] => format!("map grant {gref} of domain {domid}"),
            _ => format!(
                "map {} grants of domain {domid} (first {})",
                refs.len(),
                refs.first().copied().unwrap_or_default()
            ),
        };
        if refs.is_empty() {
            return Err(Error {
                what: what(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        let index = self.device.add(domid, refs).map_err(|source| Error {
            what: what() + " (IOCTL_GNTDEV_MAP_GRANT_REF)",
            source,
        })?;
        // From here on, dropping `mapping` removes the references again.
        let mut mapping = GrantMapping {
            device: Arc::clone(&self.device) as Arc<dyn RegionDevice>,
            index,
            address: None,
            pages: refs.len(),
        };
        let address = self
            .device
            .map(index, refs.len(), access)
            .map_err(|source| Error {
                what: what() + " (mmap)",
                source,
            })?;
        mapping.address = Some(address);
        Ok(mapping)
    }
}

/// Granted pages mapped as one region; unmapped on drop (or by [`GrantMapping::unmap`], which
/// reports errors). It can be shared between threads (`Arc<GrantMapping>`): the region is
/// read and written through atomics only, and it is unmapped once, by its last owner.
pub struct GrantMapping {
    device: Arc<dyn RegionDevice>,
    index: u64,
    /// None until mmap() succeeded, and after munmap().
    address: Option<NonNull<u8>>,
    pages: usize,
}

// SAFETY: `address` points into a mapping of this process, not into memory of the thread that
// made it; it is unmapped only through `&mut self` (`release`), so never while another thread
// borrows the mapping, and the device is `Send + Sync` (the trait's bound).
unsafe impl Send for GrantMapping {}
// SAFETY: every `&self` method reads or writes the region through atomics (`words`), which is
// well defined from several threads at once (and with the granting domain writing too).
unsafe impl Sync for GrantMapping {}

impl GrantMapping {
    /// A region `device` mapped at `address` (`pages` pages, recorded at `index`), released as
    /// every mapping is: [`RegionDevice::unmap`], then [`RegionDevice::remove`].
    ///
    /// # Safety
    /// `address` is the start of a live, page-aligned, readable and writable mapping of
    /// `pages` pages that `device` made and that nothing else unmaps.
    pub unsafe fn from_region(
        device: Arc<dyn RegionDevice>,
        index: u64,
        address: NonNull<u8>,
        pages: usize,
    ) -> Self {
        Self {
            device,
            index,
            address: Some(address),
            pages,
        }
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.pages * GRANT_SIZE
    }

    /// Whether nothing is mapped (never true for a mapping `map` returned).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region as 64-bit words. The granting domain may write them at any time; atomics
    /// make such concurrent access well defined (on arm64 a relaxed atomic load or store is a
    /// plain LDR or STR).
    fn words(&self) -> &[AtomicU64] {
        let Some(address) = self.address else {
            return &[];
        };
        // SAFETY: the region is `len` bytes, page-aligned (so 8-byte aligned), mapped for as
        // long as `self` lives (unmapped only by `release`, which clears `address`), and only
        // ever accessed through atomics here.
        unsafe { std::slice::from_raw_parts(address.as_ptr().cast(), self.len() / 8) }
    }

    /// Copies the first `len` bytes (at most the region) into `out`, a word at a time.
    pub fn copy_into(&self, len: usize, out: &mut Vec<u8>) {
        self.copy_range_into(0, len, out);
    }

    /// Appends the `len` bytes from byte `offset` on (what of them lies in the region) to
    /// `out`, a word at a time.
    pub fn copy_range_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        let end = offset.saturating_add(len).min(self.len());
        if offset >= end {
            return;
        }
        let skip = offset % 8;
        let words = &self.words()[offset / 8..end.div_ceil(8)];
        let start = out.len();
        out.resize(start + words.len() * 8, 0);
        for (bytes, word) in out[start..].chunks_exact_mut(8).zip(words) {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(start + skip + (end - offset));
        out.drain(start..start + skip);
    }

    /// A copy of the first page.
    pub fn first_page(&self) -> [u8; GRANT_SIZE] {
        let mut bytes = Vec::with_capacity(GRANT_SIZE);
        self.copy_into(GRANT_SIZE, &mut bytes);
        let mut page = [0u8; GRANT_SIZE];
        page.copy_from_slice(&bytes);
        page
    }

    /// Writes `bytes` at the start of the region, zero-padded to whole words. The region must
    /// be mapped [`Access::ReadWrite`] (a read-only map faults).
    pub fn write_start(&self, bytes: &[u8]) {
        for (word, chunk) in self.words().iter().zip(bytes.chunks(8)) {
            let mut value = [0u8; 8];
            value[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(value), Ordering::Relaxed);
        }
    }

    /// munmap(), then IOCTL_GNTDEV_UNMAP_GRANT_REF: after this the granting domain can end its
    /// grants.
    pub fn unmap(mut self) -> Result<(), Error> {
        self.release()
    }

    fn release(&mut self) -> Result<(), Error> {
        if let Some(address) = self.address.take() {
            // SAFETY: `address` is the start of the region `map` made, still mapped (it is
            // taken out of `self.address` only here); `words` borrows end with `&self`, so
            // nothing points into it now.
            unsafe { self.device.unmap(address, self.pages) }.map_err(|source| Error {
                what: format!("unmap {} pages (munmap)", self.pages),
                source,
            })?;
        }
        if self.pages > 0 {
            self.device
                .remove(self.index, self.pages)
                .map_err(|source| Error {
                    what: format!(
                        "release {} pages from gntdev (IOCTL_GNTDEV_UNMAP_GRANT_REF)",
                        self.pages
                    ),
                    source,
                })?;
            self.pages = 0;
        }
        Ok(())
    }
}

impl Drop for GrantMapping {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// A mapped request ring page, seen as the ring. Clones share the mapping, so that one can
/// serve a `BackRing` while another unmaps the page once the ring is gone.
#[derive(Clone)]
pub struct RingMapping(Rc<GrantMapping>);

/// A mapped event page, seen as the page.
pub struct EventMapping(GrantMapping);

impl RingMapping {
    /// Wraps a one-page writable mapping.
    pub fn new(mapping: GrantMapping) -> Option<Self> {
        (mapping.len() == GRANT_SIZE && mapping.address.is_some()).then(|| Self(Rc::new(mapping)))
    }

    /// Unmaps it, reporting errors; if a clone still holds it, it is unmapped when the last
    /// one goes.
    pub fn unmap(self) -> Result<(), Error> {
        match Rc::try_unwrap(self.0) {
            Ok(mapping) => mapping.unmap(),
            Err(_) => Ok(()),
        }
    }
}

impl EventMapping {
    /// Wraps a one-page writable mapping.
    pub fn new(mapping: GrantMapping) -> Option<Self> {
        (mapping.len() == GRANT_SIZE && mapping.address.is_some()).then_some(Self(mapping))
    }

    /// Unmaps it, reporting errors.
    pub fn unmap(self) -> Result<(), Error> {
        self.0.unmap()
    }
}

/// A mapped kbdif page (the input backend's shared page), seen as the page.
pub struct KbdMapping(GrantMapping);

impl KbdMapping {
    /// Wraps a one-page writable mapping.
    pub fn new(mapping: GrantMapping) -> Option<Self> {
        (mapping.len() == GRANT_SIZE && mapping.address.is_some()).then_some(Self(mapping))
    }

    /// Unmaps it, reporting errors.
    pub fn unmap(self) -> Result<(), Error> {
        self.0.unmap()
    }
}

const _: () = assert!(std::mem::size_of::<KbdPage>() == GRANT_SIZE);
const _: () = assert!(std::mem::align_of::<KbdPage>() <= GRANT_SIZE);

impl Deref for KbdMapping {
    type Target = KbdPage;
    fn deref(&self) -> &KbdPage {
        let address = self.0.address.expect("KbdMapping::new checked the mapping");
        // SAFETY: one page-aligned page of KbdPage's size (asserted above), mapped while `self`
        // lives (unmapped only by consuming `self`); KbdPage is atomics plus padding that is
        // never read, so the frontend writing the page concurrently is well defined.
        unsafe { &*address.as_ptr().cast::<KbdPage>() }
    }
}

const _: () = assert!(std::mem::size_of::<SharedRing>() <= GRANT_SIZE);
const _: () = assert!(std::mem::size_of::<EventPage>() == GRANT_SIZE);

impl Deref for RingMapping {
    type Target = SharedRing;
    fn deref(&self) -> &SharedRing {
        let address = self
            .0
            .address
            .expect("RingMapping::new checked the mapping");
        // SAFETY: the mapping is one page-aligned page, mapped while `self` lives, at least as
        // large as SharedRing (asserted above). SharedRing is atomics plus padding that is
        // never read, so the frontend writing the page concurrently is well defined.
        unsafe { &*address.as_ptr().cast::<SharedRing>() }
    }
}

impl Deref for EventMapping {
    type Target = EventPage;
    fn deref(&self) -> &EventPage {
        let address = self
            .0
            .address
            .expect("EventMapping::new checked the mapping");
        // SAFETY: as for RingMapping: one page-aligned page of EventPage's size (asserted
        // above), mapped while `self` lives; EventPage is atomics plus reserved bytes that are
        // never read.
        unsafe { &*address.as_ptr().cast::<EventPage>() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_request_is_the_header_struct_with_count_references() {
        let words = map_request(7, &[0x10, 0x0102_0304]);
        let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
        assert_eq!(
            bytes,
            [
                2, 0, 0, 0, 0, 0, 0, 0, // count, pad
                0, 0, 0, 0, 0, 0, 0, 0, // index (OUT)
                7, 0, 0, 0, 0x10, 0, 0, 0, // refs[0] = { domid, ref }
                7, 0, 0, 0, 4, 3, 2, 1, // refs[1]
            ]
        );
    }

    #[test]
    fn errors_name_the_grants() {
        let error = Error {
            what: "map 900 grants of domain 1 (first 20) (mmap)".into(),
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        };
        assert!(error
            .to_string()
            .starts_with("cannot map 900 grants of domain 1 (first 20) (mmap): "));
    }
}
