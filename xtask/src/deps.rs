//! `cargo xtask deps`: host packages (QEMU, dtc, cpio, xz) and the arm64 Debian packages of the
//! rig, for each Xen release.
//!
//! Each release's arm64 packages (Xen, its tools and libraries, busybox, the Dom0 kernel) are
//! fetched through a private apt state under `target/rig/xen-<version>/apt/`, so the system's
//! dpkg never learns about arm64 and no root is needed for that part. The state has its own
//! sources list, naming the release's Debian suite on the mirrors the system's apt sources use
//! (see [`mirrors`]), checked against the system's Debian archive keyring. The packages are
//! unpacked with `dpkg-deb -x` into `target/rig/xen-<version>/root/`. A stamp file skips the
//! whole step while the package list and the sources are unchanged.

use crate::release::{self, Choice, Release};
use crate::{cmd, linux_peer, rig, toolchain};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options of `cargo xtask deps`.
#[derive(clap::Args)]
pub struct Args {
    /// Fetch and unpack the arm64 packages again even if the stamp says they are up to date.
    #[arg(long)]
    pub refresh: bool,
    /// Only check and install the host packages.
    #[arg(long)]
    pub host_only: bool,
    /// The Xen release whose arm64 packages to fetch: 4.17, 4.20 or all.
    #[arg(long = "xen", value_name = "RELEASE", default_value = "all", value_parser = release::parse_choice)]
    pub xen: Choice,
}

/// Host (amd64) packages the rig runs: QEMU, dtc for the dom0less device tree, cpio (tests), xz
/// (trixie's kernel modules are xz-compressed) and the Debian archive keyring the private apt
/// states check signatures with; and what the Linux peer's kernel is built with
/// (`linux_peer.rs`): its source, the arm64 cross compiler and binutils, and the host tools
/// Linux's build runs (make, a host C compiler and libc headers, flex, bison, bc, xz for the
/// tarball).
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-arm",
    "device-tree-compiler",
    "cpio",
    "xz-utils",
    "debian-archive-keyring",
    linux_peer::SOURCE_PACKAGE,
    "gcc-aarch64-linux-gnu",
    "binutils-aarch64-linux-gnu",
    "make",
    "gcc",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
];

/// The keyring of Debian's archive signing keys (package `debian-archive-keyring`), which also
/// holds the keys of the next release's suite.
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The metapackage that names the current Debian arm64 kernel (its ABI number changes with
/// security updates, so it is resolved, never pinned).
const KERNEL_METAPACKAGE: &str = "linux-image-arm64";

/// Runs `cargo xtask deps`.
pub fn run(args: &Args) -> Result<()> {
    fetch(&args.xen.releases(), args.refresh, args.host_only)
}

fn fetch(releases: &[Release], refresh: bool, host_only: bool) -> Result<()> {
    let start = Instant::now();
    toolchain::ensure()?;
    host_packages()?;
    probe_qemu()?;
    if !host_only {
        for &release in releases {
            arm64_packages(release, refresh)?;
        }
    }
    println!("deps: done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The deps step as `run`, `test`, `bench` and `dump-dtbs` take it first, for the releases they
/// boot: installs or fetches only what is missing or changed (a few milliseconds when everything
/// is in place).
pub fn ensure(releases: &[Release]) -> Result<()> {
    fetch(releases, false, false)
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

/// The private apt state: arm64 only, own lists, cache and sources, no installed-package
/// database, none of the system's pinning.
fn apt(tool: &str, state: &Path) -> Command {
    let mut cmd = Command::new(tool);
    let option = |name: &str, value: &Path| format!("{name}={}", value.display());
    cmd.args([
        "-o",
        "APT::Architecture=arm64",
        "-o",
        "APT::Architectures::=arm64",
        "-o",
        &option("Dir::State::Lists", &state.join("lists")),
        "-o",
        &option("Dir::Cache", &state.join("cache")),
        "-o",
        "Dir::State::status=/dev/null",
        "-o",
        &option("Dir::Etc::SourceList", &state.join("sources.list")),
        "-o",
        &option("Dir::Etc::SourceParts", &state.join("sources.list.d")),
        "-o",
        "Dir::Etc::Preferences=/dev/null",
        "-o",
        &option("Dir::Etc::PreferencesParts", &state.join("preferences.d")),
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

/// Where the Debian archive and its security updates are, as the system's apt sources name
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    /// The archive's URI (the suites `<suite>` and `<suite>-updates`).
    pub archive: String,
    /// The security archive's URI (`<suite>-security`), if the system uses one.
    pub security: Option<String>,
}

/// One `deb` source of an apt sources file: its URI and suites.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
}

/// The `deb` entries of a one-line-style sources file (`deb [options] URI suite components`).
fn one_line_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.split_once(']') {
                Some((_, after)) => rest = after.trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push(Source {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
            });
        }
    }
    sources
}

/// The `deb` entries of a deb822-style sources file (stanzas with `Types`, `URIs`, `Suites`;
/// `Enabled: no` skips one).
fn deb822_sources(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // A continuation line adds to the field before it.
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str())
        };
        let enabled = field("enabled").is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        let is_deb =
            field("types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb"));
        if !enabled || !is_deb {
            continue;
        }
        let suites: Vec<String> = field("suites")
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        for uri in field("uris").unwrap_or("").split_whitespace() {
            sources.push(Source {
                uri: uri.to_string(),
                suites: suites.clone(),
            });
        }
    }
    sources
}

/// Picks the Debian archive and security archive out of the system's sources: the first source
/// with a suite of Debian's (`bookworm`, `trixie`, or `codename`, the system's own, each also
/// as `-updates`) and the first with such a suite's `-security`.
fn pick_mirrors(sources: &[Source], codename: Option<&str>) -> Option<Mirrors> {
    let is_debian = |base: &str| {
        Release::ALL.iter().any(|release| release.suite() == base) || Some(base) == codename
    };
    let base_and_kind = |suite: &str| -> (String, String) {
        match suite.split_once('-') {
            Some((base, kind)) => (base.to_string(), kind.to_string()),
            None => (suite.to_string(), String::new()),
        }
    };
    let find = |wanted: &dyn Fn(&str) -> bool| {
        sources.iter().find_map(|source| {
            source
                .suites
                .iter()
                .any(|suite| {
                    let (base, kind) = base_and_kind(suite);
                    is_debian(&base) && wanted(&kind)
                })
                .then(|| source.uri.trim_end_matches('/').to_string())
        })
    };
    let archive = find(&|kind| kind.is_empty() || kind == "updates")?;
    let security = find(&|kind| kind == "security");
    Some(Mirrors { archive, security })
}

/// The mirrors of the system's apt sources (`Dir::Etc::SourceList` and the `.list` and
/// `.sources` files of `Dir::Etc::SourceParts`, as `apt-config` gives them).
pub fn mirrors() -> Result<Mirrors> {
    let shell = cmd::quiet_output(Command::new("apt-config").args([
        "shell",
        "LIST",
        "Dir::Etc::SourceList/f",
        "PARTS",
        "Dir::Etc::SourceParts/d",
    ]))
    .context("cannot ask apt-config where the system's sources are")?;
    let value = |name: &str| {
        shell.lines().find_map(|line| {
            line.strip_prefix(&format!("{name}="))
                .map(|value| value.trim_matches('\'').to_string())
        })
    };
    let mut sources = Vec::new();
    let mut read = Vec::new();
    if let Some(list) = value("LIST") {
        if let Ok(text) = fs::read_to_string(&list) {
            sources.extend(one_line_sources(&text));
            read.push(list);
        }
    }
    if let Some(parts) = value("PARTS") {
        let mut files: Vec<PathBuf> = fs::read_dir(&parts)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            match file.extension().and_then(|ext| ext.to_str()) {
                Some("list") => sources.extend(one_line_sources(&text)),
                Some("sources") => sources.extend(deb822_sources(&text)),
                _ => continue,
            }
            read.push(file.display().to_string());
        }
    }
    let codename = fs::read_to_string("/etc/os-release").ok().and_then(|text| {
        text.lines().find_map(|line| {
            line.strip_prefix("VERSION_CODENAME=")
                .map(|value| value.trim_matches('"').to_string())
        })
    });
    pick_mirrors(&sources, codename.as_deref()).with_context(|| {
        format!(
            "the system's apt sources ({}) name no Debian archive (a `deb` source of {}): \
             add the Debian mirror this machine should use",
            if read.is_empty() {
                "none found".to_string()
            } else {
                read.join(", ")
            },
            Release::ALL
                .iter()
                .map(|release| release.suite())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    })
}

/// The private sources list of `release`: its suite, its `-updates` and its `-security` on the
/// system's mirrors, signed by the Debian archive keyring.
fn sources_list(release: Release, mirrors: &Mirrors) -> String {
    let suite = release.suite();
    let signed = format!("[signed-by={ARCHIVE_KEYRING}]");
    let mut text = format!(
        "# The arm64 packages of {release} (cargo xtask deps), on the mirrors of the system's \
         apt sources.\n\
         deb {signed} {archive} {suite} main\n\
         deb {signed} {archive} {suite}-updates main\n",
        archive = mirrors.archive
    );
    if let Some(security) = &mirrors.security {
        text.push_str(&format!("deb {signed} {security} {suite}-security main\n"));
    }
    text
}

fn arm64_packages(release: Release, refresh: bool) -> Result<()> {
    let dir = rig::release_dir(release);
    migrate_old_layout(release)?;
    let state = dir.join("apt");
    let debs = dir.join("debs");
    let root = rig::root(release);
    let stamp = dir.join("deps.stamp");
    let mirrors = mirrors()?;
    let sources = sources_list(release, &mirrors);
    let arm64 = release.packages();
    let wanted = format!("{sources}{KERNEL_METAPACKAGE}\n{}\n", arm64.join("\n"));

    if !refresh
        && root.is_dir()
        && fs::read_to_string(&stamp).is_ok_and(|old| old == wanted)
        && rig::xen(release).is_ok()
        && rig::dom0_kernel(release).is_ok()
    {
        println!(
            "deps: {release} arm64 packages up to date in {} (kernel {}; `--refresh` fetches them again)",
            root.display(),
            rig::kernel_release(release)?
        );
        return Ok(());
    }

    if !Path::new(ARCHIVE_KEYRING).is_file() {
        bail!(
            "{ARCHIVE_KEYRING} is missing: install debian-archive-keyring (`cargo xtask deps` as \
             root does)"
        );
    }
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
    ] {
        fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
    }
    fs::write(state.join("sources.list"), &sources)?;
    println!(
        "deps: {release}: Debian {} from {}{}",
        release.suite(),
        mirrors.archive,
        mirrors
            .security
            .as_deref()
            .map(|security| format!(" and {security}"))
            .unwrap_or_default()
    );
    let _ = fs::remove_file(&stamp);
    let step = Instant::now();
    cmd::run(apt("apt-get", &state).arg("update"))
        .with_context(|| format!("updating the private arm64 package lists of {release} failed"))?;
    println!(
        "deps: {release} arm64 package lists updated in {:.1} s",
        step.elapsed().as_secs_f64()
    );

    let kernel_package = resolve_kernel(&state)?;
    let kernel = kernel_package
        .strip_prefix("linux-image-")
        .context("kernel package name does not start with linux-image-")?
        .to_string();
    println!("deps: {release} Dom0 kernel: {kernel_package} (via {KERNEL_METAPACKAGE})");

    if debs.exists() {
        fs::remove_dir_all(&debs).with_context(|| format!("cannot remove {}", debs.display()))?;
    }
    fs::create_dir_all(&debs)?;
    let mut packages = arm64;
    packages.push(kernel_package);
    let step = Instant::now();
    cmd::run(
        apt("apt-get", &state)
            .current_dir(&debs)
            .arg("download")
            .args(&packages),
    )
    .with_context(|| format!("downloading the arm64 packages of {release} failed"))?;
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
    rig::xen(release)?;
    fs::write(rig::kernel_release_file(release), format!("{kernel}\n"))?;
    rig::dom0_kernel(release)?;
    fs::write(&stamp, wanted)?;
    Ok(())
}

/// Moves Xen 4.17's files from where they were before each release had its own directory
/// (`target/rig/{apt,debs,root,...}`) into `target/rig/xen-4.17/`, so that they are not
/// fetched again.
fn migrate_old_layout(release: Release) -> Result<()> {
    let old_root = rig::dir().join("root");
    let dir = rig::release_dir(release);
    if release != Release::Xen417 || !old_root.join("boot/xen-4.17-arm64").is_file() || dir.exists()
    {
        return Ok(());
    }
    fs::create_dir_all(&dir)?;
    for name in ["apt", "debs", "root", "deps.stamp", "kernel-release"] {
        let from = rig::dir().join(name);
        if from.exists() {
            fs::rename(&from, dir.join(name)).with_context(|| {
                format!("cannot move {} into {}", from.display(), dir.display())
            })?;
        }
    }
    for name in ["dom0-initramfs.cpio", "dom0-initramfs.stamp"] {
        let _ = fs::remove_file(rig::dir().join(name));
    }
    println!("deps: moved Xen 4.17's packages into {}", dir.display());
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
        let trixie = "Package: linux-image-arm64\nVersion: 6.12.118-1\n\
                      Depends: linux-image-6.12.118+deb13-arm64 (= 6.12.118-1)\n";
        assert_eq!(
            kernel_from_depends(trixie).as_deref(),
            Some("linux-image-6.12.118+deb13-arm64")
        );
    }

    const DEB822: &str = "Types: deb\n\
        # a snapshot of the same, kept as a comment\n\
        URIs: http://mirror.example/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
        \n\
        Types: deb\n\
        URIs: http://mirror.example/debian-security/\n\
        Suites: bookworm-security\n\
        Components: main\n\
        \n\
        Types: deb\n\
        Enabled: no\n\
        URIs: http://other.example/debian\n\
        Suites: trixie\n";

    #[test]
    fn mirrors_come_from_deb822_sources() {
        let sources = deb822_sources(DEB822);
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert_eq!(
            pick_mirrors(&sources, Some("bookworm")),
            Some(Mirrors {
                archive: "http://mirror.example/debian".into(),
                security: Some("http://mirror.example/debian-security".into()),
            })
        );
    }

    #[test]
    fn mirrors_come_from_one_line_sources_skipping_other_repositories() {
        let list = "# deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb https://vendor.example/apt cloud-sdk-bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://near.example/debian/ bookworm main\n";
        let sources = one_line_sources(list);
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert_eq!(
            pick_mirrors(&sources, Some("bookworm")),
            Some(Mirrors {
                archive: "http://near.example/debian".into(),
                security: None,
            })
        );
        // A vendor's own suite names no Debian archive.
        assert_eq!(pick_mirrors(&sources[..1], Some("bookworm")), None);
        // The system's own codename counts even when no release of the rig uses it.
        let sid = one_line_sources("deb http://m.example/debian sid main\n");
        assert_eq!(
            pick_mirrors(&sid, Some("sid")).map(|m| m.archive),
            Some("http://m.example/debian".into())
        );
    }

    #[test]
    fn each_release_gets_its_suite_on_the_system_mirrors() {
        let mirrors = Mirrors {
            archive: "http://m.example/debian".into(),
            security: Some("http://m.example/debian-security".into()),
        };
        let list = sources_list(Release::Xen420, &mirrors);
        let entries: Vec<&str> = list.lines().filter(|l| l.starts_with("deb ")).collect();
        assert_eq!(
            entries,
            [
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian trixie main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian trixie-updates main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian-security trixie-security main",
            ]
        );
        let no_security = Mirrors {
            security: None,
            ..mirrors
        };
        let list = sources_list(Release::Xen417, &no_security);
        assert!(list.contains(" bookworm-updates main"), "{list}");
        assert!(!list.contains("security"), "{list}");
        // What apt makes of it: one-line entries.
        assert_eq!(one_line_sources(&list).len(), 2);
    }
}
