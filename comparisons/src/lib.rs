//! Workloads for the peer comparison benches (`benches/peers.rs`).
//!
//! Each workload is built once, the same for custodian and its peer, and the RBAC ones are checked
//! for identical decisions before anything is timed ([`rbac::Workload::agreement`]): a speed
//! comparison between engines that decide differently would say nothing.

pub mod envelope;
pub mod rbac;
pub mod subjects;

/// A small deterministic generator (SplitMix64), so every run measures the same workload.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}
