#![no_main]
#[path = "../bodies/rbac_policy_load.rs"]
mod body;
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
