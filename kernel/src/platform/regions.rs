//! Physical address ranges and a small fixed-capacity list of them (the
//! platform is parsed before the heap exists).

use core::fmt;

/// A physical address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// A region from its base and size.
    pub const fn new(base: u64, size: u64) -> Self {
        Region { base, size }
    }

    /// One past the last address (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether the two regions share an address.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.base, self.size)
    }
}

/// Up to [`Regions::CAPACITY`] regions, in insertion order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    entries: [Region; Regions::CAPACITY],
    len: usize,
}

impl Regions {
    /// How many regions fit.
    pub const CAPACITY: usize = 8;

    /// Appends a region; `Err` when full.
    pub fn push(&mut self, region: Region) -> Result<(), Region> {
        let slot = self.entries.get_mut(self.len).ok_or(region)?;
        *slot = region;
        self.len += 1;
        Ok(())
    }

    /// The regions as a slice.
    pub fn as_slice(&self) -> &[Region] {
        &self.entries[..self.len]
    }

    /// Iterates over the regions.
    pub fn iter(&self) -> core::slice::Iter<'_, Region> {
        self.as_slice().iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of the sizes (saturating).
    pub fn total_size(&self) -> u64 {
        self.iter()
            .fold(0, |sum, region| sum.saturating_add(region.size))
    }
}
