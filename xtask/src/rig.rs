//! Where the rig keeps its files: the workspace, `target/rig/` and, per Xen release, the arm64
//! root extracted under `target/rig/xen-<version>/`.

use crate::release::Release;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

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

/// `target/rig/xen-<major.minor>/`: what one release's rig downloads and assembles (its apt
/// state, packages, unpacked root, Dom0 initramfs and logs).
pub fn release_dir(release: Release) -> PathBuf {
    dir().join(release.label())
}

/// The release's arm64 packages extracted with `dpkg-deb -x`.
pub fn root(release: Release) -> PathBuf {
    release_dir(release).join("root")
}

/// The serial console logs of the release's scenarios and runs, one file each.
pub fn release_logs(release: Release) -> PathBuf {
    release_dir(release).join("logs")
}

/// Logs that belong to no release (the deps step's QEMU probe).
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

/// The release's Xen for arm64, as packaged by Debian (`xen-hypervisor-<version>-arm64`).
pub fn xen(release: Release) -> Result<PathBuf> {
    let path = root(release).join(release.xen_binary());
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask deps` first",
            path.display()
        );
    }
    Ok(path)
}

/// File recording the Dom0 kernel release that `cargo xtask deps` resolved for `release` (e.g.
/// `6.1.0-28-arm64`).
pub fn kernel_release_file(release: Release) -> PathBuf {
    release_dir(release).join("kernel-release")
}

/// The Dom0 kernel release resolved by `cargo xtask deps`.
pub fn kernel_release(release: Release) -> Result<String> {
    let file = kernel_release_file(release);
    let text = fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask deps` first",
            file.display()
        )
    })?;
    Ok(text.trim().to_string())
}

/// The Dom0 kernel (Debian's arm64 `vmlinuz` is an uncompressed Image).
pub fn dom0_kernel(release: Release) -> Result<PathBuf> {
    let path = root(release).join(format!("boot/vmlinuz-{}", kernel_release(release)?));
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask deps` first",
            path.display()
        );
    }
    Ok(path)
}

/// The first of `candidates` (paths relative to the release's root) that exists: the same file
/// sits in `/lib` or `/bin` in bookworm and under `/usr` in trixie (merged `/usr`).
pub fn find_in_root(release: Release, candidates: &[&str]) -> Result<PathBuf> {
    first_existing(&root(release), candidates)
}

/// The first of `candidates` (relative to `root`) that exists.
fn first_existing(root: &Path, candidates: &[&str]) -> Result<PathBuf> {
    candidates
        .iter()
        .map(|candidate| root.join(candidate))
        .find(|path| path.exists())
        .with_context(|| {
            format!(
                "none of {} in {}: run `cargo xtask deps --refresh`",
                candidates.join(", "),
                root.display()
            )
        })
}

/// busybox (static) in the release's root.
pub fn busybox(release: Release) -> Result<PathBuf> {
    find_in_root(release, &["bin/busybox", "usr/bin/busybox"])
}

/// The directory of the Dom0 kernel's modules in the release's root.
pub fn modules_dir(release: Release) -> Result<PathBuf> {
    let kernel = kernel_release(release)?;
    find_in_root(
        release,
        &[
            &format!("lib/modules/{kernel}"),
            &format!("usr/lib/modules/{kernel}"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_before_and_after_the_usr_merge() {
        let root = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        let candidates = ["bin/busybox", "usr/bin/busybox"];
        // trixie: /bin is a symlink to usr/bin, which the package does not ship.
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/busybox"), b"").unwrap();
        assert_eq!(
            first_existing(&root, &candidates).unwrap(),
            root.join("usr/bin/busybox")
        );
        // bookworm: /bin/busybox.
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"").unwrap();
        assert_eq!(
            first_existing(&root, &candidates).unwrap(),
            root.join("bin/busybox")
        );
        let error = first_existing(&root, &["lib/ld-linux-aarch64.so.1"]).unwrap_err();
        assert!(error.to_string().contains("lib/ld-linux-aarch64.so.1"));
        fs::remove_dir_all(&root).unwrap();
    }
}
