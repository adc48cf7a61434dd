//! Choosing where the heap goes: the largest stretch of RAM that holds
//! nothing else (not the image, its stack, the device tree, the initrd or a
//! `/memreserve/` range).

use crate::platform::Region;

const PAGE: u64 = 4096;

/// The largest page-aligned part of `banks` that overlaps none of `used`.
pub fn largest_free(banks: &[Region], used: &[Region]) -> Option<Region> {
    let mut best: Option<Region> = None;
    for bank in banks {
        // Walk the bank from its start, jumping past every used range that
        // begins at or before the cursor; each gap is a candidate.
        let mut cursor = bank.base;
        while cursor < bank.end() {
            if let Some(blocker) = used
                .iter()
                .filter(|region| region.size > 0 && region.base <= cursor && region.end() > cursor)
                .max_by_key(|region| region.end())
            {
                cursor = blocker.end();
                continue;
            }
            let gap_end = used
                .iter()
                .filter(|region| region.size > 0 && region.base > cursor)
                .map(|region| region.base)
                .min()
                .unwrap_or(u64::MAX)
                .min(bank.end());
            let start = cursor.div_ceil(PAGE).saturating_mul(PAGE);
            let end = gap_end & !(PAGE - 1);
            if end > start && best.is_none_or(|best| end - start > best.size) {
                best = Some(Region::new(start, end - start));
            }
            cursor = gap_end;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn heap_avoids_image_and_device_tree() {
        let bank = [Region::new(0x4000_0000, 32 * MIB)];
        let image = Region::new(0x4000_0000, 0x5_1234);
        let dtb = Region::new(0x4000_0000 + 32 * MIB - 0x2000, 0x1800);
        let heap = largest_free(&bank, &[image, dtb]).unwrap();
        assert_eq!(heap.base, 0x4005_2000);
        assert_eq!(heap.end(), 0x4000_0000 + 32 * MIB - 0x2000);
        assert!(!heap.overlaps(&image) && !heap.overlaps(&dtb));
    }

    #[test]
    fn picks_the_largest_gap_across_banks_and_overlapping_reservations() {
        let banks = [
            Region::new(0x4000_0000, 16 * MIB),
            Region::new(0x2_0000_0000, 64 * MIB),
        ];
        let used = [
            Region::new(0x2_0000_0000, 40 * MIB),
            Region::new(0x2_0100_0000, 30 * MIB), // overlaps the previous one
        ];
        let heap = largest_free(&banks, &used).unwrap();
        assert_eq!(heap, Region::new(0x2_0000_0000 + 46 * MIB, 18 * MIB));
    }

    #[test]
    fn fully_used_memory_leaves_no_heap() {
        let bank = [Region::new(0x4000_0000, MIB)];
        assert_eq!(
            largest_free(&bank, &[Region::new(0x3000_0000, 0x2000_0000)]),
            None
        );
        assert_eq!(largest_free(&[], &[]), None);
    }
}
