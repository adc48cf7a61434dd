use super::*;
use crate::output::Event as E;

const KBD: &str = "Xen Virtual Keyboard (xenbus/device/vkbd/0)";
const PTR: &str = "Xen Virtual Pointer (xenbus/device/vkbd/0)";
const MT: &str = "Xen Virtual Multi-touch (xenbus/device/vkbd/0)";

fn touch_config() -> VkbdConfig {
    VkbdConfig::parse(
        "backend-type=linux,unique-id=touch,feature-abs-pointer=1,width=1280,height=720,\
         multi-touch-width=1280,multi-touch-height=720,multi-touch-num-contacts=2",
    )
    .unwrap()
}

fn mouse_config() -> VkbdConfig {
    VkbdConfig::parse("backend-type=linux,unique-id=mouse").unwrap()
}

/// The reports of one device configured as `config` for `script`.
fn reports(config: &VkbdConfig, script: &str) -> Vec<Report> {
    let script = Script::parse(script).unwrap();
    let mut rings = expected(std::slice::from_ref(config), &script).unwrap();
    rings.remove(0).reports
}

fn report(device: &str, events: &[(u16, u16, i32)]) -> Report {
    Report {
        device: device.to_string(),
        events: events
            .iter()
            .map(|&(kind, code, value)| E::new(kind, code, value))
            .collect(),
    }
}

const SYN: (u16, u16, i32) = (EV_SYN, SYN_REPORT, 0);

#[test]
fn xl_entries_read_as_xl_reads_them() {
    assert_eq!(
        touch_config(),
        VkbdConfig {
            unique_id: Some("touch".to_string()),
            abs_pointer: true,
            multi_touch: Some(2),
            ..VkbdConfig::default()
        }
    );
    assert_eq!(mouse_config().multi_touch, None);
    assert!(!mouse_config().abs_pointer);
    // Any multi-touch size turns multi-touch on, with 0 contacts when none are given.
    assert_eq!(
        VkbdConfig::parse("backend-type=linux,multi-touch-width=100")
            .unwrap()
            .multi_touch,
        Some(0)
    );
    assert!(
        VkbdConfig::parse("backend-type=linux, feature-disable-keyboard=1")
            .unwrap()
            .disable_keyboard
    );
    assert_eq!(
        VkbdConfig::parse("unique-id=x"),
        Err(ConfigError::NotLinux(None))
    );
    assert_eq!(
        VkbdConfig::parse("backend-type=qemu"),
        Err(ConfigError::NotLinux(Some("qemu".to_string())))
    );
    assert_eq!(
        VkbdConfig::parse("backend-type=linux,colour=blue"),
        Err(ConfigError::UnknownKey("colour=blue".to_string()))
    );
    assert_eq!(
        VkbdConfig::parse("backend-type=linux,width=wide").unwrap_err(),
        ConfigError::BadNumber {
            key: "width".to_string(),
            value: "wide".to_string()
        }
    );
    assert_eq!(touch_config().devices(0), [KBD, PTR, MT]);
    assert_eq!(
        mouse_config().devices(1),
        [
            "Xen Virtual Keyboard (xenbus/device/vkbd/1)",
            "Xen Virtual Pointer (xenbus/device/vkbd/1)"
        ]
    );
}

#[test]
fn keys_go_to_the_keyboard_or_the_pointer_and_repeats_are_value_2() {
    let got = reports(
        &touch_config(),
        "0 key KEY_LEFTSHIFT press\n\
         0 key KEY_A press\n\
         0 key KEY_A press\n\
         0 key KEY_A release\n\
         0 key KEY_B release\n\
         0 key KEY_LEFTSHIFT release\n\
         0 key BTN_LEFT press\n\
         0 key BTN_LEFT press\n\
         0 key BTN_LEFT release\n\
         0 key BTN_TOUCH press\n\
         0 key 240 press\n\
         0 key 352 press\n",
    );
    assert_eq!(
        got,
        [
            report(KBD, &[(EV_KEY, 42, 1), SYN]),
            report(KBD, &[(EV_KEY, 30, 1), SYN]),
            // Pressed while down: autorepeat.
            report(KBD, &[(EV_KEY, 30, 2), SYN]),
            report(KBD, &[(EV_KEY, 30, 0), SYN]),
            // KEY_B was never down: the release and its SYN_REPORT are dropped.
            report(KBD, &[(EV_KEY, 42, 0), SYN]),
            report(PTR, &[(EV_KEY, BTN_LEFT, 1), SYN]),
            // A button pressed again changes nothing: no report.
            report(PTR, &[(EV_KEY, BTN_LEFT, 0), SYN]),
            // BTN_TOUCH and KEY_UNKNOWN are on neither device; KEY_OK (352) is the keyboard's.
            report(KBD, &[(EV_KEY, KEY_OK, 1), SYN]),
        ]
    );
}

#[test]
fn an_absolute_pointer_reports_changed_axes_and_drops_relative_motion() {
    let got = reports(
        &touch_config(),
        "0 abs 640 360\n\
         0 abs 640 400\n\
         0 abs 640 400\n\
         0 abs 0 0\n\
         0 abs 100 200 -1\n\
         0 abs 100 200 3\n\
         0 rel 5 -3\n\
         0 rel 5 -3 2\n",
    );
    assert_eq!(
        got,
        [
            report(PTR, &[(EV_ABS, ABS_X, 640), (EV_ABS, ABS_Y, 360), SYN]),
            report(PTR, &[(EV_ABS, ABS_Y, 400), SYN]),
            // (640, 400) again: nothing changed, nothing reported.
            report(PTR, &[(EV_ABS, ABS_X, 0), (EV_ABS, ABS_Y, 0), SYN]),
            // The wheel is negated.
            report(
                PTR,
                &[
                    (EV_ABS, ABS_X, 100),
                    (EV_ABS, ABS_Y, 200),
                    (EV_REL, REL_WHEEL, 1),
                    SYN
                ]
            ),
            report(PTR, &[(EV_REL, REL_WHEEL, -3), SYN]),
            // REL_X/REL_Y are not declared by an absolute pointer: only the wheel is left.
            report(PTR, &[(EV_REL, REL_WHEEL, -2), SYN]),
        ]
    );
}

#[test]
fn a_relative_pointer_reports_nonzero_motion_and_no_positions() {
    let ptr = "Xen Virtual Pointer (xenbus/device/vkbd/0)";
    let got = reports(
        &mouse_config(),
        "0 rel 10 -5\n\
         0 rel 0 7\n\
         0 rel 0 0 1\n\
         0 rel 0 0\n\
         0 rel 3 3\n\
         0 abs 5 5\n\
         0 key BTN_RIGHT press\n\
         0 key BTN_RIGHT release\n",
    );
    assert_eq!(
        got,
        [
            report(ptr, &[(EV_REL, REL_X, 10), (EV_REL, REL_Y, -5), SYN]),
            report(ptr, &[(EV_REL, REL_Y, 7), SYN]),
            report(ptr, &[(EV_REL, REL_WHEEL, -1), SYN]),
            // Relative values are not filtered by the last one: 3 3 again is reported.
            report(ptr, &[(EV_REL, REL_X, 3), (EV_REL, REL_Y, 3), SYN]),
            report(ptr, &[(EV_KEY, 0x111, 1), SYN]),
            report(ptr, &[(EV_KEY, 0x111, 0), SYN]),
        ]
    );
}

#[test]
fn touches_fill_slots_and_the_frame_sync_emulates_a_single_touch() {
    let got = reports(
        &touch_config(),
        "0 touch 0 down 100 200\n\
         0 touch 0 sync\n\
         0 touch 1 down 300 400\n\
         0 touch 0 move 110 210\n\
         0 touch 0 sync\n\
         0 touch 0 shape 10 5\n\
         0 touch 0 orient 45\n\
         0 touch 0 sync\n\
         0 touch 0 up\n\
         0 touch 0 sync\n\
         0 touch 1 up\n\
         0 touch 1 sync\n\
         0 touch 0 down 110 210\n\
         0 touch 0 sync\n\
         0 touch 0 up\n\
         0 touch 0 sync\n",
    );
    assert_eq!(
        got,
        [
            // Slot 0 is the current slot already: no ABS_MT_SLOT. Tracking ids count from 0.
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_TRACKING_ID, 0),
                    (EV_ABS, ABS_MT_POSITION_X, 100),
                    (EV_ABS, ABS_MT_POSITION_Y, 200),
                    (EV_KEY, BTN_TOUCH, 1),
                    (EV_ABS, ABS_X, 100),
                    (EV_ABS, ABS_Y, 200),
                    SYN
                ]
            ),
            // Two slots in one frame; the emulation follows the oldest contact (slot 0).
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_SLOT, 1),
                    (EV_ABS, ABS_MT_TRACKING_ID, 1),
                    (EV_ABS, ABS_MT_POSITION_X, 300),
                    (EV_ABS, ABS_MT_POSITION_Y, 400),
                    (EV_ABS, ABS_MT_SLOT, 0),
                    (EV_ABS, ABS_MT_POSITION_X, 110),
                    (EV_ABS, ABS_MT_POSITION_Y, 210),
                    (EV_ABS, ABS_X, 110),
                    (EV_ABS, ABS_Y, 210),
                    SYN
                ]
            ),
            // The minor axis and the orientation are not declared: only the major axis.
            report(MT, &[(EV_ABS, ABS_MT_TOUCH_MAJOR, 10), SYN]),
            // Slot 0 lifted: the emulation moves to slot 1, BTN_TOUCH stays down.
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_TRACKING_ID, -1),
                    (EV_ABS, ABS_X, 300),
                    (EV_ABS, ABS_Y, 400),
                    SYN
                ]
            ),
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_SLOT, 1),
                    (EV_ABS, ABS_MT_TRACKING_ID, -1),
                    (EV_KEY, BTN_TOUCH, 0),
                    SYN
                ]
            ),
            // A new contact where slot 0 was last: its position is the slot's old one, so
            // only the tracking id is new.
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_SLOT, 0),
                    (EV_ABS, ABS_MT_TRACKING_ID, 2),
                    (EV_KEY, BTN_TOUCH, 1),
                    (EV_ABS, ABS_X, 110),
                    (EV_ABS, ABS_Y, 210),
                    SYN
                ]
            ),
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_TRACKING_ID, -1),
                    (EV_KEY, BTN_TOUCH, 0),
                    SYN
                ]
            ),
        ]
    );
}

#[test]
fn reports_come_in_the_order_of_their_syn_report() {
    // The touch waits in the core for its sync while the key and the position are reported.
    let got = reports(
        &touch_config(),
        "0 touch 0 down 50 60\n\
         0 key KEY_Z press\n\
         0 abs 7 8\n\
         0 touch 0 sync\n\
         0 touch 0 up\n\
         0 key KEY_Z release\n\
         0 touch 0 sync\n",
    );
    assert_eq!(
        got,
        [
            report(KBD, &[(EV_KEY, 44, 1), SYN]),
            report(PTR, &[(EV_ABS, ABS_X, 7), (EV_ABS, ABS_Y, 8), SYN]),
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_TRACKING_ID, 0),
                    (EV_ABS, ABS_MT_POSITION_X, 50),
                    (EV_ABS, ABS_MT_POSITION_Y, 60),
                    (EV_KEY, BTN_TOUCH, 1),
                    (EV_ABS, ABS_X, 50),
                    (EV_ABS, ABS_Y, 60),
                    SYN
                ]
            ),
            report(KBD, &[(EV_KEY, 44, 0), SYN]),
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_TRACKING_ID, -1),
                    (EV_KEY, BTN_TOUCH, 0),
                    SYN
                ]
            ),
        ]
    );
}

#[test]
fn a_full_packet_is_handed_on_with_a_syn_report_of_value_1() {
    // Two slots: 6 * 2 + 10 = 22 events per packet, 24 values, handed on at 22.
    let mut script = String::new();
    for step in 1..=12 {
        script += &format!("0 touch {} move {step} {step}\n", step % 2);
    }
    script += "0 touch 0 sync\n";
    let got = reports(&touch_config(), &script);
    assert_eq!(got.len(), 2, "{got:#?}");
    // Three values per move (the slot changes every time); the eighth move's slot and X
    // make 23, past 22: the core adds its SYN_REPORT and hands the 24 on.
    let first = &got[0].events;
    assert_eq!(first.len(), 24);
    assert_eq!(first[0], E::new(EV_ABS, ABS_MT_SLOT, 1));
    assert_eq!(first[21], E::new(EV_ABS, ABS_MT_SLOT, 0));
    assert_eq!(first[22], E::new(EV_ABS, ABS_MT_POSITION_X, 8));
    assert_eq!(first[23], E::new(EV_SYN, SYN_REPORT, 1));
    // The rest: the eighth move's Y without its slot, four more moves, the frame's end.
    assert_eq!(got[1].events.len(), 14);
    assert_eq!(got[1].events[0], E::new(EV_ABS, ABS_MT_POSITION_Y, 8));
    // No contact is down: the frame's BTN_TOUCH is 0 as before, and nothing else is new.
    assert_eq!(got[1].events.last(), Some(&E::report()));
    assert!(!got[1]
        .events
        .iter()
        .any(|event| event.kind == EV_KEY || (event.kind, event.code) == (EV_ABS, ABS_X)));
}

#[test]
fn without_contacts_multi_touch_values_pass_unfiltered_and_without_slots() {
    let config = VkbdConfig::parse(
        "backend-type=linux,unique-id=t,feature-multi-touch=1,multi-touch-width=100",
    )
    .unwrap();
    let got = reports(
        &config,
        "0 touch 0 down 1 2\n0 touch 0 sync\n0 touch 0 move 1 2\n0 touch 0 up\n0 touch 0 sync\n",
    );
    assert_eq!(
        got,
        [
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_POSITION_X, 1),
                    (EV_ABS, ABS_MT_POSITION_Y, 2),
                    SYN
                ]
            ),
            report(
                MT,
                &[
                    (EV_ABS, ABS_MT_POSITION_X, 1),
                    (EV_ABS, ABS_MT_POSITION_Y, 2),
                    SYN
                ]
            ),
        ]
    );
    // No multi-touch device: touches reach nothing.
    assert!(reports(&mouse_config(), "0 touch 0 down 1 2\n0 touch 0 sync\n").is_empty());
}

#[test]
fn events_that_would_break_the_domain_are_refused_with_their_line() {
    let script = |text| Script::parse(text).unwrap();
    let no_pointer =
        VkbdConfig::parse("backend-type=linux,unique-id=k,feature-disable-pointer=1").unwrap();
    let error = expected(&[no_pointer], &script("0 rel 1 1\n5 key KEY_A press\n")).unwrap_err();
    assert_eq!(error.line, 2);
    assert_eq!(error.reason, ModelRefusal::KeyWithoutPointer);
    assert!(error.to_string().starts_with(
        "script line 2 (`key KEY_A press`, vkbd device 0): xen-kbdfront looks every key up"
    ));
    let no_keyboard = VkbdConfig::parse("backend-type=linux,feature-disable-keyboard=1").unwrap();
    // Buttons are fine; keys are not.
    assert!(expected(
        std::slice::from_ref(&no_keyboard),
        &script("0 key BTN_LEFT press\n")
    )
    .is_ok());
    assert_eq!(
        expected(&[no_keyboard], &script("0 key KEY_A press\n"))
            .unwrap_err()
            .reason,
        ModelRefusal::KeyWithoutKeyboard
    );
    let refusal = |text| {
        expected(&[mouse_config()], &script(text))
            .unwrap_err()
            .reason
    };
    assert_eq!(refusal("0 key 768 press\n"), ModelRefusal::KeyBeyondMax);
    assert_eq!(
        refusal("0 key KEY_LEFTALT press\n0 key 99 press\n"),
        ModelRefusal::SysRq
    );
    assert_eq!(
        refusal("0 key KEY_LEFTCTRL press\n0 key KEY_LEFTALT press\n0 key KEY_DELETE press\n"),
        ModelRefusal::CtrlAltDelete
    );
    // SysRq alone is an ordinary key.
    assert!(expected(&[mouse_config()], &script("0 key 99 press\n")).is_ok());
}

#[test]
fn each_device_gets_its_sections_of_the_script() {
    let script = Script::parse(
        "device touch\n\
         0 abs 1 1\n\
         device mouse\n\
         0 rel 1 0\n\
         device *\n\
         0 key KEY_ESC press\n",
    )
    .unwrap();
    let rings = expected(&[touch_config(), mouse_config()], &script).unwrap();
    assert_eq!(rings.len(), 2);
    assert_eq!(rings[0].phys, "xenbus/device/vkbd/0");
    assert_eq!(
        rings[0].reports,
        [
            report(PTR, &[(EV_ABS, ABS_X, 1), (EV_ABS, ABS_Y, 1), SYN]),
            report(KBD, &[(EV_KEY, KEY_ESC, 1), SYN]),
        ]
    );
    assert_eq!(
        rings[1].reports,
        [
            report(
                "Xen Virtual Pointer (xenbus/device/vkbd/1)",
                &[(EV_REL, REL_X, 1), SYN]
            ),
            report(
                "Xen Virtual Keyboard (xenbus/device/vkbd/1)",
                &[(EV_KEY, KEY_ESC, 1), SYN]
            ),
        ]
    );
    assert_eq!(rings[1].devices.len(), 2);
}
