//! cargo-fuzz target `xenstore_client`: see [`vdispl_fuzz::xenstore_client`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::xenstore_client(data));
