//! The reader's options, from the DomU's kernel command line (`/proc/cmdline`; the xl config's
//! `extra=`): `reader.devices=<N>`, the input devices to wait for and read (default 3, at least
//! 1), and `reader.end-key=<code>`, the key whose release on every device that has it ends the
//! reading (default 1, `KEY_ESC`). No module is named `reader`, so the kernel leaves these
//! words to init.

use crate::codes::{KEY_ESC, KEY_MAX};

/// Devices to wait for when `reader.devices=` is absent: a keyboard, a pointer and a
/// multi-touch device.
pub const DEFAULT_DEVICES: usize = 3;

/// What the reader is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Input devices to wait for.
    pub devices: usize,
    /// The key whose release ends the reading.
    pub end_key: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: DEFAULT_DEVICES,
            end_key: KEY_ESC,
        }
    }
}

/// Parses the options out of a kernel command line; other words are ignored.
pub fn parse(cmdline: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for word in cmdline.split_whitespace() {
        if let Some(value) = word.strip_prefix("reader.devices=") {
            options.devices = value
                .parse()
                .ok()
                .filter(|&devices| devices >= 1)
                .ok_or_else(|| format!("reader.devices={value}: not a number of at least 1"))?;
        } else if let Some(value) = word.strip_prefix("reader.end-key=") {
            options.end_key = value
                .parse()
                .ok()
                .filter(|&code| (1..=KEY_MAX).contains(&code))
                .ok_or_else(|| {
                    format!("reader.end-key={value}: not a key code from 1 to {KEY_MAX}")
                })?;
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
            parse("console=hvc0 reader.devices=5 reader.end-key=28\n").unwrap(),
            Options {
                devices: 5,
                end_key: 28
            }
        );
        assert_eq!(
            parse("reader.devices=0").unwrap_err(),
            "reader.devices=0: not a number of at least 1"
        );
        assert!(parse("reader.devices=x").is_err());
        assert!(parse("reader.end-key=0").is_err());
        assert!(parse("reader.end-key=768").is_err());
    }
}
