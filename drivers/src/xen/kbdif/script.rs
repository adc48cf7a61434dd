//! Input event scripts: timed kbdif events as text, one per line, read by
//! the Dom0 input backend (`vkbd-backend --script FILE`), which plays them
//! to the frontends, and by the host's golden renderer, which redraws the
//! frames those events produced.
//!
//! ```text
//! # Comments start with `#`, anywhere on a line; blank lines are ignored.
//! <delay_ms> <event>          one event, <delay_ms> after the line before
//! device <unique-id>          the events below go to that device only
//! device *                    the events below go to every device (the default)
//! ```
//!
//! The delay counts milliseconds after the previous event line (the first
//! from the start of the script: the backend starts it when the device is
//! Connected), so the time of a line is the sum of the delays up to it.
//! A `device` line takes no time. The events, words separated by blanks:
//!
//! | event | kbdif event |
//! |---|---|
//! | `touch <contact> down <x> <y>` | multi-touch down at (x, y) |
//! | `touch <contact> move <x> <y>` | multi-touch motion to (x, y) |
//! | `touch <contact> up` | multi-touch up |
//! | `touch <contact> sync` | multi-touch sync (end of a set of events) |
//! | `touch <contact> shape <major> <minor>` | multi-touch shape |
//! | `touch <contact> orient <degrees>` | multi-touch orientation |
//! | `key <key> press`, `key <key> release` | key or button |
//! | `abs <x> <y> [<wheel>]` | absolute pointer position |
//! | `rel <dx> <dy> [<wheel>]` | relative pointer motion |
//!
//! A `<key>` is a name of linux/input-event-codes.h from [`KEY_NAMES`]
//! (`KEY_ESC`, `KEY_ENTER`, `KEY_C`, `BTN_LEFT`, ...) or a decimal code.
//! Numbers are decimal; coordinates and wheel steps may be negative.
//!
//! A device is named by its `unique-id` (xl.cfg `vkb=`), which the guest
//! takes as the display connector the device belongs to: an event line
//! under `device DP-1` reaches only the device whose unique-id is `DP-1`.
//! Every error names its line (from 1) and the word at fault.

use super::{InputEvent, Touch};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Key and button names a script may use, with their codes
/// (linux/input-event-codes.h).
pub const KEY_NAMES: &[(&str, u32)] = &[
    ("KEY_ESC", 1),
    ("KEY_1", 2),
    ("KEY_2", 3),
    ("KEY_3", 4),
    ("KEY_4", 5),
    ("KEY_5", 6),
    ("KEY_6", 7),
    ("KEY_7", 8),
    ("KEY_8", 9),
    ("KEY_9", 10),
    ("KEY_0", 11),
    ("KEY_MINUS", 12),
    ("KEY_EQUAL", 13),
    ("KEY_BACKSPACE", 14),
    ("KEY_TAB", 15),
    ("KEY_Q", 16),
    ("KEY_W", 17),
    ("KEY_E", 18),
    ("KEY_R", 19),
    ("KEY_T", 20),
    ("KEY_Y", 21),
    ("KEY_U", 22),
    ("KEY_I", 23),
    ("KEY_O", 24),
    ("KEY_P", 25),
    ("KEY_LEFTBRACE", 26),
    ("KEY_RIGHTBRACE", 27),
    ("KEY_ENTER", 28),
    ("KEY_LEFTCTRL", 29),
    ("KEY_A", 30),
    ("KEY_S", 31),
    ("KEY_D", 32),
    ("KEY_F", 33),
    ("KEY_G", 34),
    ("KEY_H", 35),
    ("KEY_J", 36),
    ("KEY_K", 37),
    ("KEY_L", 38),
    ("KEY_SEMICOLON", 39),
    ("KEY_APOSTROPHE", 40),
    ("KEY_GRAVE", 41),
    ("KEY_LEFTSHIFT", 42),
    ("KEY_BACKSLASH", 43),
    ("KEY_Z", 44),
    ("KEY_X", 45),
    ("KEY_C", 46),
    ("KEY_V", 47),
    ("KEY_B", 48),
    ("KEY_N", 49),
    ("KEY_M", 50),
    ("KEY_COMMA", 51),
    ("KEY_DOT", 52),
    ("KEY_SLASH", 53),
    ("KEY_RIGHTSHIFT", 54),
    ("KEY_LEFTALT", 56),
    ("KEY_SPACE", 57),
    ("KEY_CAPSLOCK", 58),
    ("KEY_F1", 59),
    ("KEY_F2", 60),
    ("KEY_F3", 61),
    ("KEY_F4", 62),
    ("KEY_F5", 63),
    ("KEY_F6", 64),
    ("KEY_F7", 65),
    ("KEY_F8", 66),
    ("KEY_F9", 67),
    ("KEY_F10", 68),
    ("KEY_HOME", 102),
    ("KEY_UP", 103),
    ("KEY_PAGEUP", 104),
    ("KEY_LEFT", 105),
    ("KEY_RIGHT", 106),
    ("KEY_END", 107),
    ("KEY_DOWN", 108),
    ("KEY_PAGEDOWN", 109),
    ("KEY_DELETE", 111),
    ("BTN_LEFT", 0x110),
    ("BTN_RIGHT", 0x111),
    ("BTN_MIDDLE", 0x112),
    ("BTN_TOUCH", 0x14a),
];

/// The code of a key name of [`KEY_NAMES`].
pub fn key_code(name: &str) -> Option<u32> {
    KEY_NAMES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, code)| code)
}

/// The name of a key code, if [`KEY_NAMES`] has one.
pub fn key_name(code: u32) -> Option<&'static str> {
    KEY_NAMES
        .iter()
        .find(|(_, known)| *known == code)
        .map(|&(name, _)| name)
}

/// Which devices an event goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every device (`device *`, and before any `device` line).
    Every,
    /// The device whose `unique-id` is this.
    Device(String),
}

impl Target {
    /// Whether a device with `unique_id` (`None`: it has none) gets the
    /// events of this target.
    pub fn reaches(&self, unique_id: Option<&str>) -> bool {
        match self {
            Target::Every => true,
            Target::Device(id) => unique_id == Some(id.as_str()),
        }
    }
}

/// One event line of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptEvent {
    /// Its line in the script, from 1.
    pub line: usize,
    /// Milliseconds after the previous event line.
    pub delay_ms: u32,
    /// Milliseconds from the start of the script: the delays up to here.
    pub at_ms: u64,
    /// The devices it goes to.
    pub target: Target,
    /// The event.
    pub event: InputEvent,
}

/// What is wrong with a script line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The first word is neither a delay in milliseconds nor `device`.
    BadDelay,
    /// The word after the delay names no event (`touch`, `key`, `abs`,
    /// `rel`).
    UnknownEvent,
    /// The word after `touch <contact>` is not `down`, `move`, `up`,
    /// `sync`, `shape` or `orient`.
    UnknownTouch,
    /// Not a key name of [`KEY_NAMES`] nor a decimal code.
    UnknownKey,
    /// The word after `key <key>` is neither `press` nor `release`.
    BadKeyAction,
    /// A number that does not parse or does not fit.
    BadNumber {
        /// What the number is (`x`, `contact`, ...).
        what: &'static str,
    },
    /// The line ends where a word was due (the error's word is the last
    /// one there).
    Missing {
        /// What was due.
        what: &'static str,
    },
    /// A word after a complete event or `device` line.
    ExtraWord,
}

/// Why a script cannot be read: the line (from 1), the word at fault and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The line, from 1.
    pub line: usize,
    /// The word at fault (for [`ErrorKind::Missing`], the last word there,
    /// empty for none).
    pub word: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, word) = (self.line, self.word.as_str());
        match &self.kind {
            ErrorKind::BadDelay => write!(
                f,
                "line {line}: {word:?} is neither a delay in milliseconds nor `device`"
            ),
            ErrorKind::UnknownEvent => write!(
                f,
                "line {line}: {word:?} is not an event (touch, key, abs, rel)"
            ),
            ErrorKind::UnknownTouch => write!(
                f,
                "line {line}: {word:?} is not a touch (down, move, up, sync, shape, orient)"
            ),
            ErrorKind::UnknownKey => write!(
                f,
                "line {line}: {word:?} is not a key name (KEY_*, BTN_*) nor a decimal code"
            ),
            ErrorKind::BadKeyAction => {
                write!(f, "line {line}: {word:?} is neither press nor release")
            }
            ErrorKind::BadNumber { what } => {
                write!(f, "line {line}: {word:?} is not a valid {what}")
            }
            ErrorKind::Missing { what } => {
                write!(
                    f,
                    "line {line}: the line ends after {word:?}; {what} is missing"
                )
            }
            ErrorKind::ExtraWord => {
                write!(f, "line {line}: {word:?} is one word too many")
            }
        }
    }
}

/// The words of one line, each error naming the line and the word.
struct Words<'a> {
    line: usize,
    words: core::str::SplitWhitespace<'a>,
    last: &'a str,
}

impl<'a> Words<'a> {
    fn error(&self, word: &str, kind: ErrorKind) -> ScriptError {
        ScriptError {
            line: self.line,
            word: word.to_string(),
            kind,
        }
    }

    fn next(&mut self, what: &'static str) -> Result<&'a str, ScriptError> {
        match self.words.next() {
            Some(word) => {
                self.last = word;
                Ok(word)
            }
            None => Err(self.error(self.last, ErrorKind::Missing { what })),
        }
    }

    fn optional(&mut self) -> Option<&'a str> {
        let word = self.words.next()?;
        self.last = word;
        Some(word)
    }

    fn number<T: core::str::FromStr>(&mut self, what: &'static str) -> Result<T, ScriptError> {
        let word = self.next(what)?;
        parse_number(word).ok_or_else(|| self.error(word, ErrorKind::BadNumber { what }))
    }

    fn optional_number<T: core::str::FromStr + Default>(
        &mut self,
        what: &'static str,
    ) -> Result<T, ScriptError> {
        match self.optional() {
            None => Ok(T::default()),
            Some(word) => {
                parse_number(word).ok_or_else(|| self.error(word, ErrorKind::BadNumber { what }))
            }
        }
    }

    fn end(&mut self) -> Result<(), ScriptError> {
        match self.words.next() {
            None => Ok(()),
            Some(word) => Err(self.error(word, ErrorKind::ExtraWord)),
        }
    }
}

/// A decimal number; a leading `+` is refused (the printed form has none),
/// a leading `-` only where `T` is signed.
fn parse_number<T: core::str::FromStr>(word: &str) -> Option<T> {
    if word.starts_with('+') {
        return None;
    }
    word.parse().ok()
}

fn parse_key(words: &mut Words<'_>) -> Result<u32, ScriptError> {
    let word = words.next("the key")?;
    key_code(word)
        .or_else(|| parse_number(word))
        .ok_or_else(|| words.error(word, ErrorKind::UnknownKey))
}

/// Parses one event (the words after the delay).
fn parse_event(words: &mut Words<'_>) -> Result<InputEvent, ScriptError> {
    let kind = words.next("the event")?;
    let event = match kind {
        "touch" => {
            let contact = words.number("contact")?;
            let what = words.next("the touch (down, move, up, sync, shape, orient)")?;
            let touch = match what {
                "down" => Touch::Down {
                    x: words.number("x")?,
                    y: words.number("y")?,
                },
                "move" => Touch::Motion {
                    x: words.number("x")?,
                    y: words.number("y")?,
                },
                "up" => Touch::Up,
                "sync" => Touch::Sync,
                "shape" => Touch::Shape {
                    major: words.number("major axis")?,
                    minor: words.number("minor axis")?,
                },
                "orient" => Touch::Orientation(words.number("orientation")?),
                other => return Err(words.error(other, ErrorKind::UnknownTouch)),
            };
            InputEvent::Touch { contact, touch }
        }
        "key" => {
            let keycode = parse_key(words)?;
            let pressed = match words.next("press or release")? {
                "press" => true,
                "release" => false,
                other => return Err(words.error(other, ErrorKind::BadKeyAction)),
            };
            InputEvent::Key { pressed, keycode }
        }
        "abs" => InputEvent::Position {
            x: words.number("x")?,
            y: words.number("y")?,
            rel_z: words.optional_number("wheel")?,
        },
        "rel" => InputEvent::Motion {
            rel_x: words.number("dx")?,
            rel_y: words.number("dy")?,
            rel_z: words.optional_number("wheel")?,
        },
        other => return Err(words.error(other, ErrorKind::UnknownEvent)),
    };
    words.end()?;
    Ok(event)
}

/// An input event in the script's words (`touch 0 down 100 200`,
/// `key KEY_ESC press`, `abs 640 360`, `rel -3 4 1`); [`Script::parse`]
/// reads it back.
pub struct EventWords<'a>(pub &'a InputEvent);

impl fmt::Display for EventWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            InputEvent::Touch { contact, touch } => {
                write!(f, "touch {contact} ")?;
                match touch {
                    Touch::Down { x, y } => write!(f, "down {x} {y}"),
                    Touch::Motion { x, y } => write!(f, "move {x} {y}"),
                    Touch::Up => f.write_str("up"),
                    Touch::Sync => f.write_str("sync"),
                    Touch::Shape { major, minor } => write!(f, "shape {major} {minor}"),
                    Touch::Orientation(degrees) => write!(f, "orient {degrees}"),
                }
            }
            InputEvent::Key { pressed, keycode } => {
                let action = if pressed { "press" } else { "release" };
                match key_name(keycode) {
                    Some(name) => write!(f, "key {name} {action}"),
                    None => write!(f, "key {keycode} {action}"),
                }
            }
            InputEvent::Position { x, y, rel_z } => {
                write!(f, "abs {x} {y}")?;
                if rel_z != 0 {
                    write!(f, " {rel_z}")?;
                }
                Ok(())
            }
            InputEvent::Motion {
                rel_x,
                rel_y,
                rel_z,
            } => {
                write!(f, "rel {rel_x} {rel_y}")?;
                if rel_z != 0 {
                    write!(f, " {rel_z}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ScriptEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.delay_ms, EventWords(&self.event))
    }
}

/// A parsed script: its event lines in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    events: Vec<ScriptEvent>,
}

impl Script {
    /// Reads a script (see the module documentation); the first bad line
    /// is the error.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut events = Vec::new();
        let mut at_ms = 0u64;
        let mut target = Target::Every;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let mut words = Words {
                line,
                words: content.split_whitespace(),
                last: "",
            };
            let Some(first) = words.optional() else {
                continue;
            };
            if first == "device" {
                let name = words.next("the device's unique-id, or *")?;
                target = match name {
                    "*" => Target::Every,
                    name => Target::Device(name.to_string()),
                };
                words.end()?;
                continue;
            }
            let delay_ms: u32 =
                parse_number(first).ok_or_else(|| words.error(first, ErrorKind::BadDelay))?;
            // u32 delays cannot add up past u64 within any text that fits in memory.
            at_ms = at_ms.saturating_add(u64::from(delay_ms));
            let event = parse_event(&mut words)?;
            events.push(ScriptEvent {
                line,
                delay_ms,
                at_ms,
                target: target.clone(),
                event,
            });
        }
        Ok(Script { events })
    }

    /// Every event line, in order.
    pub fn events(&self) -> &[ScriptEvent] {
        &self.events
    }

    /// The event lines a device whose `unique-id` is `unique_id` (`None`:
    /// it has none) gets, in order.
    pub fn for_device<'s>(
        &'s self,
        unique_id: Option<&'s str>,
    ) -> impl Iterator<Item = &'s ScriptEvent> + 's {
        self.events
            .iter()
            .filter(move |event| event.target.reaches(unique_id))
    }

    /// Milliseconds from the start to the last event.
    pub fn duration_ms(&self) -> u64 {
        self.events.last().map_or(0, |event| event.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn every_kind() -> Vec<InputEvent> {
        let touch = |contact, touch| InputEvent::Touch { contact, touch };
        vec![
            touch(0, Touch::Down { x: 100, y: 200 }),
            touch(1, Touch::Motion { x: 120, y: 210 }),
            touch(0, Touch::Up),
            touch(0, Touch::Sync),
            touch(3, Touch::Shape { major: 9, minor: 4 }),
            touch(2, Touch::Orientation(-90)),
            InputEvent::Key {
                pressed: true,
                keycode: 28,
            },
            InputEvent::Key {
                pressed: false,
                keycode: 46,
            },
            InputEvent::Key {
                pressed: true,
                keycode: 0x14a,
            },
            // No name in the table: written as its number.
            InputEvent::Key {
                pressed: false,
                keycode: 240,
            },
            InputEvent::Position {
                x: 640,
                y: 360,
                rel_z: 0,
            },
            InputEvent::Position {
                x: 1,
                y: 2,
                rel_z: -1,
            },
            InputEvent::Motion {
                rel_x: -3,
                rel_y: 4,
                rel_z: 0,
            },
            InputEvent::Motion {
                rel_x: 0,
                rel_y: -7,
                rel_z: 2,
            },
        ]
    }

    #[test]
    fn every_event_kind_round_trips() {
        let events = every_kind();
        let mut text = String::new();
        for (index, event) in events.iter().enumerate() {
            text += &format!("{} {}\n", index * 5, EventWords(event));
        }
        let script = Script::parse(&text).unwrap();
        let parsed: Vec<InputEvent> = script.events().iter().map(|e| e.event).collect();
        assert_eq!(parsed, events);
        // And each printed line reads back as itself.
        for event in script.events() {
            let again = Script::parse(&event.to_string()).unwrap();
            assert_eq!(again.events()[0].event, event.event);
            assert_eq!(again.events()[0].delay_ms, event.delay_ms);
        }
        assert_eq!(
            EventWords(&events[0]).to_string(),
            "touch 0 down 100 200",
            "the form the backend logs"
        );
        assert_eq!(EventWords(&events[6]).to_string(), "key KEY_ENTER press");
        assert_eq!(EventWords(&events[9]).to_string(), "key 240 release");
        assert_eq!(EventWords(&events[11]).to_string(), "abs 1 2 -1");
    }

    #[test]
    fn the_forms_of_the_format_parse_as_documented() {
        let script = Script::parse(
            "# a comment\n\
             \n\
             100 touch 0 down 100 200\n\
             16 touch 0 move 120 210   # trailing comment\n\
             0 touch 0 up\n\
             0 touch 0 sync\n\
             50 key KEY_ENTER press\n\
             20 key KEY_C release\n\
             10 abs 640 360\n\
             10 rel -3 4\n\
             \t 5   key 57 press\n\
             1 key BTN_LEFT press\n",
        )
        .unwrap();
        let events: Vec<(usize, u32, InputEvent)> = script
            .events()
            .iter()
            .map(|e| (e.line, e.delay_ms, e.event))
            .collect();
        assert_eq!(
            events,
            [
                (
                    3,
                    100,
                    InputEvent::Touch {
                        contact: 0,
                        touch: Touch::Down { x: 100, y: 200 }
                    }
                ),
                (
                    4,
                    16,
                    InputEvent::Touch {
                        contact: 0,
                        touch: Touch::Motion { x: 120, y: 210 }
                    }
                ),
                (
                    5,
                    0,
                    InputEvent::Touch {
                        contact: 0,
                        touch: Touch::Up
                    }
                ),
                (
                    6,
                    0,
                    InputEvent::Touch {
                        contact: 0,
                        touch: Touch::Sync
                    }
                ),
                (
                    7,
                    50,
                    InputEvent::Key {
                        pressed: true,
                        keycode: 28
                    }
                ),
                (
                    8,
                    20,
                    InputEvent::Key {
                        pressed: false,
                        keycode: 46
                    }
                ),
                (
                    9,
                    10,
                    InputEvent::Position {
                        x: 640,
                        y: 360,
                        rel_z: 0
                    }
                ),
                (
                    10,
                    10,
                    InputEvent::Motion {
                        rel_x: -3,
                        rel_y: 4,
                        rel_z: 0
                    }
                ),
                (
                    11,
                    5,
                    InputEvent::Key {
                        pressed: true,
                        keycode: 57
                    }
                ),
                (
                    12,
                    1,
                    InputEvent::Key {
                        pressed: true,
                        keycode: 0x110
                    }
                ),
            ]
        );
        assert_eq!(Script::parse("").unwrap().events(), &[]);
        assert_eq!(Script::parse("# only\n\n  \n").unwrap().duration_ms(), 0);
    }

    #[test]
    fn a_lines_delay_accumulates() {
        let script = Script::parse(
            "100 touch 0 down 1 2\n\
             16 touch 0 move 3 4\n\
             device DP-1\n\
             0 touch 0 up\n\
             250 key KEY_ESC press\n",
        )
        .unwrap();
        let times: Vec<u64> = script.events().iter().map(|e| e.at_ms).collect();
        assert_eq!(times, [100, 116, 116, 366]);
        assert_eq!(script.duration_ms(), 366);
        let script = Script::parse(&format!("{0} rel 1 1\n{0} rel 1 1\n", u32::MAX)).unwrap();
        assert_eq!(script.duration_ms(), 2 * u64::from(u32::MAX));
    }

    #[test]
    fn device_lines_choose_who_gets_the_events_below() {
        let script = Script::parse(
            "0 key KEY_A press\n\
             device HDMI-A-1\n\
             0 key KEY_B press\n\
             device DP-1\n\
             0 key KEY_C press\n\
             device *\n\
             0 key KEY_ESC press\n",
        )
        .unwrap();
        let codes = |id| -> Vec<u32> {
            script
                .for_device(id)
                .map(|e| match e.event {
                    InputEvent::Key { keycode, .. } => keycode,
                    _ => 0,
                })
                .collect()
        };
        assert_eq!(codes(Some("DP-1")), [30, 46, 1]);
        assert_eq!(codes(Some("HDMI-A-1")), [30, 48, 1]);
        assert_eq!(codes(None), [30, 1]);
        assert_eq!(
            script.events()[2].target,
            Target::Device("DP-1".to_string())
        );
    }

    fn error(text: &str) -> (usize, String, ErrorKind) {
        let error = Script::parse(text).unwrap_err();
        (error.line, error.word, error.kind)
    }

    #[test]
    fn errors_name_the_line_and_the_word() {
        use ErrorKind::*;
        let cases: &[(&str, (usize, &str, ErrorKind))] = &[
            ("touch 0 up", (1, "touch", BadDelay)),
            ("-5 touch 0 up", (1, "-5", BadDelay)),
            ("+5 touch 0 up", (1, "+5", BadDelay)),
            ("\n\n10 tap 0 up", (3, "tap", UnknownEvent)),
            ("10 touch 0 drag 1 2", (1, "drag", UnknownTouch)),
            ("10 touch 256 up", (1, "256", BadNumber { what: "contact" })),
            ("10 touch 0 down 1", (1, "1", Missing { what: "y" })),
            ("10 touch 0 down x 1", (1, "x", BadNumber { what: "x" })),
            (
                "10 touch 0 orient 40000",
                (
                    1,
                    "40000",
                    BadNumber {
                        what: "orientation",
                    },
                ),
            ),
            ("10 touch 0 up now", (1, "now", ExtraWord)),
            ("10 key KEY_FOO press", (1, "KEY_FOO", UnknownKey)),
            ("10 key 0x1c press", (1, "0x1c", UnknownKey)),
            ("10 key KEY_ESC hold", (1, "hold", BadKeyAction)),
            (
                "10 key KEY_ESC",
                (
                    1,
                    "KEY_ESC",
                    Missing {
                        what: "press or release",
                    },
                ),
            ),
            ("10", (1, "10", Missing { what: "the event" })),
            ("10 abs 1 2 3 4", (1, "4", ExtraWord)),
            ("10 abs 1 2.5", (1, "2.5", BadNumber { what: "y" })),
            ("10 rel 1 2 w", (1, "w", BadNumber { what: "wheel" })),
            (
                "device",
                (
                    1,
                    "device",
                    Missing {
                        what: "the device's unique-id, or *",
                    },
                ),
            ),
            ("device DP-1 HDMI-A-1", (1, "HDMI-A-1", ExtraWord)),
        ];
        for (text, (line, word, kind)) in cases {
            assert_eq!(
                error(text),
                (*line, word.to_string(), kind.clone()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn error_messages_quote_the_word() {
        let message = |text: &str| Script::parse(text).unwrap_err().to_string();
        assert_eq!(
            message("1 key 1\n10 key KEY_FOO press"),
            "line 1: the line ends after \"1\"; press or release is missing"
        );
        assert_eq!(
            message("\n10 key KEY_FOO press"),
            "line 2: \"KEY_FOO\" is not a key name (KEY_*, BTN_*) nor a decimal code"
        );
        assert_eq!(
            message("10 touch 0 down 1 y"),
            "line 1: \"y\" is not a valid y"
        );
    }

    #[test]
    fn key_names_are_those_of_linux_input_event_codes() {
        for (name, code) in [
            ("KEY_ESC", 1),
            ("KEY_1", 2),
            ("KEY_0", 11),
            ("KEY_Q", 16),
            ("KEY_ENTER", 28),
            ("KEY_A", 30),
            ("KEY_C", 46),
            ("KEY_SPACE", 57),
            ("KEY_F10", 68),
            ("KEY_UP", 103),
            ("KEY_DOWN", 108),
            ("BTN_LEFT", 0x110),
            ("BTN_RIGHT", 0x111),
            ("BTN_TOUCH", 0x14a),
        ] {
            assert_eq!(key_code(name), Some(code), "{name}");
            assert_eq!(key_name(code), Some(name), "{code}");
        }
        // Names and codes are each used once.
        for (index, (name, code)) in KEY_NAMES.iter().enumerate() {
            for (other_name, other_code) in &KEY_NAMES[index + 1..] {
                assert!(name != other_name && code != other_code, "{name} {code}");
            }
        }
    }
}
