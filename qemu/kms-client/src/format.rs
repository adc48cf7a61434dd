//! The pixel formats Linux 6.1's xen-drm-front offers on its primary plane (`plane_formats`
//! in drivers/gpu/drm/xen/xen_drm_front_conn.c), by their DRM FOURCC codes
//! (include/uapi/drm/drm_fourcc.h).

use std::fmt;
use std::str::FromStr;

/// A DRM pixel format the client can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// `DRM_FORMAT_RGB565` ("RG16"): 16 bits, R 5 G 6 B 5, little endian.
    Rgb565,
    /// `DRM_FORMAT_RGB888` ("RG24"): 24 bits, bytes B, G, R.
    Rgb888,
    /// `DRM_FORMAT_XRGB8888` ("XR24"): 32 bits, bytes B, G, R, X.
    Xrgb8888,
    /// `DRM_FORMAT_ARGB8888` ("AR24"): 32 bits, bytes B, G, R, A.
    Argb8888,
    /// `DRM_FORMAT_XRGB4444` ("XR12"): 16 bits, X 4 R 4 G 4 B 4, little endian.
    Xrgb4444,
    /// `DRM_FORMAT_ARGB4444` ("AR12"): 16 bits, A 4 R 4 G 4 B 4, little endian.
    Argb4444,
    /// `DRM_FORMAT_XRGB1555` ("XR15"): 16 bits, X 1 R 5 G 5 B 5, little endian.
    Xrgb1555,
    /// `DRM_FORMAT_ARGB1555` ("AR15"): 16 bits, A 1 R 5 G 5 B 5, little endian.
    Argb1555,
    /// `DRM_FORMAT_YUYV` ("YUYV"): packed 4:2:2, bytes Y0, U, Y1, V per two pixels.
    Yuyv,
}

impl Format {
    /// Every format xen-drm-front offers, in its driver's order.
    pub const ALL: [Format; 9] = [
        Format::Rgb565,
        Format::Rgb888,
        Format::Xrgb8888,
        Format::Argb8888,
        Format::Xrgb4444,
        Format::Argb4444,
        Format::Xrgb1555,
        Format::Argb1555,
        Format::Yuyv,
    ];

    /// The FOURCC's four characters, as DRM names it (`XR24`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Format::Rgb565 => "RG16",
            Format::Rgb888 => "RG24",
            Format::Xrgb8888 => "XR24",
            Format::Argb8888 => "AR24",
            Format::Xrgb4444 => "XR12",
            Format::Argb4444 => "AR12",
            Format::Xrgb1555 => "XR15",
            Format::Argb1555 => "AR15",
            Format::Yuyv => "YUYV",
        }
    }

    /// The FOURCC as DRM_IOCTL_MODE_ADDFB2 takes it: the code's bytes, little endian.
    pub fn fourcc(self) -> u32 {
        let code = self.code().as_bytes();
        u32::from_le_bytes([code[0], code[1], code[2], code[3]])
    }

    /// Bits per pixel, as DRM_IOCTL_MODE_CREATE_DUMB takes them.
    pub fn bpp(self) -> u32 {
        match self {
            Format::Xrgb8888 | Format::Argb8888 => 32,
            Format::Rgb888 => 24,
            _ => 16,
        }
    }

    /// Bytes of a row of `width` pixels without padding (Linux's dumb buffer pitch).
    pub fn row_bytes(self, width: u32) -> usize {
        width as usize * self.bpp() as usize / 8
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parses a FOURCC code (`XR24`, `RG16`, ...).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.code() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Format::ALL.iter().map(|f| f.code()).collect();
                format!("unknown pixel format {text:?} (known: {})", known.join(" "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formats_are_those_the_backend_must_accept() {
        let fourccs: Vec<u32> = Format::ALL.iter().map(|f| f.fourcc()).collect();
        assert_eq!(fourccs, drivers::xen::displif::FRONTEND_FORMATS);
        for format in Format::ALL {
            assert_eq!(
                Some(format.bpp()),
                drivers::xen::displif::format_bpp(format.fourcc())
            );
            assert_eq!(format.code().parse::<Format>(), Ok(format));
        }
        assert!("XB24".parse::<Format>().is_err());
        assert_eq!(Format::Xrgb8888.fourcc(), 0x3432_5258);
    }
}
