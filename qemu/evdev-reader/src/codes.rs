//! The evdev event types and codes this crate deals in (linux/input-event-codes.h), and their
//! names for messages.

use drivers::xen::kbdif::script::key_name;

/// `EV_SYN`: synchronization (the end of a report, a dropped buffer).
pub const EV_SYN: u16 = 0x00;
/// `EV_KEY`: keys and buttons.
pub const EV_KEY: u16 = 0x01;
/// `EV_REL`: relative axes.
pub const EV_REL: u16 = 0x02;
/// `EV_ABS`: absolute axes.
pub const EV_ABS: u16 = 0x03;

/// `SYN_REPORT`: the end of a report.
pub const SYN_REPORT: u16 = 0;
/// `SYN_CONFIG`.
pub const SYN_CONFIG: u16 = 1;
/// `SYN_MT_REPORT`: the end of a contact (type A multi-touch).
pub const SYN_MT_REPORT: u16 = 2;
/// `SYN_DROPPED`: the reader's buffer overflowed and events were lost.
pub const SYN_DROPPED: u16 = 3;

/// `REL_X`.
pub const REL_X: u16 = 0x00;
/// `REL_Y`.
pub const REL_Y: u16 = 0x01;
/// `REL_WHEEL`.
pub const REL_WHEEL: u16 = 0x08;

/// `ABS_X`.
pub const ABS_X: u16 = 0x00;
/// `ABS_Y`.
pub const ABS_Y: u16 = 0x01;
/// `ABS_PRESSURE`.
pub const ABS_PRESSURE: u16 = 0x18;
/// `ABS_MT_SLOT`: the slot the multi-touch values after it belong to.
pub const ABS_MT_SLOT: u16 = 0x2f;
/// `ABS_MT_TOUCH_MAJOR`, the first per-contact axis (`ABS_MT_FIRST`).
pub const ABS_MT_TOUCH_MAJOR: u16 = 0x30;
/// `ABS_MT_TOUCH_MINOR`.
pub const ABS_MT_TOUCH_MINOR: u16 = 0x31;
/// `ABS_MT_ORIENTATION`.
pub const ABS_MT_ORIENTATION: u16 = 0x34;
/// `ABS_MT_POSITION_X`.
pub const ABS_MT_POSITION_X: u16 = 0x35;
/// `ABS_MT_POSITION_Y`.
pub const ABS_MT_POSITION_Y: u16 = 0x36;
/// `ABS_MT_TOOL_TYPE`.
pub const ABS_MT_TOOL_TYPE: u16 = 0x37;
/// `ABS_MT_TRACKING_ID`.
pub const ABS_MT_TRACKING_ID: u16 = 0x39;
/// `ABS_MT_PRESSURE`.
pub const ABS_MT_PRESSURE: u16 = 0x3a;
/// `ABS_MT_TOOL_Y`, the last per-contact axis (`ABS_MT_LAST`).
pub const ABS_MT_TOOL_Y: u16 = 0x3d;
/// Absolute axes (`ABS_CNT`).
pub const ABS_COUNT: usize = 0x40;

/// `KEY_ESC`, the first key code a keyboard reports.
pub const KEY_ESC: u16 = 1;
/// `KEY_LEFTCTRL`.
pub const KEY_LEFTCTRL: u16 = 29;
/// `KEY_LEFTALT`.
pub const KEY_LEFTALT: u16 = 56;
/// `KEY_KPDOT`.
pub const KEY_KPDOT: u16 = 83;
/// `KEY_RIGHTCTRL`.
pub const KEY_RIGHTCTRL: u16 = 97;
/// `KEY_SYSRQ`.
pub const KEY_SYSRQ: u16 = 99;
/// `KEY_RIGHTALT`.
pub const KEY_RIGHTALT: u16 = 100;
/// `KEY_DELETE`.
pub const KEY_DELETE: u16 = 111;
/// `KEY_UNKNOWN`.
pub const KEY_UNKNOWN: u16 = 240;
/// `BTN_LEFT`, the first pointer button.
pub const BTN_LEFT: u16 = 0x110;
/// `BTN_TASK`, the last pointer button xen-kbdfront's pointer declares.
pub const BTN_TASK: u16 = 0x117;
/// `BTN_TOUCH`.
pub const BTN_TOUCH: u16 = 0x14a;
/// `KEY_OK`.
pub const KEY_OK: u16 = 0x160;
/// `KEY_MAX`, the highest key code.
pub const KEY_MAX: u16 = 0x2ff;

/// `CLOCK_MONOTONIC`, the clock the reader asks evdev to stamp events with.
pub const CLOCK_MONOTONIC: i32 = 1;

/// The name of an event type.
pub fn type_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        EV_SYN => "EV_SYN",
        EV_KEY => "EV_KEY",
        EV_REL => "EV_REL",
        EV_ABS => "EV_ABS",
        0x04 => "EV_MSC",
        0x05 => "EV_SW",
        0x11 => "EV_LED",
        0x14 => "EV_REP",
        _ => return None,
    })
}

/// The name of an event code of a type, where this crate knows it.
pub fn code_name(kind: u16, code: u16) -> Option<&'static str> {
    Some(match (kind, code) {
        (EV_SYN, SYN_REPORT) => "SYN_REPORT",
        (EV_SYN, SYN_CONFIG) => "SYN_CONFIG",
        (EV_SYN, SYN_MT_REPORT) => "SYN_MT_REPORT",
        (EV_SYN, SYN_DROPPED) => "SYN_DROPPED",
        (EV_REL, REL_X) => "REL_X",
        (EV_REL, REL_Y) => "REL_Y",
        (EV_REL, REL_WHEEL) => "REL_WHEEL",
        (EV_ABS, ABS_X) => "ABS_X",
        (EV_ABS, ABS_Y) => "ABS_Y",
        (EV_ABS, ABS_PRESSURE) => "ABS_PRESSURE",
        (EV_ABS, ABS_MT_SLOT) => "ABS_MT_SLOT",
        (EV_ABS, ABS_MT_TOUCH_MAJOR) => "ABS_MT_TOUCH_MAJOR",
        (EV_ABS, ABS_MT_TOUCH_MINOR) => "ABS_MT_TOUCH_MINOR",
        (EV_ABS, ABS_MT_ORIENTATION) => "ABS_MT_ORIENTATION",
        (EV_ABS, ABS_MT_POSITION_X) => "ABS_MT_POSITION_X",
        (EV_ABS, ABS_MT_POSITION_Y) => "ABS_MT_POSITION_Y",
        (EV_ABS, ABS_MT_TOOL_TYPE) => "ABS_MT_TOOL_TYPE",
        (EV_ABS, ABS_MT_TRACKING_ID) => "ABS_MT_TRACKING_ID",
        (EV_ABS, ABS_MT_PRESSURE) => "ABS_MT_PRESSURE",
        (EV_KEY, code) => return key_name(u32::from(code)),
        _ => return None,
    })
}

/// `EV_KEY KEY_A 1`: an event in words, numbers where there is no name.
pub fn describe(kind: u16, code: u16, value: i32) -> String {
    let kind_text = type_name(kind).map_or_else(|| kind.to_string(), str::to_string);
    let code_text = code_name(kind, code).map_or_else(|| code.to_string(), str::to_string);
    format!("{kind_text} {code_text} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_where_the_codes_are_known() {
        assert_eq!(describe(EV_KEY, 30, 1), "EV_KEY KEY_A 1");
        assert_eq!(describe(EV_KEY, BTN_LEFT, 0), "EV_KEY BTN_LEFT 0");
        assert_eq!(describe(EV_SYN, SYN_REPORT, 0), "EV_SYN SYN_REPORT 0");
        assert_eq!(
            describe(EV_ABS, ABS_MT_TRACKING_ID, -1),
            "EV_ABS ABS_MT_TRACKING_ID -1"
        );
        assert_eq!(describe(EV_REL, REL_WHEEL, -2), "EV_REL REL_WHEEL -2");
        assert_eq!(describe(EV_KEY, 0x2fe, 1), "EV_KEY 766 1");
        assert_eq!(describe(0x15, 3, 4), "21 3 4");
    }
}
