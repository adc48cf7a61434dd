//! cargo-fuzz target `xenstore_stream`: see [`vdispl_fuzz::xenstore_stream`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::xenstore_stream(data));
