//! cargo-fuzz target `displif`: see [`vdispl_fuzz::displif`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::displif(data));
