//! `vdispl-grant-check` as a program on the host: bad arguments and a missing gntdev device
//! both end with exit status 2 and a line that says what went wrong.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vdispl-grant-check"))
        .args(args)
        .output()
        .expect("the program runs");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_print_the_usage() {
    let (code, stdout, stderr) = run(&["1", "eight", "3"]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("gref `eight` is not a decimal number"),
        "{stderr}"
    );
    assert!(
        stderr.contains("usage: vdispl-grant-check <domid> <gref> <seed>"),
        "{stderr}"
    );
}

#[test]
fn a_failing_step_is_named() {
    if std::path::Path::new("/dev/xen/gntdev").exists() {
        // A Xen host: the grant does not exist, so mapping it fails, but not at open().
        let (code, _, stderr) = run(&["32000", "8", "1"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.starts_with("rig: grant 8 of domain 32000: cannot "),
            "{stderr}"
        );
        return;
    }
    let (code, stdout, stderr) = run(&["1", "8", "1"]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("rig: grant 8 of domain 1: cannot open /dev/xen/gntdev: "),
        "{stderr}"
    );
}
