//! cargo-fuzz target `platform`: see [`vdispl_fuzz::platform`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::platform(data));
