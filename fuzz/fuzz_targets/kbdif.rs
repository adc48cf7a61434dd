//! cargo-fuzz target `kbdif`: see [`vdispl_fuzz::kbdif`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::kbdif(data));
