//! `vdispl-backend [--out DIR] [--workers N] [--fault MODE[,conn=N][,count=K][,after=F]]`: the
//! Dom0 display backend. Serves every vdispl
//! device whose backend is Dom0 (`/local/domain/0/backend/vdispl`), answers the frontends'
//! requests, and for each flipped frame prints `frame conn=<N> seq=<K> crc32=<hex> ...` and,
//! with `--out`, writes `DIR/dom<D>-conn<N>-seq<K>.png`. Runs until SIGTERM or SIGINT, then
//! closes every device, finishes the queued frames and prints a summary. `--fault` makes it
//! misbehave on purpose (see `FaultMode`), K times, then behave. `--strict` makes it behave
//! as the xen-troops DRM backend does (see `Options::strict`).

use dom0_tools::display_backend::{Backend, Fault, Options};
use dom0_tools::eprintln_line;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How to call the program.
const USAGE: &str = "usage: vdispl-backend [--out DIR] [--workers N] [--strict] \
     [--fault status|wrong-id|rsp-prod|garbage-event|silent|state-back[,conn=N][,count=K][,after=F]]";

/// Set by SIGTERM and SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Reads the options (the arguments after the program name).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        out_dir: None,
        workers: 2,
        // One per connector of the rig's guest: a connector's copy rarely waits for another's.
        copy_threads: 2,
        fault: None,
        strict: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => {
                let dir = args.next().ok_or("--out needs a directory")?;
                options.out_dir = Some(PathBuf::from(dir));
            }
            "--workers" => {
                let count = args.next().ok_or("--workers needs a number")?;
                options.workers = match count.parse() {
                    Ok(count @ 1..=16) => count,
                    _ => return Err(format!("--workers {count}: expected 1 to 16")),
                };
            }
            "--fault" => {
                let fault = args.next().ok_or("--fault needs a mode")?;
                options.fault = Some(Fault::parse(&fault)?);
            }
            "--strict" => options.strict = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

/// User and system CPU time of `who` (RUSAGE_SELF: the process, RUSAGE_THREAD: this thread);
/// zero if getrusage(2) fails.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage(2) writes one rusage we own.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec as u64) + Duration::from_micros(value.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln_line!("vdispl-backend: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // function pointer has the signature signal(2) expects.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    let backend = match Backend::open(&options) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln_line!("vdispl-backend: {error}");
            return ExitCode::from(2);
        }
    };
    match backend.run(&STOP) {
        Ok(summary) => {
            dom0_tools::drop_report::flush_all();
            // `run` served every ring on this thread.
            println!(
                "{}",
                dom0_tools::bench_time::cpu_line(
                    summary.flips,
                    cpu_time(libc::RUSAGE_THREAD),
                    cpu_time(libc::RUSAGE_SELF)
                )
            );
            println!(
                "vdispl-backend: stopped: {} connections, {} flips, {} frames copied, {} frames \
                 encoded, {} PNG files written, {} failures, {} requests rejected; per frame {} \
                 ms to copy (off the ring thread), {} ms to encode and write; {} answers held \
                 for a copy; {} frames not captured (the copies or writers were behind, or the \
                 device went away)",
                summary.connections,
                summary.flips,
                summary.copied,
                summary.writer.frames,
                summary.writer.files,
                summary.writer.failures,
                summary.rejected,
                summary.capture_mean_ms(),
                summary.writer.mean_ms(),
                summary.held,
                summary.not_captured
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln_line!("vdispl-backend: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_args(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn options_are_read_and_bad_ones_named() {
        let options = parse(&["--out", "/mnt/frames", "--workers", "3"]).unwrap();
        assert_eq!(options.out_dir, Some(PathBuf::from("/mnt/frames")));
        assert_eq!(options.workers, 3);
        assert_eq!(parse(&[]).unwrap().out_dir, None);
        assert!(!parse(&[]).unwrap().strict);
        assert!(parse(&["--strict", "--out", "/tmp"]).unwrap().strict);
        assert_eq!(parse(&["--out"]).unwrap_err(), "--out needs a directory");
        assert_eq!(
            parse(&["--workers", "0"]).unwrap_err(),
            "--workers 0: expected 1 to 16"
        );
        assert_eq!(parse(&["-x"]).unwrap_err(), "unknown argument `-x`");
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
        let fault = parse(&["--fault", "silent,conn=0,count=3,after=5"])
            .unwrap()
            .fault
            .unwrap();
        assert_eq!(
            (fault.mode.name(), fault.connector, fault.count, fault.after),
            ("silent", 0, 3, 5)
        );
        let fault = parse(&["--fault", "rsp-prod"]).unwrap().fault.unwrap();
        assert_eq!((fault.connector, fault.count, fault.after), (1, 1, 2));
        assert!(parse(&["--fault", "loud"])
            .unwrap_err()
            .contains("expected one of"));
        assert!(parse(&["--fault", "status,conn=x"]).is_err());
    }
}
