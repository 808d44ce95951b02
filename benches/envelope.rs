//! Envelope seal/open next to the raw AEAD of the same suite with a pre-built key, in one run.
//!
//! Targets (issue 2): 1 MiB seal at >= 95% of raw AES-256-GCM throughput; 256 B seal and open
//! (fresh DEK, wrap, seal) at a median <= 1.0 us.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use custodian::SecretKey;
use custodian::crypto::{Suite, default_provider, fill_random};
use custodian::envelope::{self, EncryptionContext, KeyId, StaticKek};
use std::hint::black_box;

const SIZES: [usize; 3] = [256, 4096, 1 << 20];

fn context() -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .and_then(|c| c.with("record", "123456"))
        .and_then(|c| c.with("field", "address"))
        .unwrap()
}

fn bench_suite(c: &mut Criterion, suite: Suite, sizes: &[usize]) {
    let algorithm = default_provider().aead(suite);
    let kek = StaticKek::with_algorithm(
        KeyId::new("customers", 1).unwrap(),
        &SecretKey::try_random().unwrap(),
        algorithm,
    );
    let raw_key = algorithm.key(&SecretKey::try_random().unwrap());
    let ctx = context();
    let mut group = c.benchmark_group(format!("envelope/{}", suite.name()));
    for &size in sizes {
        let plaintext = vec![0x42u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("raw_aead_seal", size),
            &plaintext,
            |b, pt| {
                let mut nonce = vec![0u8; suite.nonce_len()];
                b.iter(|| {
                    fill_random(&mut nonce).unwrap();
                    let mut out = Vec::with_capacity(pt.len() + 16);
                    out.extend_from_slice(pt);
                    let tag = raw_key.seal_in_place(&nonce, b"", &mut out).unwrap();
                    out.extend_from_slice(&tag);
                    black_box(out)
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("seal", size), &plaintext, |b, pt| {
            b.iter(|| envelope::seal(&kek, &ctx, black_box(pt)).unwrap())
        });
        let sealed = envelope::seal(&kek, &ctx, &plaintext).unwrap();
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, ct| {
            b.iter(|| envelope::open(&kek, &ctx, black_box(ct)).unwrap())
        });
    }
    group.finish();
}

/// 256 B AES-256-GCM seal and open through each compiled-in backend, for the provider comparison
/// in the README (the randomness source is the same for both).
fn bench_providers(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope/provider");
    let ctx = context();
    let plaintext = vec![0x42u8; 256];
    let providers = [
        #[cfg(feature = "aws-lc")]
        &custodian::crypto::awslc::PROVIDER,
        &custodian::crypto::rustcrypto::PROVIDER,
    ];
    for provider in providers {
        let kek = StaticKek::with_algorithm(
            KeyId::new("customers", 1).unwrap(),
            &SecretKey::try_random().unwrap(),
            provider.aead(Suite::Aes256Gcm),
        );
        group.bench_function(BenchmarkId::new("seal_256", provider.name), |b| {
            b.iter(|| envelope::seal(&kek, &ctx, black_box(&plaintext)).unwrap())
        });
        let sealed = envelope::seal(&kek, &ctx, &plaintext).unwrap();
        group.bench_function(BenchmarkId::new("open_256", provider.name), |b| {
            b.iter(|| envelope::open(&kek, &ctx, black_box(&sealed)).unwrap())
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_providers(c);
    bench_suite(c, Suite::Aes256Gcm, &SIZES);
    bench_suite(c, Suite::ChaCha20Poly1305, &SIZES[..2]);
    bench_suite(c, Suite::XChaCha20Poly1305, &SIZES[..2]);
}

criterion_group! {
    name = envelope_benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(envelope_benches);
