//! Fuzzes the image-reference and digest grammars of libgraph and libregistry: any
//! string gives a reference or an error, never a panic, and a parsed reference prints
//! back to something that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<longshore_graph::Reference>() {
        let again: longshore_graph::Reference = r.to_string().parse().expect("round trip");
        assert_eq!(again.to_string(), r.to_string());
    }
    let _ = s.parse::<longshore_graph::Digest>();
    let _ = s.parse::<longshore_registry::Reference>();
});
