//! Fuzzes the image-reference and digest grammars (`longshore-reference`, which libgraph
//! and libregistry both re-export): any string gives a value or an error, never a panic,
//! and what parses prints back to text that parses to the same value (the full form, and
//! for a reference also Docker's familiar form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use longshore_graph::{Digest, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<Reference>() {
        // one type: what libgraph parses is what libregistry pulls
        let r: longshore_registry::Reference = r;
        let printed = r.to_string();
        let again: Reference = printed
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} printed as {printed:?}");
        assert_eq!(again.to_string(), printed);
        let familiar = r.familiar();
        let back: Reference = familiar
            .parse()
            .unwrap_or_else(|e| panic!("{s:?}: familiar form {familiar:?} does not parse: {e}"));
        assert_eq!(back, r, "{s:?}: familiar form {familiar:?}");
        let tagged = r.clone().with_default_tag();
        assert_eq!(tagged.to_string().parse::<Reference>().unwrap(), tagged);
    }
    if let Ok(d) = s.parse::<Digest>() {
        let d: longshore_registry::Digest = d;
        assert_eq!(d.to_string(), s, "a digest prints as it was written");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
});
