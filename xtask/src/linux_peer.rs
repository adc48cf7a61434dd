//! The Linux peer: a DomU kernel built from Debian's `linux-source-6.1` with Linux's own
//! para-virtual display frontend (xen-drm-front) built in, and a built-in initramfs whose
//! `/init` is `kms-client` (`qemu/kms-client`), so that the linux-peer scenarios drive the
//! project's display backend with an independent frontend.
//!
//! The source tarball (`/usr/src/linux-source-6.1.tar.xz`, a host package `cargo xtask deps`
//! installs) is unpacked into `target/linux-peer/src/`; the kernel is configured in
//! `target/linux-peer/build/` from `tinyconfig` plus [`CONFIG_FRAGMENT`] (then `olddefconfig`,
//! and every option of the fragment checked in the result), and built with the Debian cross
//! compiler (`aarch64-linux-gnu-`), two jobs, at the normal priority (niced, it starved on a busy
//! machine). The Image is kept as
//! `target/linux-peer/Image` with a stamp of its inputs (package version, fragment, initramfs
//! contents): it is built again only when one of them changes. A first build takes about four
//! minutes on two cores; make's output goes to `target/linux-peer/build.log`.

use crate::{build, cmd, cpio, rig};
use anyhow::{bail, Context, Result};
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Debian package with the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// The tarball it installs.
const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The directory the tarball unpacks to.
const SOURCE_TOP: &str = "linux-source-6.1";
/// Debian's cross compiler prefix (package gcc-aarch64-linux-gnu).
const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// Where Dom0 finds the peer's kernel (`kernel =` of `qemu/xl/linux-peer.cfg`).
pub const DOM0_IMAGE: &str = "guest/linux-peer.Image";
/// How often the build prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// What an arm64 Xen DomU with xen-drm-front needs on top of `tinyconfig` (besides
/// `CONFIG_INITRAMFS_SOURCE`, added with the initramfs's path): a console on Xen's PV console
/// (hvc0), Xen guest support, the DRM core and xen-drm-front (which selects the KMS helpers,
/// the video mode helpers, the xenbus frontend and the page-directory shared buffers), a
/// built-in uncompressed initramfs, devtmpfs, proc and sysfs, ELF binaries, futexes and
/// shmem (GEM objects live in shmem files).
pub const CONFIG_FRAGMENT: &[&str] = &[
    "CONFIG_PRINTK=y",
    "CONFIG_TTY=y",
    "CONFIG_HVC_XEN=y",
    "CONFIG_XEN=y",
    "CONFIG_BLK_DEV_INITRD=y",
    "CONFIG_INITRAMFS_COMPRESSION_NONE=y",
    "CONFIG_DEVTMPFS=y",
    "CONFIG_DEVTMPFS_MOUNT=y",
    "CONFIG_PROC_FS=y",
    "CONFIG_SYSFS=y",
    "CONFIG_BINFMT_ELF=y",
    "CONFIG_FUTEX=y",
    "CONFIG_SHMEM=y",
    "CONFIG_DRM=y",
    "CONFIG_DRM_XEN=y",
    "CONFIG_DRM_XEN_FRONTEND=y",
    "CONFIG_DRM_KMS_HELPER=y",
    "CONFIG_VIDEOMODE_HELPERS=y",
    "CONFIG_XEN_XENBUS_FRONTEND=y",
    "CONFIG_XEN_FRONT_PGDIR_SHBUF=y",
];

/// The peer's `/init`: the KMS client, a static musl binary.
pub const KMS_CLIENT: build::Binary = build::Binary {
    package: "kms-client",
    bin: "kms-client",
    target: "aarch64-unknown-linux-musl",
};

/// Whether a boot of this kind needs the peer's kernel in Dom0 (the linux-peer scripts).
pub fn needed_by(script: &str) -> bool {
    script.starts_with("linux-peer")
}

/// `target/linux-peer/`.
pub fn dir() -> PathBuf {
    rig::target().join("linux-peer")
}

/// Builds the KMS client, the peer's initramfs and (when an input changed) its kernel; returns
/// the Image.
pub fn build() -> Result<PathBuf> {
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let client = build::build_static(&KMS_CLIENT, "the Linux peer's /init")?;
    let initramfs = write_initramfs(&client, &dir)?;
    let version = package_version()?;
    let fragment = fragment(&initramfs);

    let image = dir.join("Image");
    let stamp = dir.join("Image.stamp");
    let mut hasher = DefaultHasher::new();
    fs::read(&initramfs)
        .with_context(|| format!("cannot read {}", initramfs.display()))?
        .hash(&mut hasher);
    let wanted = format!(
        "package {SOURCE_PACKAGE} {version}\ninitramfs {:016x}\n{fragment}",
        hasher.finish()
    );
    if image.is_file() && fs::read_to_string(&stamp).is_ok_and(|old| old == wanted) {
        println!(
            "linux-peer: {} is up to date ({SOURCE_PACKAGE} {version})",
            image.display()
        );
        return Ok(image);
    }
    let _ = fs::remove_file(&stamp);
    let source = unpack(&dir, &version)?;
    let objects = dir.join("build");
    configure(&source, &objects, &fragment, &dir.join("configure.log"))?;
    make_image(&source, &objects, &dir.join("build.log"))?;
    let built = objects.join("arch/arm64/boot/Image");
    fs::copy(&built, &image)
        .with_context(|| format!("cannot copy {} to {}", built.display(), image.display()))?;
    fs::write(&stamp, wanted)?;
    println!(
        "linux-peer: {} ({} bytes, {SOURCE_PACKAGE} {version}, xen-drm-front built in)",
        image.display(),
        fs::metadata(&image)?.len()
    );
    Ok(image)
}

/// The installed source package's version; fails naming the install step when it is missing.
fn package_version() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", SOURCE_PACKAGE])
        .output()
        .context("cannot run dpkg-query")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .strip_prefix("install ok installed ")
        .filter(|_| out.status.success())
        .map(str::trim)
        .filter(|version| !version.is_empty());
    match version {
        Some(version) if Path::new(TARBALL).is_file() => Ok(version.to_string()),
        _ => bail!(
            "{SOURCE_PACKAGE} is not installed (it provides {TARBALL}): run `cargo xtask deps`"
        ),
    }
}

/// The fragment with the initramfs's path.
fn fragment(initramfs: &Path) -> String {
    let mut text = CONFIG_FRAGMENT.join("\n");
    text.push_str(&format!(
        "\nCONFIG_INITRAMFS_SOURCE=\"{}\"\n",
        initramfs.display()
    ));
    text
}

/// Writes `initramfs.cpio`: `/init` (the client, stripped), `/dev/console` (the kernel opens
/// it for init), and the mount points `/dev`, `/proc` and `/sys`. The file is rewritten only
/// when its contents change, so the kernel's own dependency tracking sees no change otherwise.
fn write_initramfs(client: &Path, dir: &Path) -> Result<PathBuf> {
    let bytes = init_initramfs(client, &dir.join("kms-client"), &[])?;
    let path = dir.join("initramfs.cpio");
    if fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// A Linux DomU's initramfs (newc) whose `/init` is the static program `init`, stripped into
/// `stripped` first: `/init`, `/dev/console` (the kernel opens it for init), the mount points
/// `/dev`, `/proc` and `/sys`, and `files` (path in the archive, contents; mode 0644) with the
/// directories above them.
pub fn init_initramfs(init: &Path, stripped: &Path, files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    cmd::run(
        Command::new(format!("{CROSS_COMPILE}strip"))
            .arg("-o")
            .arg(stripped)
            .arg(init),
    )
    .with_context(|| {
        format!(
            "stripping {} failed (the strip of binutils-aarch64-linux-gnu)",
            init.display()
        )
    })?;
    let init = fs::read(stripped).with_context(|| format!("cannot read {}", stripped.display()))?;
    let mut archive = cpio::Writer::new(Vec::new());
    let mut directories = vec!["dev".to_string(), "proc".to_string(), "sys".to_string()];
    for (path, _) in files {
        let mut parent = Path::new(path).parent();
        let mut above = Vec::new();
        while let Some(directory) = parent.filter(|p| !p.as_os_str().is_empty()) {
            above.push(directory.to_string_lossy().into_owned());
            parent = directory.parent();
        }
        for directory in above.into_iter().rev() {
            if !directories.contains(&directory) {
                directories.push(directory);
            }
        }
    }
    for directory in &directories {
        archive.directory(directory, 0o755)?;
    }
    archive.char_device("dev/console", 0o600, 5, 1)?;
    archive.file("init", 0o755, &init)?;
    for (path, data) in files {
        archive.file(path, 0o644, data)?;
    }
    Ok(archive.finish()?)
}

/// Unpacks the source tarball into `dir/src/` unless the same version is there already.
fn unpack(dir: &Path, version: &str) -> Result<PathBuf> {
    let src = dir.join("src");
    let source = src.join(SOURCE_TOP);
    let stamp = dir.join("src.stamp");
    if source.join("Makefile").is_file()
        && fs::read_to_string(&stamp).is_ok_and(|old| old.trim() == version)
    {
        return Ok(source);
    }
    let _ = fs::remove_file(&stamp);
    for old in [&src, &dir.join("build")] {
        if old.exists() {
            fs::remove_dir_all(old).with_context(|| format!("cannot remove {}", old.display()))?;
        }
    }
    fs::create_dir_all(&src)?;
    let started = Instant::now();
    println!("linux-peer: unpacking {TARBALL} ({SOURCE_PACKAGE} {version})");
    cmd::run(Command::new("tar").args(["-xJf", TARBALL, "-C"]).arg(&src))?;
    println!(
        "linux-peer: unpacked in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    fs::write(&stamp, format!("{version}\n"))?;
    Ok(source)
}

/// `make` in the source tree with the build directory, arm64 and the cross compiler, at the
/// normal priority: niced, a build on a busy machine starves (a first CI run waits for it).
fn make(source: &Path, objects: &Path) -> Command {
    let mut command = Command::new("make");
    command
        .arg("-C")
        .arg(source)
        .arg(format!("O={}", objects.display()))
        .args(["ARCH=arm64", &format!("CROSS_COMPILE={CROSS_COMPILE}")]);
    command
}

/// `tinyconfig`, the fragment appended, `olddefconfig` (their output, kconfig's notes on each
/// option the fragment sets again, in `log`), then every option of the fragment checked in the
/// resulting `.config` (an option whose dependencies are missing is dropped silently by
/// kconfig).
fn configure(source: &Path, objects: &Path, fragment: &str, log: &Path) -> Result<()> {
    fs::create_dir_all(objects)?;
    let _ = fs::remove_file(log);
    run_logged(make(source, objects).args(["-s", "tinyconfig"]), log)?;
    let config = objects.join(".config");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .with_context(|| format!("cannot open {}", config.display()))?;
    file.write_all(format!("\n{fragment}").as_bytes())?;
    drop(file);
    run_logged(make(source, objects).args(["-s", "olddefconfig"]), log)?;
    let result =
        fs::read_to_string(&config).with_context(|| format!("cannot read {}", config.display()))?;
    let missing = missing_options(fragment, &result);
    if !missing.is_empty() {
        bail!(
            "the kernel configuration lacks {} after olddefconfig (their dependencies are not \
             met; see {})",
            missing.join(", "),
            config.display()
        );
    }
    println!(
        "linux-peer: configured {} (tinyconfig + {} options; CONFIG_DRM_XEN_FRONTEND=y)",
        config.display(),
        CONFIG_FRAGMENT.len() + 1
    );
    Ok(())
}

/// Prints `command`, runs it with its output appended to `log`, and fails with the end of the
/// log unless it succeeds.
fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    println!("$ {} >>{} 2>&1", cmd::display(command), log.display());
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let status = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot start `{}`", cmd::display(command)))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}); the end of {}:\n{}",
            cmd::display(command),
            log.display(),
            log_tail(log)
        );
    }
    Ok(())
}

/// The last 20 lines of a log.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The lines of `fragment` that `config` does not hold as they are.
fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("CONFIG_"))
        .filter(|wanted| !config.lines().any(|line| line.trim() == *wanted))
        .map(str::to_string)
        .collect()
}

/// Builds the Image (two jobs), make's output in `log`, a progress line every
/// [`PROGRESS_EVERY`].
fn make_image(source: &Path, objects: &Path, log: &Path) -> Result<()> {
    let mut command = make(source, objects);
    // Without -s: one line per file, which the progress lines count.
    command.args(["-j2", "Image"]);
    println!("$ {} >{} 2>&1", cmd::display(&command), log.display());
    println!(
        "linux-peer: building the kernel (a few minutes on two cores; log {})",
        log.display()
    );
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let mut child = command.spawn().context("cannot start make")?;
    // The command holds the pipe's write ends: drop them so the read ends at make's exit.
    drop(command);
    let mut log_file =
        fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let started = Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    let mut compiled = 0usize;
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        writeln!(log_file, "{line}")?;
        if line.trim_start().starts_with("CC ") {
            compiled += 1;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!(
                "linux-peer: building: {compiled} files compiled after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let status = child.wait().context("waiting for make failed")?;
    if !status.success() {
        bail!(
            "building the Linux peer's kernel failed ({status}); the end of {}:\n{}",
            log.display(),
            log_tail(log)
        );
    }
    println!(
        "linux-peer: kernel built in {:.0} s ({compiled} files compiled)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_kconfig_dropped_are_named() {
        let fragment = fragment(Path::new("/t/initramfs.cpio"));
        assert!(fragment.contains("CONFIG_DRM_XEN_FRONTEND=y\n"));
        assert!(fragment.ends_with("CONFIG_INITRAMFS_SOURCE=\"/t/initramfs.cpio\"\n"));
        let mut config: String = fragment.clone();
        assert!(missing_options(&fragment, &config).is_empty());
        config = config.replace(
            "CONFIG_DRM_XEN_FRONTEND=y",
            "# CONFIG_DRM_XEN_FRONTEND is not set",
        );
        assert_eq!(
            missing_options(&fragment, &config),
            ["CONFIG_DRM_XEN_FRONTEND=y"]
        );
    }

    #[test]
    fn only_the_linux_peer_scripts_need_the_peer() {
        assert!(needed_by("linux-peer"));
        assert!(needed_by("linux-peer-formats"));
        assert!(!needed_by("display"));
    }
}
