#![no_main]
#[path = "../bodies/otpauth_uri.rs"]
mod body;
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
