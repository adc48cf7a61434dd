//! Where the rig keeps its files: the workspace, `target/rig/` and the arm64 root extracted there.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `target/` of the workspace (honours `CARGO_TARGET_DIR`).
pub fn target() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// `target/rig/`: everything the rig downloads and assembles.
pub fn dir() -> PathBuf {
    target().join("rig")
}

/// The arm64 packages extracted with `dpkg-deb -x`.
pub fn root() -> PathBuf {
    dir().join("root")
}

/// Serial console logs, one file per run or scenario.
pub fn logs() -> PathBuf {
    dir().join("logs")
}

/// The rig's own files in the repository (Dom0 init, scenarios, xl configs).
pub fn qemu_dir() -> PathBuf {
    workspace().join("qemu")
}

/// The guest Image written by `cargo xtask build`.
pub fn guest_image() -> PathBuf {
    target().join("vdispl-os.Image")
}

/// Xen 4.17 for arm64, as packaged by Debian (`xen-hypervisor-4.17-arm64`).
pub fn xen() -> Result<PathBuf> {
    let path = root().join("boot/xen-4.17-arm64");
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask deps` first",
            path.display()
        );
    }
    Ok(path)
}

/// File recording the Dom0 kernel release that `cargo xtask deps` resolved (e.g. `6.1.0-28-arm64`).
pub fn kernel_release_file() -> PathBuf {
    dir().join("kernel-release")
}

/// The Dom0 kernel release resolved by `cargo xtask deps`.
pub fn kernel_release() -> Result<String> {
    let file = kernel_release_file();
    let release = fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask deps` first",
            file.display()
        )
    })?;
    Ok(release.trim().to_string())
}

/// The Dom0 kernel (Debian's arm64 `vmlinuz` is an uncompressed Image).
pub fn dom0_kernel() -> Result<PathBuf> {
    let path = root().join(format!("boot/vmlinuz-{}", kernel_release()?));
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask deps` first",
            path.display()
        );
    }
    Ok(path)
}
