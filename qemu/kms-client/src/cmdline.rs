//! The client's options, from the DomU's kernel command line (`/proc/cmdline`; the xl config's
//! `extra=`): `kms.format=<FOURCC>` (default `XR24`) and `kms.frames=<N>` page flips per
//! connector (default 8, at least 1). The kernel ignores dotted words it does not know, so they
//! reach only this client.

use crate::format::Format;

/// Page flips per connector when `kms.frames=` is absent.
pub const DEFAULT_FRAMES: u32 = 8;

/// What the client is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The pixel format of every framebuffer.
    pub format: Format,
    /// Page flips per connector after the frame SETCRTC shows.
    pub frames: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Xrgb8888,
            frames: DEFAULT_FRAMES,
        }
    }
}

/// Parses the options out of a kernel command line; other words are ignored.
pub fn parse(cmdline: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for word in cmdline.split_whitespace() {
        if let Some(value) = word.strip_prefix("kms.format=") {
            options.format = value.parse()?;
        } else if let Some(value) = word.strip_prefix("kms.frames=") {
            options.frames = value
                .parse()
                .ok()
                .filter(|&frames| frames >= 1)
                .ok_or_else(|| format!("kms.frames={value}: not a number of at least 1"))?;
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_dotted_words() {
        assert_eq!(parse("console=hvc0 quiet").unwrap(), Options::default());
        assert_eq!(
            parse("console=hvc0 kms.format=YUYV kms.frames=3\n").unwrap(),
            Options {
                format: Format::Yuyv,
                frames: 3
            }
        );
        assert!(parse("kms.format=XB24").is_err());
        assert!(parse("kms.frames=0").is_err());
        assert!(parse("kms.frames=x").is_err());
    }
}
