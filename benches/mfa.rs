//! MFA hot paths (issue 6): verifying a code with window +-1 (target median <= 1.5 us) and checking
//! a recovery code against a full set of 10 salted hashes. For scale, one bare HOTP computation
//! (keying the HMAC included) is measured in the same run.
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

criterion_group!(benches, bench_verify, bench_recovery);
criterion_main!(benches);
