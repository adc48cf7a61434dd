//! `cargo xtask run` and `cargo xtask test`: the rig's scenarios, what each must show on the
//! serial console, and the loop that boots QEMU and reads the log with a timeout.
//!
//! A scenario is data ([`SCENARIOS`]): a GIC version, how to boot (Dom0 running one of
//! `qemu/dom0/scenarios/*.sh`, or dom0less), the guest's bootargs, the expected lines, a timeout
//! and whether `cargo xtask test` runs it by default. Add one there.

use crate::logmatch::{self, Expectations, Pattern};
use crate::qemu::{self, Boot, Console, Event, Machine, Qemu};
use crate::release::{self, Choice, Release};
use crate::{build, cmd, deps, display, dtb, initramfs, linux_input, linux_peer, peer_frames, rig};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The report's Xen version line; a scenario expects the version of the release it boots (see
/// [`for_release`]).
pub const XEN_VERSION: Pattern = Pattern::start("report: xen-version ");

/// What every guest boot prints first: its boot report.
pub const GUEST_REPORT: &[Pattern] = &[
    XEN_VERSION,
    Pattern::start("report: evtchn-upcall intid 31"),
    Pattern::start("report: grant-table "),
    Pattern::start("report: memory "),
    Pattern::start("report: end"),
];
/// The guest's clean poweroff (SCHEDOP_shutdown poweroff).
pub const GUEST_POWEROFF: &[Pattern] = &[Pattern::start("vdispl-os: powering off")];
/// The GIC line of the report on GICv2.
pub const GICV2: &[Pattern] = &[Pattern::start("report: gic v2")];
/// The GIC line of the report on GICv3.
pub const GICV3: &[Pattern] = &[Pattern::start("report: gic v3")];
/// Printed by `qemu/dom0/lib.sh` once the guest has left `xl list`.
pub const GUEST_GONE: &[Pattern] = &[Pattern::start("rig: guest vdispl-os gone after ")];
/// xl's own log (`xl-log: ` lines from `/var/log/xen/xl-vdispl-os.log`): the guest shut down
/// with reason poweroff.
pub const XL_POWEROFF: &[Pattern] = &[Pattern::anywhere("has shut down, reason code 0 0x0")];
/// xl's log: the guest shut down with reason crash (SCHEDOP_shutdown crash).
pub const XL_CRASH: &[Pattern] = &[Pattern::anywhere("has shut down, reason code 3 0x3")];

/// `crash=panic`: the panic handler's line (`kernel/src/guest/panic.rs`).
pub const GUEST_PANIC: &[Pattern] = &[
    Pattern::start("vdispl-os: panic at "),
    Pattern::anywhere("crash requested by the bootargs"),
];
/// `crash=data-abort`: the exception report of a read from the unmapped address 0x10000000
/// (`kernel/src/guest/panic.rs`, `arch/src/exception.rs`), down to the last register row.
pub const GUEST_DATA_ABORT: &[Pattern] = &[
    Pattern::start("vdispl-os: unexpected Synchronous exception from current EL"),
    Pattern::start("ESR_EL1 "),
    Pattern::anywhere("(data abort at the current EL, ISS "),
    Pattern::anywhere("FAR_EL1 0x0000000010000000"),
    Pattern::start("x28 "),
];

/// `selftest=services` (`qemu/dom0/scenarios/services.sh`): the guest's self-tests, the grant
/// that Dom0 reads back with `vdispl-grant-check`, then `xl shutdown` and, in a second guest,
/// `xl reboot`, each ending the guest through its own shutdown path (the reason Xen logs) with xl
/// succeeding; how long each took is a figure in the log, not a check.
pub const SERVICES: &[Pattern] = &[
    Pattern::start("selftest: evtchn loopback ok"),
    Pattern::start("selftest: timer ok"),
    Pattern::start("selftest: xenstore ok"),
    Pattern::anywhere(" offered to domain 0"),
    Pattern::anywhere(" matches the pattern (4096 bytes)"),
    Pattern::start("selftest: grant ok (domain 0 read it back, access ended)"),
    Pattern::start("vdispl-os: ready"),
    Pattern::start("vdispl-os: shutdown requested (poweroff)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::anywhere("has shut down, reason code 0 0x0"),
    Pattern::start("vdispl-os: shutdown requested (reboot)"),
    Pattern::start("vdispl-os: rebooting"),
    Pattern::start("rig: xl reboot ended the guest ("),
    Pattern::anywhere("has shut down, reason code 1 0x1"),
    Pattern::start("rig: services ok (2 guests)"),
];

/// `qemu/dom0/scenarios/grant-loopback.sh`: Dom0 alone runs the grant test's Dom0 tools on a page
/// it grants to itself: the right seed matches, another differs, an unknown reference fails.
pub const GRANT_LOOPBACK: &[Pattern] = &[
    Pattern::start("rig: Dom0 grants "),
    Pattern::anywhere(" of domain 0 matches the pattern (4096 bytes)"),
    Pattern::anywhere(" of domain 0 differs from the pattern at byte "),
    Pattern::anywhere(" of domain 0: cannot map the grant (mmap PROT_READ MAP_SHARED): "),
    Pattern::start("rig: grant loopback ok"),
];

/// `dom0less-xenstore.sh`: the guest, started by Xen from the device tree with xenstore before
/// Dom0 exists, finds its store not up, waits for it, and once Dom0's `init-dom0less` has
/// introduced it runs its self-tests (the grant read back by Dom0) and powers off when Dom0 asks
/// through `control/shutdown`.
pub const DOM0LESS_XENSTORE: &[Pattern] = &[
    Pattern::start("report: xenstore late evtchn "),
    Pattern::start("xenstore: waiting up to "),
    Pattern::start("rig: init-dom0less done"),
    Pattern::start("xenstore: the store came up after "),
    Pattern::start("selftest: evtchn loopback ok"),
    Pattern::start("selftest: timer ok"),
    Pattern::start("selftest: xenstore ok"),
    Pattern::anywhere(" matches the pattern (4096 bytes)"),
    Pattern::start("selftest: grant ok (domain 0 read it back, access ended)"),
    Pattern::start("vdispl-os: ready"),
    Pattern::start("vdispl-os: shutdown requested (poweroff)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: dom0less xenstore ok"),
];

/// `dom0less-no-store.sh`: the same guest, but Dom0 never introduces it; the guest gives up
/// after its `xenstore-wait=` in one line and powers off.
pub const DOM0LESS_NO_STORE: &[Pattern] = &[
    Pattern::start("report: xenstore late evtchn "),
    Pattern::start("xenstore: waiting up to 3 s "),
    Pattern::start("xenstore: no store after 3"),
    Pattern::anywhere("; going on without xenstore"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: dom0less guest shut down without a store"),
];

/// `display.sh`: the backend serves, the guest shows its scenes on both connectors of the
/// display xl config (`qemu/xl/vdispl-os-display.cfg`), returns every grant and powers off, and
/// the backend stops after writing its PNG files.
pub const DISPLAY: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("display: summary conn=0 1280x720 "),
    Pattern::start("display: summary conn=1 800x600 "),
    Pattern::start("display: all grants returned (0 in use)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: guest vdispl-os gone after "),
    Pattern::anywhere("has shut down, reason code 0 0x0"),
    Pattern::start("vdispl-backend: stopped: "),
];

/// `display-strict.sh`: the display scenario against `vdispl-backend --strict`; connector 1's
/// RGB565 buffers are refused and the guest falls back to XRGB8888 there, said once.
pub const DISPLAY_STRICT: &[Pattern] = &[
    Pattern::anywhere(
        "display conn=1 (HDMI-A-1): the backend refused 16 bpp buffers (DBUF_CREATE failed with \
         status -22); falling back to XRGB8888 (32 bpp)",
    ),
    Pattern::start("display: conn=1 (HDMI-A-1) 800x600 32 bpp ready"),
];

/// `display-4k.sh`: one 3840x2160 connector (`qemu/xl/vdispl-os-4k.cfg`): the guest grows its
/// grant table from 4 frames to the 32 two 4K buffers need, shows its frames, returns every grant
/// and powers off.
pub const DISPLAY_4K: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("display: conn=0 (DP-1) 3840x2160 32 bpp ready"),
    Pattern::start("display: summary conn=0 3840x2160 "),
    Pattern::start("display: all grants returned (0 in use)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: guest vdispl-os gone after "),
    Pattern::anywhere("has shut down, reason code 0 0x0"),
    Pattern::start("vdispl-backend: stopped: "),
];

/// `config.sh`: the display guest with nodes of its vdispl device damaged before it runs, one
/// case per guest: a bad resolution stops only its connector (the other shows its frames, which
/// are checked), a bad `backend-id` or a gap in the connectors stops the device, each named
/// once, without a reconnection, with every grant back; the backend names what it refuses.
pub const CONFIG: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: config resolution: guest said: "),
    Pattern::start("rig: config resolution: connector 0 showed its frames"),
    Pattern::start("rig: config resolution: the backend named it"),
    Pattern::start("rig: config too-large: guest said: "),
    Pattern::start("rig: config too-large: connector 1 showed its frames"),
    Pattern::start("rig: config too-large: the backend named it"),
    Pattern::start("rig: config backend-id: guest said: "),
    Pattern::start("rig: config gap: guest said: "),
    Pattern::start("rig: config gap: the backend named it"),
    Pattern::start("rig: config ok (4 cases)"),
];

/// `multi.sh`: four display guests on one backend at once, one destroyed while they flip; the
/// others flip on and power off with every grant back.
pub const MULTI: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: multi: guest vdispl-os-4 is domain "),
    Pattern::start("rig: multi: xl destroy vdispl-os-4 "),
    Pattern::start("rig: multi ok (4 guests on one backend"),
];

/// `display-teardown.sh`: a guest ended by `xl shutdown` and one ended by `xl destroy`, both
/// while flipping; the first returns every grant and powers off, and the backend releases each
/// guest's device. How long each took is a figure in the log, not a check.
pub const DISPLAY_TEARDOWN: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("vdispl-os: shutdown requested (poweroff)"),
    Pattern::start("display: all grants returned (0 in use)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::anywhere("'s device (after xl shutdown)"),
    Pattern::start("rig: xl destroy ended the guest ("),
    Pattern::anywhere("'s device (after xl destroy)"),
    Pattern::start("rig: display teardown ok (2 guests)"),
];

/// `recovery.sh`: the backend killed and restarted five times while the guest flips; frames
/// resume each time, and every connection ends with grants and heap back at the baseline.
pub const RECOVERY: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: recovery cycle 5 of 5: frames resumed "),
    Pattern::start("display: device 0 connection 6 closed: "),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: recovery ok (5 backend restarts"),
];

/// `be-alloc.sh`: the display guest with `be-alloc = 1` (`qemu/xl/vdispl-os-be-alloc.cfg`): the
/// backend allocates the buffers, the guest maps them. A golden phase (two connectors, the demo
/// scenes, every frame of that domain held against its golden) and a recovery phase (the
/// backend killed and restarted three times while the guest flips; every connection closes
/// with the guest's grants, heap and mapped backend pages at baseline, the backend's allocated
/// pages all let go of).
pub const BE_ALLOC: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::anywhere("pages allocated and granted to domain "),
    Pattern::start("rig: be-alloc golden: guest powered off"),
    Pattern::start("rig: be-alloc recovery cycle 3 of 3: frames resumed "),
    Pattern::start("display: device 0 connection 4 closed: "),
    Pattern::start("rig: be-alloc golden: the backend holds 0 gntalloc and gntdev mappings"),
    Pattern::start("rig: be-alloc recovery: the backend holds 0 gntalloc and gntdev mappings"),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: be-alloc ok (golden phase, 3 backend restarts"),
];

/// `reconnect.sh`: one backend process through 50 reconnections of a flipping guest
/// (`--fault state-back`): every buffer mapped each time, no gntdev mapping left once the guest
/// is gone, the guest's grants and heap at baseline after every connection.
pub const RECONNECT: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: reconnect: 51 connections after "),
    Pattern::start("rig: reconnect: 50 state-back faults, 0 buffers not mapped"),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::start("rig: reconnect: the backend holds 0 gntdev mappings after the guest is gone"),
    Pattern::start("display: all grants returned (0 in use)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: reconnect ok (50 reconnections by one backend"),
];

/// `hostile.sh`: the backend restarted with each `--fault` mode in turn; per mode the guest
/// names the connector and the fault, connector 0 keeps flipping and connector 1 flips again.
pub const HOSTILE: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: hostile status: guest said "),
    Pattern::start("rig: hostile wrong-id: guest said "),
    Pattern::start("rig: hostile rsp-prod: guest said "),
    Pattern::start("rig: hostile garbage-event: guest said "),
    Pattern::start("rig: hostile silent: guest said "),
    Pattern::start("rig: hostile state-back: guest said "),
    Pattern::start("rig: xl shutdown ended the guest ("),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: hostile ok (6 of 6 fault modes"),
];

/// `linux-peer.sh`: Linux's xen-drm-front in a DomU (`linux_peer.rs`), driven by
/// `kms-client`, against the backend: one connector, two connectors, and two connectors with
/// `be-alloc=1` (the backend allocates the buffers, Linux maps them and draws into them). Each
/// case's frames, console and shutdown are checked by `peer_frames.rs`.
pub const LINUX_PEER: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("rig: linux-peer case one start: "),
    Pattern::start("kms-client: ok: conn 0 320x240 XR24 8 flips"),
    Pattern::start("rig: linux-peer case two start: "),
    Pattern::start("kms-client: ok: conn 1 256x192 XR24 8 flips"),
    Pattern::start("rig: linux-peer case be-alloc start: "),
    Pattern::anywhere("pages allocated and granted to domain "),
    Pattern::start("kms-client: ok: conn 1 256x192 XR24 8 flips"),
    Pattern::start("rig: linux-peer ok (3 cases)"),
    Pattern::start("vdispl-backend: stopped: "),
];
/// The cases of `linux-peer.sh`, as its start lines name them.
pub const LINUX_PEER_CASES: &[&str] = &["one", "two", "be-alloc"];

/// `linux-peer-formats.sh`: the Linux peer on one connector once per pixel format
/// xen-drm-front offers besides XRGB8888 (which `linux-peer.sh` shows).
pub const LINUX_PEER_FORMATS: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("kms-client: ok: conn 0 320x240 RG16 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 RG24 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 AR24 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 XR12 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 AR12 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 XR15 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 AR15 8 flips"),
    Pattern::start("kms-client: ok: conn 0 320x240 YUYV 8 flips"),
    Pattern::start("rig: linux-peer ok (8 cases)"),
    Pattern::start("vdispl-backend: stopped: "),
];
/// The cases of `linux-peer-formats.sh`.
pub const LINUX_PEER_FORMAT_CASES: &[&str] = &[
    "rg16", "rg24", "ar24", "xr12", "ar12", "xr15", "ar15", "yuyv",
];

/// `linux-input.sh`: Linux's xen-kbdfront in a DomU (Debian's stock kernel, `evdev-reader` as
/// its `/init`, `qemu/xl/linux-input.cfg`: two vkb devices, one with an absolute pointer and
/// multi-touch, one with a relative pointer) against `vkbd-backend`, held at InitWait until
/// the reader has opened the five input devices, then playing
/// `qemu/dom0/input/linux-input.script` (37 events to the first device, 10 to the second):
/// every event sent, the reader powering the DomU off
/// after KEY_ESC, the backend letting go of both devices. The reader's lines are then held
/// against the evdev reports xen-kbdfront must give, and the DomU's console against errors
/// (`linux_input.rs`).
pub const LINUX_INPUT: &[Pattern] = &[
    Pattern::start("rig: linux-input: domain "),
    Pattern::start("rig: linux-input: both devices at InitWait; vkbd-backend held (SIGSTOP) "),
    Pattern::start("rig: linux-input: vkbd-backend goes on (SIGCONT)"),
    Pattern::start("vkbd-backend: serving /local/domain/0/backend/vinput (script: 45 events over "),
    Pattern::anywhere(" dev0: script done: 37 of 37 events sent, 0 not sent, in "),
    Pattern::anywhere(" dev1: script done: 10 of 10 events sent, 0 not sent, in "),
    Pattern::start("rig: guest linux-input gone after "),
    Pattern::start("rig: linux-input: the backend released both devices"),
    Pattern::start(
        "vkbd-backend: stopped: 2 connections, 47 events sent, 0 not sent, 2 scripts done, 0 \
         devices could not be connected",
    ),
    Pattern::start("evdev: ready: 5 devices open"),
    Pattern::start("evdev: summary: "),
    Pattern::start("evdev: powering off"),
    Pattern::anywhere("has shut down, reason code 0 0x0"),
    Pattern::start("rig: linux-input ok"),
];
/// The events of `linux-input.script`: (unique-id, events its device gets).
#[cfg(test)]
const LINUX_INPUT_SCRIPT_EVENTS: &[(&str, usize)] = &[("touch", 37), ("mouse", 10)];

/// The cases a linux-peer script runs.
fn peer_cases(script: &str) -> &'static [&'static str] {
    if script == "linux-peer-formats" {
        LINUX_PEER_FORMAT_CASES
    } else {
        LINUX_PEER_CASES
    }
}

/// `input.sh`: the paint app (`app=paint`) on the display guest with a vkb input device per
/// connector (`qemu/xl/vdispl-os-input.cfg`), `vkbd-backend` playing [`INPUT_SCRIPT`] to both:
/// the guest connects both devices to their connectors, the backend sends each device every
/// event of its script (121 for DP-1, 60 for HDMI-A-1), the script's Escape stops the guest,
/// which returns every grant (the display's, then the input pages') and powers itself off, and
/// the input backend stops. Each paint frame is then held against a
/// golden drawn from the same script (`display::frame_input`).
pub const INPUT: &[Pattern] = &[
    Pattern::start("vdispl-backend: serving "),
    Pattern::start("vkbd-backend: serving /local/domain/0/backend/vinput (script: "),
    Pattern::start(
        "input: device device/vkbd/0 connected (backend domain 0, connector DP-1, absolute \
         pointer, multi-touch)",
    ),
    Pattern::start(
        "input: device device/vkbd/1 connected (backend domain 0, connector HDMI-A-1, absolute \
         pointer, multi-touch)",
    ),
    Pattern::anywhere(" dev0: script done: 121 of 121 events sent, 0 not sent, in "),
    Pattern::anywhere(" dev1: script done: 60 of 60 events sent, 0 not sent, in "),
    Pattern::start("display: summary conn=0 1280x720 "),
    Pattern::start("display: summary conn=1 800x600 "),
    // The display's grants come back first, the input pages' once the input devices are closed.
    Pattern::start(
        "display: the connection's grants returned (2 in use, the input devices' pages)",
    ),
    Pattern::start("input: all grants returned (0 in use)"),
    Pattern::start("vdispl-os: powering off"),
    Pattern::start("rig: guest vdispl-os gone after "),
    Pattern::anywhere("has shut down, reason code 0 0x0"),
    Pattern::start("vkbd-backend: stopped: "),
    Pattern::start("vdispl-backend: stopped: "),
];
/// The input event script `input.sh` plays (`/rig/input/paint.script` in Dom0), relative to
/// `qemu/`.
pub const INPUT_SCRIPT: &str = "dom0/input/paint.script";
/// The input scenario's guest: the paint app for far more frames than the script lasts, so
/// its Escape is what stops the guest.
pub const INPUT_BOOTARGS: &str = "log=info app=paint frames=1000";

/// Connectors of the display xl config; the display scenarios check that each flipped.
pub const DISPLAY_CONNECTORS: usize = 2;

/// The display scenarios' guest: every scene, two frames each (short, still every scene on
/// both connectors).
pub const DISPLAY_TEST_BOOTARGS: &str = "log=info scene=bars,primitives,animation,status frames=2";
/// The same with the second connector's buffers in RGB565 (`bpp=32,16`: XRGB8888 on
/// connector 0, RGB565 on connector 1).
pub const DISPLAY_TEST_BOOTARGS_RGB565: &str =
    "log=info scene=bars,primitives,animation,status frames=2 bpp=32,16";

/// The 4K scenario's guest: two scenes, two frames each (a 4K frame takes seconds to draw,
/// capture and write under emulation).
pub const DISPLAY_4K_BOOTARGS: &str = "log=info scene=bars,primitives frames=2";

/// Lines that end a run at once: nothing good follows them.
const FATAL: &[&str] = &[
    "(XEN) Panic on CPU",
    "Kernel panic - not syncing",
    "rig: unknown scenario",
];

/// Starts of guest lines that say it failed (`kernel/src/guest/`): reported with the scenario,
/// and in dom0less (where nothing else ends the run) they stop it at once. A scenario that
/// expects such a line (the crash scenarios) takes it as a match instead.
const GUEST_FATAL: &[&str] = &[
    "vdispl-os: panic",
    "vdispl-os: unexpected ",
    "vdispl-os: boot failed",
    "vdispl-os: cannot ",
];

/// A guest self-test's failure line (`selftest: NAME FAILED: reason`, kernel/src/guest/selftest.rs),
/// which the failure report names instead of only the missing `ok` line.
fn failed_selftest(text: &str) -> bool {
    text.strip_prefix("selftest: ")
        .is_some_and(|rest| rest.contains(" FAILED: "))
}

/// Dom0 kernel lines that say Dom0 was starved or stuck (an RCU stall, a task blocked for minutes,
/// a soft lockup): the run goes on, but the scenario fails naming the line. A backend or guest
/// that hogs Dom0's CPUs, or a device that loses an interrupt, shows here first.
const DOM0_DISTRESS: &[&str] = &[
    "rcu: INFO: rcu_sched detected stalls",
    "rcu_sched kthread starved",
    "rcu: INFO: rcu_sched self-detected stall",
    "blocked for more than",
    "BUG: soft lockup",
];

/// The Dom0 kernel line that says a task waited minutes in the kernel: with the frames share
/// (virtio-9p) mounted, a 9p request whose completion never came. Seen now and then on the
/// emulated GICv2 board, with the PNG writers of `vdispl-backend` stuck in a write and nothing
/// written since.
const SHARE_STALL: &str = "blocked for more than";

/// Whether a run that uses the frames share failed because the share stalled (see
/// [`SHARE_STALL`]): the problem it failed with, which names the kernel's line.
fn share_stall(uses_share: bool, outcome: &Outcome) -> Option<&str> {
    let problem = outcome.problem.as_deref()?;
    (uses_share && problem.contains(SHARE_STALL)).then_some(problem)
}

/// Moves a failed run's log aside (`<name>.first.log`) before the run is booted again.
fn keep_first_log(log: &Path) -> Result<PathBuf> {
    let kept = log.with_extension("first.log");
    std::fs::rename(log, &kept)
        .with_context(|| format!("cannot move {} to {}", log.display(), kept.display()))?;
    Ok(kept)
}

/// How long a dom0less run goes on after a guest failure line, to log what the guest adds.
const GUEST_FATAL_GRACE: Duration = Duration::from_secs(1);

/// Progress lines derived from the log: (start of a stripped line, what `run`/`test` print).
const PROGRESS: &[(&str, &str)] = &[
    ("Xen version 4.", "Xen up"),
    ("*** LOADING DOMAIN 0 ***", "loading Dom0"),
    ("rig: dom0 init", "Dom0 init"),
    ("rig: dom0 ready", "Dom0 ready"),
    ("rig: Dom0 grants ", "Dom0 granted a page"),
    ("rig: guest created", "guest created"),
    (
        "rig: xenstore data/vdispl-os-test/grant ",
        "guest offered its grant",
    ),
    ("rig: grant ", "Dom0 checked a grant"),
    ("rig: guest state ready", "guest ready"),
    ("rig: xl shutdown ended", "xl shutdown done"),
    ("rig: xl shutdown took", "xl shutdown too slow"),
    ("rig: guest 2 of 2", "second guest"),
    ("rig: xl reboot ended", "xl reboot done"),
    ("rig: xl reboot took", "xl reboot too slow"),
    ("rig: services ", "services done"),
    ("rig: frames share mounted", "frames share mounted"),
    ("vdispl-backend: serving", "display backend up"),
    ("vdispl-backend: dom", "display backend serving the guest"),
    ("frame conn=0 seq=0 ", "first frame captured on connector 0"),
    ("frame conn=1 seq=0 ", "first frame captured on connector 1"),
    ("frame conn=0 seq=10 ", "10 frames captured on connector 0"),
    ("frame conn=0 seq=30 ", "30 frames captured on connector 0"),
    ("rig: xl destroy ended", "xl destroy done"),
    ("rig: xl destroy took", "xl destroy too slow"),
    ("vdispl-backend: stopped", "display backend stopped"),
    ("vdispl-os ", "guest booting"),
    ("report: end", "guest report done"),
    ("vdispl-os: panic", "guest panicked"),
    (
        "vdispl-os: unexpected ",
        "guest took an unexpected exception",
    ),
    ("vdispl-os: powering off", "guest powering off"),
    ("rig: guest vdispl-os gone", "guest gone"),
    (
        "rig: guest vdispl-os still running",
        "guest did not power off",
    ),
    ("rig: poweroff", "Dom0 powering off"),
];

/// How a scenario boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Xen + Debian Dom0; Dom0's init runs `qemu/dom0/scenarios/<script>.sh`, then powers off
    /// (QEMU exits).
    Dom0 {
        /// Script name without `.sh`.
        script: &'a str,
    },
    /// Xen + the guest from the device tree, no Dom0. Xen keeps running after the guest is
    /// done, so QEMU is killed once every expected line was seen.
    Dom0less,
    /// Xen + the guest from the device tree with xenstore (`xen,enhanced`), and Dom0 beside it
    /// from the same tree; Dom0's init runs `qemu/dom0/scenarios/<script>.sh`, then powers off.
    Dom0lessBesideDom0 {
        /// Script name without `.sh`.
        script: &'a str,
    },
}

impl Kind<'_> {
    /// Whether the boot has a Dom0 (and so needs its initramfs).
    pub fn has_dom0(self) -> bool {
        !matches!(self, Kind::Dom0less)
    }
}

impl std::fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Dom0 { script } => write!(f, "Dom0 {script}.sh"),
            Kind::Dom0less => write!(f, "dom0less"),
            Kind::Dom0lessBesideDom0 { script } => write!(f, "dom0less beside Dom0 {script}.sh"),
        }
    }
}

/// One rig scenario.
#[derive(Debug)]
pub struct Scenario {
    /// Name for `--scenario` and the log file.
    pub name: &'static str,
    /// GIC version of the board.
    pub gic: u8,
    /// How it boots.
    pub kind: Kind<'static>,
    /// The guest's bootargs (None: the xl config's `extra`, `log=info`).
    pub bootargs: Option<&'static str>,
    /// Groups of lines that must all appear, in any order (see `logmatch`). A guest failure line
    /// ([`GUEST_FATAL`]) that one of them matches is expected, not a failure.
    pub expect: &'static [&'static [Pattern]],
    /// Upper bound for the whole boot, QEMU start to exit.
    pub timeout: Duration,
    /// Connectors whose frames are checked (0: none): share `target/frames/<name>/` with Dom0
    /// for the display backend's PNG files, and hold every flipped frame of each connector against
    /// its golden afterwards (`display.rs`).
    pub check_frames: usize,
    /// Run by `cargo xtask test` without `--scenario`. Scenarios whose guest side is still
    /// being written are `false`: they run only when named.
    pub default: bool,
}

/// The scenarios `cargo xtask test` knows, in the order it runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "boot-gicv2",
        gic: 2,
        kind: Kind::Dom0 { script: "boot" },
        bootargs: None,
        expect: &[GUEST_REPORT, GUEST_POWEROFF, GICV2, GUEST_GONE, XL_POWEROFF],
        timeout: Duration::from_secs(180),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "boot-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "boot" },
        bootargs: None,
        expect: &[GUEST_REPORT, GUEST_POWEROFF, GICV3, GUEST_GONE, XL_POWEROFF],
        timeout: Duration::from_secs(180),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "dom0less",
        gic: 3,
        kind: Kind::Dom0less,
        bootargs: None,
        expect: &[GUEST_REPORT, GUEST_POWEROFF, GICV3],
        timeout: Duration::from_secs(120),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "dom0less-gicv2",
        gic: 2,
        kind: Kind::Dom0less,
        bootargs: None,
        expect: &[GUEST_REPORT, GUEST_POWEROFF, GICV2],
        timeout: Duration::from_secs(120),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "dom0less-xenstore",
        gic: 3,
        kind: Kind::Dom0lessBesideDom0 {
            script: "dom0less-xenstore",
        },
        bootargs: Some("log=info selftest=services"),
        expect: &[GUEST_REPORT, GICV3, DOM0LESS_XENSTORE],
        timeout: Duration::from_secs(240),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "dom0less-no-store",
        gic: 3,
        kind: Kind::Dom0lessBesideDom0 {
            script: "dom0less-no-store",
        },
        bootargs: Some("log=info xenstore-wait=3"),
        expect: &[GUEST_REPORT, GICV3, DOM0LESS_NO_STORE],
        timeout: Duration::from_secs(240),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "crash-panic",
        gic: 3,
        kind: Kind::Dom0less,
        bootargs: Some("log=info crash=panic"),
        expect: &[GUEST_REPORT, GICV3, GUEST_PANIC],
        timeout: Duration::from_secs(120),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "crash-data-abort",
        gic: 3,
        kind: Kind::Dom0less,
        bootargs: Some("log=info crash=data-abort"),
        expect: &[GUEST_REPORT, GICV3, GUEST_DATA_ABORT],
        timeout: Duration::from_secs(120),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "crash-xl",
        gic: 2,
        kind: Kind::Dom0 { script: "boot" },
        bootargs: Some("log=info crash=data-abort"),
        expect: &[GUEST_REPORT, GICV2, GUEST_DATA_ABORT, GUEST_GONE, XL_CRASH],
        timeout: Duration::from_secs(180),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "grant-loopback",
        gic: 3,
        kind: Kind::Dom0 {
            script: "grant-loopback",
        },
        bootargs: None,
        expect: &[GRANT_LOOPBACK],
        timeout: Duration::from_secs(180),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "services-gicv2",
        gic: 2,
        kind: Kind::Dom0 { script: "services" },
        bootargs: None,
        expect: &[GUEST_REPORT, GICV2, SERVICES],
        timeout: Duration::from_secs(240),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "services-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "services" },
        bootargs: None,
        expect: &[GUEST_REPORT, GICV3, SERVICES],
        timeout: Duration::from_secs(240),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "display-gicv2",
        gic: 2,
        kind: Kind::Dom0 { script: "display" },
        bootargs: Some(DISPLAY_TEST_BOOTARGS_RGB565),
        expect: &[GUEST_REPORT, GICV2, DISPLAY],
        timeout: Duration::from_secs(300),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "display-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "display" },
        bootargs: Some(DISPLAY_TEST_BOOTARGS),
        expect: &[GUEST_REPORT, GICV3, DISPLAY],
        timeout: Duration::from_secs(300),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "display-strict-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "display-strict",
        },
        bootargs: Some(DISPLAY_TEST_BOOTARGS_RGB565),
        expect: &[GUEST_REPORT, GICV3, DISPLAY, DISPLAY_STRICT],
        timeout: Duration::from_secs(300),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "display-4k-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "display-4k",
        },
        bootargs: Some(DISPLAY_4K_BOOTARGS),
        expect: &[GUEST_REPORT, GICV3, DISPLAY_4K],
        timeout: Duration::from_secs(600),
        check_frames: 1,
        default: true,
    },
    Scenario {
        name: "config-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "config" },
        bootargs: Some(DISPLAY_TEST_BOOTARGS),
        expect: &[GUEST_REPORT, GICV3, GUEST_POWEROFF, CONFIG],
        timeout: Duration::from_secs(900),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "multi-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "multi" },
        bootargs: None,
        expect: &[GUEST_REPORT, GICV3, GUEST_POWEROFF, MULTI],
        timeout: Duration::from_secs(900),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "display-teardown-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "display-teardown",
        },
        bootargs: Some("log=info scene=animation,status frames=100000"),
        expect: &[GUEST_REPORT, GICV3, DISPLAY_TEARDOWN],
        timeout: Duration::from_secs(300),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "input-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "input" },
        bootargs: Some(INPUT_BOOTARGS),
        expect: &[GUEST_REPORT, GICV3, INPUT],
        timeout: Duration::from_secs(300),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "recovery-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "recovery" },
        bootargs: Some("log=info scene=animation,status frames=100000"),
        expect: &[GUEST_REPORT, GICV3, RECOVERY],
        timeout: Duration::from_secs(300),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "be-alloc-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "be-alloc" },
        // Each phase adds its scenes (`GUEST_EXTRA_BOOTARGS` in be-alloc.sh).
        bootargs: Some("log=info"),
        expect: &[GUEST_REPORT, GICV3, BE_ALLOC],
        timeout: Duration::from_secs(600),
        check_frames: DISPLAY_CONNECTORS,
        default: true,
    },
    Scenario {
        name: "reconnect-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "reconnect",
        },
        bootargs: Some("log=info scene=animation,status frames=100000"),
        expect: &[GUEST_REPORT, GICV3, RECONNECT],
        timeout: Duration::from_secs(900),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "hostile-gicv3",
        gic: 3,
        kind: Kind::Dom0 { script: "hostile" },
        bootargs: Some("log=info scene=animation,status frames=100000"),
        expect: &[GUEST_REPORT, GICV3, HOSTILE],
        timeout: Duration::from_secs(600),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "linux-peer-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "linux-peer",
        },
        bootargs: None,
        expect: &[LINUX_PEER],
        timeout: Duration::from_secs(600),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "linux-peer-formats-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "linux-peer-formats",
        },
        bootargs: None,
        expect: &[LINUX_PEER_FORMATS],
        timeout: Duration::from_secs(900),
        check_frames: 0,
        default: true,
    },
    Scenario {
        name: "linux-input-gicv3",
        gic: 3,
        kind: Kind::Dom0 {
            script: "linux-input",
        },
        bootargs: None,
        expect: &[LINUX_INPUT],
        timeout: Duration::from_secs(600),
        check_frames: 0,
        default: true,
    },
];

impl Scenario {
    /// All expected lines on `release`, flattened.
    pub fn expected(&self, release: Release) -> Vec<Pattern> {
        for_release(
            self.expect.iter().flat_map(|group| group.iter().cloned()),
            release,
        )
    }
}

/// `patterns` with [`XEN_VERSION`] made to name `release`: `report: xen-version 4.20`.
pub fn for_release(patterns: impl IntoIterator<Item = Pattern>, release: Release) -> Vec<Pattern> {
    patterns
        .into_iter()
        .map(|pattern| {
            if pattern == XEN_VERSION {
                Pattern::start_owned(format!("report: xen-version {}", release.version()))
            } else {
                pattern
            }
        })
        .collect()
}

/// Guest settings passed to the scenario.
#[derive(Clone, Debug, Default)]
pub struct GuestOptions {
    /// Guest RAM in MiB (None: the xl config's `memory`).
    pub memory_mib: Option<u32>,
    /// Guest bootargs (None: the xl config's `extra`).
    pub bootargs: Option<String>,
}

/// Options of `cargo xtask run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The Xen release to boot: 4.17 or 4.20.
    #[arg(long = "xen", value_name = "RELEASE", default_value = "4.17", value_parser = release::parse_release)]
    pub xen: Release,
    /// GIC version of the emulated board.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub gic: u8,
    /// Guest RAM in MiB (default: the xl config's: 64 with the display, 32 without).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Guest bootargs (its /chosen/bootargs; default: the xl config's `extra`).
    #[arg(long)]
    pub bootargs: Option<String>,
    /// The app the guest runs (`app=NAME` added to the bootargs): `demo` (the default) or
    /// `paint`, or one of your own (README, "Write your own app"). `--script input` runs paint
    /// with the demo input script.
    #[arg(long)]
    pub app: Option<String>,
    /// Boot the guest dom0less (Xen + guest only, no Dom0) instead of with `xl create`.
    #[arg(long)]
    pub dom0less: bool,
    /// Dom0 scenario script to run (`qemu/dom0/scenarios/<NAME>.sh`): `display` is the demo
    /// (display backend, guest with two connectors, PNG files in target/frames/), `boot` the
    /// guest without a display.
    #[arg(long, default_value = "display")]
    pub script: String,
    /// After the script, hand Dom0's shell to the terminal (`poweroff -f` there ends the run;
    /// Ctrl-a x quits QEMU).
    #[arg(long, conflicts_with = "dom0less")]
    pub shell: bool,
    /// Overall timeout in seconds [default: 300, none with --shell].
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The Xen releases to run the scenarios on: 4.17, 4.20 or all. Without it, the default set
    /// runs on 4.17 and then the 4.20 set on 4.20, and named scenarios run on 4.17.
    #[arg(long = "xen", value_name = "RELEASE", value_parser = release::parse_choice)]
    pub xen: Option<Choice>,
    /// Run only these rig scenarios (repeatable); `--list` shows them.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Skip the host tests (`cargo test`).
    #[arg(long)]
    pub no_host: bool,
    /// Skip the rig scenarios (host tests only).
    #[arg(long)]
    pub no_rig: bool,
    /// Skip the short run of each fuzz target that follows the host tests.
    #[arg(long)]
    pub no_fuzz: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Run N busy threads beside the host tests and the scenarios for the whole run (CPU load,
    /// as on a shared CI machine).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub load: usize,
}

/// How a boot ended.
pub struct Outcome {
    /// Expected lines never seen.
    pub missing: Vec<Pattern>,
    /// Why the run stopped, if not cleanly (timeout, fatal line, QEMU failure).
    pub problem: Option<String>,
    /// Seconds from QEMU start to the end.
    pub seconds: f64,
    /// The serial log.
    pub log: PathBuf,
}

impl Outcome {
    /// Passed: every expected line seen and no problem.
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.problem.is_none()
    }
}

/// Everything a boot needs that is built once per xtask invocation.
pub struct Prepared {
    /// The guest Image.
    pub guest_image: PathBuf,
    /// The Dom0 initramfs of each release a Dom0 boot is coming on.
    pub initramfs: BTreeMap<Release, PathBuf>,
    /// The Linux peer's kernel, installed in the Dom0 initramfs (`linux_peer.rs`).
    pub linux_peer: Option<PathBuf>,
}

impl Prepared {
    /// Builds the guest and the Dom0 initramfs of each release in `dom0_releases` (those a Dom0
    /// boot is coming on), with the Linux peer's kernel (built first when one of its inputs
    /// changed) in each when `linux_peer` is set.
    pub fn build(dom0_releases: &[Release], linux_peer: bool) -> Result<Self> {
        let artifacts = build::run()?;
        let mut prepared = Self::with_image(&artifacts.guest_image);
        if linux_peer {
            prepared.linux_peer = Some(linux_peer::build()?);
        }
        for &release in dom0_releases {
            prepared.add_initramfs(release, &artifacts.dom0_binaries)?;
        }
        Ok(prepared)
    }

    /// Uses an existing guest Image (no build).
    pub fn with_image(guest_image: &Path) -> Self {
        Self {
            guest_image: guest_image.to_path_buf(),
            initramfs: BTreeMap::new(),
            linux_peer: None,
        }
    }

    /// Assembles `release`'s Dom0 initramfs around the guest Image.
    pub fn add_initramfs(&mut self, release: Release, dom0_binaries: &[PathBuf]) -> Result<()> {
        rig::xen(release)?;
        rig::dom0_kernel(release)?;
        let initramfs = initramfs::build(&initramfs::Inputs {
            release,
            guest_image: &self.guest_image,
            dom0_binaries,
            linux_peer: self.linux_peer.as_deref(),
        })?;
        self.initramfs.insert(release, initramfs);
        Ok(())
    }
}

/// The Dom0 kernel command line: console on Xen's, our init, the scenario and guest options.
pub fn dom0_args(script: &str, guest: &GuestOptions, shell: bool) -> Result<String> {
    let mut args = format!("console=hvc0 earlycon=xen rdinit=/init quiet rig.scenario={script}");
    if shell {
        args.push_str(" rig.shell=1");
    }
    if let Some(memory) = guest.memory_mib {
        args.push_str(&format!(" rig.memory={memory}"));
    }
    if let Some(bootargs) = &guest.bootargs {
        check_bootargs(bootargs)?;
        args.push_str(&format!(" rig.bootargs=\"{bootargs}\""));
    }
    Ok(args)
}

/// Bootargs travel inside double quotes (kernel command line, device tree source).
pub fn check_bootargs(bootargs: &str) -> Result<()> {
    ensure!(
        !bootargs.contains(['"', '\n', '\\']),
        "guest bootargs must not contain double quotes, backslashes or newlines: {bootargs:?}"
    );
    Ok(())
}

/// One boot of the rig.
pub struct Plan<'a> {
    /// Names the log file (`target/rig/xen-<version>/logs/<label>.log`) and the progress lines.
    pub label: &'a str,
    /// The Xen release (hypervisor, Dom0 kernel and tools).
    pub release: Release,
    /// The board.
    pub machine: Machine,
    /// Dom0 script or dom0less.
    pub kind: Kind<'a>,
    /// Guest memory and bootargs.
    pub guest: GuestOptions,
    /// Lines to look for.
    pub expected: Vec<Pattern>,
    /// Upper bound for the whole boot.
    pub timeout: Duration,
    /// Where the serial console goes besides the log.
    pub console: Console,
    /// A host directory shared with Dom0 for the display backend's PNG files (emptied of
    /// PNG files first).
    pub frames: Option<PathBuf>,
}

/// Creates `dir` and removes the PNG files an earlier run left in it.
pub fn prepare_frames_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "png") {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Boots QEMU as `plan` says and watches the log.
pub fn boot(plan: &Plan, prepared: &Prepared) -> Result<Outcome> {
    let log = rig::release_logs(plan.release).join(format!("{}.log", plan.label));
    let xen = rig::xen(plan.release)?;
    let (command, stop_when_complete) = match plan.kind {
        Kind::Dom0 { script } => {
            let kernel = rig::dom0_kernel(plan.release)?;
            let kernel_args = dom0_args(script, &plan.guest, plan.console == Console::Interactive)?;
            let Some(initramfs) = prepared.initramfs.get(&plan.release) else {
                bail!("internal: no Dom0 initramfs was built for {}", plan.release);
            };
            if let Some(frames) = &plan.frames {
                prepare_frames_dir(frames)?;
            }
            let mut boot = Boot::Dom0 {
                xen: &xen,
                kernel: &kernel,
                kernel_args: &kernel_args,
                initramfs,
                frames: plan.frames.as_deref(),
                dtb: None,
            };
            // With the frames share, QEMU's tree with level-triggered virtio-mmio interrupts
            // (see qemu::virtio_interrupts_level).
            let tree = match plan.frames {
                Some(_) => Some(qemu::dom0_tree(
                    &plan.machine,
                    &boot,
                    &rig::release_dir(plan.release).join("dom0-tree"),
                )?),
                None => None,
            };
            if let (Boot::Dom0 { dtb, .. }, Some(tree)) = (&mut boot, &tree) {
                *dtb = Some(tree);
            }
            (qemu::command(&plan.machine, &boot), false)
        }
        Kind::Dom0less => {
            let dtb = dtb::dom0less(&plan.machine, &prepared.guest_image, &plan.guest, None)?;
            let boot = Boot::Dom0less {
                xen: &xen,
                dtb: &dtb,
                guest: &prepared.guest_image,
                dom0: None,
            };
            (qemu::command(&plan.machine, &boot), true)
        }
        Kind::Dom0lessBesideDom0 { script } => {
            let kernel = rig::dom0_kernel(plan.release)?;
            let Some(initramfs) = prepared.initramfs.get(&plan.release) else {
                bail!("internal: no Dom0 initramfs was built for {}", plan.release);
            };
            // The guest's bootargs go into its own node, not through Dom0.
            let kernel_args = dom0_args(script, &GuestOptions::default(), false)?;
            let size = |path: &Path| {
                std::fs::metadata(path)
                    .map(|meta| meta.len())
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let modules = dtb::Dom0Modules {
                kernel_size: size(&kernel)?,
                initramfs_size: size(initramfs)?,
                args: &kernel_args,
            };
            let dtb = dtb::dom0less(
                &plan.machine,
                &prepared.guest_image,
                &plan.guest,
                Some(&modules),
            )?;
            let boot = Boot::Dom0less {
                xen: &xen,
                dtb: &dtb,
                guest: &prepared.guest_image,
                dom0: Some((&kernel, initramfs)),
            };
            (qemu::command(&plan.machine, &boot), false)
        }
    };
    let mut qemu = Qemu::spawn(command, &log, plan.console)?;
    watch(
        &mut qemu,
        &format!("{} {}", plan.release.version(), plan.label),
        plan.expected.clone(),
        plan.timeout,
        stop_when_complete,
        plan.console != Console::Interactive,
    )
}

/// Reads QEMU's output until it exits, the deadline passes, a fatal line shows, or (with
/// `stop_when_complete`) every expected line was seen. `progress` prints progress lines.
fn watch(
    qemu: &mut Qemu,
    label: &str,
    expected: Vec<Pattern>,
    timeout: Duration,
    stop_when_complete: bool,
    progress: bool,
) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut expectations = Expectations::new(expected);
    let mut progress_seen = vec![false; PROGRESS.len()];
    let mut problem = None;
    let mut guest_error = None;
    let mut dom0_distress: Option<String> = None;
    let mut grace = None;
    loop {
        match qemu.next(grace.map_or(deadline, |grace: Instant| grace.min(deadline))) {
            Event::Line(line) => {
                expectations.feed(&line);
                let text = logmatch::strip_prefixes(&line);
                for ((prefix, what), seen) in PROGRESS.iter().zip(progress_seen.iter_mut()) {
                    if !*seen && text.starts_with(prefix) {
                        *seen = true;
                        if !progress {
                            continue;
                        }
                        println!(
                            "rig: [{label} {:6.2} s] {what}",
                            qemu.elapsed().as_secs_f64()
                        );
                    }
                }
                if let Some(fatal) = FATAL.iter().find(|fatal| line.contains(*fatal)) {
                    problem = Some(format!("stopped at `{fatal}`"));
                    break;
                }
                if dom0_distress.is_none() && DOM0_DISTRESS.iter().any(|d| line.contains(d)) {
                    dom0_distress = Some(text.to_string());
                }
                if guest_error.is_none()
                    && (GUEST_FATAL.iter().any(|f| text.starts_with(f)) || failed_selftest(text))
                    && !expectations.expects(text)
                {
                    guest_error = Some(text.to_string());
                    if stop_when_complete {
                        // Let the rest of the guest's report (registers, ...) reach the log.
                        grace = Some(Instant::now() + GUEST_FATAL_GRACE);
                    }
                }
                if stop_when_complete && expectations.complete() {
                    break;
                }
            }
            Event::Exited(status) => {
                if !status.success() {
                    problem = Some(format!("QEMU exited with {status}"));
                }
                break;
            }
            Event::Timeout => {
                if grace.is_none_or(|grace| Instant::now() < grace) {
                    problem = Some(format!("timeout after {} s", timeout.as_secs()));
                }
                break;
            }
        }
    }
    let seconds = qemu.elapsed().as_secs_f64();
    qemu.kill();
    if let Some(distress) = dom0_distress {
        let problem = problem.get_or_insert_with(String::new);
        if !problem.is_empty() {
            problem.push_str("; ");
        }
        problem.push_str(&format!("Dom0's kernel said `{distress}`"));
    }
    if let Some(error) = guest_error {
        let problem = problem.get_or_insert_with(String::new);
        if !problem.is_empty() {
            problem.push_str("; ");
        }
        problem.push_str(&format!("guest said `{error}`"));
    }
    Ok(Outcome {
        missing: expectations.missing().into_iter().cloned().collect(),
        problem,
        seconds,
        log: qemu.log().to_path_buf(),
    })
}

/// The lines `cargo xtask run` looks for. With a `crash=` bootarg: the boot report, its GIC
/// line and the crash report (and, with `boot.sh`, the guest leaving `xl list`). Otherwise what
/// the scenario table expects of the same script (or dom0less), on this GIC if the table has
/// it; a script the table does not know gets the boot report and the clean poweroff.
pub fn run_expectations(
    release: Release,
    gic: u8,
    kind: Kind,
    bootargs: Option<&str>,
) -> Vec<Pattern> {
    for_release(expectations_of_the_table(gic, kind, bootargs), release)
}

/// [`run_expectations`] before the release is filled in.
fn expectations_of_the_table(gic: u8, kind: Kind, bootargs: Option<&str>) -> Vec<Pattern> {
    let gic_line = Pattern::start_owned(format!("report: gic v{gic}"));
    let crash = bootargs
        .unwrap_or_default()
        .split_whitespace()
        .find_map(|word| word.strip_prefix("crash="));
    let crash_report = match crash {
        Some("panic") => Some(GUEST_PANIC),
        Some("data-abort") => Some(GUEST_DATA_ABORT),
        _ => None,
    };
    let mut expected = GUEST_REPORT.to_vec();
    expected.push(gic_line.clone());
    if let Some(crash_report) = crash_report {
        expected.extend_from_slice(crash_report);
        if kind == (Kind::Dom0 { script: "boot" }) {
            expected.extend_from_slice(GUEST_GONE);
        }
        return expected;
    }
    let same_kind = || {
        SCENARIOS
            .iter()
            .filter(|s| s.kind == kind && !s.bootargs.is_some_and(|b| b.contains("crash=")))
    };
    let all_lines = |scenario: &Scenario| -> Vec<Pattern> {
        scenario
            .expect
            .iter()
            .flat_map(|group| group.iter().cloned())
            .collect()
    };
    if let Some(scenario) = same_kind().find(|s| s.gic == gic) {
        return all_lines(scenario);
    }
    if let Some(scenario) = same_kind().next() {
        let gic_lines = [&GICV2[0], &GICV3[0]];
        return all_lines(scenario)
            .into_iter()
            .map(|line| {
                if gic_lines.contains(&&line) {
                    gic_line.clone()
                } else {
                    line
                }
            })
            .collect();
    }
    expected.extend_from_slice(GUEST_POWEROFF);
    expected
}

/// Runs `cargo xtask run`.
/// The run's bootargs: `--bootargs` (or the xl config's `log=info`) with `app=NAME` added for
/// `--app NAME`.
fn run_bootargs(args: &RunArgs) -> Option<String> {
    match (&args.bootargs, &args.app) {
        (bootargs, None) => bootargs.clone(),
        (Some(bootargs), Some(app)) => Some(format!("{bootargs} app={app}")),
        (None, Some(app)) => Some(format!("log=info app={app}")),
    }
}

pub fn run(args: &RunArgs) -> Result<()> {
    deps::ensure(&[args.xen])?;
    let bootargs = run_bootargs(args);
    let peer = !args.dom0less && linux_peer::needed_by(&args.script);
    let dom0_releases: &[Release] = if args.dom0less { &[] } else { &[args.xen] };
    let prepared = Prepared::build(dom0_releases, peer)?;
    let (kind, label) = if args.dom0less {
        (Kind::Dom0less, format!("run-dom0less-gicv{}", args.gic))
    } else {
        (
            Kind::Dom0 {
                script: &args.script,
            },
            format!("run-gicv{}", args.gic),
        )
    };
    let linux_input = runs_linux_input(kind);
    let frames = (matches!(kind, Kind::Dom0 { script: "display" })
        || input_script(kind).is_some()
        || peer
        || linux_input)
        .then(frames_dir);
    if let (Some(dir), true) = (&frames, linux_input) {
        linux_input::prepare(dir, args.xen)?;
    }
    let plan = Plan {
        label: &label,
        release: args.xen,
        machine: Machine::new(args.gic),
        kind,
        frames: frames.clone(),
        guest: GuestOptions {
            memory_mib: args.memory,
            bootargs: bootargs.clone(),
        },
        expected: run_expectations(args.xen, args.gic, kind, bootargs.as_deref()),
        timeout: match (args.timeout, args.shell) {
            (Some(seconds), _) => Duration::from_secs(seconds),
            (None, false) => Duration::from_secs(300),
            (None, true) => Duration::from_secs(7 * 24 * 3600),
        },
        console: if args.shell {
            Console::Interactive
        } else {
            Console::Echo
        },
    };
    let outcome = boot(&plan, &prepared)?;
    println!(
        "rig: run finished after {:.1} s (log: {})",
        outcome.seconds,
        outcome.log.display()
    );
    if outcome.missing.is_empty() {
        println!("rig: every expected line seen");
    } else {
        println!("rig: not seen: {}", quote_all(&outcome.missing));
    }
    if linux_input {
        match check_linux_input(&outcome.log)? {
            Ok(note) => println!("linux-input: {}", note.trim_start_matches(", ")),
            Err(failures) => {
                for failure in failures {
                    println!("linux-input: {failure}");
                }
            }
        }
    } else if let (Some(frames), true) = (&frames, peer) {
        let (failures, matched) = check_peer(&outcome.log, frames, &[])?;
        println!(
            "linux-peer: {matched} frames match their pattern (frames in {}/)",
            frames.display()
        );
        for failure in failures {
            println!("linux-peer: {failure}");
        }
    } else if let Some(frames) = &frames {
        let log = display::DisplayLog::read(&outcome.log)?;
        for line in display::summary_lines(&log, frames) {
            println!("{line}");
        }
    }
    if let Some(problem) = outcome.problem {
        bail!("run failed: {problem} (log: {})", outcome.log.display());
    }
    Ok(())
}

/// Where `cargo xtask run` puts the captured frames: `target/frames/`.
pub fn frames_dir() -> PathBuf {
    rig::target().join("frames")
}

/// Holds the frames of a display scenario against their goldens: the failures (empty when
/// all match) and how many matched.
fn check_scenario_frames(
    log: &Path,
    dir: &Path,
    connectors: usize,
    input: Option<&Path>,
) -> Result<(Vec<String>, usize)> {
    let started = Instant::now();
    let log = display::DisplayLog::read(log)?;
    let script = input.map(read_input_script).transpose()?;
    let check = display::check_frames(&log, dir, connectors, script.as_ref());
    let matched = check.matched.values().sum();
    let not_captured: usize = check.not_captured.values().sum();
    println!(
        "test: {matched} frames checked against their goldens in {:.1} s ({}){}",
        started.elapsed().as_secs_f64(),
        dir.display(),
        if not_captured > 0 {
            format!("; {not_captured} flips not captured (the backend's PNG writers were behind)")
        } else {
            String::new()
        }
    );
    Ok((check.failures, matched))
}

/// Holds each guest's frames of `multi.sh` and `be-alloc.sh` against their goldens, per domain
/// (no frame of one guest may answer another's flip), and prints each guest's round trips;
/// `expected` guests must have flipped. A guest whose frames several backend processes showed
/// (the recovery phase of `be-alloc.sh`) is held by content
/// ([`display::check_frames_across_restarts`]).
/// `dir` holds the PNG files; without it (no frames share), only guests held by content can be
/// checked.
fn check_guests_frames(
    log: &Path,
    dir: Option<&Path>,
    expected: usize,
) -> Result<(Vec<String>, usize)> {
    let started = Instant::now();
    let mut logs = display::per_domain(log)?;
    let mut failures = Vec::new();
    let mut matched = 0;
    let guests = logs.values().filter(|log| !log.flips.is_empty()).count();
    if guests < expected {
        failures.push(format!(
            "flips of {guests} guests in the log, {expected} expected"
        ));
    }
    for (domain, log) in &mut logs {
        if log.flips.is_empty() {
            continue;
        }
        if log.across_restarts {
            let check = display::check_frames_across_restarts(log, DISPLAY_CONNECTORS);
            let held: usize = check.matched.values().sum();
            let backends: std::collections::BTreeSet<u32> =
                log.frames.iter().map(|frame| frame.run).collect();
            println!(
                "test: domain {domain}: {held} frames shown by {} backend processes match the goldens of its flips (held by content); {} last frames of a backend process left unchecked",
                backends.len(),
                check.not_captured.values().sum::<usize>()
            );
            matched += held;
            failures.extend(
                check
                    .failures
                    .iter()
                    .map(|failure| format!("domain {domain}: {failure}")),
            );
            continue;
        }
        // Every guest is ended while it flips (xl shutdown or xl destroy).
        for (connector, seq) in log.drop_unanswered_last_flips() {
            println!(
                "test: multi: domain {domain} conn {connector}: frame seq {seq} was shown as the \
                 guest was ended, before it saw the flip complete (not checked)"
            );
        }
        let Some(dir) = dir else {
            failures.push(format!(
                "domain {domain}: its frames were written to no share to check"
            ));
            continue;
        };
        let check = display::check_frames(log, dir, DISPLAY_CONNECTORS, None);
        matched += check.matched.values().sum::<usize>();
        failures.extend(
            check
                .failures
                .iter()
                .map(|failure| format!("domain {domain}: {failure}")),
        );
        for summary in log.summaries.values() {
            println!(
                "test: domain {domain} conn {} {}x{}: {} frames, {} fps, flip round trip \
                 p50 {:.1} ms, p99 {:.1} ms",
                summary.connector,
                summary.width,
                summary.height,
                summary.frames,
                summary.fps,
                summary.rtt_p50_us as f64 / 1000.0,
                summary.rtt_p99_us as f64 / 1000.0
            );
        }
    }
    println!(
        "test: {matched} frames of {guests} guest{} checked against their goldens in {:.1} s ({})",
        if guests == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        dir.map_or_else(|| "by content".to_string(), |dir| dir.display().to_string())
    );
    Ok((failures, matched))
}

/// The input event script a Dom0 scenario script plays to the guest (`vkbd-backend --script`),
/// which its paint frames are redrawn from.
fn input_script(kind: Kind) -> Option<PathBuf> {
    match kind {
        Kind::Dom0 { script: "input" } => Some(rig::qemu_dir().join(INPUT_SCRIPT)),
        _ => None,
    }
}

/// Reads and parses an input event script.
fn read_input_script(path: &Path) -> Result<drivers::xen::kbdif::script::Script> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the input script {}", path.display()))?;
    drivers::xen::kbdif::script::Script::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

/// The Dom0 script of a scenario that runs the Linux peer.
fn peer_script(scenario: &Scenario) -> Option<&'static str> {
    match scenario.kind {
        Kind::Dom0 { script } if linux_peer::needed_by(script) => Some(script),
        _ => None,
    }
}

/// Whether a scenario runs the Linux input peer (`linux_input.rs`).
fn runs_linux_input(kind: Kind) -> bool {
    matches!(kind, Kind::Dom0 { script } if linux_input::needed_by(script))
}

/// Holds a Linux input peer run against the evdev reports xen-kbdfront must give and its
/// console against errors (`linux_input.rs`): what matched, as a note for the PASS line, or the
/// failures.
fn check_linux_input(log: &Path) -> Result<std::result::Result<String, Vec<String>>> {
    Ok(linux_input::check(log)?.map(|matched| {
        let same_time = match matched.same_time {
            0 => String::new(),
            runs => format!(", {runs} runs with one timestamp"),
        };
        format!(
            ", {} evdev reports ({} events) on {} devices match xen-kbdfront's{same_time}",
            matched.reports, matched.events, matched.devices
        )
    }))
}

/// Holds a linux-peer scenario's cases against what each must show (`peer_frames.rs`): the
/// failures (empty when all passed) and how many frames matched.
fn check_peer(log: &Path, dir: &Path, cases: &[&str]) -> Result<(Vec<String>, usize)> {
    let started = Instant::now();
    let log = peer_frames::PeerLog::read(log)?;
    let check = peer_frames::check(&log, dir, cases);
    println!(
        "test: {} Linux peer cases checked, {} frames held against their pattern in {:.1} s ({}){}",
        check.cases,
        check.matched,
        started.elapsed().as_secs_f64(),
        dir.display(),
        if check.not_captured > 0 {
            format!(
                "; {} flips not captured (the backend's PNG writers were behind)",
                check.not_captured
            )
        } else {
            String::new()
        }
    );
    Ok((check.failures, check.matched))
}

/// Runs `cargo xtask test`.
pub fn test(args: &TestArgs) -> Result<()> {
    if args.list {
        for scenario in SCENARIOS {
            println!("{}", list_line(scenario));
        }
        return Ok(());
    }
    let runs = plan_runs(args.xen, &args.scenarios)?;
    let _load = crate::load::Load::start(args.load);
    let mut passed = 0;
    let mut failed = Vec::new();
    let start = Instant::now();
    let rig_scenarios = !args.no_rig && !runs.is_empty();
    let mut releases: Vec<Release> = runs.iter().map(|(release, _)| *release).collect();
    releases.dedup();
    if rig_scenarios {
        // Before the host tests, so that a machine that cannot run the rig says so at once.
        deps::ensure(&releases)?;
    }

    if !args.no_host {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        match cmd::run(
            Command::new(cargo)
                .current_dir(rig::workspace())
                .arg("test"),
        ) {
            Ok(()) => {
                println!("PASS host-tests");
                passed += 1;
            }
            Err(error) => {
                println!("FAIL host-tests: {error}");
                failed.push("host-tests".to_string());
            }
        }
    }

    if !args.no_host && !args.no_fuzz {
        match crate::fuzz::run_all(&[], crate::fuzz::SMOKE_SECONDS, "none") {
            Ok(runs) => {
                for run in runs {
                    println!("{}", crate::fuzz::verdict(&run));
                    match run.failure {
                        None => passed += 1,
                        Some(_) => failed.push(format!("fuzz-{}", run.name)),
                    }
                }
            }
            Err(error) => println!("SKIP fuzz: the fuzz targets cannot be built: {error:#}"),
        }
    }

    if rig_scenarios {
        let mut dom0_releases: Vec<Release> = runs
            .iter()
            .filter(|(_, scenario)| scenario.kind.has_dom0())
            .map(|(release, _)| *release)
            .collect();
        dom0_releases.dedup();
        let needs_peer = runs
            .iter()
            .any(|(_, scenario)| peer_script(scenario).is_some());
        let prepared = Prepared::build(&dom0_releases, needs_peer)?;
        for (release, scenario) in runs {
            let name = run_name(release, scenario);
            let plan = Plan {
                label: scenario.name,
                release,
                machine: Machine::new(scenario.gic),
                kind: scenario.kind,
                guest: GuestOptions {
                    memory_mib: None,
                    bootargs: scenario.bootargs.map(String::from),
                },
                expected: scenario.expected(release),
                timeout: scenario.timeout,
                console: Console::Quiet,
                frames: (scenario.check_frames > 0
                    || peer_script(scenario).is_some()
                    || runs_linux_input(scenario.kind))
                .then(|| frames_dir().join(release.label()).join(scenario.name)),
            };
            if let (Some(dir), true) = (&plan.frames, runs_linux_input(scenario.kind)) {
                linux_input::prepare(dir, release)?;
            }
            let mut outcome = boot(&plan, &prepared)?;
            if let Some(stall) = share_stall(plan.frames.is_some(), &outcome) {
                println!(
                    "RETRY {name}: Dom0's frames share stalled ({stall}); the board's 9p \
                     transport, not the software under test: booting the scenario once more \
                     (first log kept as {})",
                    keep_first_log(&outcome.log)?.display()
                );
                outcome = boot(&plan, &prepared)?;
            }
            let mut frames_note = String::new();
            if runs_linux_input(scenario.kind) {
                if outcome.passed() {
                    match check_linux_input(&outcome.log)? {
                        Ok(note) => frames_note = note,
                        Err(failures) => outcome.problem = Some(failures.join("; ")),
                    }
                }
            } else if let (Some(dir), true, Some(cases)) = (
                &plan.frames,
                outcome.passed(),
                peer_script(scenario).map(peer_cases),
            ) {
                let (failures, matched) = check_peer(&outcome.log, dir, cases)?;
                if failures.is_empty() {
                    frames_note = format!(", {matched} frames match their pattern");
                } else {
                    outcome.problem = Some(failures.join("; "));
                }
            } else if let (true, Kind::Dom0 { script: "recovery" }) =
                (outcome.passed(), scenario.kind)
            {
                let (failures, matched) = check_guests_frames(&outcome.log, None, 1)?;
                if failures.is_empty() {
                    frames_note = format!(", {matched} frames match their goldens");
                } else {
                    outcome.problem = Some(failures.join("; "));
                }
            } else if let (Some(dir), true, Kind::Dom0 { script: "be-alloc" }) =
                (&plan.frames, outcome.passed(), scenario.kind)
            {
                let (failures, matched) = check_guests_frames(&outcome.log, Some(dir), 2)?;
                if failures.is_empty() {
                    frames_note = format!(", {matched} frames match their goldens");
                } else {
                    outcome.problem = Some(failures.join("; "));
                }
            } else if let (Some(dir), true, Kind::Dom0 { script: "multi" }) =
                (&plan.frames, outcome.passed(), scenario.kind)
            {
                let (failures, matched) = check_guests_frames(&outcome.log, Some(dir), 4)?;
                if failures.is_empty() {
                    frames_note = format!(", {matched} frames of 4 guests match their goldens");
                } else {
                    outcome.problem = Some(failures.join("; "));
                }
            } else if let (Some(dir), true) = (&plan.frames, outcome.passed()) {
                let (failures, matched) = check_scenario_frames(
                    &outcome.log,
                    dir,
                    scenario.check_frames,
                    input_script(scenario.kind).as_deref(),
                )?;
                if failures.is_empty() {
                    frames_note = format!(", {matched} frames match their goldens");
                } else {
                    outcome.problem = Some(failures.join("; "));
                }
            }
            if outcome.passed() {
                println!(
                    "PASS {name} ({:.1} s{frames_note}, log: {})",
                    outcome.seconds,
                    outcome.log.display()
                );
                passed += 1;
            } else {
                println!(
                    "FAIL {name}: {} (log: {})",
                    describe(&outcome),
                    outcome.log.display()
                );
                failed.push(name);
            }
        }
    }

    println!("test: finished in {:.0} s", start.elapsed().as_secs_f64());
    println!("test: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// How `cargo xtask test` names a scenario run: `boot-gicv2 on Xen 4.20`.
fn run_name(release: Release, scenario: &Scenario) -> String {
    format!("{} on {release}", scenario.name)
}

/// The scenario runs of `cargo xtask test`, in order: with `--xen`, the named scenarios (or
/// each release's set) on each release chosen; without it, the named scenarios on
/// [`Release::DEFAULT`], or, when none is named, each release's set on each release in turn.
fn plan_runs(xen: Option<Choice>, names: &[String]) -> Result<Vec<(Release, &'static Scenario)>> {
    let releases = match xen {
        Some(choice) => choice.releases(),
        None if names.is_empty() => Release::ALL.to_vec(),
        None => vec![Release::DEFAULT],
    };
    let mut runs = Vec::new();
    for release in releases {
        let scenarios = if names.is_empty() {
            release_set(release)?
        } else {
            select(names)?
        };
        runs.extend(scenarios.into_iter().map(|scenario| (release, scenario)));
    }
    Ok(runs)
}

/// The scenarios `cargo xtask test` runs on `release` when none is named: its own set, or every
/// scenario marked `default`.
fn release_set(release: Release) -> Result<Vec<&'static Scenario>> {
    match release.scenario_set() {
        Some(names) => select(
            &names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        ),
        None => select(&[]),
    }
}

/// One line of `cargo xtask test --list`.
fn list_line(scenario: &Scenario) -> String {
    let mut line = format!(
        "{:18} gic v{}, {}, timeout {} s",
        scenario.name,
        scenario.gic,
        scenario.kind,
        scenario.timeout.as_secs()
    );
    if let Some(bootargs) = scenario.bootargs {
        line.push_str(&format!(", bootargs \"{bootargs}\""));
    }
    if !scenario.default {
        line.push_str(" (not run by default: only with --scenario)");
    }
    let newer: Vec<&str> = Release::ALL
        .iter()
        .filter(|release| {
            release
                .scenario_set()
                .is_some_and(|set| set.contains(&scenario.name))
        })
        .map(|release| release.version())
        .collect();
    if !newer.is_empty() {
        line.push_str(&format!(" (also on Xen {})", newer.join(", ")));
    }
    line
}

/// The patterns, quoted and comma-separated.
fn quote_all(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(Pattern::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(outcome: &Outcome) -> String {
    let mut parts = Vec::new();
    if let Some(problem) = &outcome.problem {
        parts.push(problem.clone());
    }
    if !outcome.missing.is_empty() {
        parts.push(format!("missing {}", quote_all(&outcome.missing)));
    }
    parts.join("; ")
}

/// The scenarios named (in that order), or without names every scenario marked `default`.
fn select(names: &[String]) -> Result<Vec<&'static Scenario>> {
    if names.is_empty() {
        return Ok(SCENARIOS.iter().filter(|s| s.default).collect());
    }
    names
        .iter()
        .map(|name| {
            SCENARIOS
                .iter()
                .find(|scenario| scenario.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                    anyhow::anyhow!("unknown scenario `{name}` (known: {})", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_unique() {
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
    }

    #[test]
    fn a_failed_selftest_is_a_guest_error_and_a_passed_one_is_not() {
        assert!(failed_selftest(
            "selftest: evtchn loopback FAILED: port 2 never fired after a send on port 3"
        ));
        assert!(!failed_selftest(
            "selftest: evtchn loopback ok (ports 3 -> 2 in 47 us, 2 -> 3 kept until taken)"
        ));
        assert!(!failed_selftest("rig: selftest: x FAILED: y"));
    }

    #[test]
    fn no_scenario_checks_a_duration() {
        for scenario in SCENARIOS {
            for pattern in scenario.expected(Release::DEFAULT) {
                let text = pattern.to_string();
                assert!(
                    !text.contains("within") && !text.contains(" took "),
                    "{}: {text}",
                    scenario.name
                );
            }
        }
        // The Dom0 scripts print durations as figures; none compares one with a bound other
        // than a hang deadline (*_TIMEOUT_MS).
        let dom0 = rig::qemu_dir().join("dom0");
        let mut scripts = vec![dom0.join("lib.sh")];
        for entry in std::fs::read_dir(dom0.join("scenarios")).unwrap() {
            scripts.push(entry.unwrap().path());
        }
        for script in scripts {
            let text = std::fs::read_to_string(&script).unwrap();
            assert!(
                !text.contains("LIMIT_MS") && !text.contains("too long"),
                "{} judges a duration",
                script.display()
            );
        }
    }

    /// Every scenario but the Dom0-only grant loopback and the Linux peer's boots the guest.
    fn boots_the_guest(scenario: &Scenario) -> bool {
        scenario.kind
            != (Kind::Dom0 {
                script: "grant-loopback",
            })
            && peer_script(scenario).is_none()
            && !runs_linux_input(scenario.kind)
    }

    #[test]
    fn every_scenario_that_boots_the_guest_checks_the_report_and_its_gic() {
        for scenario in SCENARIOS.iter().filter(|s| boots_the_guest(s)) {
            let expected = scenario.expected(Release::DEFAULT);
            assert!(
                expected.contains(&Pattern::start("report: end")),
                "{}",
                scenario.name
            );
            assert!(
                expected.contains(&Pattern::start_owned(format!(
                    "report: gic v{}",
                    scenario.gic
                ))),
                "{}",
                scenario.name
            );
        }
    }

    #[test]
    fn crash_scenarios_ask_for_the_crash_they_expect() {
        for scenario in SCENARIOS.iter().filter(|s| boots_the_guest(s)) {
            let expected = scenario.expected(Release::DEFAULT);
            let bootargs = scenario.bootargs.unwrap_or_default();
            let panics = expected.contains(&GUEST_PANIC[0]);
            let aborts = expected.contains(&GUEST_DATA_ABORT[0]);
            assert_eq!(
                panics,
                bootargs.contains("crash=panic"),
                "{}",
                scenario.name
            );
            assert_eq!(
                aborts,
                bootargs.contains("crash=data-abort"),
                "{}",
                scenario.name
            );
            // A guest that crashes does not power off cleanly, and one that does not crash
            // must say that it powered off.
            let powers_off = expected.contains(&GUEST_POWEROFF[0]);
            assert_eq!(powers_off, !(panics || aborts), "{}", scenario.name);
            if let Some(bootargs) = scenario.bootargs {
                check_bootargs(bootargs).unwrap();
            }
        }
    }

    #[test]
    fn the_default_set_leaves_out_scenarios_marked_so() {
        let default: Vec<&str> = select(&[]).unwrap().iter().map(|s| s.name).collect();
        let marked: Vec<&str> = SCENARIOS
            .iter()
            .filter(|s| s.default)
            .map(|s| s.name)
            .collect();
        assert_eq!(default, marked);
        assert!(default.contains(&"crash-xl"), "{default:?}");
        assert!(default.contains(&"services-gicv3"), "{default:?}");
        for scenario in SCENARIOS {
            let named = select(&[scenario.name.to_string()]).unwrap();
            assert_eq!(named.len(), 1);
            assert_eq!(
                list_line(named[0]).contains("not run by default"),
                !scenario.default
            );
        }
    }

    #[test]
    fn run_expectations_follow_the_script_and_the_bootargs() {
        let boot = run_expectations(Release::DEFAULT, 2, Kind::Dom0 { script: "boot" }, None);
        assert!(boot.contains(&Pattern::start("report: gic v2")));
        assert!(boot.contains(&GUEST_POWEROFF[0]));
        assert!(boot.contains(&GUEST_GONE[0]));

        let crash = run_expectations(
            Release::DEFAULT,
            3,
            Kind::Dom0less,
            Some("log=debug crash=panic"),
        );
        assert!(crash.contains(&GUEST_PANIC[1]));
        assert!(!crash.contains(&GUEST_POWEROFF[0]));
        assert!(!crash.contains(&GUEST_GONE[0]));

        let services =
            run_expectations(Release::DEFAULT, 3, Kind::Dom0 { script: "services" }, None);
        assert!(services.contains(&Pattern::start("vdispl-os: ready")));
        assert!(!services.contains(&GUEST_GONE[0]));

        // grant-loopback runs on GICv3 in the table; on GICv2 it expects the same lines.
        let loopback = run_expectations(
            Release::DEFAULT,
            2,
            Kind::Dom0 {
                script: "grant-loopback",
            },
            None,
        );
        assert_eq!(loopback, GRANT_LOOPBACK);

        let dom0less_v2 = run_expectations(Release::DEFAULT, 2, Kind::Dom0less, None);
        assert!(dom0less_v2.contains(&GICV2[0]));
        assert!(!dom0less_v2.contains(&GICV3[0]));

        let unknown = run_expectations(Release::DEFAULT, 3, Kind::Dom0 { script: "mine" }, None);
        assert!(unknown.contains(&GUEST_POWEROFF[0]));
        assert!(unknown.contains(&GICV3[0]));
    }

    #[test]
    fn app_goes_into_the_run_bootargs() {
        let args = |bootargs: Option<&str>, app: Option<&str>| RunArgs {
            gic: 3,
            memory: None,
            bootargs: bootargs.map(String::from),
            app: app.map(String::from),
            dom0less: false,
            script: "display".into(),
            shell: false,
            timeout: None,
            xen: Release::DEFAULT,
        };
        assert_eq!(run_bootargs(&args(None, None)), None);
        assert_eq!(
            run_bootargs(&args(None, Some("paint"))).as_deref(),
            Some("log=info app=paint")
        );
        assert_eq!(
            run_bootargs(&args(Some("scene=bars"), Some("follow"))).as_deref(),
            Some("scene=bars app=follow")
        );
    }

    #[test]
    fn display_scenarios_check_frames_and_run_expects_the_demo() {
        let display = Kind::Dom0 { script: "display" };
        let run = run_expectations(Release::DEFAULT, 3, display, None);
        assert!(run.contains(&GICV3[0]));
        for line in DISPLAY {
            assert!(run.contains(line), "{line}");
        }
        // Other scenes or frame counts: the same lines, on the board's GIC.
        let on_v2 = run_expectations(
            Release::DEFAULT,
            2,
            display,
            Some("log=info scene=bars frames=1"),
        );
        assert!(on_v2.contains(&GICV2[0]));
        assert!(!on_v2.contains(&GICV3[0]));
        assert!(on_v2.contains(&DISPLAY[1]));
        let teardown = run_expectations(
            Release::DEFAULT,
            3,
            Kind::Dom0 {
                script: "display-teardown",
            },
            None,
        );
        assert!(teardown.contains(&DISPLAY_TEARDOWN[5]));
        for scenario in SCENARIOS {
            let checked = match scenario.kind {
                Kind::Dom0 { script }
                    if script == "display"
                        || script == "display-strict"
                        || script == "config"
                        || script == "input"
                        || script == "multi"
                        || script == "be-alloc" =>
                {
                    DISPLAY_CONNECTORS
                }
                Kind::Dom0 {
                    script: "display-4k",
                } => 1,
                _ => 0,
            };
            assert_eq!(scenario.check_frames, checked, "{}", scenario.name);
        }
        check_bootargs(DISPLAY_TEST_BOOTARGS).unwrap();
        check_bootargs(DISPLAY_TEST_BOOTARGS_RGB565).unwrap();
        check_bootargs(DISPLAY_4K_BOOTARGS).unwrap();
    }

    #[test]
    fn the_input_scenario_expects_what_its_script_sends_each_device() {
        let path = input_script(Kind::Dom0 { script: "input" }).unwrap();
        let script = read_input_script(&path).unwrap();
        for (device, unique_id) in [(0, "DP-1"), (1, "HDMI-A-1")] {
            let count = script.for_device(Some(unique_id)).count();
            let done = format!(
                "vkbd-backend: dom7 dev{device}: script done: {count} of {count} events sent, 0 \
                 not sent, in 6000 ms from Connected; the ring was full 2 times"
            );
            assert!(INPUT.iter().any(|line| line.matches(&done)), "{done}");
        }
        // Its last event, to DP-1 only, is the Escape that stops the guest; HDMI-A-1's events
        // are all sent well before it.
        let last = script.events().last().unwrap();
        assert_eq!(
            last.event,
            kernel::app::InputEvent::Key {
                pressed: true,
                keycode: kernel::app::KEY_ESC
            }
        );
        let hdmi_end = script.for_device(Some("HDMI-A-1")).last().unwrap().at_ms;
        assert!(last.at_ms >= hdmi_end + 1000);
        check_bootargs(INPUT_BOOTARGS).unwrap();
        assert!(input_script(Kind::Dom0 { script: "display" }).is_none());
    }

    #[test]
    fn the_linux_input_scenario_expects_what_its_script_sends_each_device() {
        let path = rig::qemu_dir().join(linux_input::INPUT_SCRIPT);
        let script = read_input_script(&path).unwrap();
        let mut total = 0;
        for (device, &(unique_id, count)) in LINUX_INPUT_SCRIPT_EVENTS.iter().enumerate() {
            assert_eq!(
                script.for_device(Some(unique_id)).count(),
                count,
                "{unique_id}"
            );
            total += count;
            let done = format!(
                "vkbd-backend: dom3 dev{device}: script done: {count} of {count} events sent, 0 \
                 not sent, in 2480 ms from Connected; the ring was full 0 times"
            );
            assert!(LINUX_INPUT.iter().any(|line| line.matches(&done)), "{done}");
        }
        // The lines for every device count once in the script and once per device sent.
        let every = script.for_device(None).count();
        assert_eq!(script.events().len() + every, total);
        let stopped = format!(
            "vkbd-backend: stopped: 2 connections, {total} events sent, 0 not sent, 2 scripts \
             done, 0 devices could not be connected"
        );
        assert!(LINUX_INPUT.iter().any(|line| line.matches(&stopped)));
        let serving = format!(
            "vkbd-backend: serving /local/domain/0/backend/vinput (script: {} events over {} \
             ms)",
            script.events().len(),
            script.duration_ms()
        );
        assert!(LINUX_INPUT.iter().any(|line| line.matches(&serving)));
        assert!(runs_linux_input(Kind::Dom0 {
            script: "linux-input"
        }));
        assert!(!runs_linux_input(Kind::Dom0 { script: "input" }));
    }

    #[test]
    fn a_frames_directory_is_emptied_of_old_pngs_only() {
        let dir = std::env::temp_dir().join(format!("xtask-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dom1-conn0-seq0.png"), b"old").unwrap();
        std::fs::write(dir.join("notes.txt"), b"kept").unwrap();
        prepare_frames_dir(&dir).unwrap();
        assert!(!dir.join("dom1-conn0-seq0.png").exists());
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        prepare_frames_dir(&dir).unwrap();
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dom0_args_quote_bootargs() {
        let guest = GuestOptions {
            memory_mib: Some(64),
            bootargs: Some("log=debug demo=1".into()),
        };
        assert_eq!(
            dom0_args("boot", &guest, false).unwrap(),
            "console=hvc0 earlycon=xen rdinit=/init quiet rig.scenario=boot rig.memory=64 \
             rig.bootargs=\"log=debug demo=1\""
        );
        let bad = GuestOptions {
            memory_mib: None,
            bootargs: Some("a\"b".into()),
        };
        assert!(dom0_args("boot", &bad, false).is_err());
    }

    fn watch_script(script: &str, expected: &[Pattern], stop_when_complete: bool) -> Outcome {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        // Tests run in parallel: one log file each.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "xtask-watch-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut qemu = Qemu::spawn(cmd, &log, Console::Quiet).unwrap();
        let outcome = watch(
            &mut qemu,
            "test",
            expected.to_vec(),
            Duration::from_secs(20),
            stop_when_complete,
            false,
        )
        .unwrap();
        std::fs::remove_file(log).unwrap();
        outcome
    }

    #[test]
    fn dom0less_run_stops_when_complete() {
        let outcome = watch_script(
            "echo '(XEN) DOM1: report: end'; echo '(XEN) DOM1: vdispl-os: powering off'; sleep 30",
            &[
                Pattern::start("report: end"),
                Pattern::start("vdispl-os: powering off"),
            ],
            true,
        );
        assert!(outcome.passed(), "{:?}", outcome.problem);
        assert!(outcome.seconds < 10.0);
    }

    #[test]
    fn guest_failure_stops_a_dom0less_run_and_is_reported() {
        let outcome = watch_script(
            "echo '(XEN) DOM1: vdispl-os: panic at src/x.rs:1: boom'; sleep 30",
            &[Pattern::start("report: end")],
            true,
        );
        assert!(!outcome.passed());
        assert!(outcome.seconds < 10.0);
        assert!(outcome.seconds >= GUEST_FATAL_GRACE.as_secs_f64());
        assert_eq!(
            outcome.problem.as_deref(),
            Some("guest said `vdispl-os: panic at src/x.rs:1: boom`")
        );
        assert_eq!(outcome.missing, [Pattern::start("report: end")]);
    }

    #[test]
    fn only_a_stalled_share_boots_a_scenario_again() {
        let outcome = |problem: Option<&str>| Outcome {
            missing: Vec::new(),
            problem: problem.map(String::from),
            seconds: 1.0,
            log: PathBuf::from("x.log"),
        };
        let stalled = "timeout after 300 s; Dom0's kernel said `[  242.688924] INFO: task \
                       vdispl-backend:203 blocked for more than 120 seconds.`";
        assert_eq!(share_stall(true, &outcome(Some(stalled))), Some(stalled));
        // Without the share the same line is Dom0 starved or stuck: a failure.
        assert_eq!(share_stall(false, &outcome(Some(stalled))), None);
        // Any other problem, or none, is not retried.
        assert_eq!(
            share_stall(true, &outcome(Some("timeout after 300 s"))),
            None
        );
        assert_eq!(
            share_stall(
                true,
                &outcome(Some("Dom0's kernel said `BUG: soft lockup`"))
            ),
            None
        );
        assert_eq!(share_stall(true, &outcome(None)), None);
    }

    #[test]
    fn a_starved_dom0_fails_the_run_naming_the_kernel_line() {
        let outcome = watch_script(
            "echo 'rig: ok'; \
             echo '[  242.685407] INFO: task vdispl-backend:163 blocked for more than 120 seconds.'",
            &[Pattern::start("rig: ok")],
            false,
        );
        assert!(!outcome.passed());
        assert!(outcome.missing.is_empty());
        assert_eq!(
            outcome.problem.as_deref(),
            Some(
                "Dom0's kernel said `[  242.685407] INFO: task vdispl-backend:163 blocked for \
                 more than 120 seconds.`"
            )
        );
    }

    #[test]
    fn an_expected_guest_failure_is_a_match() {
        let outcome = watch_script(
            "echo '(XEN) DOM1: vdispl-os: unexpected Synchronous exception from current EL with SP_ELx'; \
             echo '(XEN) DOM1: ESR_EL1 0x96000006 (data abort at the current EL, ISS 0x6)'; \
             echo '(XEN) DOM1: ELR_EL1 0x00000000400039bc  FAR_EL1 0x0000000010000000  SPSR_EL1 0x600003c5'; \
             echo '(XEN) DOM1: x28 0x0000000000000000  x29 0x0000000000000000'; sleep 30",
            GUEST_DATA_ABORT,
            true,
        );
        assert!(
            outcome.passed(),
            "{:?} {:?}",
            outcome.problem,
            outcome.missing
        );
        assert!(outcome.seconds < GUEST_FATAL_GRACE.as_secs_f64());
    }

    #[test]
    fn an_unexpected_guest_failure_still_fails_a_crash_scenario() {
        let outcome = watch_script(
            "echo '(XEN) DOM1: vdispl-os: panic at src/x.rs:1: boom'; sleep 30",
            GUEST_DATA_ABORT,
            true,
        );
        assert!(!outcome.passed());
        assert!(outcome.seconds < 10.0);
        assert_eq!(
            outcome.problem.as_deref(),
            Some("guest said `vdispl-os: panic at src/x.rs:1: boom`")
        );
    }

    #[test]
    fn exit_before_the_expected_lines_is_a_failure() {
        let outcome = watch_script(
            "echo 'rig: poweroff'; exit 3",
            &[Pattern::start("report: end")],
            false,
        );
        assert_eq!(outcome.missing, [Pattern::start("report: end")]);
        assert!(outcome.problem.unwrap().contains("QEMU exited"));
    }

    #[test]
    fn each_release_has_its_set_and_plain_runs_cover_both() {
        for release in Release::ALL {
            let set = release_set(release).unwrap();
            assert!(!set.is_empty(), "{release}");
            for scenario in &set {
                assert!(scenario.default, "{release}: {}", scenario.name);
            }
        }
        let newer = release_set(Release::Xen420).unwrap();
        for name in [
            "boot-gicv2",
            "boot-gicv3",
            "services-gicv2",
            "services-gicv3",
            "display-gicv3",
            "recovery-gicv3",
            "dom0less",
            "dom0less-gicv2",
        ] {
            assert!(newer.iter().any(|s| s.name == name), "{name}");
        }
        // No flag, no name: the whole default set on 4.17, then 4.20's set.
        let runs = plan_runs(None, &[]).unwrap();
        let count = |release| runs.iter().filter(|(r, _)| *r == release).count();
        assert_eq!(count(Release::Xen417), select(&[]).unwrap().len());
        assert_eq!(count(Release::Xen420), newer.len());
        assert_eq!(runs[0].0, Release::Xen417);
        assert_eq!(runs.last().unwrap().0, Release::Xen420);
        // Named scenarios run on 4.17 unless --xen says otherwise.
        let named = vec!["hostile-gicv3".to_string()];
        let runs = plan_runs(None, &named).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0, Release::Xen417);
        let runs = plan_runs(Some(Choice::One(Release::Xen420)), &named).unwrap();
        assert_eq!(
            (runs[0].0, runs[0].1.name),
            (Release::Xen420, "hostile-gicv3")
        );
        assert_eq!(plan_runs(Some(Choice::All), &named).unwrap().len(), 2);
        assert_eq!(
            plan_runs(Some(Choice::One(Release::Xen420)), &[])
                .unwrap()
                .len(),
            newer.len()
        );
        assert_eq!(
            run_name(Release::Xen420, runs[0].1),
            "hostile-gicv3 on Xen 4.20"
        );
    }

    #[test]
    fn the_report_line_names_the_release_booted() {
        for release in Release::ALL {
            let expected = SCENARIOS[0].expected(release);
            let line = Pattern::start_owned(format!("report: xen-version {}", release.version()));
            assert!(expected.contains(&line), "{release}");
            assert!(!expected.contains(&XEN_VERSION), "{release}");
        }
        let run = run_expectations(Release::Xen420, 3, Kind::Dom0less, None);
        assert!(run.contains(&Pattern::start("report: xen-version 4.20")));
        let mut expectations = logmatch::Expectations::new(run);
        expectations.feed("(XEN) report: xen-version 4.20.5-pre (device tree: xen,xen-4.20)");
        assert!(expectations
            .missing()
            .iter()
            .all(|pattern| !pattern.to_string().contains("xen-version")));
        let mut old = logmatch::Expectations::new(SCENARIOS[0].expected(Release::Xen417));
        assert!(!old.feed("(XEN) report: xen-version 4.20.5-pre (device tree: xen,xen-4.20)"));
    }

    #[test]
    fn selecting_an_unknown_scenario_names_the_known_ones() {
        let error = select(&["nope".into()]).unwrap_err().to_string();
        assert!(error.contains("boot-gicv2"), "{error}");
    }
}
