#![no_main]
#[path = "../bodies/base32_secret.rs"]
mod body;
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
