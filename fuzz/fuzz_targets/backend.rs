//! cargo-fuzz target `backend`: see [`vdispl_fuzz::backend`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::backend(data));
