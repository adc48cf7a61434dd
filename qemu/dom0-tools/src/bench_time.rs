//! `vdispl-bench-time FILE TEXT TIMEOUT_MS -- COMMAND [ARG...]`: how long after COMMAND returned
//! TEXT appeared in FILE, for `cargo xtask bench` (`qemu/dom0/scenarios/bench.sh`): COMMAND is
//! `xl create`, FILE the domain's console log as xenconsoled writes it, TEXT the line that ends
//! the measurement (the guest's first flip, the Linux peer's `/init` marker).
//!
//! The clock starts when COMMAND exits (CLOCK_MONOTONIC, read as `waitpid` returns) and stops
//! when a read of FILE first holds TEXT; FILE is read every millisecond from where the last read
//! ended, so one process waits, cheaply, instead of a shell loop of `grep`, `awk` and `sleep`
//! processes, which both lagged by tens of milliseconds on the emulated rig and took Dom0's
//! CPUs from the domains being measured. This module is the plain logic; the program is
//! `src/bin/vdispl-bench-time.rs`.

use std::time::Duration;

/// How to call the program.
pub const USAGE: &str =
    "usage: vdispl-bench-time FILE TEXT TIMEOUT_MS -- COMMAND [ARG...]  (prints the milliseconds from COMMAND's exit to TEXT in FILE)";

/// Exit status: TEXT appeared; the milliseconds are on stdout.
pub const EXIT_FOUND: u8 = 0;
/// Exit status: TEXT did not appear within the timeout.
pub const EXIT_TIMEOUT: u8 = 1;
/// Exit status: bad arguments, or COMMAND could not be run.
pub const EXIT_ERROR: u8 = 2;
/// Exit status: COMMAND failed (its status was not 0); nothing was timed.
pub const EXIT_COMMAND_FAILED: u8 = 3;

/// How often FILE is read.
pub const READ_INTERVAL: Duration = Duration::from_millis(1);

/// What to run and what to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The file to watch.
    pub file: String,
    /// The text that ends the measurement.
    pub text: String,
    /// How long to wait for it after COMMAND returned.
    pub timeout: Duration,
    /// COMMAND and its arguments.
    pub command: Vec<String>,
}

/// Reads `FILE TEXT TIMEOUT_MS -- COMMAND [ARG...]` (the arguments after the program name).
pub fn parse_args<I>(args: I) -> Result<Request, String>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let Some(separator) = args.iter().position(|arg| arg == "--") else {
        return Err(String::from("no `--` before the command"));
    };
    let (own, command) = (&args[..separator], &args[separator + 1..]);
    let [file, text, timeout_ms] = own else {
        return Err(format!(
            "expected FILE TEXT TIMEOUT_MS before `--`, got {} arguments",
            own.len()
        ));
    };
    if text.is_empty() {
        return Err(String::from("TEXT is empty"));
    }
    if command.is_empty() {
        return Err(String::from("no command after `--`"));
    }
    let timeout_ms: u64 = timeout_ms
        .parse()
        .map_err(|_| format!("TIMEOUT_MS `{timeout_ms}` is not a number of milliseconds"))?;
    Ok(Request {
        file: file.clone(),
        text: text.clone(),
        timeout: Duration::from_millis(timeout_ms),
        command: command.to_vec(),
    })
}

/// Looks for a text in a byte stream that arrives in pieces: a match may straddle two pieces.
#[derive(Clone, Debug)]
pub struct Finder {
    text: Vec<u8>,
    /// The last `text.len() - 1` bytes seen, which a match may start in.
    tail: Vec<u8>,
}

impl Finder {
    /// A finder of `text` (not empty).
    pub fn new(text: &str) -> Self {
        Finder {
            text: text.as_bytes().to_vec(),
            tail: Vec::new(),
        }
    }

    /// Takes the next piece; true once the text has appeared in what was fed so far.
    pub fn feed(&mut self, piece: &[u8]) -> bool {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(piece);
        let found = window
            .windows(self.text.len())
            .any(|candidate| candidate == self.text.as_slice());
        let keep = (self.text.len() - 1).min(window.len());
        self.tail = window.split_off(window.len() - keep);
        found
    }
}

/// Whole milliseconds of `elapsed`, as printed.
pub fn millis(elapsed: Duration) -> u128 {
    elapsed.as_millis()
}

/// The line `vdispl-backend` prints as it stops, for `cargo xtask bench`: the CPU time the ring
/// thread (the one that answers every request, flips included) and the whole process (with the
/// copy and frame-writing threads) used, in all and per flip. The ring thread's figure per flip
/// shows that no frame is copied there.
pub fn cpu_line(flips: u64, ring_thread: Duration, process: Duration) -> String {
    let per_flip = |time: Duration| match u32::try_from(flips) {
        Ok(flips) if flips > 0 => (time / flips).as_micros(),
        _ => 0,
    };
    format!(
        "vdispl-backend: cpu: {flips} flips; ring thread {} ms, {} us a flip; all threads {} \
         ms, {} us a flip",
        ring_thread.as_millis(),
        per_flip(ring_thread),
        process.as_millis(),
        per_flip(process)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_file_text_timeout_then_the_command() {
        let request = parse_args([
            "/var/log/xen/console/guest-vdispl-os.log",
            "flip conn=0 seq=0",
            "120000",
            "--",
            "xl",
            "create",
            "/etc/xen/vdispl-os-bench.cfg",
            "memory=64",
        ])
        .unwrap();
        assert_eq!(request.file, "/var/log/xen/console/guest-vdispl-os.log");
        assert_eq!(request.text, "flip conn=0 seq=0");
        assert_eq!(request.timeout, Duration::from_secs(120));
        assert_eq!(
            request.command,
            ["xl", "create", "/etc/xen/vdispl-os-bench.cfg", "memory=64"]
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let error = |args: &[&str]| parse_args(args.iter().copied()).unwrap_err();
        assert!(error(&["f", "t", "10", "xl"]).contains("no `--`"));
        assert!(error(&["f", "t", "--", "xl"]).contains("got 2 arguments"));
        assert!(error(&["f", "t", "soon", "--", "xl"]).contains("`soon`"));
        assert!(error(&["f", "", "10", "--", "xl"]).contains("TEXT is empty"));
        assert!(error(&["f", "t", "10", "--"]).contains("no command"));
    }

    #[test]
    fn the_text_is_found_whole_even_across_pieces() {
        let mut finder = Finder::new("flip conn=0 seq=0");
        assert!(!finder.feed(b"display: conn=0 ready\nflip conn=0 s"));
        assert!(!finder.feed(b"e"));
        assert!(finder.feed(b"q=0 scene=bars frame=0\n"));

        let mut finder = Finder::new("seq=0");
        assert!(!finder.feed(b"flip conn=0 seq=1\nflip conn=1 seq="));
        assert!(!finder.feed(b""));
        assert!(finder.feed(b"0\n"));

        // A piece shorter than the text, and a text seen in one piece.
        let mut finder = Finder::new("marker");
        assert!(!finder.feed(b"ma"));
        assert!(!finder.feed(b"rk"));
        assert!(finder.feed(b"er"));
        assert!(Finder::new("marker").feed(b"the marker is here"));
        assert!(!Finder::new("marker").feed(b"mark er"));
    }

    #[test]
    fn elapsed_time_prints_in_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(170_999)), 170);
        assert_eq!(millis(Duration::from_millis(12_540)), 12_540);
    }

    #[test]
    fn the_cpu_line_gives_totals_and_per_flip_figures() {
        assert_eq!(
            cpu_line(4, Duration::from_micros(2_000), Duration::from_millis(50)),
            "vdispl-backend: cpu: 4 flips; ring thread 2 ms, 500 us a flip; all threads 50 ms, \
             12500 us a flip"
        );
        assert!(cpu_line(0, Duration::from_secs(1), Duration::from_secs(1))
            .ends_with("ring thread 1000 ms, 0 us a flip; all threads 1000 ms, 0 us a flip"));
    }
}
