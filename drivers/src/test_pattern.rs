//! The byte pattern the guest writes into pages it grants in self-tests, and
//! that the Dom0 tools check after mapping them: one definition for both ends.

/// Byte `offset` of the pattern for `seed`. Every byte depends on both, so a
/// page from the wrong grant, at the wrong offset or stale shows up at once.
pub fn pattern_byte(seed: u32, offset: usize) -> u8 {
    let mixed = (offset as u32)
        .wrapping_add(seed.wrapping_mul(0x85eb_ca6b))
        .wrapping_mul(0x9e37_79b1);
    ((mixed >> 24) as u8) ^ (offset as u8) ^ (seed as u8)
}

/// Fills `buffer` with the pattern for `seed`.
pub fn fill(buffer: &mut [u8], seed: u32) {
    for (offset, byte) in buffer.iter_mut().enumerate() {
        *byte = pattern_byte(seed, offset);
    }
}

/// The first offset where `buffer` differs from the pattern, if any.
pub fn first_mismatch(buffer: &[u8], seed: u32) -> Option<usize> {
    buffer
        .iter()
        .enumerate()
        .position(|(offset, &byte)| byte != pattern_byte(seed, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_differs_by_seed_and_offset_and_checks_back() {
        let mut page = [0u8; 4096];
        fill(&mut page, 7);
        assert_eq!(first_mismatch(&page, 7), None);
        assert_eq!(first_mismatch(&page, 8), Some(0));
        page[100] ^= 1;
        assert_eq!(first_mismatch(&page, 7), Some(100));
        let distinct = page.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 200, "pattern uses most byte values: {distinct}");
    }
}
