//! The test pattern: what the KMS client draws into frame `n` of connector `c`, computed from
//! (connector index, frame number, width, height, pixel format) alone, so that `cargo xtask
//! test` can compute every captured frame again on the host and compare it pixel for pixel.
//!
//! This is the one place the formula is written down. For pixel (x, y) of a `width` x `height`
//! frame number `n` (0 is the frame SETCRTC shows, 1..=N the page flips) on connector `c`
//! (its index in DRM_IOCTL_MODE_GETRESOURCES's connector list), all arithmetic mod 256:
//!
//! ```text
//! on the border (x = 0, y = 0, x = width - 1 or y = height - 1): R = G = B = 255
//! elsewhere:  R = x + 5n + 97c
//!             G = y + 11n + 53c
//!             B = (x XOR y) + 29n + 151c
//! everywhere: A = x + 2y + 7n     (alpha, or the X padding bits: a display ignores it)
//! ```
//!
//! Encoded per format (little endian words, as DRM defines them):
//! - XR24, AR24: bytes B, G, R, A. RG24: bytes B, G, R.
//! - RG16: `R>>3 << 11 | G>>2 << 5 | B>>3`.
//! - XR12, AR12: `A>>4 << 12 | R>>4 << 8 | G>>4 << 4 | B>>4`.
//! - XR15, AR15: `A>>7 << 15 | R>>3 << 10 | G>>3 << 5 | B>>3`.
//! - YUYV, per pixel pair (x even, x + 1): Y0 = 16 + R(x) mod 220, Y1 = 16 + R(x + 1) mod 220,
//!   U = 16 + G(x) mod 225, V = 16 + B(x) mod 225 (every sample inside BT.601's limited range).
//!
//! The padding bits (X) carry A on purpose: a backend that shows them, or that reads a row at
//! the wrong pitch, a frame of the wrong number or another connector's frame, differs.

use crate::format::Format;

/// Which frame to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Connector index (position in the card's connector list).
    pub connector: u32,
    /// Frame number: 0 is shown by SETCRTC, 1..=N by the page flips.
    pub number: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: Format,
}

/// Why a frame could not be drawn into a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// The pitch is shorter than a row.
    PitchTooShort {
        /// The pitch given.
        pitch: usize,
        /// Bytes of one row.
        row: usize,
    },
    /// The buffer is shorter than `pitch * (height - 1) + row`.
    BufferTooShort {
        /// Its length.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// YUYV needs an even width.
    OddYuyvWidth(u32),
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::PitchTooShort { pitch, row } => {
                write!(f, "pitch {pitch} is shorter than a row of {row} bytes")
            }
            PatternError::BufferTooShort { len, needed } => {
                write!(f, "buffer of {len} bytes, the frame needs {needed}")
            }
            PatternError::OddYuyvWidth(width) => write!(f, "YUYV frame of odd width {width}"),
        }
    }
}

impl std::error::Error for PatternError {}

impl Frame {
    /// The pixel (x, y) as 8-bit R, G, B, A, before encoding.
    pub fn rgba(&self, x: u32, y: u32) -> [u8; 4] {
        let (n, c) = (self.number, self.connector);
        let alpha = x.wrapping_add(2 * y).wrapping_add(7 * n) as u8;
        if x == 0 || y == 0 || x + 1 == self.width || y + 1 == self.height {
            return [255, 255, 255, alpha];
        }
        let red = x.wrapping_add(5 * n).wrapping_add(97 * c) as u8;
        let green = y.wrapping_add(11 * n).wrapping_add(53 * c) as u8;
        let blue = (x ^ y).wrapping_add(29 * n).wrapping_add(151 * c) as u8;
        [red, green, blue, alpha]
    }

    /// Bytes of one row without padding.
    pub fn row_bytes(&self) -> usize {
        self.format.row_bytes(self.width)
    }

    /// Writes row `y` (exactly [`Frame::row_bytes`] bytes) into `row`.
    fn write_row(&self, y: u32, row: &mut [u8]) {
        match self.format {
            Format::Xrgb8888 | Format::Argb8888 => {
                for (x, pixel) in (0..).zip(row.chunks_exact_mut(4)) {
                    let [r, g, b, a] = self.rgba(x, y);
                    pixel.copy_from_slice(&[b, g, r, a]);
                }
            }
            Format::Rgb888 => {
                for (x, pixel) in (0..).zip(row.chunks_exact_mut(3)) {
                    let [r, g, b, _] = self.rgba(x, y);
                    pixel.copy_from_slice(&[b, g, r]);
                }
            }
            Format::Yuyv => {
                for (pair, bytes) in (0..).zip(row.chunks_exact_mut(4)) {
                    let [r0, g0, b0, _] = self.rgba(2 * pair, y);
                    let [r1, _, _, _] = self.rgba(2 * pair + 1, y);
                    bytes.copy_from_slice(&[
                        16 + r0 % 220,
                        16 + g0 % 225,
                        16 + r1 % 220,
                        16 + b0 % 225,
                    ]);
                }
            }
            _ => {
                for (x, pixel) in (0..).zip(row.chunks_exact_mut(2)) {
                    let word = self.word16(self.rgba(x, y));
                    pixel.copy_from_slice(&word.to_le_bytes());
                }
            }
        }
    }

    /// A pixel of a 16-bit RGB format.
    fn word16(&self, [r, g, b, a]: [u8; 4]) -> u16 {
        let [r, g, b, a] = [r, g, b, a].map(u16::from);
        match self.format {
            Format::Rgb565 => (r >> 3) << 11 | (g >> 2) << 5 | b >> 3,
            Format::Xrgb4444 | Format::Argb4444 => {
                (a >> 4) << 12 | (r >> 4) << 8 | (g >> 4) << 4 | b >> 4
            }
            _ => (a >> 7) << 15 | (r >> 3) << 10 | (g >> 3) << 5 | b >> 3,
        }
    }

    /// Draws the frame into `buffer`, rows `pitch` bytes apart; bytes between rows are left
    /// as they are.
    pub fn fill(&self, pitch: usize, buffer: &mut [u8]) -> Result<(), PatternError> {
        let row = self.row_bytes();
        if pitch < row {
            return Err(PatternError::PitchTooShort { pitch, row });
        }
        if self.format == Format::Yuyv && !self.width.is_multiple_of(2) {
            return Err(PatternError::OddYuyvWidth(self.width));
        }
        if self.height == 0 || row == 0 {
            return Ok(());
        }
        let needed = pitch * (self.height as usize - 1) + row;
        if buffer.len() < needed {
            return Err(PatternError::BufferTooShort {
                len: buffer.len(),
                needed,
            });
        }
        for y in 0..self.height {
            let start = y as usize * pitch;
            self.write_row(y, &mut buffer[start..start + row]);
        }
        Ok(())
    }

    /// The frame with rows packed (pitch = [`Frame::row_bytes`]).
    pub fn packed(&self) -> Result<Vec<u8>, PatternError> {
        let mut bytes = vec![0; self.row_bytes() * self.height as usize];
        self.fill(self.row_bytes(), &mut bytes)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(format: Format) -> Frame {
        Frame {
            connector: 1,
            number: 3,
            width: 6,
            height: 4,
            format,
        }
    }

    #[test]
    fn the_formula_as_documented() {
        let frame = frame(Format::Xrgb8888);
        // Border.
        assert_eq!(frame.rgba(0, 2), [255, 255, 255, 4 + 21]);
        assert_eq!(frame.rgba(5, 1), [255, 255, 255, (5 + 2 + 21) as u8]);
        // Inside: R = x + 5n + 97c, G = y + 11n + 53c, B = (x ^ y) + 29n + 151c, A = x + 2y + 7n.
        assert_eq!(
            frame.rgba(2, 1),
            [
                (2 + 15 + 97) as u8,
                (1 + 33 + 53) as u8,
                ((2 ^ 1) + 87 + 151) as u8,
                (2 + 2 + 21) as u8
            ]
        );
    }

    #[test]
    fn encodings_follow_drm_fourcc() {
        let [r, g, b, a] = frame(Format::Xrgb8888).rgba(2, 1);
        let at = |format: Format| {
            let bytes = frame(format).packed().unwrap();
            let start = frame(format).row_bytes() + 2 * format.bpp() as usize / 8;
            bytes[start..start + format.bpp() as usize / 8].to_vec()
        };
        assert_eq!(at(Format::Xrgb8888), [b, g, r, a]);
        assert_eq!(at(Format::Argb8888), [b, g, r, a]);
        assert_eq!(at(Format::Rgb888), [b, g, r]);
        let word = |bytes: Vec<u8>| u16::from_le_bytes([bytes[0], bytes[1]]);
        assert_eq!(word(at(Format::Rgb565)) >> 11, u16::from(r >> 3));
        assert_eq!((word(at(Format::Rgb565)) >> 5) & 0x3f, u16::from(g >> 2));
        assert_eq!(word(at(Format::Xrgb4444)) >> 12, u16::from(a >> 4));
        assert_eq!(word(at(Format::Argb4444)) & 0xf, u16::from(b >> 4));
        assert_eq!(word(at(Format::Xrgb1555)) >> 15, u16::from(a >> 7));
        assert_eq!((word(at(Format::Argb1555)) >> 10) & 0x1f, u16::from(r >> 3));
        // YUYV: the pair (2, 3) of row 1.
        let yuyv = frame(Format::Yuyv).packed().unwrap();
        let [_, _, _, _] = frame(Format::Yuyv).rgba(3, 1);
        let r1 = frame(Format::Yuyv).rgba(3, 1)[0];
        assert_eq!(
            yuyv[12 + 4..12 + 8],
            [16 + r % 220, 16 + g % 225, 16 + r1 % 220, 16 + b % 225]
        );
    }

    #[test]
    fn rows_land_at_the_pitch_and_padding_is_untouched() {
        let frame = frame(Format::Rgb888);
        let pitch = frame.row_bytes() + 5;
        let mut buffer = vec![0xaa; pitch * 4];
        frame.fill(pitch, &mut buffer).unwrap();
        let packed = frame.packed().unwrap();
        for y in 0..4 {
            let row = frame.row_bytes();
            assert_eq!(
                buffer[y * pitch..y * pitch + row],
                packed[y * row..(y + 1) * row]
            );
            assert!(buffer[y * pitch + row..(y + 1) * pitch]
                .iter()
                .all(|&b| b == 0xaa));
        }
        assert_eq!(
            frame.fill(3, &mut buffer),
            Err(PatternError::PitchTooShort { pitch: 3, row: 18 })
        );
        assert_eq!(
            frame.fill(pitch, &mut buffer[..10]),
            Err(PatternError::BufferTooShort {
                len: 10,
                needed: pitch * 3 + 18
            })
        );
        let odd = Frame {
            width: 5,
            ..self::frame(Format::Yuyv)
        };
        assert_eq!(odd.packed(), Err(PatternError::OddYuyvWidth(5)));
    }

    #[test]
    fn frames_and_connectors_differ() {
        let base = frame(Format::Rgb565);
        let next = Frame { number: 4, ..base };
        let other = Frame {
            connector: 0,
            ..base
        };
        assert_ne!(base.packed().unwrap(), next.packed().unwrap());
        assert_ne!(base.packed().unwrap(), other.packed().unwrap());
    }
}
