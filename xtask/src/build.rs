//! `cargo xtask build`: the guest Image and anything else that goes into the rig.
//!
//! Each artifact is a cargo binary built for its target, then post-processed: the guest ELF is
//! turned into a raw arm64 Image (`image.rs`). Dom0 programs (static, aarch64-unknown-linux-musl)
//! join the list in `DOM0_BINARIES` and are copied into the Dom0 initramfs as they are.

use crate::{cmd, image, initramfs, rig};
use anyhow::{ensure, Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// A binary the rig needs, built by cargo in release mode.
pub struct Binary {
    /// Cargo package (`-p`).
    pub package: &'static str,
    /// Binary name (`--bin`).
    pub bin: &'static str,
    /// Target triple (`--target`).
    pub target: &'static str,
}

/// The guest, converted to `target/vdispl-os.Image`.
pub const GUEST: Binary = Binary {
    package: "kernel",
    bin: "vdispl-os",
    target: "aarch64-unknown-none",
};

/// Dom0 programs installed into the initramfs at `/usr/bin/<bin>`: static musl binaries
/// (`.cargo/config.toml` links them with rust-lld), so they need no library from the arm64 root.
pub const DOM0_BINARIES: &[Binary] = &[
    Binary {
        package: "dom0-tools",
        bin: "vdispl-grant-check",
        target: "aarch64-unknown-linux-musl",
    },
    Binary {
        package: "dom0-tools",
        bin: "vdispl-grant-offer",
        target: "aarch64-unknown-linux-musl",
    },
    Binary {
        package: "dom0-tools",
        bin: "vdispl-backend",
        target: "aarch64-unknown-linux-musl",
    },
    Binary {
        package: "dom0-tools",
        bin: "vdispl-bench-time",
        target: "aarch64-unknown-linux-musl",
    },
    Binary {
        package: "dom0-tools",
        bin: "vkbd-backend",
        target: "aarch64-unknown-linux-musl",
    },
];

/// What `cargo xtask build` produced.
pub struct Artifacts {
    /// The guest Image (`target/vdispl-os.Image`).
    pub guest_image: PathBuf,
    /// Dom0 programs, to install at `/usr/bin/<file name>`.
    pub dom0_binaries: Vec<PathBuf>,
}

impl Binary {
    /// Builds the binary and returns the path cargo wrote it to.
    fn build(&self) -> Result<PathBuf> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        cmd::run(
            Command::new(cargo)
                .current_dir(rig::workspace())
                .args(["build", "--release", "-p", self.package, "--bin", self.bin])
                .args(["--target", self.target]),
        )
        .with_context(|| format!("building {} ({}) failed", self.bin, self.target))?;
        Ok(rig::target()
            .join(self.target)
            .join("release")
            .join(self.bin))
    }
}

/// Runs `cargo xtask build`.
pub fn run() -> Result<Artifacts> {
    crate::toolchain::ensure()?;
    let elf_path = GUEST.build()?;
    let elf = fs::read(&elf_path).with_context(|| format!("cannot read {}", elf_path.display()))?;
    let image = image::elf_to_image(&elf)
        .with_context(|| format!("converting {} to an arm64 Image failed", elf_path.display()))?;
    let header = image::header(&image)?;
    let guest_image = rig::guest_image();
    fs::write(&guest_image, &image)
        .with_context(|| format!("cannot write {}", guest_image.display()))?;
    println!(
        "build: {} ({} bytes, text_offset {:#x}, image_size {:#x})",
        guest_image.display(),
        image.len(),
        header.text_offset,
        header.image_size
    );
    let dom0_binaries = DOM0_BINARIES
        .iter()
        .map(|binary| build_static(binary, "Dom0 /usr/bin/"))
        .collect::<Result<_>>()?;
    Ok(Artifacts {
        guest_image,
        dom0_binaries,
    })
}

/// Builds a program for Linux (a Dom0 program, or the Linux peer's `/init`, for `destination`)
/// and checks that it is static: the Dom0 initramfs carries only the shared libraries of the
/// Debian tools, none for our programs, and the peer's carries no library at all.
pub fn build_static(binary: &Binary, destination: &str) -> Result<PathBuf> {
    let path = binary.build()?;
    let data = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let needed = initramfs::needed_libraries(&data)
        .with_context(|| format!("cannot read the ELF dynamic section of {}", path.display()))?;
    ensure!(
        needed.is_empty(),
        "{} needs shared libraries ({}): programs for Linux must be linked statically \
         (see [target.{}] in .cargo/config.toml)",
        path.display(),
        needed.join(", "),
        binary.target
    );
    println!(
        "build: {} ({} bytes, static, for {destination})",
        path.display(),
        data.len()
    );
    Ok(path)
}
