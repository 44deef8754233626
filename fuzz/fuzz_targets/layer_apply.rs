//! Fuzzes layer application with arbitrary (often hostile) tar streams: the apply must
//! return a report or an error, never panic, and never write outside its target
//! directory (checked by applying inside a directory whose sibling must stay empty).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::Builder::new()
        .prefix("longshore-fuzz-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("layer");
    let sibling = dir.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&sibling).unwrap();
    let opts = longshore_graph::ApplyOptions::new().same_owner(false);
    let _ = longshore_graph::apply_layer(data, &root, &opts);
    assert!(
        std::fs::read_dir(&sibling).unwrap().next().is_none(),
        "a layer wrote outside its root"
    );
});
