//! The Linux input peer (`qemu/dom0/scenarios/linux-input.sh`): Linux's own xen-kbdfront in a
//! DomU against the project's input backend, `vkbd-backend`.
//!
//! The DomU is Debian's stock arm64 kernel (the rig's Dom0 kernel, which has
//! `CONFIG_INPUT_XEN_KBDDEV_FRONTEND=y`) with an initramfs ([`linux_peer::init_initramfs`])
//! whose `/init` is `evdev-reader` (`qemu/evdev-reader`) and which carries Debian's evdev module
//! (`CONFIG_INPUT_EVDEV=m`) as `/lib/modules/evdev.ko`. Both go into the scenario's share
//! (`target/frames/<scenario>/`, `/mnt/frames` in Dom0) before the boot, as
//! `linux-input.Image` and `linux-input.cpio` ([`prepare`]).
//!
//! Afterwards [`check`] reads the serial log: the reader's lines from the DomU's console
//! (`guest-console: evdev: ...`) are held against the evdev reports
//! `evdev_reader::kbdfront` computes from the same input event script
//! ([`INPUT_SCRIPT`]) and the vkb devices of [`XL_CONFIG`] (per vkbd device, exactly: device,
//! type, code, value and order), and the DomU's console must hold no error from xen-kbdfront,
//! its xenbus devices or the kernel ([`console_problems`]).

use crate::release::Release;
use crate::{build, initramfs, linux_peer, modinfo, rig};
use anyhow::{bail, Context, Result};
use evdev_reader::compare::{self, Matched};
use evdev_reader::kbdfront::{self, Ring, VkbdConfig};
use evdev_reader::output::ReaderLog;
use std::fs;
use std::path::{Path, PathBuf};

/// The Dom0 script.
pub const SCRIPT: &str = "linux-input";
/// The DomU's xl config, relative to `qemu/`.
pub const XL_CONFIG: &str = "xl/linux-input.cfg";
/// The input event script vkbd-backend plays (`/rig/input/linux-input.script`), relative to
/// `qemu/`.
pub const INPUT_SCRIPT: &str = "dom0/input/linux-input.script";
/// The DomU's kernel in the share (`kernel =` of the xl config).
pub const IMAGE: &str = "linux-input.Image";
/// The DomU's initramfs in the share (`ramdisk =` of the xl config).
pub const INITRAMFS: &str = "linux-input.cpio";
/// Where the initramfs carries the evdev module (the reader loads it).
const MODULE_PATH: &str = "lib/modules/evdev.ko";

/// The DomU's `/init`.
pub const READER: build::Binary = build::Binary {
    package: "evdev-reader",
    bin: "evdev-reader",
    target: "aarch64-unknown-linux-musl",
};

/// Lines of the DomU's console that say something went wrong: text anywhere in a line.
/// xen-kbdfront's own messages start with `xen_kbdfront:` (its unhandled keycodes, a request
/// it could not write), its xenbus errors with `vkbd vkbd-<n>:`; a device left unclosed at
/// shutdown is named with its `device/vkbd/<n>` node.
pub const CONSOLE_ERRORS: &[&str] = &[
    "*ERROR*",
    "xen_kbdfront:",
    "vkbd vkbd-",
    "device/vkbd/",
    "timeout closing device",
    "WARNING:",
    "BUG:",
    "Oops",
    "Call trace:",
    "Kernel panic",
];

/// Whether a Dom0 script is the Linux input peer's.
pub fn needed_by(script: &str) -> bool {
    script == SCRIPT
}

/// `target/linux-input/`.
fn dir() -> PathBuf {
    rig::target().join("linux-input")
}

/// Builds the reader and the DomU's initramfs and puts them, with `release`'s Dom0 kernel (the
/// DomU boots the same Debian kernel), into `share`.
pub fn prepare(share: &Path, release: Release) -> Result<()> {
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::create_dir_all(share).with_context(|| format!("cannot create {}", share.display()))?;
    let devices: usize = configs()?
        .iter()
        .enumerate()
        .map(|(id, config)| config.devices(id).len())
        .sum();
    let config = config_text()?;
    if reader_devices(&config) != Some(devices) {
        bail!(
            "{XL_CONFIG}: its vkb devices make {devices} input devices in Linux; its extra= \
             must say reader.devices={devices}"
        );
    }
    let reader = build::build_static(&READER, "the Linux input peer's /init")?;
    let module = evdev_module(release)?;
    let initramfs = linux_peer::init_initramfs(
        &reader,
        &dir.join("evdev-reader"),
        &[(MODULE_PATH, &module)],
    )?;
    let path = share.join(INITRAMFS);
    if fs::read(&path).ok().as_deref() != Some(&initramfs[..]) {
        fs::write(&path, &initramfs).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let kernel = rig::dom0_kernel(release)?;
    let image = share.join(IMAGE);
    let same = |a: &Path, b: &Path| -> bool {
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.len() == b.len() && a.modified().ok() <= b.modified().ok(),
            _ => false,
        }
    };
    if !same(&kernel, &image) {
        fs::copy(&kernel, &image)
            .with_context(|| format!("cannot copy {} to {}", kernel.display(), image.display()))?;
    }
    println!(
        "linux-input: {} (Debian's kernel) and {} ({} bytes: evdev-reader as /init, evdev.ko) in {}",
        IMAGE,
        INITRAMFS,
        initramfs.len(),
        share.display()
    );
    Ok(())
}

/// Debian's evdev module for `release`'s kernel (unpacked when the kernel ships it
/// xz-compressed); it must need no other module.
fn evdev_module(release: Release) -> Result<Vec<u8>> {
    let input = rig::modules_dir(release)?.join("kernel/drivers/input");
    let path = if input.join("evdev.ko.xz").is_file() {
        let unpacked = rig::release_dir(release).join("modules");
        initramfs::uncompressed(&input.join("evdev.ko.xz"), &unpacked)?
    } else {
        input.join("evdev.ko")
    };
    let data = fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (run `cargo xtask deps --refresh`)",
            path.display()
        )
    })?;
    let depends = modinfo::depends(&data)
        .with_context(|| format!("cannot read the .modinfo of {}", path.display()))?;
    if !depends.is_empty() {
        bail!(
            "{} depends on {}: the Linux input peer's initramfs carries evdev.ko alone",
            path.display(),
            depends.join(", ")
        );
    }
    Ok(data)
}

/// The vkb entries of an xl config (`vkb = [ '...', '...' ]`, over one or more lines).
pub fn vkb_entries(config: &str) -> Result<Vec<VkbdConfig>> {
    let mut text = String::new();
    let mut inside = false;
    for line in config.lines() {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        let trimmed = line.trim_start();
        if !inside {
            let Some(rest) = trimmed.strip_prefix("vkb") else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            inside = true;
            text.push_str(rest);
        } else {
            text.push_str(line);
        }
        if text.contains(']') {
            break;
        }
    }
    let Some(list) = text
        .trim()
        .strip_prefix('[')
        .and_then(|list| list.split_once(']'))
        .map(|(list, _)| list)
    else {
        bail!("no `vkb = [ ... ]` list");
    };
    list.split('\'')
        .skip(1)
        .step_by(2)
        .map(|spec| {
            VkbdConfig::parse(spec).map_err(|error| anyhow::anyhow!("vkb `{spec}`: {error}"))
        })
        .collect()
}

/// The value of `reader.devices=` in the xl config's `extra`.
pub fn reader_devices(config: &str) -> Option<usize> {
    config
        .lines()
        .find(|line| line.trim_start().starts_with("extra"))?
        .split_whitespace()
        .find_map(|word| word.trim_matches('"').strip_prefix("reader.devices="))?
        .trim_matches('"')
        .parse()
        .ok()
}

/// The text of the DomU's xl config.
fn config_text() -> Result<String> {
    let path = rig::qemu_dir().join(XL_CONFIG);
    fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The vkb devices of the DomU's xl config.
fn configs() -> Result<Vec<VkbdConfig>> {
    vkb_entries(&config_text()?).with_context(|| format!("in {XL_CONFIG}"))
}

/// The evdev reports the scenario's script gives, per vkbd device of its xl config.
pub fn expected() -> Result<Vec<Ring>> {
    let configs = configs()?;
    let script_path = rig::qemu_dir().join(INPUT_SCRIPT);
    let text = fs::read_to_string(&script_path)
        .with_context(|| format!("cannot read {}", script_path.display()))?;
    let script = drivers::xen::kbdif::script::Script::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", script_path.display()))?;
    kbdfront::expected(&configs, &script)
        .map_err(|error| anyhow::anyhow!("{}: {error}", script_path.display()))
}

/// The DomU's console lines (what `show_console_logs` printed as `guest-console: <line>`).
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|raw| {
            raw.trim_start_matches(['\r', ' '])
                .strip_prefix("guest-console: ")
        })
        .collect()
}

/// The lines of the DomU's console, other than the reader's own, that say something went
/// wrong.
pub fn console_problems<'a>(console: &[&'a str]) -> Vec<&'a str> {
    console
        .iter()
        .copied()
        .filter(|line| !line.starts_with(evdev_reader::output::PREFIX))
        .filter(|line| CONSOLE_ERRORS.iter().any(|error| line.contains(error)))
        .collect()
}

/// Holds a run's serial log against what the scenario expects: what matched, or every
/// failure.
pub fn check(log: &Path) -> Result<std::result::Result<Matched, Vec<String>>> {
    let bytes = fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let console = console_lines(&text);
    let reader = ReaderLog::read(console.iter().copied());
    let rings = expected()?;
    let problems: Vec<String> = console_problems(&console)
        .into_iter()
        .map(|line| format!("the DomU's console says `{}`", line.trim_end()))
        .collect();
    Ok(match compare::check(&rings, &reader) {
        Ok(matched) if problems.is_empty() => Ok(matched),
        Ok(_) => Err(problems),
        Err(mut failures) => {
            failures.extend(problems);
            Err(failures)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use evdev_reader::output::{device_line, event_line, ready_line, POWERING_OFF};

    #[test]
    fn the_xl_config_describes_the_devices_the_reader_waits_for() {
        let config = fs::read_to_string(rig::qemu_dir().join(XL_CONFIG)).unwrap();
        let configs = vkb_entries(&config).unwrap();
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0].unique_id.as_deref(), Some("touch"));
        assert!(configs[0].abs_pointer);
        assert_eq!(configs[0].multi_touch, Some(2));
        assert_eq!(configs[1].unique_id.as_deref(), Some("mouse"));
        assert_eq!(configs[1].multi_touch, None);
        let devices: usize = configs
            .iter()
            .enumerate()
            .map(|(id, config)| config.devices(id).len())
            .sum();
        assert_eq!(reader_devices(&config), Some(devices));
        assert_eq!(
            vkb_entries("vkb = [ 'backend-type=linux,unique-id=a' ]\n").unwrap()[0]
                .unique_id
                .as_deref(),
            Some("a")
        );
        assert!(vkb_entries("vdispl = [ 'x' ]").is_err());
        assert!(vkb_entries("vkb = [ 'backend-type=qemu' ]").is_err());
    }

    #[test]
    fn the_script_gives_reports_on_every_device_and_ends_on_both_keyboards() {
        let rings = expected().unwrap();
        for ring in &rings {
            for device in &ring.devices {
                assert!(
                    ring.reports.iter().any(|report| &report.device == device),
                    "no report on {device}"
                );
            }
            let last = ring.reports.last().unwrap();
            assert!(last.device.starts_with(kbdfront::KEYBOARD));
            assert_eq!(
                last.events[0],
                evdev_reader::output::Event::new(1, 1, 0),
                "KEY_ESC released last"
            );
        }
    }

    fn serial_log(rings: &[Ring], console_extra: &[&str]) -> String {
        let mut lines = vec!["(XEN) Xen version 4.17".to_string()];
        let mut console = Vec::new();
        for (index, device) in rings.iter().flat_map(|ring| &ring.devices).enumerate() {
            console.push(device_line(&format!("/dev/input/event{index}"), device));
        }
        console.push(ready_line(5, 1, 2));
        for report in rings.iter().flat_map(|ring| &ring.reports) {
            for event in &report.events {
                console.push(event_line(&report.device, event));
            }
        }
        console.push(POWERING_OFF.to_string());
        console.extend(console_extra.iter().map(|line| line.to_string()));
        for line in console {
            lines.push(format!("guest-console: {line}"));
        }
        lines.push("rig: linux-input ok".to_string());
        lines.join("\n")
    }

    #[test]
    fn a_log_with_the_expected_lines_passes_and_console_errors_fail_it() {
        let rings = expected().unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-linux-input-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        fs::write(
            &log,
            serial_log(&rings, &["[    3.1] Run /init as init process"]),
        )
        .unwrap();
        let matched = check(&log).unwrap().unwrap();
        assert_eq!(matched.devices, 5);
        assert_eq!(
            matched.reports,
            rings.iter().map(|ring| ring.reports.len()).sum::<usize>()
        );
        fs::write(
            &log,
            serial_log(&rings, &["[    9.2] xen_kbdfront: unhandled keycode 0x14a"]),
        )
        .unwrap();
        assert_eq!(
            check(&log).unwrap().unwrap_err(),
            ["the DomU's console says `[    9.2] xen_kbdfront: unhandled keycode 0x14a`"]
        );
        // The reader's lines from Dom0's own console do not count.
        let text = serial_log(&rings, &[]).replace(
            "guest-console: evdev: Xen Virtual Pointer",
            "evdev: Xen Virtual Pointer",
        );
        fs::write(&log, text).unwrap();
        let failures = check(&log).unwrap().unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with("xenbus/device/vkbd/0: ")),
            "{failures:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn console_errors_are_those_of_the_frontend_and_the_kernel() {
        let console = [
            "[    1.2] input: Xen Virtual Keyboard as /devices/virtual/input/input0",
            "[    1.3] vkbd vkbd-0: 2 writing xenstore",
            "[    5.0] xenbus_frontend_dev_shutdown: device/vkbd/1: Initialised != Connected, skipping",
            "evdev: ready: 5 devices open",
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 1 30 1",
        ];
        assert_eq!(console_problems(&console), [console[1], console[2]]);
    }
}
