//! `cargo xtask`: build the guest Image, assemble the Xen rig, run and test it.

fn main() {
    println!("xtask: not yet implemented");
}
