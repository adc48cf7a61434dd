//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/` and runs each for a bounded time.
//!
//! cargo-fuzz passes nightly-only flags to rustc (`-Z sanitizer=...`, sanitizer coverage
//! options). The workspace pins a stable toolchain, so the targets are built with that toolchain
//! and `RUSTC_BOOTSTRAP=1`, which lets stable rustc accept those flags; no nightly is needed. The
//! default sanitizer is `none`: the code under test is safe Rust, where an out-of-bounds index or
//! an overflow is a panic that libFuzzer reports as a crash without AddressSanitizer. Targets are
//! optimised and built with debug assertions, so arithmetic overflow panics as in `cargo test`.

use crate::{cmd, rig};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Seconds each target runs in `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 3;

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Sanitizer passed to `cargo fuzz` (`none`, `address`, ...).
    #[arg(long, default_value = "none")]
    pub sanitizer: String,
    /// Only build the targets.
    #[arg(long)]
    pub build_only: bool,
    /// Targets to run (default: all; `cargo fuzz list` in `fuzz/` names them).
    pub targets: Vec<String>,
}

/// How one target's run ended.
pub struct TargetRun {
    /// The target.
    pub name: String,
    /// `None` when it ran clean, otherwise what went wrong.
    pub failure: Option<String>,
    /// Inputs executed, as libFuzzer reported them.
    pub runs: Option<u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn fuzz_dir() -> PathBuf {
    rig::workspace().join("fuzz")
}

/// `cargo fuzz` in `fuzz/`, with the pinned stable toolchain accepting nightly flags.
fn cargo_fuzz() -> Command {
    let mut command = Command::new("cargo");
    command
        .current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .arg("fuzz");
    command
}

/// Installs cargo-fuzz unless `cargo fuzz` already works.
fn ensure_cargo_fuzz() -> Result<()> {
    let works = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return Ok(());
    }
    let start = Instant::now();
    cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("cannot install cargo-fuzz")?;
    println!(
        "fuzz: cargo-fuzz installed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Installs cargo-fuzz if needed and builds every target; returns their names.
pub fn build(sanitizer: &str) -> Result<Vec<String>> {
    ensure_cargo_fuzz()?;
    let start = Instant::now();
    cmd::run(cargo_fuzz().args([
        "build",
        "-O",
        "--debug-assertions",
        "--sanitizer",
        sanitizer,
    ]))
    .context("cannot build the fuzz targets")?;
    println!(
        "fuzz: targets built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let list = cmd::quiet_output(cargo_fuzz().arg("list"))?;
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect())
}

/// Inputs a target starts from besides its own corpus: the saved regressions, and for the
/// device-tree target the libxl-generated fixtures.
fn seed_dirs(target: &str) -> Vec<PathBuf> {
    let mut dirs = vec![fuzz_dir().join("regressions").join(target)];
    if target == "platform" {
        dirs.push(rig::workspace().join("kernel/tests/fixtures"));
    }
    dirs.into_iter().filter(|dir| dir.is_dir()).collect()
}

/// The `Done <N> runs in <S> second(s)` line libFuzzer ends with.
fn runs_in(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        line.strip_prefix("Done ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Runs `target` for `seconds`; its libFuzzer output goes to `target/fuzz-logs/<target>.log`.
pub fn run_target(target: &str, seconds: u64, sanitizer: &str) -> Result<TargetRun> {
    let corpus = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&corpus)?;
    let logs = rig::target().join("fuzz-logs");
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path)?;
    let mut command = cargo_fuzz();
    command
        .args([
            "run",
            "-O",
            "--debug-assertions",
            "--sanitizer",
            sanitizer,
            target,
        ])
        .arg(&corpus)
        .args(seed_dirs(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .stdout(log.try_clone()?)
        .stderr(log);
    println!("$ {} > {}", cmd::display(&command), log_path.display());
    let start = Instant::now();
    let status = command.status().context("cannot start cargo fuzz")?;
    let seconds = start.elapsed().as_secs_f64();
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let failure = (!status.success()).then(|| {
        let artifact = output
            .lines()
            .find_map(|line| line.split("Test unit written to ").nth(1))
            .map(|path| format!(", input {path}: copy it to fuzz/regressions/{target}/"))
            .unwrap_or_default();
        format!("crashed ({status}{artifact}; log: {})", log_path.display())
    });
    Ok(TargetRun {
        name: target.to_string(),
        failure,
        runs: runs_in(&output),
        seconds,
    })
}

/// `TARGET: PASS ...` or `FAIL ...` for one run, in `cargo xtask test`'s words.
pub fn verdict(run: &TargetRun) -> String {
    let runs = run
        .runs
        .map(|runs| format!("{runs} inputs, "))
        .unwrap_or_default();
    match &run.failure {
        None => format!("PASS fuzz-{} ({runs}{:.1} s)", run.name, run.seconds),
        Some(failure) => format!("FAIL fuzz-{}: {failure}", run.name),
    }
}

/// Builds (installing cargo-fuzz if needed) and runs every target for `seconds`. `Err` means the
/// fuzzer could not be built; crashes are in the runs.
pub fn run_all(targets: &[String], seconds: u64, sanitizer: &str) -> Result<Vec<TargetRun>> {
    let known = build(sanitizer)?;
    let chosen: Vec<String> = if targets.is_empty() {
        known
    } else {
        for target in targets {
            if !known.contains(target) {
                bail!("no fuzz target {target} (targets: {})", known.join(", "));
            }
        }
        targets.to_vec()
    };
    chosen
        .iter()
        .map(|target| run_target(target, seconds, sanitizer))
        .collect()
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<()> {
    if args.build_only {
        build(&args.sanitizer)?;
        return Ok(());
    }
    let runs = run_all(&args.targets, args.seconds, &args.sanitizer)?;
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| run.failure.is_some())
        .map(|run| run.name.as_str())
        .collect();
    for run in &runs {
        println!("{}", verdict(run));
    }
    if !failed.is_empty() {
        bail!("crashed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_from_libfuzzers_last_line() {
        let log = "#1024\tpulse  cov: 3\nDone 1909526 runs in 6 second(s)\nstat::number_of_executed_units: 1909526\n";
        assert_eq!(runs_in(log), Some(1_909_526));
        assert_eq!(runs_in("INFO: Seed: 1\n"), None);
    }

    #[test]
    fn seeds_of_the_device_tree_target_include_the_fixtures() {
        assert!(seed_dirs("platform")
            .iter()
            .any(|dir| dir.ends_with("kernel/tests/fixtures")));
    }
}
