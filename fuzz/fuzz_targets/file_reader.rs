//! Fuzz target: the pre-load file reader (stage 2: structure, manifest block, manifest) never
//! panics, whatever the bytes. Seeded with real plugin libraries by scripts/fuzz.sh.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = airlock::pipeline::read_library_bytes(std::path::Path::new("fuzz.so"), data.to_vec());
});
