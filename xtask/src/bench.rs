//! `cargo xtask bench`: the guest's speed and size on the rig, each figure next to a peer or a
//! target measured or set in the same run.
//!
//! One boot of Xen + Dom0 runs `qemu/dom0/scenarios/bench.sh`, which times, in Dom0: the
//! guest's boot to its first acknowledged flip (`xl create` returning to the guest's
//! `flip conn=0 seq=0` line) and, as the peer, a Debian Linux DomU with the same memory
//! (`xl create` returning to its `/init`); the guest flipping every scene at 1920x1080 (its
//! `display: summary` lines: flips per second, flip round trip p50/p99); and the smallest
//! `memory=` that runs 1920x1080 double-buffered, by bisection; and, in the paint guest driven
//! by `qemu/dom0/input/bench-touch.script` (100 touches), the time from a touch reaching the
//! guest to the flip showing it done, p50/p99 as the guest measured them (a figure only, no
//! target); and, side by side at 1920x1080, display buffers allocated by the guest and by the
//! backend (be-alloc): first frame, flips per second, and the backend's CPU time per flip on its
//! ring thread and in all its threads (figures, no target). The host adds the Image size.
//! Figures come from the emulated rig (TCG); the bench never fails on timing, only when a
//! measurement could not be made.

use crate::logmatch::{self, Pattern};
use crate::qemu::{Console, Machine};
use crate::release::{self, Release};
use crate::scenarios::{self, GuestOptions, Kind, Plan, Prepared};
use crate::{cpio, deps, display, rig};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Target: the guest's first frame at least this many times sooner than Linux's `/init`.
const FIRST_FRAME_TARGET: f64 = 50.0;
/// Budget: the Image under this many bytes, display, input and the apps included (a Linux DomU
/// with the display driver is about 4.9 MB).
const IMAGE_TARGET_BYTES: u64 = 512 * 1024;
/// Target: 1920x1080 double-buffered in this much memory (MiB).
const MEMORY_TARGET_MIB: u32 = 32;
/// Target: with capture on, the flip round trip p50 at most this many times the one without.
const CAPTURE_P50_TARGET: f64 = 1.2;
/// Target: flips per second at 1280x720 with capture on.
const CAPTURE_FPS_TARGET: f64 = 10.0;
/// Teardown target: a flipping guest gone within this many milliseconds of `xl shutdown` or
/// `xl destroy`, on an idle rig.
const TEARDOWN_TARGET_MS: u64 = 2000;

/// The marker the Linux peer's `/init` prints (bench.sh waits for it).
const PEER_MARKER: &str = "vdispl-bench: linux /init reached";

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The Xen release to boot: 4.17 or 4.20.
    #[arg(long = "xen", value_name = "RELEASE", default_value = "4.17", value_parser = release::parse_release)]
    pub xen: Release,
    /// GIC version of the emulated board.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub gic: u8,
    /// Boots of each kind (guest and Linux) for the first-frame comparison.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Guest RAM in MiB for the boot comparison, the same for both.
    #[arg(long, default_value_t = 64)]
    pub memory: u32,
    /// Frames per scene in the 1920x1080 flipping run.
    #[arg(long, default_value_t = 8)]
    pub frames: u32,
    /// The memory bisection's range in MiB: LOW..=HIGH.
    #[arg(long, default_value_t = 16)]
    pub low: u32,
    /// Upper end of the memory bisection (assumed to work).
    #[arg(long, default_value_t = 64)]
    pub high: u32,
    /// Overall timeout in seconds.
    #[arg(long, default_value_t = 1200)]
    pub timeout: u64,
}

/// Runs `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.low == 0 || args.low > args.high {
        bail!("--low must be at least 1 and not above --high");
    }
    deps::ensure(&[args.xen])?;
    let prepared = Prepared::build(&[args.xen], false)?;
    let share = rig::target().join("bench");
    prepare_share(&share, args)?;
    let label = format!("bench-gicv{}", args.gic);
    let plan = Plan {
        label: &label,
        release: args.xen,
        machine: Machine::new(args.gic),
        kind: Kind::Dom0 { script: "bench" },
        guest: GuestOptions::default(),
        expected: vec![Pattern::start("rig: bench: done")],
        timeout: Duration::from_secs(args.timeout),
        console: Console::Quiet,
        frames: Some(share),
    };
    println!(
        "bench: booting the rig ({}, GICv{}, log: {}); this takes a few minutes",
        args.xen,
        args.gic,
        rig::release_logs(args.xen)
            .join(format!("{label}.log"))
            .display()
    );
    let outcome = scenarios::boot(&plan, &prepared)?;
    let text = fs::read_to_string(&outcome.log)
        .with_context(|| format!("cannot read {}", outcome.log.display()))?;
    let figures = Figures::parse(&text);
    let image_bytes = fs::metadata(&prepared.guest_image)
        .with_context(|| format!("cannot stat {}", prepared.guest_image.display()))?
        .len();
    print_report(&figures, image_bytes, args, outcome.seconds);
    if let Some(problem) = outcome.problem {
        bail!(
            "bench run failed: {problem} (log: {})",
            outcome.log.display()
        );
    }
    if !outcome.missing.is_empty() {
        bail!("bench run did not finish (log: {})", outcome.log.display());
    }
    Ok(())
}

/// Fills the directory shared with Dom0: the Linux peer's kernel (Dom0's) and initramfs, and
/// `bench.conf`, the settings bench.sh sources.
fn prepare_share(share: &Path, args: &BenchArgs) -> Result<()> {
    scenarios::prepare_frames_dir(share)?;
    let peer = share.join("linux-peer");
    fs::create_dir_all(&peer).with_context(|| format!("cannot create {}", peer.display()))?;
    let kernel = rig::dom0_kernel(args.xen)?;
    let image = peer.join("Image");
    fs::copy(&kernel, &image)
        .with_context(|| format!("cannot copy {} to {}", kernel.display(), image.display()))?;
    let initrd = peer_initramfs(args.xen)?;
    fs::write(peer.join("initrd.cpio"), initrd).context("cannot write the peer's initramfs")?;
    let conf = format!(
        "RUNS={}\nMEMORY={}\nFRAMES={}\nLOW={}\nHIGH={}\n",
        args.runs.max(1),
        args.memory,
        args.frames.max(1),
        args.low,
        args.high
    );
    fs::write(share.join("bench.conf"), conf).context("cannot write bench.conf")?;
    Ok(())
}

/// The Linux peer's initramfs: static busybox and an `/init` that prints [`PEER_MARKER`] on the
/// PV console and powers the domain off.
fn peer_initramfs(release: Release) -> Result<Vec<u8>> {
    let busybox_path = rig::busybox(release)?;
    let busybox = fs::read(&busybox_path)
        .with_context(|| format!("cannot read {}", busybox_path.display()))?;
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         /bin/busybox echo '{PEER_MARKER}' >/dev/hvc0\n\
         /bin/busybox poweroff -f\n"
    );
    let mut writer = cpio::Writer::new(Vec::new());
    for dir in ["bin", "dev", "proc", "sys"] {
        writer.directory(dir, 0o755)?;
    }
    writer.file("bin/busybox", 0o755, &busybox)?;
    writer.symlink("bin/sh", "busybox")?;
    writer.file("init", 0o755, init.as_bytes())?;
    Ok(writer.finish()?)
}

/// What the bench run printed.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    /// Milliseconds from `xl create` returning to the guest's first acknowledged flip, per run.
    guest_first_frame_ms: Vec<u64>,
    /// Milliseconds from `xl create` returning to the Linux peer's `/init`, per run.
    linux_init_ms: Vec<u64>,
    /// Runs of either kind that gave no figure.
    failures: Vec<String>,
    /// The guest's summary per connector, from the flipping run.
    summaries: Vec<display::Summary>,
    /// Each memory tried: MiB and whether it worked.
    memory_tries: Vec<(u32, bool)>,
    /// The smallest memory that worked, MiB.
    memory_smallest: Option<u32>,
    /// Milliseconds from `xl shutdown` or `xl destroy` of a flipping guest to its end, per action.
    teardown_ms: Vec<(String, u64)>,
    /// The capture runs: resolution, capture on, and the guest's figures (None: failed).
    capture: Vec<(String, bool, Option<Capture>)>,
    /// The touch-to-flip run: per connector, the guest's figures (None: failed).
    touch_to_flip: Vec<(u32, Option<TouchToFlip>)>,
    /// The buffer runs: be-alloc, and the figures (None: failed).
    buffers: Vec<(bool, Option<Buffers>)>,
}

/// One buffer run's figures: the guest's first frame and flips per second, the backend's CPU
/// time per flip.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Buffers {
    first_frame_ms: u64,
    fps: f64,
    ring_us_per_flip: u64,
    all_us_per_flip: u64,
}

/// The touch-to-flip run's figures, as the guest measured them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TouchToFlip {
    p50_us: u64,
    p99_us: u64,
    touches: u64,
}

/// One capture run's figures, as the guest measured them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Capture {
    fps: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Figures {
    fn parse(log: &str) -> Self {
        let mut figures = Figures::default();
        for raw in log.lines() {
            let text = logmatch::strip_prefixes(raw);
            if let Some(summary) = display::parse_summary(text) {
                if !figures
                    .summaries
                    .iter()
                    .any(|seen| seen.connector == summary.connector)
                {
                    figures.summaries.push(summary);
                }
                continue;
            }
            let Some(rest) = text.strip_prefix("rig: bench: ") else {
                continue;
            };
            let is_boot = rest.starts_with("guest first-frame ")
                || rest.starts_with("linux init ")
                || rest.starts_with("teardown ");
            if is_boot && (rest.ends_with(" failed") || rest.contains(" failed ")) {
                figures.failures.push(rest.to_string());
            }
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|word| word.strip_prefix(key))
                    .and_then(|value| value.parse::<u64>().ok())
            };
            if rest.starts_with("guest first-frame ") {
                figures.guest_first_frame_ms.extend(field("ms="));
            } else if rest.starts_with("linux init ") {
                figures.linux_init_ms.extend(field("ms="));
            } else if rest.starts_with("memory try ") {
                if let Some(mib) = field("mib=") {
                    figures
                        .memory_tries
                        .push((mib as u32, rest.ends_with(" ok")));
                }
            } else if let Some(action) = rest
                .strip_prefix("teardown action=")
                .and_then(|rest| rest.split_whitespace().next())
            {
                if let Some(ms) = field("ms=") {
                    figures.teardown_ms.push((action.to_string(), ms));
                }
            } else if let Some(rest) = rest.strip_prefix("capture ") {
                let word = |key: &str| {
                    rest.split_whitespace()
                        .find_map(|word| word.strip_prefix(key))
                };
                if let (Some(resolution), Some(capture)) = (word("res="), word("capture=")) {
                    let figures_of = || {
                        Some(Capture {
                            fps: word("fps=")?.parse().ok()?,
                            p50_us: word("p50_us=")?.parse().ok()?,
                            p99_us: word("p99_us=")?.parse().ok()?,
                        })
                    };
                    figures
                        .capture
                        .push((resolution.to_string(), capture == "on", figures_of()));
                }
            } else if let Some(rest) = rest.strip_prefix("buffers be-alloc=") {
                let be_alloc = rest.starts_with('1');
                let measured = || {
                    Some(Buffers {
                        first_frame_ms: field("first_frame_ms=")?,
                        fps: rest
                            .split_whitespace()
                            .find_map(|word| word.strip_prefix("fps="))?
                            .parse()
                            .ok()?,
                        ring_us_per_flip: field("ring_us_per_flip=")?,
                        all_us_per_flip: field("all_us_per_flip=")?,
                    })
                };
                figures.buffers.push((be_alloc, measured()));
            } else if let Some(rest) = rest.strip_prefix("touch-to-flip conn=") {
                let Some(connector) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|word| word.parse().ok())
                else {
                    continue;
                };
                let measured = || {
                    Some(TouchToFlip {
                        p50_us: field("p50_us=")?,
                        p99_us: field("p99_us=")?,
                        touches: field("touches=")?,
                    })
                };
                figures.touch_to_flip.push((connector, measured()));
            } else if rest.starts_with("memory smallest ") {
                figures.memory_smallest = field("mib=").map(|mib| mib as u32);
            }
        }
        figures
    }
}

/// The median of `values` (the lower middle one of an even count).
fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn list(values: &[u64]) -> String {
    values
        .iter()
        .map(|value| value.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(figures: &Figures, image_bytes: u64, args: &BenchArgs, seconds: f64) {
    println!();
    println!(
        "vdispl-os bench (emulated rig: {} + Dom0 under qemu-system-aarch64 TCG, GICv{}; \
         times are Dom0's clock; run took {seconds:.0} s)",
        args.xen, args.gic
    );
    let guest = median(&figures.guest_first_frame_ms);
    let linux = median(&figures.linux_init_ms);
    println!(
        "boot, memory={} MiB for both (median of runs, ms):",
        args.memory
    );
    match guest {
        Some(ms) => println!(
            "  vdispl-os: xl create returned -> first flip acknowledged  {ms:>7} ms  (runs: {})",
            list(&figures.guest_first_frame_ms)
        ),
        None => println!("  vdispl-os: no first frame measured"),
    }
    match linux {
        Some(ms) => println!(
            "  Debian Linux DomU: xl create returned -> /init           {ms:>7} ms  (runs: {})",
            list(&figures.linux_init_ms)
        ),
        None => println!("  Debian Linux DomU: /init not reached"),
    }
    if let (Some(guest), Some(linux)) = (guest, linux) {
        let ratio = linux as f64 / guest.max(1) as f64;
        println!(
            "  first frame {ratio:.1}x sooner than Linux reaches /init; target >= {FIRST_FRAME_TARGET}x: {}",
            met(ratio >= FIRST_FRAME_TARGET)
        );
    }
    for failure in &figures.failures {
        println!("  failed: {failure}");
    }
    println!("flipping every scene at 1920x1080 (the guest's figures):");
    if figures.summaries.is_empty() {
        println!("  no display summary");
    }
    for summary in &figures.summaries {
        println!(
            "  conn {} {}x{}: {} flips, {} flips/s, flip round trip p50 {:.1} ms, p99 {:.1} ms{}",
            summary.connector,
            summary.width,
            summary.height,
            summary.frames,
            summary.fps,
            summary.rtt_p50_us as f64 / 1000.0,
            summary.rtt_p99_us as f64 / 1000.0,
            summary
                .failed
                .as_ref()
                .map(|why| format!(" (failed: {why})"))
                .unwrap_or_default()
        );
    }
    print_capture(&figures.capture);
    print_touch_to_flip(&figures.touch_to_flip);
    print_buffers(&figures.buffers);
    println!("teardown of a flipping guest, from the xl command to the guest gone:");
    if figures.teardown_ms.is_empty() {
        println!("  not measured");
    }
    for (action, ms) in &figures.teardown_ms {
        println!(
            "  xl {action:<8} {ms:>6} ms; target < {TEARDOWN_TARGET_MS} ms: {}",
            met(*ms < TEARDOWN_TARGET_MS)
        );
    }
    println!(
        "size: target/vdispl-os.Image {image_bytes} bytes ({:.1} KiB); budget < {} KiB: {}",
        image_bytes as f64 / 1024.0,
        IMAGE_TARGET_BYTES / 1024,
        met(image_bytes < IMAGE_TARGET_BYTES)
    );
    let tries = figures
        .memory_tries
        .iter()
        .map(|(mib, ok)| format!("{mib} {}", if *ok { "ok" } else { "failed" }))
        .collect::<Vec<_>>()
        .join(", ");
    match figures.memory_smallest {
        Some(mib) => println!(
            "memory: smallest memory= for 1920x1080 double-buffered {mib} MiB (tried {tries}); \
             target <= {MEMORY_TARGET_MIB} MiB: {}",
            met(mib <= MEMORY_TARGET_MIB)
        ),
        None => println!("memory: not measured (tried {tries})"),
    }
}

/// The buffer runs side by side: guest-allocated and backend-allocated buffers (figures, no
/// target).
fn print_buffers(runs: &[(bool, Option<Buffers>)]) {
    println!(
        "display buffers allocated by the guest and by the backend (be-alloc), one 1920x1080 \
         connector, the animation scene, no capture files (figures, no target):"
    );
    if runs.is_empty() {
        println!("  not measured");
        return;
    }
    let of = |be_alloc: bool| {
        runs.iter()
            .find(|(mode, _)| *mode == be_alloc)
            .map(|(_, figures)| *figures)
    };
    let (guest, backend) = (of(false), of(true));
    let cell = |figures: Option<Option<Buffers>>, show: &dyn Fn(Buffers) -> String| match figures {
        Some(Some(figures)) => show(figures),
        Some(None) => "failed".to_string(),
        None => "not run".to_string(),
    };
    println!(
        "  {:<44} {:>18} {:>18}",
        "", "guest-allocated", "backend-allocated"
    );
    let rows: [(&str, &dyn Fn(Buffers) -> String); 4] = [
        ("first frame (xl create -> first flip), ms", &|b| {
            b.first_frame_ms.to_string()
        }),
        ("flips/s (the guest's)", &|b| format!("{:.2}", b.fps)),
        ("backend CPU per flip, ring thread, us", &|b| {
            b.ring_us_per_flip.to_string()
        }),
        ("backend CPU per flip, all threads, us", &|b| {
            b.all_us_per_flip.to_string()
        }),
    ];
    for (name, show) in rows {
        println!(
            "  {name:<44} {:>18} {:>18}",
            cell(guest, show),
            cell(backend, show)
        );
    }
}

/// The touch-to-flip figures: no target, the figure only.
fn print_touch_to_flip(runs: &[(u32, Option<TouchToFlip>)]) {
    if runs.is_empty() {
        println!("touch to flip: not measured");
    }
    for (connector, figures) in runs {
        match figures {
            Some(t) => println!(
                "touch to flip (the touch reaching the guest to the flip showing it done), {} \
                 touches: p50 {:.1} ms, p99 {:.1} ms (conn {connector}, the guest's clock)",
                t.touches,
                t.p50_us as f64 / 1000.0,
                t.p99_us as f64 / 1000.0
            ),
            None => println!("touch to flip: conn {connector} failed"),
        }
    }
}

/// The capture runs side by side: per resolution, off and on, and the ratio of their p50.
fn print_capture(runs: &[(String, bool, Option<Capture>)]) {
    println!(
        "capture off and on (one connector, the animation scene; the guest's figures, the \
         backend writing every frame as a PNG when on):"
    );
    if runs.is_empty() {
        println!("  not measured");
    }
    let mut resolutions: Vec<&str> = runs.iter().map(|(res, _, _)| res.as_str()).collect();
    resolutions.dedup();
    for resolution in resolutions {
        let of = |on: bool| {
            runs.iter()
                .find(|(res, capture, _)| res == resolution && *capture == on)
                .and_then(|(_, _, figures)| *figures)
        };
        let show = |figures: Option<Capture>| match figures {
            Some(c) => format!(
                "{:>6.2} flips/s, p50 {:>6.1} ms, p99 {:>6.1} ms",
                c.fps,
                c.p50_us as f64 / 1000.0,
                c.p99_us as f64 / 1000.0
            ),
            None => "failed".to_string(),
        };
        let (off, on) = (of(false), of(true));
        let mut line = format!("  {resolution:<9} off: {}   on: {}", show(off), show(on));
        if let (Some(off), Some(on)) = (off, on) {
            let ratio = on.p50_us as f64 / off.p50_us.max(1) as f64;
            line.push_str(&format!(
                "; p50 on/off {ratio:.2}x, target <= {CAPTURE_P50_TARGET}x: {}",
                met(ratio <= CAPTURE_P50_TARGET)
            ));
            if resolution == "1280x720" {
                line.push_str(&format!(
                    "; >= {CAPTURE_FPS_TARGET} flips/s with capture: {}",
                    met(on.fps >= CAPTURE_FPS_TARGET)
                ));
            }
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_rig_lines_and_the_guest_summary() {
        let log = "\
rig: bench: guest first-frame run=1 memory=64 ms=900\n\
rig: bench: guest first-frame run=2 memory=64 failed\n\
rig: bench: guest first-frame run=3 memory=64 ms=700\n\
guest-console: display: summary conn=0 1920x1080 frames=32 fps=2.500 rtt_p50_us=300000 rtt_p99_us=500000\n\
guest-vuart: display: summary conn=0 1920x1080 frames=32 fps=2.500 rtt_p50_us=300000 rtt_p99_us=500000\n\
rig: bench: linux init run=1 memory=64 ms=5000\n\
rig: bench: teardown action=shutdown ms=850\n\
rig: bench: teardown action=destroy failed\n\
rig: bench: memory try mib=16 failed\n\
rig: bench: memory try mib=40 ok\n\
rig: bench: memory smallest mib=40 (tried 16..64)\n\
rig: bench: capture res=1280x720 capture=off fps=14.5 p50_us=40000 p99_us=70000\n\
rig: bench: capture res=1280x720 capture=on fps=12.25 p50_us=45000 p99_us=90000\n\
rig: bench: capture res=1920x1080 capture=on failed\n\
rig: bench: touch-to-flip conn=0 p50_us=61500 p99_us=98000 touches=100\n\
rig: bench: touch-to-flip conn=1 failed (vkbd-backend)\n\
rig: bench: buffers be-alloc=0 res=1920x1080 first_frame_ms=420 fps=3.25 ring_us_per_flip=900 all_us_per_flip=41000\n\
rig: bench: buffers be-alloc=1 res=1920x1080 failed\n";
        let figures = Figures::parse(log);
        assert_eq!(
            figures.buffers,
            [
                (
                    false,
                    Some(Buffers {
                        first_frame_ms: 420,
                        fps: 3.25,
                        ring_us_per_flip: 900,
                        all_us_per_flip: 41000
                    })
                ),
                (true, None),
            ]
        );
        assert_eq!(
            figures.touch_to_flip,
            [
                (
                    0,
                    Some(TouchToFlip {
                        p50_us: 61500,
                        p99_us: 98000,
                        touches: 100
                    })
                ),
                (1, None),
            ]
        );
        assert_eq!(
            figures.capture,
            [
                (
                    "1280x720".to_string(),
                    false,
                    Some(Capture {
                        fps: 14.5,
                        p50_us: 40000,
                        p99_us: 70000
                    })
                ),
                (
                    "1280x720".to_string(),
                    true,
                    Some(Capture {
                        fps: 12.25,
                        p50_us: 45000,
                        p99_us: 90000
                    })
                ),
                ("1920x1080".to_string(), true, None),
            ]
        );
        assert_eq!(figures.guest_first_frame_ms, [900, 700]);
        assert_eq!(figures.linux_init_ms, [5000]);
        assert_eq!(figures.failures.len(), 2);
        assert_eq!(figures.teardown_ms, [("shutdown".to_string(), 850)]);
        assert_eq!(figures.summaries.len(), 1);
        assert_eq!(figures.summaries[0].width, 1920);
        assert_eq!(figures.memory_tries, [(16, false), (40, true)]);
        assert_eq!(figures.memory_smallest, Some(40));
        assert_eq!(median(&figures.guest_first_frame_ms), Some(700));
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_touch_bench_script_sends_100_touches_then_escape() {
        let path = crate::rig::qemu_dir().join("dom0/input/bench-touch.script");
        let text = fs::read_to_string(&path).unwrap();
        let script = drivers::xen::kbdif::script::Script::parse(&text).unwrap();
        let touches = script
            .for_device(Some("DP-1"))
            .filter(|event| kernel::app::is_touch(&event.event))
            .count();
        assert_eq!(touches, 100);
        assert_eq!(
            script.events().last().map(|event| event.event),
            Some(kernel::app::InputEvent::Key {
                pressed: true,
                keycode: kernel::app::KEY_ESC
            })
        );
    }
}
