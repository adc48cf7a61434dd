//! `kms-client`: the `/init` of the Linux peer DomU (`cargo xtask test`'s linux-peer
//! scenarios). It mounts devtmpfs and proc, reads its options from the kernel command line
//! (`kms.format=`, `kms.frames=`), waits for `/dev/dri/card0` (xen-drm-front creates it once
//! the display backend is Connected), page-flips the test pattern of `kms_client::pattern` on
//! every connected connector, and prints one line per connector:
//! `kms-client: ok: conn <I> <W>x<H> <FOURCC> <N> flips`, or one failure line naming the call
//! and the errno: `kms-client: failed: <ioctl> (<context>): <ERRNO> (errno <n>: <text>)`.
//! Then it powers the domain off.

#![deny(unsafe_code)]

mod client;
#[allow(unsafe_code)]
mod sys;

use std::io::Write;
use std::time::{Duration, Instant};

/// The card xen-drm-front registers.
const CARD: &str = "/dev/dri/card0";
/// How long to wait for it: the frontend's device appears once the backend is Connected.
const CARD_TIMEOUT: Duration = Duration::from_secs(30);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "kms-client: {line}");
    let _ = out.flush();
}

fn main() {
    let started = Instant::now();
    for (source, target, fstype) in [("devtmpfs", "/dev", "devtmpfs"), ("proc", "/proc", "proc")] {
        if let Err(error) = sys::mount(source, target, fstype) {
            say(&format!("failed: mount {fstype} on {target}: {error}"));
        }
    }
    let outcome = run(started);
    match outcome {
        Ok(lines) => {
            for line in lines {
                say(&line);
            }
        }
        Err(line) => say(&line),
    }
    say("powering off");
    let error = sys::power_off();
    say(&format!(
        "failed: reboot(LINUX_REBOOT_CMD_POWER_OFF): {error}"
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The whole run: the success lines, or the failure line.
fn run(started: Instant) -> Result<Vec<String>, String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|error| format!("failed: reading /proc/cmdline: {error}"))?;
    let options =
        kms_client::cmdline::parse(&cmdline).map_err(|error| format!("failed: {error}"))?;
    say(&format!(
        "{} {} flips per connector, waiting for {CARD}",
        options.format, options.frames
    ));
    let card = loop {
        match sys::Card::open(CARD) {
            Ok(card) => break card,
            Err(error) if started.elapsed() >= CARD_TIMEOUT => {
                return Err(format!(
                    "failed: open {CARD}: {error} ({} s after /init started)",
                    CARD_TIMEOUT.as_secs()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    say(&format!(
        "{CARD} open {} ms after /init started",
        started.elapsed().as_millis()
    ));
    let shown = client::run(&card, &options, &mut |line| say(&line)).map_err(|failure| {
        format!(
            "failed: {} ({}): {}",
            failure.call,
            failure.context,
            kms_client::errno::describe(&failure.error)
        )
    })?;
    Ok(shown
        .iter()
        .map(|shown| {
            format!(
                "ok: conn {} {}x{} {} {} flips",
                shown.index, shown.width, shown.height, options.format, shown.flips
            )
        })
        .collect())
}
