//! What Linux 6.1's xen-kbdfront and input core make of kbdif events: the evdev reports a
//! reader of its devices gets for an input event script, computed on the host, apart from
//! anything the reader printed.
//!
//! Per vkbd device (xl.cfg `vkb=`, [`VkbdConfig`]) xen-kbdfront creates up to three input
//! devices, all with the phys `xenbus/device/vkbd/<id>`:
//! - `Xen Virtual Keyboard` (unless `feature-disable-keyboard`): `EV_KEY` with the codes
//!   `KEY_ESC` to below `KEY_UNKNOWN` and `KEY_OK` to below `KEY_MAX`;
//! - `Xen Virtual Pointer` (unless `feature-disable-pointer`): `EV_KEY` `BTN_LEFT` to
//!   `BTN_TASK`, `REL_WHEEL`, and `ABS_X`/`ABS_Y` (0 to `width`/`height`) when the backend
//!   offers `feature-abs-pointer` (the frontend then writes `request-abs-pointer`), `REL_X`/
//!   `REL_Y` otherwise;
//! - `Xen Virtual Multi-touch` (when the backend offers `feature-multi-touch`; the frontend
//!   writes `request-multi-touch`): `ABS_MT_TOUCH_MAJOR`, `ABS_MT_POSITION_X`/`_Y`, and with at
//!   least one contact (`multi-touch-num-contacts`) the slots (`ABS_MT_SLOT`,
//!   `ABS_MT_TRACKING_ID`) and the single-touch emulation of a direct device (`BTN_TOUCH`,
//!   `ABS_X`, `ABS_Y`).
//!
//! What each kbdif event becomes, in the driver:
//! - key: on the pointer when the pointer declares the code, else on the keyboard when it
//!   does (a press of a key already down becomes the value 2, autorepeat), else nothing
//!   (`unhandled keycode` on the console); then `SYN_REPORT`;
//! - relative motion: `REL_X`, `REL_Y`, and `REL_WHEEL` = `-rel_z` when `rel_z` is not 0, then
//!   `SYN_REPORT`;
//! - absolute position: `ABS_X`, `ABS_Y`, `REL_WHEEL` = `-rel_z` when not 0, `SYN_REPORT`;
//! - multi-touch: `ABS_MT_SLOT` of the contact when the contact is not the last one seen;
//!   down: the slot's tracking id (`ABS_MT_TRACKING_ID`, a new one unless the slot has one)
//!   and `ABS_MT_TOOL_TYPE` finger, then as motion; motion: `ABS_MT_POSITION_X`/`_Y`; shape:
//!   `ABS_MT_TOUCH_MAJOR`/`_MINOR`; orientation: `ABS_MT_ORIENTATION`; up: tracking id -1;
//!   sync: the frame's single-touch emulation (`BTN_TOUCH` = any contact down, `ABS_X`/`ABS_Y` of
//!   the oldest contact), then `SYN_REPORT`.
//!
//! The input core ([`InputDev`]) then drops what a reader never sees: a code the device does
//! not declare (`ABS_MT_TOOL_TYPE`, `ABS_MT_TOUCH_MINOR`, `ABS_MT_ORIENTATION` are not declared
//! by the multi-touch device; `REL_X`/`REL_Y` not by an absolute pointer), a relative value of 0,
//! a key whose state does not change (a release of a key that is up, a second press of a
//! button), an absolute value equal to the last one of its axis (per slot for multi-touch
//! axes), and a `SYN_REPORT` with nothing before it. `ABS_MT_SLOT` is held back until a value
//! of that slot changes. Events of a device wait in the core until its `SYN_REPORT`, which
//! hands them to the readers as one report; a device whose waiting events reach its packet
//! size is handed them early, ended by a `SYN_REPORT` of value 1. So each vkbd device's
//! reports come in the order of their `SYN_REPORT`s, which is the order the driver took its
//! events off the ring.

use crate::codes::*;
use crate::output::{device_label, Event, Report};
use drivers::xen::kbdif::script::{EventWords, Script};
use drivers::xen::kbdif::{InputEvent, Touch};
use std::fmt;

/// The keyboard's name.
pub const KEYBOARD: &str = "Xen Virtual Keyboard";
/// The pointer's name.
pub const POINTER: &str = "Xen Virtual Pointer";
/// The multi-touch device's name.
pub const MULTI_TOUCH: &str = "Xen Virtual Multi-touch";
/// Highest tracking id; ids wrap within it (`TRKID_MAX`).
const TRACKING_ID_MAX: i32 = 0xffff;
/// The sign bit of a tracking id difference (`TRKID_SGN`).
const TRACKING_ID_SIGN: i32 = (TRACKING_ID_MAX + 1) >> 1;
/// `MT_TOOL_FINGER`.
const MT_TOOL_FINGER: i32 = 0;

/// The phys of the devices of vkbd device `id` (`xenbus/device/vkbd/<id>`).
pub fn phys(id: usize) -> String {
    format!("xenbus/device/vkbd/{id}")
}

/// One `vkb = [ ... ]` entry of an xl config, as far as xen-kbdfront reads it from the backend
/// directory libxl writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VkbdConfig {
    /// `unique-id`: the script's `device` sections name it.
    pub unique_id: Option<String>,
    /// `feature-disable-keyboard`.
    pub disable_keyboard: bool,
    /// `feature-disable-pointer`.
    pub disable_pointer: bool,
    /// `feature-abs-pointer`.
    pub abs_pointer: bool,
    /// `feature-multi-touch`, with `multi-touch-num-contacts` (libxl writes it, 0 when unset);
    /// `None`: no multi-touch.
    pub multi_touch: Option<u32>,
}

/// Why a `vkb=` entry cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A word xl does not know.
    UnknownKey(String),
    /// A number that does not parse.
    BadNumber {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// Not `backend-type=linux`: a device this project's backend does not serve.
    NotLinux(Option<String>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownKey(word) => write!(f, "{word:?} is no vkb option xl knows"),
            ConfigError::BadNumber { key, value } => {
                write!(f, "{key}={value}: not a decimal number")
            }
            ConfigError::NotLinux(None) => f.write_str("backend-type is not set"),
            ConfigError::NotLinux(Some(kind)) => {
                write!(
                    f,
                    "backend-type={kind}: only backend-type=linux is served here"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl VkbdConfig {
    /// Reads one entry (`backend-type=linux,unique-id=touch,feature-abs-pointer=1,...`) as xl
    /// does: any of the multi-touch sizes or contacts turns multi-touch on.
    pub fn parse(spec: &str) -> Result<VkbdConfig, ConfigError> {
        let mut config = VkbdConfig::default();
        let mut backend_type = None;
        let mut multi_touch = false;
        let mut mt_sizes = false;
        let mut contacts = 0;
        for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| ConfigError::UnknownKey(word.to_string()))?;
            let number = || {
                value.parse::<u32>().map_err(|_| ConfigError::BadNumber {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            };
            match key {
                "backend" => {}
                "backend-type" => backend_type = Some(value.to_string()),
                "unique-id" => config.unique_id = Some(value.to_string()),
                "feature-disable-keyboard" => config.disable_keyboard = number()? != 0,
                "feature-disable-pointer" => config.disable_pointer = number()? != 0,
                "feature-abs-pointer" => config.abs_pointer = number()? != 0,
                "feature-raw-pointer" | "width" | "height" => {
                    number()?;
                }
                "feature-multi-touch" => multi_touch = number()? != 0,
                "multi-touch-width" | "multi-touch-height" => mt_sizes |= number()? != 0,
                "multi-touch-num-contacts" => contacts = number()?,
                _ => return Err(ConfigError::UnknownKey(word.to_string())),
            }
        }
        if backend_type.as_deref() != Some("linux") {
            return Err(ConfigError::NotLinux(backend_type));
        }
        if multi_touch || mt_sizes || contacts != 0 {
            config.multi_touch = Some(contacts);
        }
        Ok(config)
    }

    /// The labels of the devices xen-kbdfront creates for this device as vkbd device `id`, in
    /// the order it registers them.
    pub fn devices(&self, id: usize) -> Vec<String> {
        let phys = phys(id);
        let mut labels = Vec::new();
        if !self.disable_keyboard {
            labels.push(device_label(KEYBOARD, &phys));
        }
        if !self.disable_pointer {
            labels.push(device_label(POINTER, &phys));
        }
        if self.multi_touch.is_some() {
            labels.push(device_label(MULTI_TOUCH, &phys));
        }
        labels
    }
}

/// A script event the model refuses: Linux would not turn it into evdev events the way the
/// rest of the model says (the DomU would crash, reboot, or enter SysRq mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelError {
    /// The script line.
    pub line: usize,
    /// The event, in the script's words.
    pub event: String,
    /// The vkbd device it goes to.
    pub device: usize,
    /// Why.
    pub reason: ModelRefusal,
}

/// Why the model refuses an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRefusal {
    /// A key with `feature-disable-pointer`: xen-kbdfront looks every key code up in the
    /// pointer's buttons first, and there is no pointer.
    KeyWithoutPointer,
    /// A key the pointer does not declare, with `feature-disable-keyboard`: the keyboard it is
    /// looked up in next does not exist.
    KeyWithoutKeyboard,
    /// A code above `KEY_MAX`, beyond the bitmaps it is looked up in.
    KeyBeyondMax,
    /// SysRq while Alt is down: the SysRq handler takes the keys that follow.
    SysRq,
    /// Ctrl+Alt+Delete: the console reboots the domain.
    CtrlAltDelete,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            ModelRefusal::KeyWithoutPointer => {
                "xen-kbdfront looks every key up in the pointer's buttons, and this device has \
                 no pointer (feature-disable-pointer)"
            }
            ModelRefusal::KeyWithoutKeyboard => {
                "the pointer does not declare this key and the device has no keyboard \
                 (feature-disable-keyboard) to look it up in"
            }
            ModelRefusal::KeyBeyondMax => "the code is above KEY_MAX",
            ModelRefusal::SysRq => "SysRq with Alt down starts Linux's SysRq mode",
            ModelRefusal::CtrlAltDelete => "Ctrl+Alt+Delete reboots the Linux domain",
        };
        write!(
            f,
            "script line {} (`{}`, vkbd device {}): {why}",
            self.line, self.event, self.device
        )
    }
}

impl std::error::Error for ModelError {}

/// A bitmap of key codes (`KEY_CNT` bits).
#[derive(Clone, Debug)]
struct KeyBits([u64; 12]);

impl KeyBits {
    fn new() -> KeyBits {
        KeyBits([0; 12])
    }

    fn with_range(mut self, from: u16, to_inclusive: u16) -> KeyBits {
        for code in from..=to_inclusive {
            self.set(code, true);
        }
        self
    }

    fn get(&self, code: u16) -> bool {
        self.0
            .get(usize::from(code) / 64)
            .is_some_and(|word| word & (1 << (code % 64)) != 0)
    }

    fn set(&mut self, code: u16, on: bool) {
        if let Some(word) = self.0.get_mut(usize::from(code) / 64) {
            if on {
                *word |= 1 << (code % 64);
            } else {
                *word &= !(1 << (code % 64));
            }
        }
    }
}

/// The per-contact axes (`ABS_MT_FIRST` to `ABS_MT_LAST`).
const MT_AXES: usize = (ABS_MT_TOOL_Y - ABS_MT_TOUCH_MAJOR + 1) as usize;

/// Slots of a multi-touch device (`struct input_mt`).
#[derive(Clone, Debug)]
struct Slots {
    /// Each slot's per-contact values.
    values: Vec<[i32; MT_AXES]>,
    /// The slot being reported.
    current: usize,
    /// The next tracking id.
    next_id: i32,
}

impl Slots {
    fn new(count: usize) -> Slots {
        let mut empty = [0; MT_AXES];
        empty[usize::from(ABS_MT_TRACKING_ID - ABS_MT_TOUCH_MAJOR)] = -1;
        Slots {
            values: vec![empty; count],
            current: 0,
            next_id: 0,
        }
    }

    fn value(&self, slot: usize, code: u16) -> i32 {
        self.values[slot][usize::from(code - ABS_MT_TOUCH_MAJOR)]
    }
}

/// What the input core does with an event (`INPUT_PASS_TO_HANDLERS`, `INPUT_SLOT`,
/// `INPUT_FLUSH`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Disposition {
    pass: bool,
    slot: bool,
    flush: bool,
}

/// An input device as the input core keeps it: what it declares, the state it filters
/// against, and the events waiting for the device's `SYN_REPORT`.
#[derive(Clone, Debug)]
pub struct InputDev {
    label: String,
    types: [bool; 4],
    keys: KeyBits,
    rel: [bool; 16],
    abs: [bool; ABS_COUNT],
    key_state: KeyBits,
    abs_values: [i32; ABS_COUNT],
    slots: Option<Slots>,
    waiting: Vec<Event>,
    max_waiting: usize,
}

impl InputDev {
    fn new(label: String) -> InputDev {
        let mut types = [false; 4];
        types[usize::from(EV_SYN)] = true;
        InputDev {
            label,
            types,
            keys: KeyBits::new(),
            rel: [false; 16],
            abs: [false; ABS_COUNT],
            key_state: KeyBits::new(),
            abs_values: [0; ABS_COUNT],
            slots: None,
            waiting: Vec::new(),
            max_waiting: 0,
        }
    }

    /// The keyboard: every key from `KEY_ESC` below `KEY_UNKNOWN`, and from `KEY_OK` below
    /// `KEY_MAX`.
    fn keyboard(phys: &str) -> InputDev {
        let mut dev = InputDev::new(device_label(KEYBOARD, phys));
        dev.types[usize::from(EV_KEY)] = true;
        dev.keys = KeyBits::new()
            .with_range(KEY_ESC, KEY_UNKNOWN - 1)
            .with_range(KEY_OK, KEY_MAX - 1);
        dev.register();
        dev
    }

    /// The pointer: buttons `BTN_LEFT` to `BTN_TASK`, `REL_WHEEL`, and absolute X/Y or
    /// relative X/Y.
    fn pointer(phys: &str, absolute: bool) -> InputDev {
        let mut dev = InputDev::new(device_label(POINTER, phys));
        if absolute {
            dev.types[usize::from(EV_ABS)] = true;
            dev.abs[usize::from(ABS_X)] = true;
            dev.abs[usize::from(ABS_Y)] = true;
        } else {
            dev.rel[usize::from(REL_X)] = true;
            dev.rel[usize::from(REL_Y)] = true;
        }
        dev.types[usize::from(EV_REL)] = true;
        dev.rel[usize::from(REL_WHEEL)] = true;
        dev.types[usize::from(EV_KEY)] = true;
        dev.keys = KeyBits::new().with_range(BTN_LEFT, BTN_TASK);
        dev.register();
        dev
    }

    /// The multi-touch device: touch major and position axes, and with contacts the slots
    /// of a direct device (which adds `BTN_TOUCH` and `ABS_X`/`ABS_Y` for its single-touch
    /// emulation).
    fn multi_touch(phys: &str, contacts: u32) -> InputDev {
        let mut dev = InputDev::new(device_label(MULTI_TOUCH, phys));
        dev.types[usize::from(EV_ABS)] = true;
        for axis in [ABS_MT_TOUCH_MAJOR, ABS_MT_POSITION_X, ABS_MT_POSITION_Y] {
            dev.abs[usize::from(axis)] = true;
        }
        if contacts > 0 {
            dev.slots = Some(Slots::new(contacts as usize));
            dev.abs[usize::from(ABS_MT_SLOT)] = true;
            dev.abs[usize::from(ABS_MT_TRACKING_ID)] = true;
            dev.types[usize::from(EV_KEY)] = true;
            dev.keys.set(BTN_TOUCH, true);
            dev.abs[usize::from(ABS_X)] = true;
            dev.abs[usize::from(ABS_Y)] = true;
        }
        dev.register();
        dev
    }

    /// What registration adds: the packet size (events one report may hold before the core
    /// hands them on by itself), from what the device declares.
    fn register(&mut self) {
        let slots = match &self.slots {
            Some(slots) => slots.values.len(),
            None if self.abs[usize::from(ABS_MT_POSITION_X)] => 2,
            None => 0,
        };
        let mut events = slots + 1;
        if self.types[usize::from(EV_ABS)] {
            for (axis, _) in self.abs.iter().enumerate().filter(|(_, &on)| on) {
                let per_contact = axis == usize::from(ABS_MT_SLOT)
                    || (usize::from(ABS_MT_TOUCH_MAJOR)..=usize::from(ABS_MT_TOOL_Y))
                        .contains(&axis);
                events += if per_contact { slots } else { 1 };
            }
        }
        if self.types[usize::from(EV_REL)] {
            events += self.rel.iter().filter(|&&on| on).count();
        }
        events += 7;
        self.max_waiting = events + 2;
    }

    /// The device's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn declares_key(&self, code: u16) -> bool {
        code <= KEY_MAX && self.keys.get(code)
    }

    fn key_down(&self, code: u16) -> bool {
        self.key_state.get(code)
    }

    /// `input_event()`: one event from the driver; reports handed to readers go to `out`.
    fn event(&mut self, kind: u16, code: u16, value: i32, out: &mut Vec<Report>) {
        if !self.types.get(usize::from(kind)).copied().unwrap_or(false) {
            return;
        }
        let disposition = match kind {
            EV_SYN => match code {
                SYN_REPORT => Disposition {
                    pass: true,
                    flush: true,
                    ..Disposition::default()
                },
                SYN_CONFIG | SYN_MT_REPORT => Disposition {
                    pass: true,
                    ..Disposition::default()
                },
                _ => Disposition::default(),
            },
            EV_KEY if self.declares_key(code) => {
                if value == 2 {
                    Disposition {
                        pass: true,
                        ..Disposition::default()
                    }
                } else if self.key_down(code) != (value != 0) {
                    self.key_state.set(code, value != 0);
                    Disposition {
                        pass: true,
                        ..Disposition::default()
                    }
                } else {
                    Disposition::default()
                }
            }
            EV_REL if self.rel.get(usize::from(code)).copied().unwrap_or(false) && value != 0 => {
                Disposition {
                    pass: true,
                    ..Disposition::default()
                }
            }
            EV_ABS if self.abs.get(usize::from(code)).copied().unwrap_or(false) => {
                self.absolute(code, value)
            }
            _ => Disposition::default(),
        };
        if disposition == Disposition::default() {
            return;
        }
        if disposition.pass {
            if disposition.slot {
                let slot = self.slots.as_ref().map_or(0, |slots| slots.current);
                self.waiting
                    .push(Event::new(EV_ABS, ABS_MT_SLOT, slot as i32));
            }
            self.waiting.push(Event::new(kind, code, value));
        }
        if disposition.flush {
            if self.waiting.len() >= 2 {
                out.push(Report {
                    device: self.label.clone(),
                    events: std::mem::take(&mut self.waiting),
                });
            }
            self.waiting.clear();
        } else if self.waiting.len() >= self.max_waiting - 2 {
            self.waiting.push(Event::new(EV_SYN, SYN_REPORT, 1));
            out.push(Report {
                device: self.label.clone(),
                events: std::mem::take(&mut self.waiting),
            });
        }
    }

    /// An absolute axis: a slot is staged, a value equal to the last one of its axis (or its
    /// slot's) is dropped, and the first value of a new slot brings the staged slot with it.
    fn absolute(&mut self, code: u16, value: i32) -> Disposition {
        if code == ABS_MT_SLOT {
            if let Some(slots) = &mut self.slots {
                if let Ok(slot) = usize::try_from(value) {
                    if slot < slots.values.len() {
                        slots.current = slot;
                    }
                }
            }
            return Disposition::default();
        }
        let per_contact = (ABS_MT_TOUCH_MAJOR..=ABS_MT_TOOL_Y).contains(&code);
        let old = if !per_contact {
            Some(&mut self.abs_values[usize::from(code)])
        } else if let Some(slots) = &mut self.slots {
            let current = slots.current;
            Some(&mut slots.values[current][usize::from(code - ABS_MT_TOUCH_MAJOR)])
        } else {
            None
        };
        if let Some(old) = old {
            if *old == value {
                return Disposition::default();
            }
            *old = value;
        }
        if let (true, Some(slots)) = (per_contact, &self.slots) {
            let staged = slots.current as i32;
            if self.abs_values[usize::from(ABS_MT_SLOT)] != staged {
                self.abs_values[usize::from(ABS_MT_SLOT)] = staged;
                return Disposition {
                    pass: true,
                    slot: true,
                    ..Disposition::default()
                };
            }
        }
        Disposition {
            pass: true,
            ..Disposition::default()
        }
    }

    fn sync(&mut self, out: &mut Vec<Report>) {
        self.event(EV_SYN, SYN_REPORT, 0, out);
    }

    /// `input_mt_report_slot_state()`: the current slot goes up (tracking id -1) or down (its
    /// tracking id, a new one unless it has one, and the tool type).
    fn slot_state(&mut self, down: bool, out: &mut Vec<Report>) {
        let Some(slots) = &mut self.slots else {
            return;
        };
        if !down {
            self.event(EV_ABS, ABS_MT_TRACKING_ID, -1, out);
            return;
        }
        let mut id = slots.value(slots.current, ABS_MT_TRACKING_ID);
        if id < 0 {
            id = slots.next_id & TRACKING_ID_MAX;
            slots.next_id = slots.next_id.wrapping_add(1);
        }
        self.event(EV_ABS, ABS_MT_TRACKING_ID, id, out);
        self.event(EV_ABS, ABS_MT_TOOL_TYPE, MT_TOOL_FINGER, out);
    }

    /// `input_mt_sync_frame()` of a direct device: `BTN_TOUCH` when any contact is down, and
    /// the oldest contact's position as `ABS_X`/`ABS_Y`.
    fn sync_frame(&mut self, out: &mut Vec<Report>) {
        let Some(slots) = &self.slots else {
            return;
        };
        let mut oldest = None;
        let mut oldest_id = slots.next_id;
        let mut count = 0;
        for slot in 0..slots.values.len() {
            let id = slots.value(slot, ABS_MT_TRACKING_ID);
            if id < 0 {
                continue;
            }
            if id.wrapping_sub(oldest_id) & TRACKING_ID_SIGN != 0 {
                oldest = Some(slot);
                oldest_id = id;
            }
            count += 1;
        }
        let position = oldest.map(|slot| {
            (
                slots.value(slot, ABS_MT_POSITION_X),
                slots.value(slot, ABS_MT_POSITION_Y),
            )
        });
        self.event(EV_KEY, BTN_TOUCH, i32::from(count > 0), out);
        if let Some((x, y)) = position {
            self.event(EV_ABS, ABS_X, x, out);
            self.event(EV_ABS, ABS_Y, y, out);
        }
    }
}

/// One vkbd device's frontend: its input devices and the contact it reported last.
#[derive(Clone, Debug)]
pub struct Frontend {
    id: usize,
    keyboard: Option<InputDev>,
    pointer: Option<InputDev>,
    touch: Option<InputDev>,
    /// The contact of the last multi-touch event (none yet: -1 in the driver).
    contact: Option<u8>,
    /// Every report handed to readers, in order.
    reports: Vec<Report>,
}

impl Frontend {
    /// The frontend of vkbd device `id` configured as `config`.
    pub fn new(id: usize, config: &VkbdConfig) -> Frontend {
        let phys = phys(id);
        Frontend {
            id,
            keyboard: (!config.disable_keyboard).then(|| InputDev::keyboard(&phys)),
            pointer: (!config.disable_pointer)
                .then(|| InputDev::pointer(&phys, config.abs_pointer)),
            touch: config
                .multi_touch
                .map(|contacts| InputDev::multi_touch(&phys, contacts)),
            contact: None,
            reports: Vec::new(),
        }
    }

    /// The reports so far.
    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    /// One kbdif event off the ring (script line `line`, for errors).
    pub fn take(&mut self, line: usize, event: &InputEvent) -> Result<(), ModelError> {
        let out = &mut self.reports;
        match *event {
            InputEvent::Motion {
                rel_x,
                rel_y,
                rel_z,
            } => {
                if let Some(pointer) = &mut self.pointer {
                    pointer.event(EV_REL, REL_X, rel_x, out);
                    pointer.event(EV_REL, REL_Y, rel_y, out);
                    if rel_z != 0 {
                        pointer.event(EV_REL, REL_WHEEL, rel_z.wrapping_neg(), out);
                    }
                    pointer.sync(out);
                }
            }
            InputEvent::Position { x, y, rel_z } => {
                if let Some(pointer) = &mut self.pointer {
                    pointer.event(EV_ABS, ABS_X, x, out);
                    pointer.event(EV_ABS, ABS_Y, y, out);
                    if rel_z != 0 {
                        pointer.event(EV_REL, REL_WHEEL, rel_z.wrapping_neg(), out);
                    }
                    pointer.sync(out);
                }
            }
            InputEvent::Key { pressed, keycode } => {
                let refuse = |reason| ModelError {
                    line,
                    event: EventWords(event).to_string(),
                    device: self.id,
                    reason,
                };
                let code = u16::try_from(keycode)
                    .ok()
                    .filter(|&code| code <= KEY_MAX)
                    .ok_or_else(|| refuse(ModelRefusal::KeyBeyondMax))?;
                let Some(pointer) = &mut self.pointer else {
                    return Err(refuse(ModelRefusal::KeyWithoutPointer));
                };
                if pointer.declares_key(code) {
                    pointer.event(EV_KEY, code, i32::from(pressed), out);
                    pointer.sync(out);
                    return Ok(());
                }
                let Some(keyboard) = &mut self.keyboard else {
                    return Err(refuse(ModelRefusal::KeyWithoutKeyboard));
                };
                if !keyboard.declares_key(code) {
                    // `unhandled keycode`: nothing reaches a reader.
                    return Ok(());
                }
                let down = |codes: &[u16]| codes.iter().any(|&c| keyboard.key_down(c));
                if pressed {
                    let alt = down(&[KEY_LEFTALT, KEY_RIGHTALT]);
                    if code == KEY_SYSRQ && alt {
                        return Err(refuse(ModelRefusal::SysRq));
                    }
                    if matches!(code, KEY_DELETE | KEY_KPDOT)
                        && alt
                        && down(&[KEY_LEFTCTRL, KEY_RIGHTCTRL])
                    {
                        return Err(refuse(ModelRefusal::CtrlAltDelete));
                    }
                }
                let value = match (pressed, keyboard.key_down(code)) {
                    (true, true) => 2,
                    (pressed, _) => i32::from(pressed),
                };
                keyboard.event(EV_KEY, code, value, out);
                keyboard.sync(out);
            }
            InputEvent::Touch { contact, touch } => {
                let Some(dev) = &mut self.touch else {
                    return Ok(());
                };
                if self.contact != Some(contact) {
                    self.contact = Some(contact);
                    dev.event(EV_ABS, ABS_MT_SLOT, i32::from(contact), out);
                }
                match touch {
                    Touch::Down { x, y } => {
                        dev.slot_state(true, out);
                        dev.event(EV_ABS, ABS_MT_POSITION_X, x, out);
                        dev.event(EV_ABS, ABS_MT_POSITION_Y, y, out);
                    }
                    Touch::Motion { x, y } => {
                        dev.event(EV_ABS, ABS_MT_POSITION_X, x, out);
                        dev.event(EV_ABS, ABS_MT_POSITION_Y, y, out);
                    }
                    Touch::Shape { major, minor } => {
                        dev.event(EV_ABS, ABS_MT_TOUCH_MAJOR, major as i32, out);
                        dev.event(EV_ABS, ABS_MT_TOUCH_MINOR, minor as i32, out);
                    }
                    Touch::Orientation(degrees) => {
                        dev.event(EV_ABS, ABS_MT_ORIENTATION, i32::from(degrees), out);
                    }
                    Touch::Up => dev.slot_state(false, out),
                    Touch::Sync => {
                        dev.sync_frame(out);
                        dev.sync(out);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a reader of one vkbd device's input devices gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// The vkbd device's phys.
    pub phys: String,
    /// Its input devices' labels, in the order xen-kbdfront registers them.
    pub devices: Vec<String>,
    /// The reports, in order.
    pub reports: Vec<Report>,
}

/// The reports each vkbd device's input devices give for `script`, every event of a device's
/// sections reaching it (the backend sends them all; the scenario checks it said so).
pub fn expected(configs: &[VkbdConfig], script: &Script) -> Result<Vec<Ring>, ModelError> {
    configs
        .iter()
        .enumerate()
        .map(|(id, config)| {
            let mut frontend = Frontend::new(id, config);
            for event in script.for_device(config.unique_id.as_deref()) {
                frontend.take(event.line, &event.event)?;
            }
            Ok(Ring {
                phys: phys(id),
                devices: config.devices(id),
                reports: frontend.reports,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
