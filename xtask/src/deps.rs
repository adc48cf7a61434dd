//! `cargo xtask deps`: host packages (QEMU, dtc, cpio) and the arm64 Debian packages of the rig.
//!
//! The arm64 packages (Xen 4.17, its tools and libraries, busybox, the Dom0 kernel) are fetched
//! through a private apt state under `target/rig/apt/`, so the system's dpkg never learns about
//! arm64 and no root is needed for that part; they are unpacked with `dpkg-deb -x` into
//! `target/rig/root/`. A stamp file skips the whole step while the package list is unchanged.

use crate::{cmd, linux_peer, rig, toolchain};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options of `cargo xtask deps`.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Fetch and unpack the arm64 packages again even if the stamp says they are up to date.
    #[arg(long)]
    pub refresh: bool,
    /// Only check and install the host packages.
    #[arg(long)]
    pub host_only: bool,
}

/// Host (amd64) packages the rig runs: QEMU, dtc for the dom0less device tree, cpio (tests);
/// and what the Linux peer's kernel is built with (`linux_peer.rs`): its source, the arm64
/// cross compiler and binutils, and the host tools Linux's build runs (make, a host C
/// compiler and libc headers, flex, bison, bc, xz for the tarball).
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-arm",
    "device-tree-compiler",
    "cpio",
    linux_peer::SOURCE_PACKAGE,
    "gcc-aarch64-linux-gnu",
    "binutils-aarch64-linux-gnu",
    "make",
    "gcc",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
    "xz-utils",
];

/// The metapackage that names the current Debian arm64 kernel (its ABI number changes with
/// security updates, so it is resolved, never pinned).
const KERNEL_METAPACKAGE: &str = "linux-image-arm64";

/// arm64 packages unpacked into `target/rig/root/`: Xen, the tools Dom0 runs and their libraries.
const ARM64_PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-arm64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxentoolcore1",
    "libxenhypfs1",
    "libyajl2",
    "libc6",
    "libgcc-s1",
    "libncurses6",
    "libtinfo6",
    "zlib1g",
    "libuuid1",
    "libfdt1",
    "busybox-static",
];

/// Runs `cargo xtask deps`.
pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    toolchain::ensure()?;
    host_packages()?;
    probe_qemu()?;
    if !args.host_only {
        arm64_packages(args.refresh)?;
    }
    println!("deps: done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The deps step as `run`, `test` and `dump-dtbs` take it first: installs or fetches only what
/// is missing or changed (a few milliseconds when everything is in place).
pub fn ensure() -> Result<()> {
    run(&Args::default())
}

/// Fails with the install command when a host tool is missing (used by the commands that need it).
pub fn require_host_tool(tool: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        bail!("`{tool}` not found: install it with `cargo xtask deps` (package {package})");
    }
    Ok(())
}

/// Starts QEMU for a moment with the rig's board, before any long step.
fn probe_qemu() -> Result<()> {
    let started = Instant::now();
    crate::qemu::probe(
        &rig::logs().join("qemu-probe.log"),
        &rig::dir().join("probe-share"),
    )?;
    println!(
        "deps: QEMU starts the rig's board (probe {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn host_packages() -> Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    if missing.is_empty() {
        println!("deps: host packages present: {}", HOST_PACKAGES.join(" "));
        return Ok(());
    }
    println!("deps: host packages missing: {}", missing.join(" "));
    if !is_root() {
        bail!(
            "host packages missing: {0}\n  install them as root, then run `cargo xtask deps` again:\n  \
             sudo apt-get update && sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
    .context("installing the host packages failed")?;
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| out.status.success() && out.stdout.starts_with(b"install ok installed"))
        .unwrap_or(false)
}

/// The private apt state: arm64 only, own lists and cache, no installed-package database.
fn apt(tool: &str, state: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.args([
        "-o",
        "APT::Architecture=arm64",
        "-o",
        "APT::Architectures::=arm64",
        "-o",
        &format!("Dir::State::Lists={}", state.join("lists").display()),
        "-o",
        &format!("Dir::Cache={}", state.join("cache").display()),
        "-o",
        "Dir::State::status=/dev/null",
    ]);
    if is_root() {
        // The downloads land in target/, which apt's unprivileged `_apt` user may not be able
        // to write: download as root instead of warning about it.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd
}

fn is_root() -> bool {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn arm64_packages(refresh: bool) -> Result<()> {
    let dir = rig::dir();
    let state = dir.join("apt");
    let debs = dir.join("debs");
    let root = rig::root();
    let stamp = dir.join("deps.stamp");
    let wanted = format!("{KERNEL_METAPACKAGE}\n{}\n", ARM64_PACKAGES.join("\n"));

    if !refresh
        && root.is_dir()
        && fs::read_to_string(&stamp).is_ok_and(|old| old == wanted)
        && rig::xen().is_ok()
        && rig::dom0_kernel().is_ok()
    {
        println!(
            "deps: arm64 packages up to date in {} (kernel {}; `--refresh` fetches them again)",
            root.display(),
            rig::kernel_release()?
        );
        return Ok(());
    }

    for sub in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
    }
    let _ = fs::remove_file(&stamp);
    let step = Instant::now();
    cmd::run(apt("apt-get", &state).arg("update"))
        .context("updating the private arm64 package lists failed")?;
    println!(
        "deps: arm64 package lists updated in {:.1} s",
        step.elapsed().as_secs_f64()
    );

    let kernel_package = resolve_kernel(&state)?;
    let release = kernel_package
        .strip_prefix("linux-image-")
        .context("kernel package name does not start with linux-image-")?
        .to_string();
    println!("deps: Dom0 kernel: {kernel_package} (via {KERNEL_METAPACKAGE})");

    if debs.exists() {
        fs::remove_dir_all(&debs).with_context(|| format!("cannot remove {}", debs.display()))?;
    }
    fs::create_dir_all(&debs)?;
    let mut packages: Vec<&str> = ARM64_PACKAGES.to_vec();
    packages.push(&kernel_package);
    let step = Instant::now();
    cmd::run(
        apt("apt-get", &state)
            .current_dir(&debs)
            .arg("download")
            .args(&packages),
    )
    .context("downloading the arm64 packages failed")?;
    println!(
        "deps: {} packages downloaded in {:.1} s",
        packages.len(),
        step.elapsed().as_secs_f64()
    );

    let files = deb_files(&debs)?;
    if files.len() != packages.len() {
        bail!(
            "expected {} .deb files in {}, found {}",
            packages.len(),
            debs.display(),
            files.len()
        );
    }
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    fs::create_dir_all(&root)?;
    let step = Instant::now();
    println!("$ dpkg-deb -x <each .deb> {}", root.display());
    for (i, deb) in files.iter().enumerate() {
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        println!("[{}/{}] {}", i + 1, files.len(), name);
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&root)
            .status()
            .context("cannot run dpkg-deb")?;
        if !status.success() {
            bail!(
                "`dpkg-deb -x {} {}` failed ({status})",
                deb.display(),
                root.display()
            );
        }
    }
    println!(
        "deps: unpacked into {} in {:.1} s",
        root.display(),
        step.elapsed().as_secs_f64()
    );
    rig::xen()?;
    fs::write(rig::kernel_release_file(), format!("{release}\n"))?;
    rig::dom0_kernel()?;
    fs::write(&stamp, wanted)?;
    Ok(())
}

/// Finds the `linux-image-<release>-arm64` package the kernel metapackage depends on.
fn resolve_kernel(state: &Path) -> Result<String> {
    let show = cmd::output(
        apt("apt-cache", state)
            .args(["show", "--no-all-versions"])
            .arg(KERNEL_METAPACKAGE),
    )?;
    kernel_from_depends(&show).with_context(|| {
        format!("no linux-image-*-arm64 in the Depends of {KERNEL_METAPACKAGE}:\n{show}")
    })
}

/// Picks the kernel package out of `apt-cache show` output of the metapackage.
fn kernel_from_depends(show: &str) -> Option<String> {
    let depends = show
        .lines()
        .find_map(|line| line.strip_prefix("Depends:"))?;
    depends
        .split([',', '|'])
        .map(|item| item.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && name.ends_with("-arm64"))
        .map(str::to_string)
}

fn deb_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_resolved_from_the_metapackage() {
        let show = "Package: linux-image-arm64\nSource: linux-signed-arm64 (6.1.158+1)\n\
                    Version: 6.1.158-1\nDepends: linux-image-6.1.0-41-arm64 (= 6.1.158-1)\n\
                    Description-en: Linux for 64-bit ARMv8 machines (meta-package)\n";
        assert_eq!(
            kernel_from_depends(show).as_deref(),
            Some("linux-image-6.1.0-41-arm64")
        );
        assert_eq!(kernel_from_depends("Package: x\n"), None);
    }
}
