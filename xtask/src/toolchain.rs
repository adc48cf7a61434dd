//! The pinned Rust toolchain's targets and components (`rust-toolchain.toml`), installed when
//! missing.
//!
//! rustup installs a toolchain file's targets only when it installs the toolchain itself, and not
//! at all with `RUSTUP_AUTO_INSTALL=0`, so a machine that already had the pinned toolchain, or a CI
//! image that turns automatic installs off, lacks `aarch64-unknown-none` and the guest build fails
//! with "can't find crate for `core`". This step looks for each target's standard library in the
//! toolchain's sysroot and adds what is missing with `rustup target add`, saying so.

use crate::{cmd, rig};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The string values of the array `key = [ ... ]` in a TOML document (`rust-toolchain.toml` keeps
/// its lists on one line; comments and other keys are skipped).
pub fn string_list(toml: &str, key: &str) -> Vec<String> {
    let Some(value) = toml.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix(key)?.trim_start();
        rest.strip_prefix('=').map(str::trim)
    }) else {
        return Vec::new();
    };
    let Some(inner) = value
        .strip_prefix('[')
        .and_then(|value| value.split(']').next())
    else {
        return Vec::new();
    };
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// A `rustc` or `rustup` command run in the workspace, so that `rust-toolchain.toml` picks the
/// toolchain.
fn in_workspace(program: &str) -> Command {
    let mut command = Command::new(program);
    command.current_dir(rig::workspace());
    command
}

/// The sysroot of the pinned toolchain.
fn sysroot() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = cmd::quiet_output(in_workspace(&rustc).args(["--print", "sysroot"]))
        .context("cannot ask rustc for its sysroot")?;
    Ok(out.trim().to_string())
}

/// Whether the toolchain at `sysroot` has the standard library of `target`.
fn has_target(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// Installs the targets and components `rust-toolchain.toml` names that the pinned toolchain
/// lacks, printing each; prints one line when nothing is missing.
pub fn ensure() -> Result<()> {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if CHECKED.get().is_some() {
        return Ok(());
    }
    check_and_install()?;
    let _ = CHECKED.set(());
    Ok(())
}

fn check_and_install() -> Result<()> {
    let file = rig::workspace().join("rust-toolchain.toml");
    let toml = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let sysroot = sysroot()?;
    let missing: Vec<String> = string_list(&toml, "targets")
        .into_iter()
        .filter(|target| !has_target(Path::new(&sysroot), target))
        .collect();
    let components = missing_components(&string_list(&toml, "components"));
    if missing.is_empty() && components.is_empty() {
        println!("toolchain: targets and components of rust-toolchain.toml present");
        return Ok(());
    }
    let rustup_found = Command::new("rustup")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !rustup_found {
        bail!(
            "the Rust toolchain in {sysroot} lacks {}: install them with rustup \
             (`rustup target add ...`, `rustup component add ...`), or use a toolchain that has them",
            missing
                .iter()
                .chain(&components)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !missing.is_empty() {
        println!(
            "toolchain: installing the missing rustup targets {} (named in rust-toolchain.toml)",
            missing.join(" ")
        );
        cmd::run(
            in_workspace("rustup")
                .args(["target", "add"])
                .args(&missing),
        )
        .context("installing the toolchain's targets failed")?;
    }
    if !components.is_empty() {
        println!(
            "toolchain: installing the missing rustup components {} (named in rust-toolchain.toml)",
            components.join(" ")
        );
        cmd::run(
            in_workspace("rustup")
                .args(["component", "add"])
                .args(&components),
        )
        .context("installing the toolchain's components failed")?;
    }
    Ok(())
}

/// The components of `wanted` that rustup does not list as installed (none when rustup is absent:
/// a toolchain without rustup has whatever it has).
fn missing_components(wanted: &[String]) -> Vec<String> {
    let Ok(installed) =
        cmd::quiet_output(in_workspace("rustup").args(["component", "list", "--installed"]))
    else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter(|component| {
            !installed.lines().any(|line| {
                line.trim() == component.as_str() || line.starts_with(&format!("{component}-"))
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::string_list;

    const TOOLCHAIN: &str = r#"[toolchain]
channel = "1.95.0"
components = ["rustfmt", "clippy"]
# aarch64-unknown-none: the guest.
targets = ["aarch64-unknown-none", "aarch64-unknown-linux-musl"]
profile = "minimal"
"#;

    #[test]
    fn lists_are_read_from_the_toolchain_file() {
        assert_eq!(
            string_list(TOOLCHAIN, "targets"),
            ["aarch64-unknown-none", "aarch64-unknown-linux-musl"]
        );
        assert_eq!(string_list(TOOLCHAIN, "components"), ["rustfmt", "clippy"]);
        assert!(string_list(TOOLCHAIN, "missing").is_empty());
        assert!(string_list("targets = \"x\"", "targets").is_empty());
    }

    #[test]
    fn the_workspace_toolchain_file_names_the_guest_and_dom0_targets() {
        let toml = std::fs::read_to_string(crate::rig::workspace().join("rust-toolchain.toml"))
            .expect("rust-toolchain.toml");
        let targets = string_list(&toml, "targets");
        assert!(targets.iter().any(|t| t == crate::build::GUEST.target));
        for binary in crate::build::DOM0_BINARIES {
            assert!(targets.iter().any(|t| t == binary.target));
        }
    }
}
