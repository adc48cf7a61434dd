//! cargo-fuzz target `connector`: see [`vdispl_fuzz::connector`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::connector(data));
