//! `vkbd-backend --script FILE`: the Dom0 input backend. Serves every kbdif device whose backend
//! is Dom0 (`/local/domain/0/backend/vinput`, what libxl makes of `vkb = [ 'backend-type=linux,
//! ...' ]`) and plays the input event script FILE to each once it is Connected, one line per
//! event, a summary line when a device's script is done. Runs until SIGTERM or SIGINT, then
//! closes every connected device.

use dom0_tools::eprintln_line;
use dom0_tools::input_backend::InputBackend;
use drivers::xen::kbdif::script::Script;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// How to call the program.
const USAGE: &str = "usage: vkbd-backend --script FILE";

/// Set by SIGTERM and SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The script file named by the arguments (after the program name); `Err("")` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<String, String> {
    let mut script = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--script" => script = Some(args.next().ok_or("--script needs a file")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    script.ok_or_else(|| "--script FILE is required".to_string())
}

/// Reads and parses the script file.
fn read_script(path: &str) -> Result<Script, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?;
    Script::parse(&text).map_err(|error| format!("{path}: {error}"))
}

fn main() -> ExitCode {
    let script = match parse_args(std::env::args().skip(1)).and_then(|path| read_script(&path)) {
        Ok(script) => script,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln_line!("vkbd-backend: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // function pointer has the signature signal(2) expects.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    let backend = match InputBackend::open(script) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln_line!("vkbd-backend: {error}");
            return ExitCode::from(2);
        }
    };
    match backend.run(&STOP) {
        Ok(summary) => {
            println!(
                "vkbd-backend: stopped: {} connections, {} events sent, {} not sent, {} scripts \
                 done, {} devices could not be connected",
                summary.connections,
                summary.sent,
                summary.skipped,
                summary.scripts_done,
                summary.failures
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln_line!("vkbd-backend: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<String, String> {
        parse_args(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn the_script_is_required_and_bad_arguments_named() {
        assert_eq!(
            parse(&["--script", "/rig/paint.script"]).unwrap(),
            "/rig/paint.script"
        );
        assert_eq!(parse(&[]).unwrap_err(), "--script FILE is required");
        assert_eq!(parse(&["--script"]).unwrap_err(), "--script needs a file");
        assert_eq!(
            parse(&["--out", "x"]).unwrap_err(),
            "unknown argument `--out`"
        );
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
    }

    #[test]
    fn a_bad_script_names_the_file_and_the_line() {
        let dir = std::env::temp_dir().join(format!("vkbd-backend-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.script");
        std::fs::write(&path, "0 key KEY_A press\n10 key KEY_NOPE press\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        assert_eq!(
            read_script(&path).unwrap_err(),
            format!(
                "{path}: line 2: \"KEY_NOPE\" is not a key name (KEY_*, BTN_*) nor a decimal code"
            )
        );
        assert!(read_script("/nonexistent/x.script")
            .unwrap_err()
            .starts_with("/nonexistent/x.script: "));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
