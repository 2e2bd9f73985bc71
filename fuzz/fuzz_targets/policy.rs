//! Fuzz target: the policy parser (TOML and JSON) never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = airlock::Policy::parse(text, airlock::policy::PolicyFormat::Toml);
        let _ = airlock::Policy::parse(text, airlock::policy::PolicyFormat::Json);
    }
});
