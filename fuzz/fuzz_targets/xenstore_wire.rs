//! cargo-fuzz target `xenstore_wire`: see [`vdispl_fuzz::xenstore_wire`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vdispl_fuzz::xenstore_wire(data));
