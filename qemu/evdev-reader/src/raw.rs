//! `struct input_event` as evdev hands it to a reader on a 64-bit kernel (arm64, x86-64):
//! the timestamp as `struct timeval` (seconds and microseconds, 8 bytes each), then the type
//! (u16), the code (u16) and the value (i32), in the machine's byte order: 24 bytes.

use crate::output::Event;

/// Bytes of one event.
pub const SIZE: usize = 24;

/// An event with its timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// Seconds of the timestamp.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
    /// The event.
    pub event: Event,
}

/// Decodes one event.
pub fn decode(bytes: &[u8; SIZE]) -> Stamped {
    let word = |at: usize| {
        let mut value = [0u8; 8];
        value.copy_from_slice(&bytes[at..at + 8]);
        i64::from_ne_bytes(value)
    };
    Stamped {
        seconds: word(0),
        microseconds: word(8),
        event: Event::new(
            u16::from_ne_bytes([bytes[16], bytes[17]]),
            u16::from_ne_bytes([bytes[18], bytes[19]]),
            i32::from_ne_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]),
        ),
    }
}

/// Decodes every whole event of `bytes` (what one read returned); a partial event at the end
/// is left out (evdev returns whole events only).
pub fn decode_all(bytes: &[u8]) -> impl Iterator<Item = Stamped> + '_ {
    bytes.chunks_exact(SIZE).map(|chunk| {
        let mut event = [0u8; SIZE];
        event.copy_from_slice(chunk);
        decode(&event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(seconds: i64, microseconds: i64, kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&seconds.to_ne_bytes());
        bytes.extend_from_slice(&microseconds.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.extend_from_slice(&value.to_ne_bytes());
        bytes
    }

    #[test]
    fn events_decode_field_by_field() {
        let mut bytes = encode(12, 345_678, 3, 0x39, -1);
        bytes.extend(encode(12, 345_678, 0, 0, 0));
        bytes.extend_from_slice(&[1, 2, 3]);
        let events: Vec<Stamped> = decode_all(&bytes).collect();
        assert_eq!(
            events,
            [
                Stamped {
                    seconds: 12,
                    microseconds: 345_678,
                    event: Event::new(3, 0x39, -1)
                },
                Stamped {
                    seconds: 12,
                    microseconds: 345_678,
                    event: Event::report()
                },
            ]
        );
    }
}
