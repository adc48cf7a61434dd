//! A fake `/dev/xen/gntdev` with a fake granting domain, for host tests of the mapping code:
//! it keeps the rules of Linux's `drivers/xen/gntdev.c` and of Xen's grant map, so that a leak
//! or a wrong order of steps fails a test instead of a rig run.
//!
//! - IOCTL_GNTDEV_MAP_GRANT_REF records the references at the first free range of indexes
//!   (`gntdev_add_map`) and returns `index << PAGE_SHIFT`; more than `limit` references in one
//!   request is EINVAL.
//! - mmap() must name a recorded range by its first index and its page count
//!   (`gntdev_find_map_index`), each range can be mmapped once (`in_use`, also after a failed
//!   mmap), and the grant map must succeed for every page, or mmap fails with EINVAL: the
//!   granting domain must grant the page to Dom0 now (not ended), writable if PROT_WRITE
//!   asks, and the mapped grants must fit Dom0's maptrack (`max_mapped` pages at once).
//! - IOCTL_GNTDEV_UNMAP_GRANT_REF frees the index range (ENOENT for an unknown one); the
//!   grants stay mapped until munmap().
//! - The granting domain cannot end a grant while Dom0 maps it (GTF_reading/GTF_writing).
//! - A writable mapping is the granted page: what Dom0 writes into it, the granting domain
//!   reads ([`FakeGntdev::page`]) once Dom0 has unmapped it.

use super::{Access, GntdevDevice, RegionDevice};
use crate::gntdev::GRANT_SIZE;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One page of fake memory, page-aligned as a real mapping is.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Page(pub [u8; GRANT_SIZE]);

/// A page the fake domain grants to Dom0.
struct Grant {
    page: Box<Page>,
    readonly: bool,
    /// Dom0's mappings of it now.
    mapped: usize,
}

/// A recorded range of references (a `struct gntdev_grant_map`).
struct Recorded {
    domid: u32,
    refs: Vec<u32>,
    /// mmap() was tried (the kernel's `in_use`).
    in_use: bool,
    /// The mapped pages, while mmapped.
    region: Option<Box<[Page]>>,
    /// Mapped writable: the region's pages go back to the grants at munmap().
    writable: bool,
}

#[derive(Default)]
struct State {
    granted: HashMap<(u32, u32), Grant>,
    /// Ranges with visible indexes, by first index.
    ranges: BTreeMap<u64, Recorded>,
    /// Ranges removed with IOCTL_GNTDEV_UNMAP_GRANT_REF while still mmapped.
    detached: Vec<Recorded>,
    mapped_pages: usize,
}

/// Why the fake domain could not end a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndError {
    /// Not granted (never, or ended already).
    NotGranted,
    /// Dom0 still maps it.
    Busy,
}

/// The fake device and the fake granting domain behind it.
pub struct FakeGntdev {
    state: Mutex<State>,
    /// References one IOCTL_GNTDEV_MAP_GRANT_REF may record (the module's `limit`).
    pub limit: usize,
    /// Pages Dom0 may have mapped at once (Xen's maptrack for Dom0).
    pub max_mapped: usize,
}

impl Default for FakeGntdev {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            limit: 64 * 1024,
            max_mapped: 1 << 20,
        }
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

impl FakeGntdev {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked holding the lock leaves whole entries behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fake whose Dom0 may map `max_mapped` pages at once.
    pub fn with_max_mapped(max_mapped: usize) -> Self {
        Self {
            max_mapped,
            ..Self::default()
        }
    }

    /// The fake domain grants `page` as `gref` to Dom0.
    pub fn grant(&self, domid: u32, gref: u32, page: &[u8], readonly: bool) {
        let mut bytes = Page([0; GRANT_SIZE]);
        let len = page.len().min(GRANT_SIZE);
        bytes.0[..len].copy_from_slice(&page[..len]);
        let previous = self.state().granted.insert(
            (domid, gref),
            Grant {
                page: Box::new(bytes),
                readonly,
                mapped: 0,
            },
        );
        assert!(
            previous.is_none(),
            "grant {gref} of domain {domid} granted twice"
        );
    }

    /// The fake domain ends a grant, as a frontend does (only while nothing maps it).
    pub fn end(&self, domid: u32, gref: u32) -> Result<(), EndError> {
        let mut state = self.state();
        match state.granted.get(&(domid, gref)) {
            None => Err(EndError::NotGranted),
            Some(grant) if grant.mapped > 0 => Err(EndError::Busy),
            Some(_) => {
                state.granted.remove(&(domid, gref));
                Ok(())
            }
        }
    }

    /// Reference ranges recorded in the device (visible or still mmapped).
    pub fn recorded(&self) -> usize {
        let state = self.state();
        state.ranges.len() + state.detached.len()
    }

    /// Pages mapped now.
    pub fn mapped_pages(&self) -> usize {
        self.state().mapped_pages
    }

    /// Grants of the fake domain not ended yet.
    pub fn granted(&self) -> usize {
        self.state().granted.len()
    }

    /// What the granted page `gref` of `domid` holds now, if it is granted.
    pub fn page(&self, domid: u32, gref: u32) -> Option<Box<[u8; GRANT_SIZE]>> {
        self.state()
            .granted
            .get(&(domid, gref))
            .map(|grant| Box::new(grant.page.0))
    }
}

impl GntdevDevice for FakeGntdev {
    fn add(&self, domid: u32, refs: &[u32]) -> io::Result<u64> {
        if refs.is_empty() || refs.len() > self.limit {
            return Err(einval());
        }
        let mut state = self.state();
        // gntdev_add_map: the first index after which the range fits before the next one.
        let count = refs.len() as u64;
        let mut index = 0;
        for (&start, range) in &state.ranges {
            if index + count < start {
                break;
            }
            index = start + range.refs.len() as u64;
        }
        state.ranges.insert(
            index,
            Recorded {
                domid,
                refs: refs.to_vec(),
                in_use: false,
                region: None,
                writable: false,
            },
        );
        Ok(index * GRANT_SIZE as u64)
    }

    fn map(&self, offset: u64, pages: usize, access: Access) -> io::Result<NonNull<u8>> {
        if !offset.is_multiple_of(GRANT_SIZE as u64) {
            return Err(einval());
        }
        let mut guard = self.state();
        let state = &mut *guard;
        let range = state
            .ranges
            .get_mut(&(offset / GRANT_SIZE as u64))
            .filter(|range| range.refs.len() == pages)
            .ok_or_else(einval)?;
        if range.in_use {
            return Err(einval());
        }
        range.in_use = true;
        if state.mapped_pages + pages > self.max_mapped {
            return Err(einval());
        }
        let mut region = Vec::with_capacity(pages);
        for gref in &range.refs {
            let grant = state
                .granted
                .get(&(range.domid, *gref))
                .filter(|grant| access == Access::ReadOnly || !grant.readonly)
                .ok_or_else(einval)?;
            region.push((*grant.page).clone());
        }
        for gref in &range.refs {
            if let Some(grant) = state.granted.get_mut(&(range.domid, *gref)) {
                grant.mapped += 1;
            }
        }
        state.mapped_pages += pages;
        range.writable = access == Access::ReadWrite;
        let mut region = region.into_boxed_slice();
        let address = NonNull::new(region.as_mut_ptr().cast::<u8>()).ok_or_else(einval)?;
        range.region = Some(region);
        Ok(address)
    }
}

impl RegionDevice for FakeGntdev {
    unsafe fn unmap(&self, address: NonNull<u8>, pages: usize) -> io::Result<()> {
        let mut guard = self.state();
        let state = &mut *guard;
        let is_it = |range: &Recorded| {
            range.refs.len() == pages
                && range
                    .region
                    .as_ref()
                    .is_some_and(|region| region.as_ptr().cast::<u8>() == address.as_ptr())
        };
        let (domid, refs, region, writable) =
            if let Some(position) = state.detached.iter().position(is_it) {
                let range = state.detached.swap_remove(position);
                (range.domid, range.refs, range.region, range.writable)
            } else {
                let start = state
                    .ranges
                    .iter()
                    .find(|(_, range)| is_it(range))
                    .map(|(&start, _)| start)
                    .ok_or_else(einval)?;
                let range = state.ranges.get_mut(&start).ok_or_else(einval)?;
                (
                    range.domid,
                    range.refs.clone(),
                    range.region.take(),
                    range.writable,
                )
            };
        for (index, gref) in refs.iter().enumerate() {
            if let Some(grant) = state.granted.get_mut(&(domid, *gref)) {
                grant.mapped -= 1;
                if let (true, Some(region)) = (writable, &region) {
                    *grant.page = region[index].clone();
                }
            }
        }
        state.mapped_pages -= pages;
        Ok(())
    }

    fn remove(&self, offset: u64, pages: usize) -> io::Result<()> {
        let mut guard = self.state();
        let state = &mut *guard;
        let index = offset / GRANT_SIZE as u64;
        match state.ranges.get(&index) {
            Some(range) if range.refs.len() == pages => {}
            _ => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
        if let Some(range) = state.ranges.remove(&index) {
            if range.region.is_some() {
                state.detached.push(range);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::GrantMapper;
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_fake_keeps_the_drivers_rules() {
        let fake = FakeGntdev::default();
        fake.grant(1, 10, &[7; 16], true);
        fake.grant(1, 11, &[8; 16], false);
        let a = fake.add(1, &[10]).unwrap();
        let b = fake.add(1, &[11]).unwrap();
        assert_eq!((a, b), (0, 4096));
        // mmap must name a range by its start and page count.
        assert!(fake.map(2 * 4096, 1, Access::ReadOnly).is_err());
        assert!(fake.map(100, 1, Access::ReadOnly).is_err());
        assert!(fake.map(a, 2, Access::ReadOnly).is_err());
        // A read-only grant cannot be mapped writable; the range is in use after the try.
        assert!(fake.map(a, 1, Access::ReadWrite).is_err());
        assert!(fake.map(a, 1, Access::ReadOnly).is_err());
        let page = fake.map(b, 1, Access::ReadWrite).unwrap();
        assert_eq!(fake.end(1, 11), Err(EndError::Busy));
        // Removed first, unmapped later: the grant stays mapped until munmap.
        fake.remove(b, 1).unwrap();
        assert_eq!(
            fake.remove(b, 1).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(fake.end(1, 11), Err(EndError::Busy));
        // SAFETY: the region `map` returned, not used afterwards.
        unsafe { fake.unmap(page, 1) }.unwrap();
        assert_eq!(fake.end(1, 11), Ok(()));
        fake.remove(a, 1).unwrap();
        assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
        // An ended grant cannot be mapped.
        let c = fake.add(1, &[11]).unwrap();
        assert!(fake.map(c, 1, Access::ReadOnly).is_err());
        fake.remove(c, 1).unwrap();
    }

    #[test]
    fn a_failed_map_leaves_nothing_recorded_and_a_mapping_reads_the_granted_page() {
        let fake = Arc::new(FakeGntdev::default());
        let mapper = GrantMapper::over(fake.clone());
        let error = mapper.map(1, &[99], Access::ReadOnly).err().unwrap();
        assert!(error
            .to_string()
            .starts_with("cannot map grant 99 of domain 1 (mmap): "));
        assert_eq!(fake.recorded(), 0);
        fake.grant(1, 20, &[1, 2, 3], true);
        let mapping = mapper.map(1, &[20], Access::ReadOnly).unwrap();
        assert_eq!(&mapping.first_page()[..4], &[1, 2, 3, 0]);
        assert_eq!(fake.end(1, 20), Err(EndError::Busy));
        drop(mapping);
        assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
        assert_eq!(fake.end(1, 20), Ok(()));
    }
}
