//! `cargo xtask`: build the guest Image, assemble the Xen rig, run and test it.
//!
//! Every subcommand prints the commands it runs, every wait has a timeout, and a QEMU started here
//! never outlives the xtask that started it. The rig itself (Dom0 init, scenario scripts, xl
//! configs) lives in `qemu/`; see `qemu/README.md`.

mod bench;
mod build;
mod cmd;
mod cpio;
mod deps;
mod display;
mod dtb;
mod fuzz;
mod golden;
mod image;
mod initramfs;
mod linux_input;
mod linux_peer;
mod load;
mod logmatch;
mod modinfo;
mod peer_frames;
mod qemu;
mod release;
mod rig;
mod scenarios;
mod soak;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Build, rig and test automation for vdispl-os.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install host packages and fetch the arm64 Xen, Dom0 kernel and tools into target/rig/.
    Deps(deps::Args),
    /// Build the guest and convert it to an arm64 Image (target/vdispl-os.Image).
    Build,
    /// Boot Xen + Dom0 in QEMU and `xl create` the guest, streaming the serial console (runs the
    /// deps step first).
    Run(scenarios::RunArgs),
    /// Run the host tests, then the rig scenarios (boot-gicv2, boot-gicv3, dom0less, crash-*,
    /// ...; runs the deps step first).
    Test(scenarios::TestArgs),
    /// Measure the guest on the rig: boot to first frame against a Linux DomU, flips per second
    /// and round trips at 1920x1080, Image size, smallest memory (runs the deps step first).
    Bench(bench::BenchArgs),
    /// Build the cargo-fuzz targets in fuzz/ (installing cargo-fuzz if missing) and run each for
    /// a bounded time.
    Fuzz(fuzz::FuzzArgs),
    /// Flip many frames on two connectors and check that heap and grants in use do not grow
    /// (runs the deps step first; takes minutes).
    Soak(soak::SoakArgs),
    /// Dump the guest device trees libxl builds (GICv2 and GICv3) into kernel/tests/fixtures/
    /// (runs the deps step first).
    DumpDtbs(dtb::DumpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Deps(args) => deps::run(&args),
        Command::Build => build::run().map(|_| ()),
        Command::Run(args) => scenarios::run(&args),
        Command::Test(args) => scenarios::test(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::DumpDtbs(args) => dtb::dump(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
