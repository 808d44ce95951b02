//! custodian next to the crates a user would otherwise pick, in one run (docs/PERFORMANCE.md):
//!
//! - `seal/<bytes>`, `open/<bytes>`: custodian's envelope on AWS-LC and on RustCrypto, Tink's
//!   Rust KMS envelope AEAD, and raw AWS-LC AES-256-GCM with a fresh random nonce (the floor);
//!   256 B, 4 KiB, 64 KiB and 1 MiB;
//! - `totp`: custodian's verify with a window of +-1 and totp-rs 6's `check` with skew 1, on
//!   the same secret, time and code;
//! - `rbac/shop`, `rbac/roles/<n>`: custodian's `Policy::check` and Cedar's `is_authorized` on
//!   the shop policy and on generated policies of 4, 32 and 256 roles, after checking that both
//!   decide every request of the workload alike;
//! - `subjects/*/<n>`: a seal for an uncached customer, `rotate`, and the subject-key rewrap job
//!   after a rotation, with 1,000, 10,000 and 100,000 customers in an SQLite key store.
//!
//! Run: `cd comparisons && cargo bench --bench peers` (about five minutes on two
//! cores).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use custodian::envelope;
use custodian::mfa::{Factor, FactorState, Phase, TotpKey, Verifier};
use custodian_comparisons::envelope::{AAD, RawAesGcm, context, custodian_kek, tink_envelope};
use custodian_comparisons::rbac::{self, Workload};
use custodian_comparisons::subjects::{self, Subjects};
use tink_core::Aead as _;

const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];

fn bench_envelope(c: &mut Criterion) {
    let ctx = context().unwrap();
    let on_aws_lc = custodian_kek(&custodian::crypto::awslc::PROVIDER).unwrap();
    let on_rustcrypto = custodian_kek(&custodian::crypto::rustcrypto::PROVIDER).unwrap();
    let tink = tink_envelope().unwrap();
    let raw = RawAesGcm::random().unwrap();

    for size in SIZES {
        let plaintext = vec![0x42u8; size];
        // Every construction opens what it sealed before anything is timed.
        let sealed_aws_lc = envelope::seal(&on_aws_lc, &ctx, &plaintext).unwrap();
        let sealed_rustcrypto = envelope::seal(&on_rustcrypto, &ctx, &plaintext).unwrap();
        let sealed_tink = tink.encrypt(&plaintext, AAD).unwrap();
        let sealed_raw = raw.seal(&plaintext).unwrap();
        assert_eq!(
            envelope::open(&on_aws_lc, &ctx, &sealed_aws_lc)
                .unwrap()
                .expose_secret(),
            &plaintext[..]
        );
        assert_eq!(
            envelope::open(&on_rustcrypto, &ctx, &sealed_rustcrypto)
                .unwrap()
                .expose_secret(),
            &plaintext[..]
        );
        assert_eq!(tink.decrypt(&sealed_tink, AAD).unwrap(), plaintext);
        assert_eq!(raw.open(&sealed_raw).unwrap(), plaintext);
        if size == SIZES[0] {
            println!(
                "sealed size of {size} B: custodian {} B, Tink {} B, raw {} B",
                sealed_aws_lc.len(),
                sealed_tink.len(),
                sealed_raw.len()
            );
        }

        let mut group = c.benchmark_group("seal");
        group.throughput(Throughput::Bytes(size as u64));
        few_samples_when_large(&mut group, size);
        group.bench_function(BenchmarkId::new("raw_aws_lc_aes_256_gcm", size), |b| {
            b.iter(|| raw.seal(black_box(&plaintext)).unwrap())
        });
        group.bench_function(BenchmarkId::new("custodian_aws_lc", size), |b| {
            b.iter(|| envelope::seal(&on_aws_lc, &ctx, black_box(&plaintext)).unwrap())
        });
        group.bench_function(BenchmarkId::new("custodian_rustcrypto", size), |b| {
            b.iter(|| envelope::seal(&on_rustcrypto, &ctx, black_box(&plaintext)).unwrap())
        });
        group.bench_function(BenchmarkId::new("tink_kms_envelope_aead", size), |b| {
            b.iter(|| tink.encrypt(black_box(&plaintext), AAD).unwrap())
        });
        group.finish();

        let mut group = c.benchmark_group("open");
        group.throughput(Throughput::Bytes(size as u64));
        few_samples_when_large(&mut group, size);
        group.bench_function(BenchmarkId::new("raw_aws_lc_aes_256_gcm", size), |b| {
            b.iter(|| raw.open(black_box(&sealed_raw)).unwrap())
        });
        group.bench_function(BenchmarkId::new("custodian_aws_lc", size), |b| {
            b.iter(|| envelope::open(&on_aws_lc, &ctx, black_box(&sealed_aws_lc)).unwrap())
        });
        group.bench_function(BenchmarkId::new("custodian_rustcrypto", size), |b| {
            b.iter(|| envelope::open(&on_rustcrypto, &ctx, black_box(&sealed_rustcrypto)).unwrap())
        });
        group.bench_function(BenchmarkId::new("tink_kms_envelope_aead", size), |b| {
            b.iter(|| tink.decrypt(black_box(&sealed_tink), AAD).unwrap())
        });
        group.finish();
    }
}

/// 20 samples instead of 100 from 64 KiB on: criterion times at least 1 + 2 + ... + n iterations
/// for n samples, which for Tink's 1 MiB seal would be about 20 s instead of the 3 s asked.
fn few_samples_when_large(group: &mut criterion::BenchmarkGroup<'_, WallTime>, size: usize) {
    if size >= 64 << 10 {
        group.sample_size(20);
    }
}

const TOTP_NOW: u64 = 1_700_000_000;

fn bench_totp(c: &mut Criterion) {
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
        .code_at(TOTP_NOW)
        .unwrap()
        .expose_secret()
        .to_owned();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    // Both accept the right code and refuse the wrong one before anything is timed.
    assert_eq!(theirs.check(&code, TOTP_NOW), Some(TOTP_NOW / 30));
    assert!(verifier.verify(&factor, &code, TOTP_NOW).is_ok());
    assert_eq!(theirs.check(wrong, TOTP_NOW), None);
    assert!(verifier.verify(&factor, wrong, TOTP_NOW).is_err());

    let mut group = c.benchmark_group("totp");
    for (name, code) in [("right_code", code.as_str()), ("wrong_code", wrong)] {
        group.bench_function(BenchmarkId::new("totp_rs_check_skew_1", name), |b| {
            b.iter(|| theirs.check(black_box(code), black_box(TOTP_NOW)))
        });
        group.bench_function(BenchmarkId::new("custodian_verify_window_1", name), |b| {
            b.iter(|| verifier.verify(black_box(&factor), black_box(code), black_box(TOTP_NOW)))
        });
    }
    group.finish();
}

/// Both engines, each asking the workload's requests round-robin.
fn bench_rbac_pair(c: &mut Criterion, group: &str, parameter: &str, workload: &Workload) {
    let agreement = workload.agreement().unwrap();
    println!(
        "{group}/{parameter}: custodian and Cedar ({} policies) agree on all {} requests, {} allowed",
        workload.cedar_policy_count(),
        agreement.requests,
        agreement.allowed
    );
    let requests = workload.requests();
    let mut group = c.benchmark_group(group);
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("custodian", parameter), |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(workload.custodian(black_box(&requests[i])))
        })
    });
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("cedar", parameter), |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(workload.cedar(black_box(&requests[i])))
        })
    });
    group.finish();
}

fn bench_rbac(c: &mut Criterion) {
    bench_rbac_pair(c, "rbac", "shop", &rbac::shop().unwrap());
    for roles in [4usize, 32, 256] {
        bench_rbac_pair(
            c,
            "rbac/roles",
            &roles.to_string(),
            &rbac::roles(roles).unwrap(),
        );
    }
}

fn bench_subjects(c: &mut Criterion) {
    let ctx = context().unwrap();
    let plaintext = [0x61u8; 64];
    for count in [1_000usize, 10_000, 100_000] {
        let start = Instant::now();
        let subjects = Subjects::create(count).unwrap();
        println!("subjects/{count}: store built in {:.1?}", start.elapsed());

        // First, on the new ring: a rotation's cost grows with the ring's number of versions, so
        // each store gets only a few dozen rotations (100 ms of warm-up, then 20 samples of one
        // rotation each), which keeps the versions comparable from one store to the next.
        let mut group = c.benchmark_group("subjects");
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(100));
        group.measurement_time(Duration::from_millis(1));
        let mut last = 0;
        group.bench_function(BenchmarkId::new("rotate", count), |b| {
            b.iter(|| {
                last = subjects
                    .manager
                    .rotate(subjects::RING, subjects::NOW)
                    .unwrap()
                    .new_version
            })
        });
        group.finish();
        println!("subjects/{count}: rotations took the ring from version 1 to {last}");

        let mut group = c.benchmark_group("subjects");
        group.sample_size(10);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("seal_64B_uncached_subject", count), |b| {
            b.iter(|| {
                // A different customer each time, spread over the whole store.
                next = (next + 7_919) % count;
                subjects
                    .uncached
                    .seal(
                        subjects::RING,
                        Some(&subjects.names[next]),
                        &ctx,
                        &plaintext,
                        subjects::NOW,
                    )
                    .unwrap()
            })
        });
        // The job after a rotation: every subject key rewrapped to the new version (linear, by
        // design); the rotation before each run is not timed.
        group.bench_function(BenchmarkId::new("rewrap_job_after_rotate", count), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    subjects
                        .manager
                        .rotate(subjects::RING, subjects::NOW)
                        .unwrap();
                    let start = Instant::now();
                    let rewrapped = subjects
                        .manager
                        .rewrap_subject_keys(subjects::RING, subjects::NOW)
                        .unwrap();
                    spent += start.elapsed();
                    assert_eq!(rewrapped, count as u64);
                }
                spent
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = peers;
    config = Criterion::default()
        .without_plots()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_envelope, bench_totp, bench_rbac, bench_subjects
}
criterion_main!(peers);
