//! Running external commands: print each one before it runs, fail with the command in the error.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// Renders `cmd` the way a shell user would type it (arguments with spaces are quoted).
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("(cd {} &&", dir.display()));
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    let mut line = parts.join(" ");
    if cmd.get_current_dir().is_some() {
        line.push(')');
    }
    line
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Prints `cmd`, runs it with inherited stdio and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd.status().with_context(|| {
        format!("cannot start `{line}` (is it installed? try `cargo xtask deps`)")
    })?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Prints `cmd`, runs it and returns its standard output; its standard error goes to the terminal.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    println!("$ {line}");
    quiet_output(cmd)
}

/// Runs `cmd` without printing it (for queries whose result is printed instead) and returns its
/// standard output.
pub fn quiet_output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!("cannot start `{line}` (is it installed? try `cargo xtask deps`)")
        })?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args([
            "-m",
            "2048",
            "-append",
            "dom0_mem=512M console=dtuart",
            "it's",
        ]);
        assert_eq!(
            display(&cmd),
            r"qemu-system-aarch64 -m 2048 -append 'dom0_mem=512M console=dtuart' 'it'\''s'"
        );
    }
}
