//! The little of EDID (VESA E-EDID 1.4) the display protocol needs: the
//! frontend reads the preferred mode of what GET_EDID returns, and a backend
//! can describe a connector's resolution with a minimal base block.

/// Size of the EDID base block.
pub const BLOCK_SIZE: usize = 128;
const HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
/// Offset of the first detailed timing descriptor (the preferred mode).
const FIRST_DESCRIPTOR: usize = 54;

/// Why an EDID was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdidError {
    /// Shorter than a base block.
    TooShort(usize),
    /// The fixed header pattern is wrong.
    BadHeader,
    /// The base block's bytes do not sum to 0 modulo 256.
    BadChecksum,
    /// The first descriptor is not a detailed timing.
    NoPreferredTiming,
}

impl core::fmt::Display for EdidError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EdidError::TooShort(length) => {
                write!(f, "EDID of {length} bytes is shorter than a block")
            }
            EdidError::BadHeader => write!(f, "EDID header pattern is wrong"),
            EdidError::BadChecksum => write!(f, "EDID base block checksum is wrong"),
            EdidError::NoPreferredTiming => write!(f, "EDID has no preferred detailed timing"),
        }
    }
}

/// The preferred mode's active width and height.
pub fn preferred_resolution(edid: &[u8]) -> Result<(u32, u32), EdidError> {
    let block = edid
        .get(..BLOCK_SIZE)
        .ok_or(EdidError::TooShort(edid.len()))?;
    if block[..8] != HEADER {
        return Err(EdidError::BadHeader);
    }
    if block.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)) != 0 {
        return Err(EdidError::BadChecksum);
    }
    let descriptor = &block[FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + 18];
    if descriptor[0] == 0 && descriptor[1] == 0 {
        return Err(EdidError::NoPreferredTiming);
    }
    let width = u32::from(descriptor[2]) | (u32::from(descriptor[4] >> 4) << 8);
    let height = u32::from(descriptor[5]) | (u32::from(descriptor[7] >> 4) << 8);
    if width == 0 || height == 0 {
        return Err(EdidError::NoPreferredTiming);
    }
    Ok((width, height))
}

/// A base block that names `width` x `height` (at most 4095 each) as the
/// preferred mode at about 60 Hz.
pub fn base_block(width: u32, height: u32) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    block[..8].copy_from_slice(&HEADER);
    block[8..10].copy_from_slice(&[0x5a, 0xf0]); // manufacturer "VPO"
    block[18] = 1; // EDID 1.4
    block[19] = 4;
    block[20] = 0xa5; // digital input, 8 bits per colour, DisplayPort
    block[24] = 0x06; // RGB 4:4:4, preferred timing mode
    let (width, height) = (width.min(4095), height.min(4095));
    let (h_blank, v_blank) = (160u32, 30u32);
    let clock_10khz = (width + h_blank) * (height + v_blank) * 60 / 10_000;
    let descriptor = &mut block[FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + 18];
    descriptor[0..2].copy_from_slice(&(clock_10khz.clamp(1, 0xffff) as u16).to_le_bytes());
    descriptor[2] = width as u8;
    descriptor[3] = h_blank as u8;
    descriptor[4] = (((width >> 8) as u8) << 4) | ((h_blank >> 8) as u8);
    descriptor[5] = height as u8;
    descriptor[6] = v_blank as u8;
    descriptor[7] = (((height >> 8) as u8) << 4) | ((v_blank >> 8) as u8);
    descriptor[8] = 48; // horizontal front porch
    descriptor[9] = 32; // horizontal sync width
    descriptor[10] = (3 << 4) | 5; // vertical front porch 3, sync 5
    descriptor[17] = 0x18; // digital separate sync
    let sum = block[..BLOCK_SIZE - 1]
        .iter()
        .fold(0u8, |sum, &byte| sum.wrapping_add(byte));
    block[BLOCK_SIZE - 1] = 0u8.wrapping_sub(sum);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_block_round_trips_its_resolution() {
        for (width, height) in [(1920, 1080), (1280, 720), (800, 600), (4095, 2160)] {
            assert_eq!(
                preferred_resolution(&base_block(width, height)),
                Ok((width, height))
            );
        }
    }

    #[test]
    fn a_real_monitor_preferred_timing_decodes() {
        // First detailed timing of a 1920x1080@60 monitor: 148.5 MHz,
        // h active 0x780, blank 0x118; v active 0x438, blank 0x2d.
        let mut block = base_block(1, 1);
        block[54..72].copy_from_slice(&[
            0x02, 0x3a, 0x80, 0x18, 0x71, 0x38, 0x2d, 0x40, 0x58, 0x2c, 0x45, 0x00, 0x56, 0x50,
            0x21, 0x00, 0x00, 0x1e,
        ]);
        let sum = block[..127]
            .iter()
            .fold(0u8, |sum, &byte| sum.wrapping_add(byte));
        block[127] = 0u8.wrapping_sub(sum);
        assert_eq!(preferred_resolution(&block), Ok((1920, 1080)));
    }

    #[test]
    fn broken_edids_are_named() {
        assert_eq!(preferred_resolution(&[0; 10]), Err(EdidError::TooShort(10)));
        let mut block = base_block(800, 600);
        block[3] = 0;
        assert_eq!(preferred_resolution(&block), Err(EdidError::BadHeader));
        let mut block = base_block(800, 600);
        block[100] ^= 1;
        assert_eq!(preferred_resolution(&block), Err(EdidError::BadChecksum));
        let mut block = [0u8; 128];
        block[..8].copy_from_slice(&HEADER);
        let sum = block.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
        block[127] = 0u8.wrapping_sub(sum);
        assert_eq!(
            preferred_resolution(&block),
            Err(EdidError::NoPreferredTiming)
        );
    }
}
