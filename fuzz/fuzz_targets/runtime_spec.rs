//! Fuzzes loading of a bundle's config.json: any bytes must give a spec or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = longshore_container::spec::parse(data);
});
