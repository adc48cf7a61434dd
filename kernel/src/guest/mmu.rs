//! The guest's one address space: the identity map from `arch::mmu`, over a
//! static pool of translation tables, shared by everything that maps pages.

use arch::mmu::{AddressSpace, MapError, MemoryKind, Table};
use kernel::platform::Region;
use spin::Mutex;

/// Tables available to the map: enough for RAM in 2 MiB blocks, the image and
/// device tree in pages, and a handful of MMIO and shared pages.
const POOL_TABLES: usize = 32;

static POOL: Mutex<[Table; POOL_TABLES]> = Mutex::new([Table::EMPTY; POOL_TABLES]);
static SPACE: Mutex<Option<AddressSpace<'static>>> = Mutex::new(None);

/// Builds a map holding `regions`, makes it active, and keeps it for later
/// additions.
///
/// # Safety
/// `regions` must include, as Normal memory, everything the CPU uses: the
/// image with its stack and BSS, the device tree, and any shared page about
/// to be used. Called once.
pub unsafe fn activate(regions: &[(Region, MemoryKind)]) -> Result<(), MapError> {
    let pool: &'static mut [Table; POOL_TABLES] = spin::MutexGuard::leak(POOL.lock());
    let mut space = AddressSpace::new(pool);
    for (region, kind) in regions {
        space.map_identity(region.base, region.size, *kind)?;
    }
    // SAFETY: the caller guarantees that everything in use is mapped Normal
    // at its own address; the pool is static and never moves.
    unsafe { space.activate() };
    *SPACE.lock() = Some(space);
    Ok(())
}

/// Adds `region` to the active map.
pub fn map(region: Region, kind: MemoryKind) -> Result<(), MapError> {
    let mut space = SPACE.lock();
    let space = space.as_mut().ok_or(MapError::PoolExhausted {
        address: region.base,
    })?;
    space.map_identity(region.base, region.size, kind)?;
    arch::mmu::sync_new_entries();
    Ok(())
}

/// Translation tables in use.
pub fn tables_used() -> usize {
    SPACE.lock().as_ref().map_or(0, AddressSpace::tables_used)
}
