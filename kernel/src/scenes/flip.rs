//! The line the guest prints for every frame it flips, and its parser: all
//! the host needs to redraw the frame and compare it with the capture.
//!
//! `flip conn=<N> seq=<K> scene=<name> frame=<f> size=<W>x<H> bpp=<b>
//! name=<connector> uptime_ms=<ms> flips=<n> rtt_us=<us> heap=<bytes>
//! grants=<n>`, all on one line. The connector's name is percent-encoded
//! (bytes other than ASCII letters, digits and `-._~:/+@,` become `%XX`), so
//! every value is one word.

use super::scene::{connector_name, Frame, Scene, Status, UnknownScene};
use super::text::Label;
use core::fmt;
use core::str::FromStr;

/// What the guest prints for a flipped frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlipLine {
    /// Connector index within the vdispl device.
    pub connector: u32,
    /// Sequence number of the flip on that connector, from 0.
    pub seq: u64,
    /// The scene drawn.
    pub scene: Scene,
    /// Frame number within the scene.
    pub frame: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel of the buffer (32 for XRGB8888, 16 for RGB565).
    pub bpp: u32,
    /// The connector's name, as far as scenes show it.
    pub name: Label,
    /// The live figures the frame was drawn with.
    pub status: Status,
    /// Input events the connector had received when the frame was drawn
    /// (printed as `inputs=N` when not 0): the paint scene draws the first
    /// `inputs` events of the connector's input.
    pub inputs: u32,
}

/// Why a line is not a flip line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlipLineError {
    /// The line does not start with `flip `.
    NotAFlipLine,
    /// A field is missing.
    Missing(&'static str),
    /// A field appears twice.
    Repeated(&'static str),
    /// A word is not one of the fields (or not `key=value`).
    Unknown(Label),
    /// A field's value does not parse.
    BadValue(&'static str),
    /// `scene=` names no scene.
    UnknownScene(UnknownScene),
}

impl fmt::Display for FlipLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlipLineError::NotAFlipLine => write!(f, "not a flip line (no leading \"flip \")"),
            FlipLineError::Missing(key) => write!(f, "flip line has no {key}="),
            FlipLineError::Repeated(key) => write!(f, "flip line has {key}= twice"),
            FlipLineError::Unknown(word) => {
                write!(f, "flip line has an unknown word {:?}", word.as_str())
            }
            FlipLineError::BadValue(key) => write!(f, "flip line has a bad {key}= value"),
            FlipLineError::UnknownScene(error) => write!(f, "flip line: {error}"),
        }
    }
}

impl FlipLine {
    /// The frame to draw to reproduce this one, for scenes without input
    /// (the paint scene needs its connector's events: see [`FlipLine::inputs`]).
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            scene: self.scene,
            number: self.frame,
            connector: self.name.as_str(),
            status: self.status,
            input: &[],
        }
    }

    /// The flip line inside a console line that may carry a prefix (a log
    /// level, a domain name): `None` if there is none.
    pub fn find_in(line: &str) -> Option<Result<FlipLine, FlipLineError>> {
        let start = line.find("flip conn=")?;
        Some(line[start..].trim_end().parse())
    }
}

/// Bytes a connector name carries unescaped.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/+@,".contains(&byte)
}

struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0.as_bytes() {
            if is_plain(byte) {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// Undoes [`Escaped`]; `None` for a bad escape, bad UTF-8 or a name longer
/// than a [`Label`] holds.
fn unescape(value: &str) -> Option<Label> {
    let mut bytes = [0u8; 64];
    let mut len = 0;
    let mut input = value.as_bytes().iter();
    while let Some(&byte) = input.next() {
        let decoded = if byte == b'%' {
            let high = char::from(*input.next()?).to_digit(16)?;
            let low = char::from(*input.next()?).to_digit(16)?;
            (high * 16 + low) as u8
        } else if is_plain(byte) {
            byte
        } else {
            return None;
        };
        *bytes.get_mut(len)? = decoded;
        len += 1;
    }
    Some(Label::from_str_truncated(
        core::str::from_utf8(&bytes[..len]).ok()?,
    ))
}

impl fmt::Display for FlipLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flip conn={} seq={} scene={} frame={} size={}x{} bpp={} name={} \
             uptime_ms={} flips={} rtt_us={} heap={} grants={}",
            self.connector,
            self.seq,
            self.scene,
            self.frame,
            self.width,
            self.height,
            self.bpp,
            Escaped(connector_name(self.name.as_str())),
            self.status.uptime_ms,
            self.status.flips,
            self.status.flip_rtt_us,
            self.status.heap_bytes,
            self.status.grants,
        )?;
        if self.inputs > 0 {
            write!(f, " inputs={}", self.inputs)?;
        }
        Ok(())
    }
}

/// Stores `value` parsed by `parse` into `slot`, once.
fn set<T>(
    slot: &mut Option<T>,
    key: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<(), FlipLineError> {
    if slot.is_some() {
        return Err(FlipLineError::Repeated(key));
    }
    *slot = Some(parse(value).ok_or(FlipLineError::BadValue(key))?);
    Ok(())
}

fn number<T: FromStr>(value: &str) -> Option<T> {
    // `u32::from_str` takes a leading `+`; the printed form never has one.
    if value.starts_with('+') {
        return None;
    }
    value.parse().ok()
}

fn size(value: &str) -> Option<(u32, u32)> {
    let (width, height) = value.split_once('x')?;
    Some((number(width)?, number(height)?))
}

fn required<T>(slot: Option<T>, key: &'static str) -> Result<T, FlipLineError> {
    slot.ok_or(FlipLineError::Missing(key))
}

impl FromStr for FlipLine {
    type Err = FlipLineError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("flip") {
            return Err(FlipLineError::NotAFlipLine);
        }
        let mut connector = None;
        let mut seq = None;
        let mut scene = None;
        let mut frame = None;
        let mut dimensions = None;
        let mut bpp = None;
        let mut name = None;
        let mut uptime_ms = None;
        let mut flips = None;
        let mut flip_rtt_us = None;
        let mut heap_bytes = None;
        let mut grants = None;
        let mut inputs = None;
        for word in words {
            let unknown = || FlipLineError::Unknown(Label::from_str_truncated(word));
            let (key, value) = word.split_once('=').ok_or_else(unknown)?;
            match key {
                "conn" => set(&mut connector, "conn", value, number)?,
                "seq" => set(&mut seq, "seq", value, number)?,
                "scene" => {
                    if scene.is_some() {
                        return Err(FlipLineError::Repeated("scene"));
                    }
                    scene = Some(value.parse().map_err(FlipLineError::UnknownScene)?);
                }
                "frame" => set(&mut frame, "frame", value, number)?,
                "size" => set(&mut dimensions, "size", value, size)?,
                "bpp" => set(&mut bpp, "bpp", value, number)?,
                "name" => set(&mut name, "name", value, unescape)?,
                "uptime_ms" => set(&mut uptime_ms, "uptime_ms", value, number)?,
                "flips" => set(&mut flips, "flips", value, number)?,
                "rtt_us" => set(&mut flip_rtt_us, "rtt_us", value, number)?,
                "heap" => set(&mut heap_bytes, "heap", value, number)?,
                "grants" => set(&mut grants, "grants", value, number)?,
                "inputs" => set(&mut inputs, "inputs", value, number)?,
                _ => return Err(unknown()),
            }
        }
        let (width, height) = required(dimensions, "size")?;
        Ok(FlipLine {
            connector: required(connector, "conn")?,
            seq: required(seq, "seq")?,
            scene: required(scene, "scene")?,
            frame: required(frame, "frame")?,
            width,
            height,
            bpp: required(bpp, "bpp")?,
            name: required(name, "name")?,
            status: Status {
                uptime_ms: required(uptime_ms, "uptime_ms")?,
                flips: required(flips, "flips")?,
                flip_rtt_us: required(flip_rtt_us, "rtt_us")?,
                heap_bytes: required(heap_bytes, "heap")?,
                grants: required(grants, "grants")?,
            },
            inputs: inputs.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn sample() -> FlipLine {
        FlipLine {
            connector: 1,
            seq: 42,
            scene: Scene::Status,
            frame: 7,
            width: 1280,
            height: 720,
            bpp: 32,
            name: Label::from_str_truncated("1"),
            status: Status {
                uptime_ms: 12_345,
                flips: 42,
                flip_rtt_us: 850,
                heap_bytes: 1_048_576,
                grants: 24,
            },
            inputs: 0,
        }
    }

    #[test]
    fn a_paint_line_carries_its_input_count() {
        let mut line = sample();
        line.scene = Scene::Paint;
        line.inputs = 17;
        let text = line.to_string();
        assert!(text.ends_with(" grants=24 inputs=17"), "{text}");
        assert_eq!(text.parse::<FlipLine>(), Ok(line));
        assert_eq!(
            (text + " inputs=3").parse::<FlipLine>(),
            Err(FlipLineError::Repeated("inputs"))
        );
    }

    #[test]
    fn printed_line_parses_back() {
        let line = sample();
        let text = line.to_string();
        assert_eq!(
            text,
            "flip conn=1 seq=42 scene=status frame=7 size=1280x720 bpp=32 name=1 \
             uptime_ms=12345 flips=42 rtt_us=850 heap=1048576 grants=24"
        );
        assert_eq!(text.parse::<FlipLine>(), Ok(line));
        assert_eq!(line.frame().connector, "1");
        assert_eq!(line.frame().number, 7);
    }

    #[test]
    fn names_with_spaces_and_symbols_round_trip() {
        for name in [
            "HDMI-A 1",
            "50%=half",
            "écran",
            "",
            "a\tb",
            "x".repeat(48).as_str(),
        ] {
            let mut line = sample();
            line.name = Label::from_str_truncated(name);
            let text = line.to_string();
            assert_eq!(text.split_ascii_whitespace().count(), 13, "{text}");
            assert_eq!(text.parse::<FlipLine>(), Ok(line), "{text}");
        }
        let mut line = sample();
        line.name = Label::from_str_truncated(&"y".repeat(60));
        let parsed: FlipLine = line.to_string().parse().unwrap();
        assert_eq!(parsed.name.as_str(), "y".repeat(MAX_NAME));
    }

    const MAX_NAME: usize = super::super::MAX_CONNECTOR_NAME;

    #[test]
    fn found_behind_a_prefix() {
        let text = std::format!("(d1) [INFO] {}\r", sample());
        assert_eq!(FlipLine::find_in(&text), Some(Ok(sample())));
        assert_eq!(FlipLine::find_in("(d1) frame conn=0 seq=1"), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let good = sample().to_string();
        assert_eq!(
            "frame conn=0".parse::<FlipLine>(),
            Err(FlipLineError::NotAFlipLine)
        );
        assert_eq!(
            good.replace(" bpp=32", "").parse::<FlipLine>(),
            Err(FlipLineError::Missing("bpp"))
        );
        assert_eq!(
            std::format!("{good} seq=3").parse::<FlipLine>(),
            Err(FlipLineError::Repeated("seq"))
        );
        assert_eq!(
            std::format!("{good} color=red").parse::<FlipLine>(),
            Err(FlipLineError::Unknown(Label::from_str_truncated(
                "color=red"
            )))
        );
        assert_eq!(
            std::format!("{good} extra").parse::<FlipLine>(),
            Err(FlipLineError::Unknown(Label::from_str_truncated("extra")))
        );
        for (from, to, key) in [
            ("size=1280x720", "size=1280", "size"),
            ("size=1280x720", "size=1280x-1", "size"),
            ("seq=42", "seq=+42", "seq"),
            ("frame=7", "frame=seven", "frame"),
            ("name=1", "name=%4", "name"),
            ("name=1", "name=%FF", "name"),
            ("name=1", "name=a=b", "name"),
        ] {
            assert_eq!(
                good.replace(from, to).parse::<FlipLine>(),
                Err(FlipLineError::BadValue(key)),
                "{to}"
            );
        }
        let error = good
            .replace("scene=status", "scene=clock")
            .parse::<FlipLine>()
            .unwrap_err();
        assert!(
            error.to_string().contains("unknown scene \"clock\""),
            "{error}"
        );
    }
}
