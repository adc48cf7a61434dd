//! Backend-allocated display buffers (`be-alloc = 1`, XENDISPL_DBUF_FLG_REQ_ALLOC of
//! xen/include/public/io/displif.h): the backend allocates a buffer's pages, grants them to the
//! frontend and writes their grant references into the page directory the frontend provided.
//!
//! - The pages come from `/dev/xen/gntalloc` ([`GntallocDevice`]): IOCTL_GNTALLOC_ALLOC_GREF
//!   with GNTALLOC_FLAG_WRITABLE (the frontend draws into them), then one mmap() of them all,
//!   through which the backend reads the frames it shows.
//! - The directory is the frontend's: `struct xendispl_page_directory` pages chained by
//!   `gref_dir_next_page`, granted writable to the backend. The backend maps each page
//!   (gntdev), keeps its `gref_dir_next_page` and fills `gref[]`, 1023 references a page, in the
//!   buffer's page order, before it answers DBUF_CREATE.
//! - The buffer is let go of like a mapped one ([`GrantMapping`]): munmap(), then
//!   IOCTL_GNTALLOC_DEALLOC_GREF, after DBUF_DESTROY (once no copy reads it) or when the device
//!   closes; a backend that dies lets go of everything with its file. None of these takes the
//!   pages from a frontend that still maps them: the kernel ends a grant, and frees its page,
//!   only once the frontend has unmapped it (Xen does not allow a domain to end a grant
//!   another domain maps; Linux's gntalloc hands such a page to the grant table's deferred
//!   list, `gnttab_end_foreign_access`, which retries until the grant is free), so a frontend is
//!   waited for, never cut off.

use crate::gntalloc::{GntallocDevice, GntallocFile};
use crate::gntdev::GRANT_SIZE;
use crate::grant_map::{Access, GrantMapper, GrantMapping, RegionDevice};
use drivers::xen::displif::{write_directory_page, REFS_PER_DIRECTORY_PAGE};
use drivers::xen::gnttab::GrantRef;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a buffer could not be allocated.
#[derive(Debug)]
pub enum AllocError {
    /// The frontend's domain id does not fit a grant's `domid` (u16).
    Domain(u32),
    /// IOCTL_GNTALLOC_ALLOC_GREF failed (ENOSPC: over the module's `limit` of pages).
    Alloc {
        /// Pages asked for.
        pages: usize,
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel returned another number of references than pages asked for.
    Refs {
        /// Pages asked for.
        pages: usize,
        /// References returned.
        refs: usize,
    },
    /// mmap() of the allocated pages failed.
    Map {
        /// Pages allocated.
        pages: usize,
        /// The kernel's error.
        source: io::Error,
    },
    /// The directory's chain ends (`gref_dir_next_page` 0) before it has room for every page.
    ShortDirectory {
        /// Pages of the buffer.
        pages: usize,
        /// Directory pages found.
        directory_pages: usize,
    },
    /// A directory page cannot be mapped writable.
    DirectoryPage {
        /// Its place in the chain (0: `gref_directory` itself).
        position: usize,
        /// Its grant.
        gref: GrantRef,
        /// Why it cannot be mapped or unmapped.
        error: String,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Domain(domid) => write!(f, "domain {domid} cannot be granted pages"),
            AllocError::Alloc { pages, source } => {
                write!(f, "IOCTL_GNTALLOC_ALLOC_GREF of {pages} pages: {source}")?;
                if source.raw_os_error() == Some(libc::ENOSPC) {
                    f.write_str(" (over the xen-gntalloc module's limit of pages)")?;
                }
                Ok(())
            }
            AllocError::Refs { pages, refs } => {
                write!(f, "gntalloc returned {refs} references for {pages} pages")
            }
            AllocError::Map { pages, source } => {
                write!(f, "mmap of {pages} allocated pages: {source}")
            }
            AllocError::ShortDirectory {
                pages,
                directory_pages,
            } => write!(
                f,
                "the page directory ends after {directory_pages} pages, room for {} of {pages} \
                 references",
                directory_pages * REFS_PER_DIRECTORY_PAGE
            ),
            AllocError::DirectoryPage {
                position,
                gref,
                error,
            } => write!(
                f,
                "directory page {position} (grant {gref}) cannot be written: {error}"
            ),
        }
    }
}

impl std::error::Error for AllocError {}

/// A buffer the backend allocated: its grants in page order, and the backend's mapping of
/// its pages (dropping or unmapping it lets go of them).
pub struct Allocation {
    /// The grant references written into the directory.
    pub refs: Vec<GrantRef>,
    /// The pages, mapped read-write in this process.
    pub mapping: GrantMapping,
}

/// Pages allocated through one device and not yet let go of by this process, for the lines
/// that say a frontend's buffers went back.
#[derive(Default)]
struct Count(AtomicUsize);

/// A gntalloc region seen as a [`RegionDevice`]: munmap(), then IOCTL_GNTALLOC_DEALLOC_GREF.
struct AllocatedRegion {
    device: Arc<dyn GntallocDevice>,
    count: Arc<Count>,
}

impl RegionDevice for AllocatedRegion {
    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()> {
        // SAFETY: the caller's promise (a live region this device mapped, no longer used) is
        // the one `GntallocDevice::unmap` asks for.
        unsafe { self.device.unmap(address, pages) }
    }

    fn remove(&self, offset: u64, pages: usize) -> io::Result<()> {
        self.device.dealloc(offset, pages)?;
        self.count.0.fetch_sub(pages, Ordering::Relaxed);
        Ok(())
    }
}

/// Where a backend's buffers come from: a gntalloc device and the count of pages it holds.
#[derive(Clone)]
pub struct Allocator {
    device: Arc<dyn GntallocDevice>,
    count: Arc<Count>,
}

impl Allocator {
    /// Allocates through `device`.
    pub fn over(device: Arc<dyn GntallocDevice>) -> Self {
        Self {
            device,
            count: Arc::default(),
        }
    }

    /// Opens `/dev/xen/gntalloc`.
    pub fn open() -> Result<Self, crate::gntdev::Error> {
        Ok(Self::over(Arc::new(GntallocFile::open()?)))
    }

    /// Pages allocated and not let go of yet by this process (pages a frontend still maps
    /// after that are the kernel's to free, and not counted).
    pub fn pages_held(&self) -> usize {
        self.count.0.load(Ordering::Relaxed)
    }
}

/// The pages a backend holds before it lets go of something, for the line that says what
/// went back ([`Held::report`]).
#[derive(Clone, Copy, Debug)]
pub struct Held(Option<usize>);

impl Held {
    /// What `grants`' allocator holds now (nothing to say without one).
    pub fn before(grants: &GrantMapper) -> Self {
        Self(grants.allocator().map(Allocator::pages_held))
    }

    /// The line for `what` once it was let go of: `None` when that let go of no
    /// backend-allocated page (a guest-allocated buffer, or one a copy still reads, which the
    /// copy lets go of when it stops).
    pub fn line(self, what: &str, grants: &GrantMapper) -> Option<String> {
        let before = self.0?;
        let now = grants.allocator()?.pages_held();
        (before != now).then(|| {
            format!(
                "vdispl-backend: {what}: {} backend-allocated pages let go of ({now} held now)",
                before.saturating_sub(now)
            )
        })
    }

    /// Prints [`Held::line`], if any.
    pub fn report(self, what: &str, grants: &GrantMapper) {
        if let Some(line) = self.line(what, grants) {
            println!("{line}");
        }
    }
}

/// `grants` offering backend-allocated buffers from `/dev/xen/gntalloc`, or `grants` as it is,
/// and why not, when that device cannot be opened.
pub fn offer(grants: GrantMapper) -> (GrantMapper, Option<String>) {
    match Allocator::open() {
        Ok(allocator) => (grants.with_allocator(allocator), None),
        Err(error) => (grants, Some(error.to_string())),
    }
}

/// Allocates a buffer of `pages` pages for domain `domid` and writes their grant references
/// into its page directory, which starts at the frontend's grant `directory`; `None` if
/// `grants` offers no backend-allocated buffers. On failure nothing stays allocated.
pub fn allocate(
    grants: &GrantMapper,
    domid: u32,
    directory: GrantRef,
    pages: usize,
) -> Option<Result<Allocation, AllocError>> {
    let allocator = grants.allocator()?;
    Some(allocate_with(allocator, grants, domid, directory, pages))
}

fn allocate_with(
    allocator: &Allocator,
    grants: &GrantMapper,
    domid: u32,
    directory: GrantRef,
    pages: usize,
) -> Result<Allocation, AllocError> {
    let peer = u16::try_from(domid).map_err(|_| AllocError::Domain(domid))?;
    let (index, refs) = allocator
        .device
        .alloc(peer, pages)
        .map_err(|source| AllocError::Alloc { pages, source })?;
    allocator.count.0.fetch_add(pages, Ordering::Relaxed);
    let region = Arc::new(AllocatedRegion {
        device: Arc::clone(&allocator.device),
        count: Arc::clone(&allocator.count),
    });
    if refs.len() != pages {
        let _ = region.remove(index, pages);
        return Err(AllocError::Refs {
            pages,
            refs: refs.len(),
        });
    }
    let address = match allocator.device.map(index, pages) {
        Ok(address) => address,
        Err(source) => {
            let _ = region.remove(index, pages);
            return Err(AllocError::Map { pages, source });
        }
    };
    // SAFETY: `address` is the read-write shared mapping of the `pages` pages just allocated
    // (gntalloc maps whole pages, so it is page-aligned); only this `GrantMapping` unmaps it.
    let mapping = unsafe { GrantMapping::from_region(region, index, address, pages) };
    // From here on, dropping `mapping` lets go of the pages again.
    write_directory(grants, domid, directory, &refs)?;
    Ok(Allocation { refs, mapping })
}

/// Writes `refs` into the directory chained from `first`, 1023 a page, keeping each page's
/// `gref_dir_next_page`.
fn write_directory(
    grants: &GrantMapper,
    domid: u32,
    first: GrantRef,
    refs: &[GrantRef],
) -> Result<(), AllocError> {
    let mut next = first;
    let chunks: Vec<&[GrantRef]> = if refs.is_empty() {
        vec![&[]]
    } else {
        refs.chunks(REFS_PER_DIRECTORY_PAGE).collect()
    };
    for (position, chunk) in chunks.into_iter().enumerate() {
        if next == 0 {
            return Err(AllocError::ShortDirectory {
                pages: refs.len(),
                directory_pages: position,
            });
        }
        let gref = next;
        let page_error = |error: String| AllocError::DirectoryPage {
            position,
            gref,
            error,
        };
        let mapping = grants
            .map(domid, &[gref], Access::ReadWrite)
            .map_err(|error| page_error(error.to_string()))?;
        let old = mapping.first_page();
        let link = GrantRef::from_le_bytes([old[0], old[1], old[2], old[3]]);
        let mut page = [0u8; GRANT_SIZE];
        write_directory_page(&mut page, link, chunk);
        mapping.write_start(&page);
        mapping
            .unmap()
            .map_err(|error| page_error(error.to_string()))?;
        next = link;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gntalloc::fake::FakeGntalloc;
    use crate::grant_map::fake::FakeGntdev;
    use drivers::xen::displif::read_directory_page;

    const DOMID: u32 = 3;

    struct Rig {
        gntdev: Arc<FakeGntdev>,
        gntalloc: Arc<FakeGntalloc>,
        grants: GrantMapper,
    }

    fn rig(limit: usize) -> Rig {
        let gntdev = Arc::new(FakeGntdev::default());
        let gntalloc = Arc::new(FakeGntalloc::with_limit(limit));
        let grants =
            GrantMapper::over(gntdev.clone()).with_allocator(Allocator::over(gntalloc.clone()));
        Rig {
            gntdev,
            gntalloc,
            grants,
        }
    }

    /// The frontend grants `count` chained directory pages (grants 50, 51, ...), writable,
    /// each page's `gref_dir_next_page` naming the next and its `gref[]` left 0, as Linux's
    /// xen-drm-front and the guest fill them for REQ_ALLOC.
    fn grant_directory(fake: &FakeGntdev, count: u32) -> Vec<u32> {
        let grefs: Vec<u32> = (50..50 + count).collect();
        for (position, &gref) in grefs.iter().enumerate() {
            let next = grefs.get(position + 1).copied().unwrap_or(0);
            fake.grant(DOMID, gref, &next.to_le_bytes(), false);
        }
        grefs
    }

    /// The references listed in the directory pages, in order, and the chain's links.
    fn read_back(fake: &FakeGntdev, directory: &[u32], pages: usize) -> (Vec<u32>, Vec<u32>) {
        let (mut refs, mut links) = (Vec::new(), Vec::new());
        for &gref in directory {
            let page = fake.page(DOMID, gref).unwrap();
            let want = (pages - refs.len()).min(REFS_PER_DIRECTORY_PAGE);
            let (link, page_refs) = read_directory_page(&page, want);
            refs.extend(page_refs);
            links.push(link);
        }
        (refs, links)
    }

    #[test]
    fn a_buffer_of_two_directory_pages_is_granted_and_listed_in_order() {
        let rig = rig(4096);
        let directory = grant_directory(&rig.gntdev, 2);
        let pages = REFS_PER_DIRECTORY_PAGE + 5;
        let allocation = allocate(&rig.grants, DOMID, directory[0], pages)
            .expect("an allocator is set")
            .unwrap();
        assert_eq!(allocation.refs.len(), pages);
        assert_eq!(allocation.mapping.len(), pages * GRANT_SIZE);
        let (listed, links) = read_back(&rig.gntdev, &directory, pages);
        assert_eq!(listed, allocation.refs);
        // The chain is the frontend's, kept; nothing of the directory stays mapped.
        assert_eq!(links, [directory[1], 0]);
        assert_eq!(rig.gntdev.mapped_pages(), 0);
        // Every page is granted to the frontend, which can map and draw into it; the backend
        // reads what it drew through its mapping.
        let last = allocation.refs[pages - 1];
        rig.gntalloc.peer_map(DOMID as u16, last).unwrap();
        rig.gntalloc.peer_write(last, 0, &[0xab; 8]).unwrap();
        let mut bytes = Vec::new();
        allocation
            .mapping
            .copy_range_into((pages - 1) * GRANT_SIZE, 8, &mut bytes);
        assert_eq!(bytes, [0xab; 8]);
        assert_eq!(rig.grants.allocator().unwrap().pages_held(), pages);
        rig.gntalloc.peer_unmap(last);
        allocation.mapping.unmap().unwrap();
        assert_eq!(
            (rig.gntalloc.alive(), rig.gntalloc.mapped_regions()),
            (0, 0)
        );
        assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
    }

    #[test]
    fn what_is_let_go_of_is_said_only_for_backend_allocated_pages() {
        let rig = rig(64);
        let directory = grant_directory(&rig.gntdev, 1);
        let allocation = allocate(&rig.grants, DOMID, directory[0], 3)
            .unwrap()
            .unwrap();
        let held = Held::before(&rig.grants);
        assert_eq!(held.line("dom3 dev0", &rig.grants), None);
        allocation.mapping.unmap().unwrap();
        assert_eq!(
            held.line("dom3 dev0", &rig.grants),
            Some(
                "vdispl-backend: dom3 dev0: 3 backend-allocated pages let go of (0 held now)"
                    .into()
            )
        );
        let idle = Held::before(&rig.grants);
        assert_eq!(idle.line("dom3 dev0", &rig.grants), None);
        let plain = GrantMapper::over(rig.gntdev.clone());
        assert_eq!(Held::before(&plain).line("dom3 dev0", &plain), None);
    }

    #[test]
    fn pages_the_frontend_still_maps_stay_its_own_until_it_unmaps_them() {
        let rig = rig(64);
        let directory = grant_directory(&rig.gntdev, 1);
        let allocation = allocate(&rig.grants, DOMID, directory[0], 3)
            .unwrap()
            .unwrap();
        for &gref in &allocation.refs {
            rig.gntalloc.peer_map(DOMID as u16, gref).unwrap();
        }
        // The backend lets go first (DBUF_DESTROY answered, or the device closed under a
        // frontend that has not unmapped yet).
        allocation.mapping.unmap().unwrap();
        assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
        assert_eq!(rig.gntalloc.alive(), 3);
        // The frontend still draws into them: not cut off.
        for &gref in &allocation.refs {
            rig.gntalloc.peer_write(gref, 16, &[1, 2, 3]).unwrap();
        }
        for &gref in &allocation.refs {
            rig.gntalloc.peer_unmap(gref);
        }
        assert_eq!(rig.gntalloc.alive(), 0);
    }

    #[test]
    fn a_short_directory_is_named_and_leaves_nothing_allocated() {
        let rig = rig(4096);
        let directory = grant_directory(&rig.gntdev, 1);
        let error = allocate(
            &rig.grants,
            DOMID,
            directory[0],
            REFS_PER_DIRECTORY_PAGE + 1,
        )
        .unwrap()
        .err()
        .unwrap();
        assert!(matches!(
            error,
            AllocError::ShortDirectory {
                pages: 1024,
                directory_pages: 1
            }
        ));
        assert_eq!(
            error.to_string(),
            "the page directory ends after 1 pages, room for 1023 of 1024 references"
        );
        assert_eq!(
            (rig.gntalloc.alive(), rig.gntalloc.mapped_regions()),
            (0, 0)
        );
        assert_eq!((rig.gntdev.recorded(), rig.gntdev.mapped_pages()), (0, 0));
    }

    #[test]
    fn a_directory_page_not_granted_or_read_only_is_named_and_leaves_nothing_allocated() {
        let rig = rig(64);
        let error = allocate(&rig.grants, DOMID, 77, 2).unwrap().err().unwrap();
        assert!(
            matches!(
                error,
                AllocError::DirectoryPage {
                    position: 0,
                    gref: 77,
                    ..
                }
            ),
            "{error}"
        );
        rig.gntdev.grant(DOMID, 78, &[], true);
        let error = allocate(&rig.grants, DOMID, 78, 2).unwrap().err().unwrap();
        assert!(matches!(error, AllocError::DirectoryPage { gref: 78, .. }));
        assert_eq!(rig.gntalloc.alive(), 0);
        assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
    }

    #[test]
    fn over_the_modules_limit_is_named_and_no_allocator_offers_nothing() {
        let rig = rig(10);
        let directory = grant_directory(&rig.gntdev, 1);
        let error = allocate(&rig.grants, DOMID, directory[0], 11)
            .unwrap()
            .err()
            .unwrap();
        assert!(error
            .to_string()
            .ends_with("(over the xen-gntalloc module's limit of pages)"));
        assert!(matches!(
            allocate(&rig.grants, 70_000, directory[0], 1),
            Some(Err(AllocError::Domain(70_000)))
        ));
        let plain = GrantMapper::over(rig.gntdev.clone());
        assert!(allocate(&plain, DOMID, directory[0], 1).is_none());
    }
}
