//! QEMU (`qemu-system-aarch64`, machine `virt` with EL2) running Xen, with the serial console
//! streamed line by line to a log file, optionally to the terminal, and to the caller.
//!
//! The QEMU process never outlives the xtask: it is killed when its [`Qemu`] handle is dropped
//! (early return, error, panic), it receives SIGKILL if the xtask process dies (PR_SET_PDEATHSIG),
//! and it shares the terminal's process group, so Ctrl-C reaches it too.

use crate::cmd;
use crate::logmatch;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Xen's command line: Dom0 memory, the console on QEMU's PL011, all log levels.
pub const XEN_ARGS: &str =
    "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 loglvl=all guest_loglvl=all";

/// Guest-physical address where `-device guest-loader` puts the Dom0 kernel (or, in dom0less,
/// `-device loader` puts the guest); the device tree's boot modules point there.
pub const KERNEL_ADDR: u64 = 0x5000_0000;
/// Guest-physical address of the Dom0 initramfs (128 MiB above the kernel).
pub const INITRD_ADDR: u64 = 0x5800_0000;
/// Guest-physical address of a dom0less guest that boots beside Dom0 (64 MiB above the
/// initramfs, which must fit below it).
pub const GUEST_BESIDE_DOM0_ADDR: u64 = 0x5c00_0000;

/// The emulated board. Every option that changes QEMU's device tree is here, because the dom0less
/// device tree is dumped from QEMU with the very same options.
#[derive(Clone, Debug)]
pub struct Machine {
    /// GIC version: 2 or 3.
    pub gic: u8,
    /// Number of CPUs.
    pub smp: u32,
    /// RAM in MiB.
    pub memory_mib: u32,
}

impl Machine {
    /// The rig's default board with the given GIC version: 2 CPUs, 2 GiB.
    pub fn new(gic: u8) -> Self {
        Self {
            gic,
            smp: 2,
            memory_mib: 2048,
        }
    }

    /// `-machine ... -m ...`; `extra_machine` is appended to the `-machine` option (e.g. dumpdtb).
    pub fn args(&self, extra_machine: &str) -> Vec<String> {
        [
            "-machine".into(),
            format!(
                "virt,virtualization=on,gic-version={}{extra_machine}",
                self.gic
            ),
            "-cpu".into(),
            "cortex-a57".into(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-accel".into(),
            "tcg,thread=multi".into(),
            "-nographic".into(),
            // No network card: the rig uses none, and the virt board's default one needs an
            // option ROM (efi-virtio.rom) from a package QEMU only recommends.
            "-nic".into(),
            "none".into(),
            "-no-reboot".into(),
        ]
        .into()
    }
}

/// What QEMU boots.
pub enum Boot<'a> {
    /// Xen with the Debian Dom0 kernel and the rig's initramfs, loaded by `-device guest-loader`.
    Dom0 {
        /// The Xen binary.
        xen: &'a Path,
        /// Dom0 kernel Image.
        kernel: &'a Path,
        /// Dom0 kernel command line.
        kernel_args: &'a str,
        /// Dom0 initramfs.
        initramfs: &'a Path,
        /// A host directory shared with Dom0 as 9p mount tag [`FRAMES_TAG`] (virtio-mmio),
        /// where the display backend writes its PNG files.
        frames: Option<&'a Path>,
        /// The board's tree as [`dom0_tree`] made it (virtio-mmio interrupts level-triggered,
        /// Dom0's modules in `/chosen`): booted with it, the kernel and initramfs are loaded raw
        /// where its module nodes say.
        dtb: Option<&'a Path>,
    },
    /// Xen and one guest described in the device tree's `/chosen`, and, when `dom0` is given,
    /// Dom0 as boot modules of the same tree.
    Dom0less {
        /// The Xen binary.
        xen: &'a Path,
        /// Device tree with the `xen,domain` node (see `dtb.rs`).
        dtb: &'a Path,
        /// The guest Image, loaded raw at [`KERNEL_ADDR`], or at [`GUEST_BESIDE_DOM0_ADDR`]
        /// beside Dom0.
        guest: &'a Path,
        /// Dom0's kernel and initramfs, loaded raw at [`KERNEL_ADDR`] and [`INITRD_ADDR`].
        dom0: Option<(&'a Path, &'a Path)>,
    },
}

/// The 9p mount tag of the frames share (`mount_frames` in `qemu/dom0/lib.sh` mounts it).
pub const FRAMES_TAG: &str = "frames";

/// Escapes a value for a QEMU `-device` property list (commas are doubled).
fn property(value: &str) -> String {
    value.replace(',', ",,")
}

/// The full QEMU command line for `boot` on `machine`.
pub fn command(machine: &Machine, boot: &Boot) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(machine.args(""));
    match boot {
        Boot::Dom0 {
            xen,
            kernel,
            kernel_args,
            initramfs,
            frames,
            dtb,
        } => {
            cmd.arg("-kernel").arg(xen).args(["-append", XEN_ARGS]);
            if let Some(dtb) = dtb {
                cmd.arg("-dtb").arg(dtb);
                for (file, addr) in [(kernel, KERNEL_ADDR), (initramfs, INITRD_ADDR)] {
                    cmd.arg("-device").arg(format!(
                        "loader,file={},addr={addr:#x},force-raw=on",
                        property(&file.to_string_lossy())
                    ));
                }
            } else {
                cmd.arg("-device").arg(format!(
                    "guest-loader,addr={KERNEL_ADDR:#x},kernel={},bootargs={}",
                    property(&kernel.to_string_lossy()),
                    property(kernel_args)
                ));
                cmd.arg("-device").arg(format!(
                    "guest-loader,addr={INITRD_ADDR:#x},initrd={}",
                    property(&initramfs.to_string_lossy())
                ));
            }
            if let Some(frames) = frames {
                // A virtio-mmio 9p device (the virt board's PCI bus is not Dom0's under Xen);
                // security_model=none: files are created as the user running QEMU.
                cmd.arg("-fsdev").arg(format!(
                    "local,id={FRAMES_TAG},path={},security_model=none",
                    property(&frames.to_string_lossy())
                ));
                cmd.arg("-device").arg(format!(
                    "virtio-9p-device,fsdev={FRAMES_TAG},mount_tag={FRAMES_TAG}"
                ));
            }
        }
        Boot::Dom0less {
            xen,
            dtb,
            guest,
            dom0,
        } => {
            cmd.arg("-kernel").arg(xen).arg("-dtb").arg(dtb);
            let mut load = |file: &Path, addr: u64| {
                cmd.arg("-device").arg(format!(
                    "loader,file={},addr={addr:#x},force-raw=on",
                    property(&file.to_string_lossy())
                ));
            };
            match dom0 {
                None => load(guest, KERNEL_ADDR),
                Some((kernel, initramfs)) => {
                    load(kernel, KERNEL_ADDR);
                    load(initramfs, INITRD_ADDR);
                    load(guest, GUEST_BESIDE_DOM0_ADDR);
                }
            }
        }
    }
    cmd
}

/// Makes every `virtio,mmio` node's interrupt level-triggered (type 4 instead of QEMU's 1) in
/// a device tree source. QEMU's virtio-mmio line stays high while the interrupt status is
/// non-zero, which is a level interrupt; configured as an edge, a completion that comes while
/// the line is still high raises no new edge, and under Xen's GICv2 emulation the frames
/// share's requests then wait for ever.
pub fn virtio_interrupts_level(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_virtio = false;
    for line in source.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("virtio_mmio@") && trimmed.ends_with('{') {
            in_virtio = true;
        } else if trimmed == "};" {
            in_virtio = false;
        }
        match (in_virtio, trimmed.strip_prefix("interrupts = <")) {
            (true, Some(cells)) if cells.ends_with(" 0x01>;") => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let cells = &cells[..cells.len() - " 0x01>;".len()];
                out.push_str(&format!("{indent}interrupts = <{cells} 0x04>;"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Dumps the tree QEMU builds for booting `boot` (Dom0 with its guest-loader modules) into
/// `dir`, makes its virtio-mmio interrupts level-triggered ([`virtio_interrupts_level`]) and
/// compiles it: the tree to boot `boot` with (`dtb` of [`Boot::Dom0`]).
pub fn dom0_tree(machine: &Machine, boot: &Boot, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::{bail, Context};
    std::fs::create_dir_all(dir)?;
    let dumped = dir.join(format!("dom0-gicv{}.dtb", machine.gic));
    let mut dump = command(machine, boot);
    let mut args: Vec<std::ffi::OsString> = dump.get_args().map(|arg| arg.to_os_string()).collect();
    if let Some(machine_arg) = args
        .iter_mut()
        .find(|arg| arg.to_string_lossy().starts_with("virt,"))
    {
        machine_arg.push(format!(",dumpdtb={}", dumped.display()));
    }
    dump = Command::new("qemu-system-aarch64");
    dump.args(&args);
    let out = dump
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot start qemu-system-aarch64 (install it with `cargo xtask deps`)")?;
    if !out.status.success() || !dumped.is_file() {
        bail!(
            "dumping QEMU's device tree failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let source = crate::cmd::output(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&dumped),
    )?;
    let dts = dir.join(format!("dom0-gicv{}.dts", machine.gic));
    let dtb = dir.join(format!("dom0-level-gicv{}.dtb", machine.gic));
    std::fs::write(&dts, virtio_interrupts_level(&source))?;
    crate::cmd::run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts),
    )
    .context("compiling Dom0's device tree failed")?;
    Ok(dtb)
}

/// How long [`probe`] lets QEMU run: a QEMU that cannot build the board exits at once.
pub const PROBE_TIME: Duration = Duration::from_secs(1);

/// Starts QEMU with the rig's board and devices (GICv3, the frames share), CPUs halted, for
/// [`PROBE_TIME`]: fails with what QEMU printed, and the package that supplies a missing file, if
/// it exits first.
pub fn probe(log: &Path, share: &Path) -> Result<()> {
    std::fs::create_dir_all(share).with_context(|| format!("cannot create {}", share.display()))?;
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(Machine::new(3).args("")).arg("-S");
    cmd.arg("-fsdev").arg(format!(
        "local,id={FRAMES_TAG},path={},security_model=none",
        property(&share.to_string_lossy())
    ));
    cmd.arg("-device").arg(format!(
        "virtio-9p-device,fsdev={FRAMES_TAG},mount_tag={FRAMES_TAG}"
    ));
    let mut qemu = Qemu::spawn(cmd, log, Console::Quiet)?;
    let deadline = Instant::now() + PROBE_TIME;
    let mut lines = Vec::new();
    loop {
        match qemu.next(deadline) {
            Event::Line(line) => lines.push(line),
            Event::Timeout => return Ok(()),
            Event::Exited(status) => {
                let said = lines.join("\n  ");
                let hint = probe_hint(&said);
                anyhow::bail!(
                    "QEMU cannot start the rig's board: it exited at once ({status}){}{hint}\n  \
                     (log: {})",
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(":\n  {said}")
                    },
                    log.display()
                );
            }
        }
    }
}

/// What to install when QEMU's message names a file a package supplies.
fn probe_hint(said: &str) -> String {
    if let Some(rom) = said
        .split("failed to find romfile \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
    {
        return format!(
            "\n  QEMU wants the option ROM {rom} (Debian package ipxe-qemu) for a device the \
             rig does not add; is another QEMU than Debian's first on PATH?"
        );
    }
    if said.contains("is not a valid device model name") || said.contains("unsupported machine") {
        return "\n  this QEMU lacks the virt board's devices: install Debian's qemu-system-arm \
                (`cargo xtask deps`)"
            .to_string();
    }
    String::new()
}

/// Where the serial console goes besides the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Only the log (and the caller).
    Quiet,
    /// Also the terminal, line by line.
    Echo,
    /// The terminal, byte by byte, and QEMU reads the keyboard (the tty is put in raw mode by
    /// QEMU and restored by xtask when QEMU is gone).
    Interactive,
}

/// Something that happened to the running QEMU.
#[derive(Debug)]
pub enum Event {
    /// A line of serial console (or QEMU's own stderr), without the line ending.
    Line(String),
    /// QEMU exited (all output has been delivered before this).
    Exited(ExitStatus),
    /// The deadline passed first.
    Timeout,
}

enum Message {
    Line(String),
    Closed,
}

/// A running QEMU; killed on drop.
pub struct Qemu {
    child: Child,
    messages: Receiver<Message>,
    open_streams: usize,
    started: Instant,
    log: PathBuf,
    exited: Option<ExitStatus>,
    terminal: Option<libc::termios>,
}

impl Qemu {
    /// Starts `cmd` (printed first), logging its output to `log` and to `console`.
    pub fn spawn(mut cmd: Command, log: &Path, console: Console) -> Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let log_file =
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let log_file = Arc::new(Mutex::new(log_file));
        println!("$ {}", cmd::display(&cmd));
        let terminal = if console == Console::Interactive {
            cmd.stdin(Stdio::inherit());
            saved_terminal()
        } else {
            cmd.stdin(Stdio::null());
            None
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
        // which is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .context("cannot start qemu-system-aarch64 (install it with `cargo xtask deps`)")?;
        let (sender, messages) = mpsc::channel();
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let stderr = child.stderr.take().context("QEMU stderr")?;
        forward(stdout, sender.clone(), log_file.clone(), console, "");
        forward(stderr, sender, log_file, console, "qemu: ");
        Ok(Self {
            child,
            messages,
            open_streams: 2,
            started: Instant::now(),
            log: log.to_path_buf(),
            exited: None,
            terminal,
        })
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits for the next line, QEMU's exit or `deadline`, whichever comes first.
    pub fn next(&mut self, deadline: Instant) -> Event {
        if let Some(status) = self.exited {
            return Event::Exited(status);
        }
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            if self.open_streams == 0 {
                return self.reap(deadline);
            }
            match self.messages.recv_timeout(timeout) {
                Ok(Message::Line(line)) => return Event::Line(line),
                Ok(Message::Closed) => self.open_streams -= 1,
                Err(RecvTimeoutError::Timeout) => return Event::Timeout,
                Err(RecvTimeoutError::Disconnected) => self.open_streams = 0,
            }
        }
    }

    /// Both output streams are closed: collect the exit status (QEMU is about to exit).
    fn reap(&mut self, deadline: Instant) -> Event {
        let deadline = deadline.min(Instant::now() + Duration::from_secs(10));
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return Event::Exited(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => return Event::Timeout,
            }
        }
    }

    /// Stops QEMU and waits for it: SIGTERM first when it owns the terminal (so that it can
    /// restore it), SIGKILL otherwise or if it does not exit within 2 s.
    pub fn kill(&mut self) {
        if self.exited.is_none() && self.terminal.is_some() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own child's pid; it has not been reaped (exited is
                // None), so the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    self.exited = Some(status);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited = Some(status);
            }
        }
        if let Some(terminal) = self.terminal.take() {
            // SAFETY: tcsetattr(2) on standard input with a termios read from it by
            // tcgetattr(2) in `saved_terminal`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &terminal) };
        }
    }
}

/// The terminal settings of standard input, if it is a terminal.
fn saved_terminal() -> Option<libc::termios> {
    // SAFETY: isatty(3) only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return None;
    }
    // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
    let mut terminal: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr(3) writes into the termios we own.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut terminal) } != 0 {
        return None;
    }
    Some(terminal)
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `stream` line by line to the log, the console and the channel.
fn forward(
    stream: impl Read + Send + 'static,
    sender: Sender<Message>,
    log: Arc<Mutex<File>>,
    console: Console,
    prefix: &'static str,
) {
    let echo = console == Console::Echo;
    let stream = RawEcho {
        inner: stream,
        enabled: console == Console::Interactive,
    };
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&buffer);
            let text = text.trim_end_matches(['\n', '\r']);
            if echo {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{prefix}{text}");
                let _ = out.flush();
            }
            // A Xen line that began inside another domain's line becomes a line of its own in
            // the log and for the caller (logmatch::split_xen_lines).
            let mut open = true;
            for part in logmatch::split_xen_lines(text) {
                let line = format!("{prefix}{part}");
                if let Ok(mut log) = log.lock() {
                    let _ = writeln!(log, "{line}");
                }
                if sender.send(Message::Line(line)).is_err() {
                    open = false;
                    break;
                }
            }
            if !open {
                break;
            }
        }
        let _ = sender.send(Message::Closed);
    });
}

/// A reader that copies everything it reads to the terminal as it arrives (prompts without a
/// newline included), when enabled.
struct RawEcho<R> {
    inner: R,
    enabled: bool,
}

impl<R: Read> Read for RawEcho<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buf)?;
        if self.enabled && count > 0 {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..count]);
            let _ = out.flush();
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_mmio_interrupts_become_level_and_nothing_else_changes() {
        let source = "\t/ {\n\tvirtio_mmio@a003e00 {\n\t\tdma-coherent;\n\t\tinterrupts = <0x00 0x2f 0x01>;\n\t};\n\tpl011@9000000 {\n\t\tinterrupts = <0x00 0x01 0x04>;\n\t};\n\tgpio-keys {\n\t\tinterrupts = <0x00 0x07 0x01>;\n\t};\n";
        let level = virtio_interrupts_level(source);
        assert!(
            level.contains("\t\tinterrupts = <0x00 0x2f 0x04>;\n"),
            "{level}"
        );
        assert!(level.contains("interrupts = <0x00 0x07 0x01>;"), "{level}");
        assert_eq!(level.lines().count(), source.lines().count());
    }

    #[test]
    fn dom0_command_line_matches_the_rig() {
        let cmd = command(
            &Machine::new(2),
            &Boot::Dom0 {
                xen: Path::new("/r/xen"),
                kernel: Path::new("/r/vmlinuz"),
                kernel_args: "console=hvc0 rig.bootargs=\"a,b\"",
                initramfs: Path::new("/r/dom0.cpio"),
                frames: Some(Path::new("/t/frames,1")),
                dtb: None,
            },
        );
        let line = cmd::display(&cmd);
        assert!(
            line.contains("-machine virt,virtualization=on,gic-version=2 "),
            "{line}"
        );
        assert!(
            line.contains("-kernel /r/xen -append 'dom0_mem=512M"),
            "{line}"
        );
        assert!(
            line.contains("guest-loader,addr=0x50000000,kernel=/r/vmlinuz,bootargs=console=hvc0 rig.bootargs=\"a,,b\""),
            "{line}"
        );
        assert!(
            line.contains("guest-loader,addr=0x58000000,initrd=/r/dom0.cpio"),
            "{line}"
        );
        assert!(
            line.contains(
                "-fsdev local,id=frames,path=/t/frames,,1,security_model=none \
                 -device virtio-9p-device,fsdev=frames,mount_tag=frames"
            ),
            "{line}"
        );
    }

    #[test]
    fn output_and_exit_are_delivered_in_order() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; printf three"]);
        let log = std::env::temp_dir().join(format!("xtask-qemu-test-{}.log", std::process::id()));
        let mut qemu = Qemu::spawn(cmd, &log, Console::Quiet).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        loop {
            match qemu.next(deadline) {
                Event::Line(line) => lines.push(line),
                Event::Exited(status) => {
                    assert!(status.success());
                    break;
                }
                Event::Timeout => panic!("timeout"),
            }
        }
        lines.sort();
        assert_eq!(lines, ["one", "qemu: two", "three"]);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(logged.lines().count(), 3);
        std::fs::remove_file(log).unwrap();
    }

    #[test]
    fn timeout_then_kill_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let log = std::env::temp_dir().join(format!("xtask-qemu-kill-{}.log", std::process::id()));
        let started = Instant::now();
        let mut qemu = Qemu::spawn(cmd, &log, Console::Quiet).unwrap();
        assert!(matches!(
            qemu.next(Instant::now() + Duration::from_millis(100)),
            Event::Timeout
        ));
        drop(qemu);
        assert!(started.elapsed() < Duration::from_secs(10));
        std::fs::remove_file(log).unwrap();
    }
}
