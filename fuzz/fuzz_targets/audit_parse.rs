#![no_main]
#[path = "../bodies/audit_parse.rs"]
mod body;
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
