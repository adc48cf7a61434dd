//! cargo-fuzz target `rings`: see [`vdispl_fuzz::rings`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::rings(data));
