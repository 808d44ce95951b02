//! MFA hot paths (issue 6): verifying a code with window +-1 (target median <= 1.5 us) and checking
//! a recovery code against a full set of 10 salted hashes. For scale, one bare HOTP computation
//! (keying the HMAC included) is measured in the same run.
//!
//! Issue 15: group `totp_vs_totp_rs` runs totp-rs 6.0's `check` with skew 1 next to custodian's
//! verify (window +-1) on the same secret, time and code; target: custodian <= 0.6x totp-rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use custodian::mfa::{
    Algorithm, Digits, Factor, FactorState, Phase, RecoveryCodeSet, TotpKey, Verifier, hotp,
};
use std::hint::black_box;

const NOW: u64 = 1_700_000_000;

fn bench_verify(c: &mut Criterion) {
    let verifier = Verifier::default();
    let state = FactorState::from_stored(Phase::Active, None, 0, 0, false);
    let factor =
        Factor::from_parts("user-1", "phone", TotpKey::generate().unwrap(), state).unwrap();
    let right = factor.key().code_at(NOW).unwrap();
    let right = right.expose_secret().to_owned();
    // A wrong code with the right shape: every step of the window is computed either way.
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };

    let mut group = c.benchmark_group("mfa_verify_window_1");
    group.bench_function("accepted", |b| {
        b.iter(|| verifier.verify(black_box(&factor), black_box(&right), black_box(NOW)))
    });
    group.bench_function("rejected", |b| {
        b.iter(|| verifier.verify(black_box(&factor), black_box(wrong), black_box(NOW)))
    });
    group.finish();

    let secret = factor.key().secret().expose_secret().to_vec();
    c.bench_function("hotp_sha1_single", |b| {
        b.iter(|| {
            hotp(
                black_box(&secret),
                black_box(NOW / 30),
                Algorithm::Sha1,
                Digits::SIX,
            )
        })
    });
}

fn bench_recovery(c: &mut Criterion) {
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    let last = codes[9].expose_secret().to_owned();
    let mut group = c.benchmark_group("mfa_recovery_code_check_10");
    group.bench_function("match", |b| b.iter(|| set.find(black_box(&last))));
    group.bench_function("no_match", |b| {
        b.iter(|| set.find(black_box("0000-0000-0000-0000")))
    });
    group.finish();
}

/// The same secret, time and code through totp-rs and custodian. totp-rs stops at the first
/// matching step (for a code of the current step: the previous step, then the current one) and
/// keys the HMAC again for every step; custodian keys it once and computes all three steps.
fn bench_against_totp_rs(c: &mut Criterion) {
    let verifier = Verifier::default();
    let state = FactorState::from_stored(Phase::Active, None, 0, 0, false);
    let factor =
        Factor::from_parts("user-1", "phone", TotpKey::generate().unwrap(), state).unwrap();
    // A generated key is 160 bits, the size totp-rs takes without its `alloc` feature.
    let secret: [u8; 20] = factor.key().secret().expose_secret().try_into().unwrap();
    let theirs = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .build()
        .unwrap();
    let code = factor
        .key()
        .code_at(NOW)
        .unwrap()
        .expose_secret()
        .to_owned();
    // Both agree on the code before anything is timed.
    assert_eq!(theirs.check(&code, NOW), Some(NOW / 30));
    assert!(verifier.verify(&factor, &code, NOW).is_ok());

    let mut group = c.benchmark_group("totp_vs_totp_rs");
    group.bench_function("totp_rs_check_skew_1", |b| {
        b.iter(|| theirs.check(black_box(&code), black_box(NOW)))
    });
    group.bench_function("custodian_verify_window_1", |b| {
        b.iter(|| verifier.verify(black_box(&factor), black_box(&code), black_box(NOW)))
    });
    // A wrong code: totp-rs computes all three steps too (twelve compressions), custodian eight.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    group.bench_function("totp_rs_check_skew_1_wrong_code", |b| {
        b.iter(|| theirs.check(black_box(wrong), black_box(NOW)))
    });
    group.bench_function("custodian_verify_window_1_wrong_code", |b| {
        b.iter(|| verifier.verify(black_box(&factor), black_box(wrong), black_box(NOW)))
    });
    // The floor of both: a verify that keys the HMAC (two blocks) and computes three steps (two
    // blocks each) runs the SHA-1 compression function eight times; so does totp-rs's `check`
    // for a code of the current step (two steps, each keying the HMAC again).
    group.bench_function("sha1_compress_x8", |b| {
        let block = [0x36u8; 64];
        b.iter(|| {
            let mut state = black_box([0u32; 5]);
            for _ in 0..8 {
                sha1::block_api::compress(&mut state, std::slice::from_ref(black_box(&block)));
            }
            state
        })
    });
    group.finish();
}

criterion_group!(benches, bench_against_totp_rs, bench_verify, bench_recovery);
criterion_main!(benches);
