//! The EL1 stage-1 identity map: translation tables built from the regions the
//! device tree describes, with the attributes Xen's shared memory needs.
//!
//! Arm ARM D8 ("The AArch64 Virtual Memory System Architecture"): 4 KiB
//! granule, 39-bit input addresses, walks starting at level 1. RAM and memory
//! shared with Xen or Dom0 are Normal inner/outer write-back inner-shareable;
//! MMIO is Device-nGnRE, never executable. Addresses that no region covers stay
//! unmapped, so a stray access faults instead of reaching a device.

use core::fmt;

/// Size of a translation granule and of a page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of the input address space (T0SZ = 25).
pub const ADDRESS_SPACE_SIZE: u64 = 1 << 39;

const ENTRIES: usize = 512;
const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 1-2) or page (level 3) rather than block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_DEVICE: u64 = 0 << 2; // MAIR_EL1 Attr0: Device-nGnRE
const ATTR_INDEX_NORMAL: u64 = 1 << 2; // MAIR_EL1 Attr1: Normal WB RA/WA
const SHAREABLE_INNER: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const PRIVILEGED_EXECUTE_NEVER: u64 = 1 << 53;
const UNPRIVILEGED_EXECUTE_NEVER: u64 = 1 << 54;
const OUTPUT_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR_EL1 value matching the attribute indexes above (also used by boot.s).
pub const MAIR_VALUE: u64 = 0x0000_0000_0044_ff04;

/// How a region of the address space is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM and pages shared with Xen or Dom0: Normal write-back, inner shareable.
    Normal,
    /// Memory-mapped I/O: Device-nGnRE, execute-never.
    Device,
}

impl MemoryKind {
    fn attributes(self) -> u64 {
        match self {
            MemoryKind::Normal => {
                ATTR_INDEX_NORMAL | SHAREABLE_INNER | ACCESS_FLAG | UNPRIVILEGED_EXECUTE_NEVER
            }
            MemoryKind::Device => {
                ATTR_INDEX_DEVICE
                    | ACCESS_FLAG
                    | PRIVILEGED_EXECUTE_NEVER
                    | UNPRIVILEGED_EXECUTE_NEVER
            }
        }
    }
}

/// Why a region could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Every translation table of the pool is in use.
    PoolExhausted {
        /// The address being mapped when the pool ran out.
        address: u64,
    },
    /// The address is already mapped with other attributes.
    Conflict {
        /// The first conflicting address.
        address: u64,
    },
    /// The region does not fit in the 39-bit address space.
    OutOfRange {
        /// Start of the region.
        base: u64,
        /// Size of the region.
        size: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::PoolExhausted { address } => {
                write!(f, "no translation table left to map {address:#x}")
            }
            MapError::Conflict { address } => {
                write!(f, "{address:#x} is already mapped with other attributes")
            }
            MapError::OutOfRange { base, size } => write!(
                f,
                "region {base:#x}+{size:#x} is outside the 39-bit address space"
            ),
        }
    }
}

/// One translation table: 512 descriptors, aligned to its own size.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table {
    entries: [u64; ENTRIES],
}

impl Table {
    /// An empty table (every entry invalid).
    pub const EMPTY: Table = Table {
        entries: [0; ENTRIES],
    };
}

/// An identity map under construction or in use, over a fixed pool of tables.
/// Table 0 of the pool is the level-1 (root) table.
pub struct AddressSpace<'pool> {
    tables: &'pool mut [Table],
    used: usize,
}

impl<'pool> AddressSpace<'pool> {
    /// Starts an empty map in `pool`, which must hold at least one table.
    pub fn new(pool: &'pool mut [Table]) -> Self {
        for table in pool.iter_mut() {
            *table = Table::EMPTY;
        }
        AddressSpace {
            tables: pool,
            used: 1,
        }
    }

    /// Address of the root table, for TTBR0_EL1 (virtual = physical).
    pub fn root_address(&self) -> u64 {
        self.table_address(0)
    }

    /// Number of tables in use, the root included.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    fn table_address(&self, index: usize) -> u64 {
        core::ptr::from_ref(&self.tables[index]) as u64
    }

    fn table_index(&self, address: u64) -> Option<usize> {
        (0..self.used).find(|&index| self.table_address(index) == address)
    }

    /// Maps `[base, base + size)` to itself, rounded out to whole pages, using
    /// the largest blocks that alignment allows. Mapping a page again with the
    /// same kind is allowed; with another kind it is a [`MapError::Conflict`].
    pub fn map_identity(&mut self, base: u64, size: u64, kind: MemoryKind) -> Result<(), MapError> {
        let start = base & !(PAGE_SIZE - 1);
        let end = base
            .checked_add(size)
            .and_then(|end| end.checked_add(PAGE_SIZE - 1))
            .map(|end| end & !(PAGE_SIZE - 1))
            .filter(|&end| end <= ADDRESS_SPACE_SIZE)
            .ok_or(MapError::OutOfRange { base, size })?;
        let mut address = start;
        while address < end {
            address += self.map_one(address, end - address, kind)?;
        }
        Ok(())
    }

    /// Maps the largest block or page starting at `address` that fits in
    /// `remaining` bytes; returns its size.
    fn map_one(&mut self, address: u64, remaining: u64, kind: MemoryKind) -> Result<u64, MapError> {
        let mut table = 0;
        for level in 1..=3u32 {
            let shift = 12 + 9 * (3 - level);
            let block = 1u64 << shift;
            let index = ((address >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.tables[table].entries[index];
            let is_table = entry & VALID != 0 && entry & TABLE_OR_PAGE != 0 && level < 3;
            if entry & VALID != 0 && !is_table {
                // An existing block or page: the same mapping is fine.
                let wanted = kind.attributes();
                let present = entry & !OUTPUT_ADDRESS_MASK & !(VALID | TABLE_OR_PAGE);
                if present != wanted {
                    return Err(MapError::Conflict { address });
                }
                let block_end = (address & !(block - 1)) + block;
                return Ok((block_end - address).min(remaining));
            }
            let fits = address.is_multiple_of(block) && remaining >= block;
            if entry & VALID == 0 && (fits || level == 3) {
                let kind_bits = if level == 3 { TABLE_OR_PAGE } else { 0 };
                self.tables[table].entries[index] = address | kind.attributes() | kind_bits | VALID;
                return Ok(block);
            }
            table = if is_table {
                self.table_index(entry & OUTPUT_ADDRESS_MASK)
                    .ok_or(MapError::Conflict { address })?
            } else {
                let next = self.allocate_table(address)?;
                self.tables[table].entries[index] =
                    self.table_address(next) | TABLE_OR_PAGE | VALID;
                next
            };
        }
        Err(MapError::Conflict { address })
    }

    fn allocate_table(&mut self, address: u64) -> Result<usize, MapError> {
        if self.used == self.tables.len() {
            return Err(MapError::PoolExhausted { address });
        }
        self.used += 1;
        Ok(self.used - 1)
    }

    /// How `address` is mapped, if it is: `(kind, size of the block or page)`.
    pub fn lookup(&self, address: u64) -> Option<(MemoryKind, u64)> {
        let mut table = 0;
        for level in 1..=3u32 {
            let shift = 12 + 9 * (3 - level);
            let index = ((address >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.tables[table].entries[index];
            if entry & VALID == 0 {
                return None;
            }
            if level < 3 && entry & TABLE_OR_PAGE != 0 {
                table = self.table_index(entry & OUTPUT_ADDRESS_MASK)?;
                continue;
            }
            let kind = if entry & (0x7 << 2) == ATTR_INDEX_NORMAL {
                MemoryKind::Normal
            } else {
                MemoryKind::Device
            };
            return Some((kind, 1u64 << shift));
        }
        None
    }

    /// Makes this map the active one (TTBR0_EL1) and drops every stale TLB
    /// entry.
    ///
    /// # Safety
    /// Everything the CPU is using (code, stack, data, the tables themselves)
    /// must be mapped here as Normal memory at the same address, the pool must
    /// stay alive and unmoved for as long as the map is active, and entries
    /// may only be added to it afterwards (followed by [`sync_new_entries`]).
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    pub unsafe fn activate(&self) {
        use aarch64_cpu::asm::barrier;
        use aarch64_cpu::registers::{Writeable, TTBR0_EL1};
        barrier::dsb(barrier::ISHST);
        TTBR0_EL1.set(self.root_address());
        barrier::isb(barrier::SY);
        // SAFETY: invalidating the TLB has no effect on memory contents.
        unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    }
}

/// Makes entries just added to the active map visible to the table walker.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn sync_new_entries() {
    use aarch64_cpu::asm::barrier;
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn ram_uses_2mib_blocks_and_mmio_uses_pages() {
        let mut pool = vec![Table::EMPTY; 8];
        let mut space = AddressSpace::new(&mut pool);
        space
            .map_identity(0x4000_0000, 32 * MIB, MemoryKind::Normal)
            .unwrap();
        space
            .map_identity(0x0300_1000, 0x1000, MemoryKind::Device)
            .unwrap();
        assert_eq!(
            space.lookup(0x4000_0000),
            Some((MemoryKind::Normal, 2 * MIB))
        );
        assert_eq!(
            space.lookup(0x41ff_ffff),
            Some((MemoryKind::Normal, 2 * MIB))
        );
        assert_eq!(space.lookup(0x4200_0000), None);
        assert_eq!(
            space.lookup(0x0300_1abc),
            Some((MemoryKind::Device, PAGE_SIZE))
        );
        assert_eq!(space.lookup(0x0300_0fff), None);
        assert_eq!(space.lookup(0x0300_2000), None);
        // root + L2 for GiB 1 + L2 and L3 for the GIC page.
        assert_eq!(space.tables_used(), 4);
    }

    #[test]
    fn aligned_gigabytes_use_level1_blocks() {
        let mut pool = vec![Table::EMPTY; 2];
        let mut space = AddressSpace::new(&mut pool);
        space
            .map_identity(2 * GIB, 2 * GIB, MemoryKind::Normal)
            .unwrap();
        assert_eq!(space.lookup(3 * GIB + 5), Some((MemoryKind::Normal, GIB)));
        assert_eq!(space.tables_used(), 1);
    }

    #[test]
    fn unaligned_region_is_rounded_out_to_pages() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut space = AddressSpace::new(&mut pool);
        space
            .map_identity(0x2200_0010, 0x10, MemoryKind::Device)
            .unwrap();
        assert_eq!(
            space.lookup(0x2200_0000),
            Some((MemoryKind::Device, PAGE_SIZE))
        );
        assert_eq!(space.lookup(0x2200_1000), None);
    }

    #[test]
    fn descriptors_carry_the_architectural_bits() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut space = AddressSpace::new(&mut pool);
        space
            .map_identity(0x4000_0000, 2 * MIB, MemoryKind::Normal)
            .unwrap();
        space
            .map_identity(0x2200_0000, PAGE_SIZE, MemoryKind::Device)
            .unwrap();
        let root = pool[0].entries[1];
        assert_eq!(root & 0b11, 0b11, "level-1 entry for GiB 1 is a table");
        let l2 = pool[1].entries[0];
        // Normal block: AttrIndx 1, inner shareable, AF, UXN; block type 0b01.
        assert_eq!(
            l2,
            0x4000_0000 | (1 << 2) | (3 << 8) | (1 << 10) | (1 << 54) | 0b01
        );
        let page = pool[3].entries[0];
        // Device page: AttrIndx 0, AF, PXN, UXN; page type 0b11.
        assert_eq!(page, 0x2200_0000 | (1 << 10) | (1 << 53) | (1 << 54) | 0b11);
    }

    #[test]
    fn remapping_with_the_same_kind_is_allowed_and_other_kind_conflicts() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut space = AddressSpace::new(&mut pool);
        space
            .map_identity(0x4000_0000, 4 * MIB, MemoryKind::Normal)
            .unwrap();
        space
            .map_identity(0x4010_0000, PAGE_SIZE, MemoryKind::Normal)
            .unwrap();
        assert_eq!(
            space.map_identity(0x4010_0000, PAGE_SIZE, MemoryKind::Device),
            Err(MapError::Conflict {
                address: 0x4010_0000
            })
        );
    }

    #[test]
    fn pool_exhaustion_and_range_are_reported() {
        let mut pool = vec![Table::EMPTY; 2];
        let mut space = AddressSpace::new(&mut pool);
        assert_eq!(
            space.map_identity(0x0300_1000, PAGE_SIZE, MemoryKind::Device),
            Err(MapError::PoolExhausted {
                address: 0x0300_1000
            })
        );
        assert_eq!(
            space.map_identity(
                ADDRESS_SPACE_SIZE - PAGE_SIZE,
                2 * PAGE_SIZE,
                MemoryKind::Normal
            ),
            Err(MapError::OutOfRange {
                base: ADDRESS_SPACE_SIZE - PAGE_SIZE,
                size: 2 * PAGE_SIZE
            })
        );
        assert_eq!(
            space.map_identity(u64::MAX, 1, MemoryKind::Normal),
            Err(MapError::OutOfRange {
                base: u64::MAX,
                size: 1
            })
        );
    }
}
