//! A fake `/dev/xen/gntalloc` with a fake peer domain that maps what it is granted, for host
//! tests of the backend-allocated buffers: it keeps the rules of Linux's
//! `drivers/xen/gntalloc.c`, so that a leak, a wrong order of steps or a page taken from under
//! the peer fails a test instead of a rig run.
//!
//! - IOCTL_GNTALLOC_ALLOC_GREF allocates zeroed pages, grants them to the domain (writable:
//!   the backend always asks for GNTALLOC_FLAG_WRITABLE) and records them in the file at the
//!   next free offset; more than `limit` pages alive at once is ENOSPC (the module's `limit`
//!   counts pages not yet freed, those the peer still maps included).
//! - mmap() must name recorded pages in order by their offset (ENOENT otherwise); the mapping
//!   is the granted pages themselves.
//! - A page is held by the file (until IOCTL_GNTALLOC_DEALLOC_GREF, EINVAL for pages the file
//!   does not hold) and by each mmap() of it (until munmap()). Once neither holds it, its grant
//!   is ended and the page freed, unless the peer still maps it: then both wait until the peer
//!   unmaps it ([`FakeGntalloc::peer_unmap`]). Nothing is ever taken from under the peer. (The
//!   fake counts such a page against the limit until then, as kernels before the XSA-396 fixes
//!   did, keeping it on gntalloc's list; later ones hand it to the grant table's deferred list,
//!   `gnttab_end_foreign_access`, and count it no more.)

use super::GntallocDevice;
use crate::gntdev::GRANT_SIZE;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One page of fake memory, page-aligned as a real one is.
#[repr(C, align(4096))]
#[derive(Clone)]
struct Page([u8; GRANT_SIZE]);

/// Pages allocated by one IOCTL_GNTALLOC_ALLOC_GREF, contiguous so that one mmap() of them is
/// one region. Kept until every page of it is freed.
struct Block {
    pages: Box<[Page]>,
    /// Pages of it not freed yet.
    alive: usize,
}

/// One granted page (a `struct gntalloc_gref`).
struct Gref {
    domid: u16,
    block: u64,
    /// Its page in the block.
    page: usize,
    /// Holds of Dom0: the file's and each mmap()'s (the driver's `users`).
    users: usize,
    /// The peer's mappings of it.
    peer_maps: usize,
}

#[derive(Default)]
struct State {
    blocks: HashMap<u64, Block>,
    next_block: u64,
    grefs: BTreeMap<u32, Gref>,
    next_gref: u32,
    /// The file's pages by offset (the driver's file list).
    file: BTreeMap<u64, u32>,
    /// The next offset handed out (the file's `index`).
    next_index: u64,
    /// mmap()ed regions: start address and their grants.
    regions: Vec<(usize, Vec<u32>)>,
}

/// The fake device and the fake peer domain behind it.
pub struct FakeGntalloc {
    state: Mutex<State>,
    /// Pages that may be alive at once (the module's `limit`).
    pub limit: usize,
}

impl Default for FakeGntalloc {
    fn default() -> Self {
        Self::with_limit(1024)
    }
}

fn error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl State {
    /// Frees `gref` if nothing holds it any more: no Dom0 user and no peer mapping.
    fn collect(&mut self, gref: u32) {
        let free = self
            .grefs
            .get(&gref)
            .is_some_and(|entry| entry.users == 0 && entry.peer_maps == 0);
        if !free {
            return;
        }
        if let Some(entry) = self.grefs.remove(&gref) {
            if let Some(block) = self.blocks.get_mut(&entry.block) {
                block.alive -= 1;
                if block.alive == 0 {
                    self.blocks.remove(&entry.block);
                }
            }
        }
    }

    fn page_mut(&mut self, gref: u32) -> Option<&mut Page> {
        let entry = self.grefs.get(&gref)?;
        let (block, page) = (entry.block, entry.page);
        self.blocks.get_mut(&block)?.pages.get_mut(page)
    }
}

impl FakeGntalloc {
    /// A fake whose module allows `limit` pages at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                // Grants 0-7 are reserved; the kernel's own grants come first.
                next_gref: 0x100,
                ..State::default()
            }),
            limit,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked holding the lock leaves whole entries behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pages granted and not freed yet (what counts against the limit).
    pub fn alive(&self) -> usize {
        self.state().grefs.len()
    }

    /// Pages the file holds (allocated and not deallocated).
    pub fn held_by_file(&self) -> usize {
        self.state().file.len()
    }

    /// Regions mmapped now.
    pub fn mapped_regions(&self) -> usize {
        self.state().regions.len()
    }

    /// The peer `domid` maps `gref` (writable). Fails if it is not granted to `domid`.
    pub fn peer_map(&self, domid: u16, gref: u32) -> Result<(), String> {
        let mut state = self.state();
        match state.grefs.get_mut(&gref) {
            Some(entry) if entry.domid == domid => {
                entry.peer_maps += 1;
                Ok(())
            }
            Some(entry) => Err(format!(
                "grant {gref} is for domain {}, not {domid}",
                entry.domid
            )),
            None => Err(format!("grant {gref} is not granted")),
        }
    }

    /// The peer unmaps `gref`; the page is freed then if Dom0 let go of it already.
    pub fn peer_unmap(&self, gref: u32) {
        let mut state = self.state();
        if let Some(entry) = state.grefs.get_mut(&gref) {
            assert!(
                entry.peer_maps > 0,
                "grant {gref} is not mapped by the peer"
            );
            entry.peer_maps -= 1;
        }
        state.collect(gref);
    }

    /// The peer writes `bytes` into granted page `gref` at `offset` (it must map it).
    pub fn peer_write(&self, gref: u32, offset: usize, bytes: &[u8]) -> Result<(), String> {
        let mut state = self.state();
        if state
            .grefs
            .get(&gref)
            .is_none_or(|entry| entry.peer_maps == 0)
        {
            return Err(format!("grant {gref} is not mapped by the peer"));
        }
        let page = state
            .page_mut(gref)
            .ok_or_else(|| format!("grant {gref} has no page"))?;
        let end = offset + bytes.len();
        if end > GRANT_SIZE {
            return Err(format!("{end} bytes do not fit a page"));
        }
        page.0[offset..end].copy_from_slice(bytes);
        Ok(())
    }
}

impl GntallocDevice for FakeGntalloc {
    fn alloc(&self, domid: u16, count: usize) -> io::Result<(u64, Vec<u32>)> {
        if count == 0 {
            return Err(error(libc::EINVAL));
        }
        let mut state = self.state();
        if state.grefs.len() + count > self.limit {
            return Err(error(libc::ENOSPC));
        }
        let block = state.next_block;
        state.next_block += 1;
        state.blocks.insert(
            block,
            Block {
                pages: vec![Page([0; GRANT_SIZE]); count].into_boxed_slice(),
                alive: count,
            },
        );
        let index = state.next_index;
        state.next_index += (count * GRANT_SIZE) as u64;
        let mut refs = Vec::with_capacity(count);
        for page in 0..count {
            let gref = state.next_gref;
            state.next_gref += 1;
            state.grefs.insert(
                gref,
                Gref {
                    domid,
                    block,
                    page,
                    users: 1,
                    peer_maps: 0,
                },
            );
            state.file.insert(index + (page * GRANT_SIZE) as u64, gref);
            refs.push(gref);
        }
        Ok((index, refs))
    }

    fn map(&self, index: u64, pages: usize) -> io::Result<NonNull<u8>> {
        let mut state = self.state();
        let refs: Vec<u32> = (0..pages)
            .map(|page| {
                state
                    .file
                    .get(&(index + (page * GRANT_SIZE) as u64))
                    .copied()
            })
            .collect::<Option<_>>()
            .ok_or_else(|| error(libc::ENOENT))?;
        let (first, block) = {
            let entry = refs
                .first()
                .and_then(|gref| state.grefs.get(gref))
                .ok_or_else(|| error(libc::ENOENT))?;
            (entry.page, entry.block)
        };
        // One region: the pages must lie in order in one block (the fake's limitation; the
        // backend maps each allocation whole).
        let contiguous = refs.iter().enumerate().all(|(offset, gref)| {
            state
                .grefs
                .get(gref)
                .is_some_and(|entry| entry.block == block && entry.page == first + offset)
        });
        if !contiguous {
            return Err(error(libc::EINVAL));
        }
        for gref in &refs {
            if let Some(entry) = state.grefs.get_mut(gref) {
                entry.users += 1;
            }
        }
        let address = state
            .blocks
            .get_mut(&block)
            .and_then(|block| block.pages.get_mut(first))
            .map(|page| NonNull::from(page).cast::<u8>())
            .ok_or_else(|| error(libc::EINVAL))?;
        state.regions.push((address.as_ptr() as usize, refs));
        Ok(address)
    }

    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()> {
        let mut state = self.state();
        let position = state
            .regions
            .iter()
            .position(|(start, refs)| *start == address.as_ptr() as usize && refs.len() == pages)
            .ok_or_else(|| error(libc::EINVAL))?;
        let (_, refs) = state.regions.swap_remove(position);
        for gref in refs {
            if let Some(entry) = state.grefs.get_mut(&gref) {
                entry.users -= 1;
            }
            state.collect(gref);
        }
        Ok(())
    }

    fn dealloc(&self, index: u64, pages: usize) -> io::Result<()> {
        let mut state = self.state();
        let offsets: Vec<u64> = (0..pages)
            .map(|page| index + (page * GRANT_SIZE) as u64)
            .collect();
        if pages == 0 || !offsets.iter().all(|offset| state.file.contains_key(offset)) {
            return Err(error(libc::EINVAL));
        }
        for offset in offsets {
            if let Some(gref) = state.file.remove(&offset) {
                if let Some(entry) = state.grefs.get_mut(&gref) {
                    entry.users -= 1;
                }
                state.collect(gref);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_keeps_the_drivers_rules() {
        let fake = FakeGntalloc::with_limit(4);
        assert_eq!(
            fake.alloc(1, 5).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        let (index, refs) = fake.alloc(1, 3).unwrap();
        assert_eq!(refs.len(), 3);
        assert!(refs.iter().all(|&gref| gref >= 8));
        // mmap names the recorded pages by their offset.
        assert!(fake.map(index + 3 * GRANT_SIZE as u64, 1).is_err());
        let address = fake.map(index, 3).unwrap();
        // The pages come zeroed, and the peer sees what Dom0 writes.
        fake.peer_map(1, refs[1]).unwrap();
        assert!(fake.peer_map(2, refs[0]).is_err());
        fake.peer_write(refs[1], 8, &[7, 7]).unwrap();
        // SAFETY: inside the three-page region just mapped.
        let byte = unsafe { address.as_ptr().add(GRANT_SIZE + 8).read() };
        assert_eq!(byte, 7);
        // Dealloc of pages the file does not hold is EINVAL.
        assert!(fake.dealloc(index + GRANT_SIZE as u64, 3).is_err());
        fake.dealloc(index, 3).unwrap();
        assert_eq!((fake.held_by_file(), fake.alive()), (0, 3));
        // SAFETY: the region `map` returned, not used afterwards.
        unsafe { fake.unmap(address, 3) }.unwrap();
        // The page the peer maps stays granted (and counts against the limit).
        assert_eq!(fake.alive(), 1);
        assert_eq!(
            fake.alloc(1, 4).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        fake.peer_write(refs[1], 0, &[1]).unwrap();
        fake.peer_unmap(refs[1]);
        assert_eq!((fake.alive(), fake.mapped_regions()), (0, 0));
        assert!(fake.peer_map(1, refs[1]).is_err());
    }
}
