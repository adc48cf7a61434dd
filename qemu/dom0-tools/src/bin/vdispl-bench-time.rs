//! `vdispl-bench-time FILE TEXT TIMEOUT_MS -- COMMAND [ARG...]`: runs COMMAND (its output goes
//! to stderr), then prints on stdout the milliseconds from its exit until TEXT appeared in FILE
//! (exit 0); exit 1 if TEXT did not appear within TIMEOUT_MS, 2 on bad arguments or a COMMAND
//! that cannot be run, 3 if COMMAND failed. See `dom0_tools::bench_time`.

use dom0_tools::bench_time::{
    self, Finder, Request, EXIT_COMMAND_FAILED, EXIT_ERROR, EXIT_FOUND, EXIT_TIMEOUT,
    READ_INTERVAL, USAGE,
};
use dom0_tools::eprintln_line;
use std::fs::File;
use std::io::Read;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let request = match bench_time::parse_args(std::env::args().skip(1)) {
        Ok(request) => request,
        Err(message) => {
            eprintln_line!("vdispl-bench-time: {message}\n{USAGE}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let status = Command::new(&request.command[0])
        .args(&request.command[1..])
        .stdout(std::io::stderr())
        .status();
    let returned = Instant::now();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln_line!(
                "vdispl-bench-time: {} failed ({status})",
                request.command[0]
            );
            return ExitCode::from(EXIT_COMMAND_FAILED);
        }
        Err(error) => {
            eprintln_line!(
                "vdispl-bench-time: cannot run {}: {error}",
                request.command[0]
            );
            return ExitCode::from(EXIT_ERROR);
        }
    }
    match wait_for_text(&request, returned) {
        Some(found) => {
            println!("{}", bench_time::millis(found - returned));
            ExitCode::from(EXIT_FOUND)
        }
        None => ExitCode::from(EXIT_TIMEOUT),
    }
}

/// Reads FILE as it grows (it may not exist yet) until TEXT is in it; the time of the read that
/// found it, or `None` at the timeout.
fn wait_for_text(request: &Request, since: Instant) -> Option<Instant> {
    let mut finder = Finder::new(&request.text);
    let mut file: Option<File> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if file.is_none() {
            file = File::open(&request.file).ok();
        }
        if let Some(open) = file.as_mut() {
            loop {
                match open.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => {
                        if finder.feed(&buffer[..count]) {
                            return Some(Instant::now());
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        eprintln_line!("vdispl-bench-time: reading {}: {error}", request.file);
                        file = None;
                        finder = Finder::new(&request.text);
                        break;
                    }
                }
            }
        }
        if since.elapsed() >= request.timeout {
            return None;
        }
        std::thread::sleep(READ_INTERVAL);
    }
}
