//! cargo-fuzz target `ring_server`: see [`vdispl_fuzz::ring_server`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::ring_server(data));
