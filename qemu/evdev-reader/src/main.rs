//! `evdev-reader`: the `/init` of the Linux input peer DomU (`cargo xtask test`'s
//! linux-input scenario). It mounts devtmpfs, proc and sysfs, loads evdev
//! (`/lib/modules/evdev.ko`: Debian builds it as a module), reads its options from the kernel
//! command line (`reader.devices=`, `reader.end-key=`), waits for that many
//! `/dev/input/event*` devices (xen-kbdfront creates them when it probes its vkbd devices),
//! opens each, names it (`EVIOCGNAME`, `EVIOCGPHYS`), asks for monotonic timestamps, and says it
//! is ready: only then does the rig start the input backend, so no event comes before every
//! device is open. It then reads every event until each device that has the end key has
//! reported its release, prints every report in timestamp order (`evdev_reader::output`), a
//! summary, and powers the domain off.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod sys;

use evdev_reader::codes::CLOCK_MONOTONIC;
use evdev_reader::collect::Collector;
use evdev_reader::output::{self, device_label, Event};
use evdev_reader::{cmdline, raw};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// The evdev module, when evdev is not built in.
const MODULE: &str = "/lib/modules/evdev.ko";
/// Where devtmpfs puts the event devices.
const INPUT_DIR: &str = "/dev/input";
/// How long to wait for the devices (a hang, not a slow boot).
const DEVICE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for events when none come (the backend is started once this reader is
/// ready; this only catches a hang).
const QUIET_TIMEOUT: Duration = Duration::from_secs(120);
/// Events read at once.
const READ_EVENTS: usize = 64;

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}{line}", output::PREFIX);
    let _ = out.flush();
}

fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `NAME (errno N)` for an OS error, its text otherwise.
fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(errno) => format!("{error} (errno {errno})"),
        None => error.to_string(),
    }
}

fn main() {
    say("started");
    for (source, target, fstype) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ] {
        if let Err(error) = sys::mount(source, target, fstype) {
            if error.raw_os_error() != Some(libc::EBUSY) {
                say(&format!(
                    "failed: mount {fstype} on {target}: {}",
                    describe(&error)
                ));
            }
        }
    }
    if let Err(line) = run() {
        say(&format!("failed: {line}"));
    }
    print_line(output::POWERING_OFF);
    let error = sys::power_off();
    say(&format!(
        "failed: reboot(LINUX_REBOOT_CMD_POWER_OFF): {}",
        describe(&error)
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// An open device and what the reader knows of it.
struct Input {
    node: String,
    label: String,
    device: sys::Device,
    has_end_key: bool,
    /// Still readable (a read error takes it out).
    open: bool,
}

/// The whole run; `Err` is the failure line's text.
fn run() -> Result<(), String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|error| format!("reading /proc/cmdline: {}", describe(&error)))?;
    let options = cmdline::parse(&cmdline)?;
    if std::path::Path::new(MODULE).is_file() {
        match sys::load_module(MODULE) {
            Ok(sys::Loaded::Now) => say(&format!("module {MODULE} loaded")),
            Ok(sys::Loaded::Already) => say(&format!("module {MODULE} was loaded already")),
            Err(error) => return Err(format!("finit_module {MODULE}: {}", describe(&error))),
        }
    }
    let nodes = wait_for_devices(options.devices)?;
    let mut inputs = Vec::new();
    for node in nodes {
        let input = open(&node, options.end_key)?;
        say(&format!("device {}: {}", input.node, input.label));
        inputs.push(input);
    }
    let ending = inputs.iter().filter(|input| input.has_end_key).count();
    if ending == 0 {
        return Err(format!(
            "no device has key {} (reader.end-key), so nothing would end the reading",
            options.end_key
        ));
    }
    print_line(&output::ready_line(inputs.len(), options.end_key, ending));
    let (collector, problem) = read_until_the_end(&mut inputs, options.end_key);
    let events = collector.events();
    let report_count = collector.reports();
    let ended = (0..inputs.len()).filter(|&d| collector.ended(d)).count();
    let (runs, incomplete) = collector.finish();
    for run in &runs {
        if run.same_time {
            let first = &run.reports[0];
            print_line(&output::same_time_line(
                run.reports.len(),
                first.seconds,
                first.microseconds,
            ));
        }
        for report in &run.reports {
            print_report(&inputs, report.device, &report.events);
        }
    }
    for (device, events) in &incomplete {
        print_report(&inputs, *device, events);
    }
    say(&format!(
        "summary: {events} events in {report_count} reports from {} devices; the end key \
         released on {ended} of the {ending} devices that have it",
        inputs.len()
    ));
    match problem {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

fn print_report(inputs: &[Input], device: usize, events: &[Event]) {
    let label = inputs
        .get(device)
        .map_or("unknown device (?)", |input| input.label.as_str());
    for event in events {
        print_line(&output::event_line(label, event));
    }
}

/// The event device nodes, in number order, once there are at least `count`.
fn wait_for_devices(count: usize) -> Result<Vec<String>, String> {
    let started = Instant::now();
    loop {
        let mut numbers: Vec<u32> = std::fs::read_dir(INPUT_DIR)
            .map(|entries| {
                entries
                    .filter_map(|entry| {
                        let name = entry.ok()?.file_name();
                        name.to_str()?.strip_prefix("event")?.parse().ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        numbers.sort_unstable();
        if numbers.len() >= count {
            return Ok(numbers
                .into_iter()
                .map(|number| format!("{INPUT_DIR}/event{number}"))
                .collect());
        }
        if started.elapsed() >= DEVICE_TIMEOUT {
            return Err(format!(
                "{} of {count} input devices in {INPUT_DIR} after {} s",
                numbers.len(),
                DEVICE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens one device, names it, and asks for monotonic timestamps.
fn open(node: &str, end_key: u16) -> Result<Input, String> {
    let failed = |what: &str, error: io::Error| format!("{what} {node}: {}", describe(&error));
    let device = sys::Device::open(node).map_err(|error| failed("open", error))?;
    let name = device.name().map_err(|error| failed("EVIOCGNAME", error))?;
    let phys = device.phys().map_err(|error| failed("EVIOCGPHYS", error))?;
    device
        .set_clock(CLOCK_MONOTONIC)
        .map_err(|error| failed("EVIOCSCLOCKID", error))?;
    let has_end_key = device
        .has_key(end_key)
        .map_err(|error| failed("EVIOCGBIT(EV_KEY)", error))?;
    Ok(Input {
        node: node.to_string(),
        label: device_label(&name, &phys),
        device,
        has_end_key,
        open: true,
    })
}

/// Reads every device until each that has the end key has reported its release (then
/// reads what is left once more), or until nothing comes for [`QUIET_TIMEOUT`]; the problem,
/// if it stopped for another reason.
fn read_until_the_end(inputs: &mut [Input], end_key: u16) -> (Collector, Option<String>) {
    let mut collector = Collector::new(inputs.len(), end_key);
    let mut last_event = Instant::now();
    loop {
        let done = inputs
            .iter()
            .enumerate()
            .all(|(index, input)| !input.has_end_key || collector.ended(index));
        if done {
            // Whatever the frontend handed over before the end key is in the buffers now.
            let problem = read_all(inputs, &mut collector, None);
            return (collector, problem);
        }
        if !inputs.iter().any(|input| input.open) {
            return (collector, Some("every device failed".to_string()));
        }
        let files: Vec<&std::fs::File> = inputs.iter().map(|input| input.device.file()).collect();
        let ready = match sys::poll(&files, Duration::from_secs(1)) {
            Ok(ready) => ready,
            Err(error) => {
                return (
                    collector,
                    Some(format!("poll on the input devices: {}", describe(&error))),
                )
            }
        };
        let before = collector.events();
        if let Some(problem) = read_all(inputs, &mut collector, Some(&ready)) {
            return (collector, Some(problem));
        }
        if collector.events() > before {
            last_event = Instant::now();
        } else if last_event.elapsed() >= QUIET_TIMEOUT {
            let waiting: Vec<&str> = inputs
                .iter()
                .enumerate()
                .filter(|(index, input)| input.has_end_key && !collector.ended(*index))
                .map(|(_, input)| input.label.as_str())
                .collect();
            return (
                collector,
                Some(format!(
                    "no event for {} s, and key {end_key} was not released on {}",
                    QUIET_TIMEOUT.as_secs(),
                    waiting.join(", ")
                )),
            );
        }
    }
}

/// Reads every event waiting on the devices `ready` marks (all with `None`); the first read
/// error, naming the device (which is not read again).
fn read_all(
    inputs: &mut [Input],
    collector: &mut Collector,
    ready: Option<&[bool]>,
) -> Option<String> {
    let mut problem = None;
    let mut buffer = [0u8; raw::SIZE * READ_EVENTS];
    for (index, input) in inputs.iter_mut().enumerate() {
        if !input.open || ready.is_some_and(|ready| !ready.get(index).copied().unwrap_or(false)) {
            continue;
        }
        loop {
            match input.device.file().read(&mut buffer) {
                Ok(0) => break,
                Ok(length) => {
                    for stamped in raw::decode_all(&buffer[..length]) {
                        collector.take(index, stamped);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    input.open = false;
                    problem.get_or_insert(format!("read {}: {}", input.node, describe(&error)));
                    break;
                }
            }
        }
    }
    problem
}
