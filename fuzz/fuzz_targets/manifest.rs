//! Fuzz target: the manifest parser (`plugin.json` as embedded in a library), the manifest block
//! reader and the resource block reader never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = airlock_abi::manifest::Manifest::from_json(text);
    }
    let _ = airlock_abi::abi::ManifestBlock::parse(data);
    let _ = airlock_abi::abi::ResourceBlock::parse(data);
});
