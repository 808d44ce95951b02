//! The state MAC: HMAC-SHA256 over a factor row's lifecycle columns, bound to its user, factor id
//! and sealed seed, so that an edited, copied or re-keyed row is refused instead of honoured.
//!
//! Computed and checked only by [`super::MfaService`]; stores keep the 32 bytes in a `state_mac`
//! column and decide nothing. The input is specified byte by byte in docs/MFA.md ("State MAC").

use super::verify::{FactorState, Phase};
use crate::secret::SecretKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of a state MAC in bytes.
pub(crate) const STATE_MAC_LEN: usize = 32;

/// The label that starts every MAC input; a new encoding gets a new label.
const LABEL: &[u8] = b"custodian/v1/mfa-state-mac";

/// Phase codes of the MAC input.
fn phase_code(phase: Phase) -> (u8, Option<u64>) {
    match phase {
        Phase::Pending { expires_at } => (1, Some(expires_at)),
        Phase::Active => (2, None),
        Phase::Disabled => (3, None),
    }
}

/// Appends `be16(len) || bytes`, or `be32(len) || bytes` when `wide`. Ids are at most 128 bytes and
/// sealed seeds a few hundred, so the lengths always fit; a longer value saturates and then
/// cannot collide with a valid encoding of the same length prefix and different bytes anyway,
/// because the HMAC covers every byte.
fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8], wide: bool) {
    if wide {
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    } else {
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// `0x00` for `None`, `0x01 || be64(v)` for `Some(v)`.
fn push_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// The exact bytes that are MAC'd (docs/MFA.md, "State MAC").
pub(crate) fn mac_input(
    user: &str,
    factor: &str,
    sealed_seed: &[u8],
    state: &FactorState,
    generation: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + user.len() + factor.len() + sealed_seed.len());
    push_len_prefixed(&mut out, LABEL, false);
    push_len_prefixed(&mut out, user.as_bytes(), false);
    push_len_prefixed(&mut out, factor.as_bytes(), false);
    push_len_prefixed(&mut out, sealed_seed, true);
    let (phase, expires_at) = phase_code(state.phase());
    out.push(phase);
    push_opt_u64(&mut out, expires_at);
    push_opt_u64(&mut out, state.last_step());
    out.extend_from_slice(&state.failures().to_be_bytes());
    out.extend_from_slice(&state.retry_at().to_be_bytes());
    out.push(u8::from(state.is_locked()));
    out.extend_from_slice(&generation.to_be_bytes());
    out
}

/// `HMAC-SHA256(key, mac_input(..))`.
pub(crate) fn compute(
    key: &SecretKey,
    user: &str,
    factor: &str,
    sealed_seed: &[u8],
    state: &FactorState,
    generation: u64,
) -> [u8; STATE_MAC_LEN] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm is unreachable.
        Err(_) => return [0u8; STATE_MAC_LEN],
    };
    mac.update(&mac_input(user, factor, sealed_seed, state, generation));
    mac.finalize().into_bytes().into()
}

/// Whether `stored` is the MAC of this row, compared in constant time.
pub(crate) fn matches(
    key: &SecretKey,
    user: &str,
    factor: &str,
    sealed_seed: &[u8],
    state: &FactorState,
    generation: u64,
    stored: &[u8],
) -> bool {
    let expected = compute(key, user, factor, sealed_seed, state, generation);
    stored.len() == STATE_MAC_LEN && bool::from(expected.as_slice().ct_eq(stored))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The worked example of docs/MFA.md; the expected MAC was computed independently with
    /// Python's `hmac` module from the byte string written out in the docs.
    #[test]
    fn worked_example() {
        let key = SecretKey::from_bytes([0x0b; 32]);
        let state = FactorState::from_stored(Phase::Active, Some(56_666_666), 2, 0, false);
        let input = mac_input("u1", "phone", &[0xaa, 0xbb], &state, 7);
        assert_eq!(
            hex(&input),
            "001a637573746f6469616e2f76312f6d66612d73746174652d6d6163\
             00027531\
             000570686f6e65\
             00000002aabb\
             02\
             00\
             01000000000360aa2a\
             00000002\
             0000000000000000\
             00\
             0000000000000007"
        );
        assert_eq!(
            hex(&compute(&key, "u1", "phone", &[0xaa, 0xbb], &state, 7)),
            EXPECTED_MAC
        );
    }

    /// docs/MFA.md shows the same message and MAC.
    #[test]
    fn the_docs_show_the_worked_example() {
        let docs = include_str!("../../docs/MFA.md");
        for line in [
            "message = 001a 637573746f6469616e2f76312f6d66612d73746174652d6d6163",
            "          0002 7531  0005 70686f6e65  00000002 aabb",
            "          02  00  01 000000000360aa2a  00000002  0000000000000000  00  0000000000000007",
        ] {
            assert!(docs.contains(line), "{line}");
        }
        assert!(docs.contains(&format!("mac     = {EXPECTED_MAC}")));
    }

    const EXPECTED_MAC: &str = "040625a147cb73bd47689b832afc3dc318bb6091ecef522741ca5a0aba6d8ea7";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn every_field_is_bound() {
        let key = SecretKey::from_bytes([7; 32]);
        let base = FactorState::from_stored(Phase::Active, Some(10), 1, 5, false);
        let mac = compute(&key, "u", "f", b"seed", &base, 3);
        assert!(matches(&key, "u", "f", b"seed", &base, 3, &mac));
        let variants = [
            FactorState::from_stored(Phase::Disabled, Some(10), 1, 5, false),
            FactorState::from_stored(Phase::Pending { expires_at: 9 }, Some(10), 1, 5, false),
            FactorState::from_stored(Phase::Active, Some(11), 1, 5, false),
            FactorState::from_stored(Phase::Active, None, 1, 5, false),
            FactorState::from_stored(Phase::Active, Some(10), 0, 5, false),
            FactorState::from_stored(Phase::Active, Some(10), 1, 0, false),
            FactorState::from_stored(Phase::Active, Some(10), 1, 5, true),
        ];
        for state in variants {
            assert!(
                !matches(&key, "u", "f", b"seed", &state, 3, &mac),
                "{state:?}"
            );
        }
        assert!(!matches(&key, "u", "f", b"seed", &base, 4, &mac));
        assert!(!matches(&key, "v", "f", b"seed", &base, 3, &mac));
        assert!(!matches(&key, "u", "g", b"seed", &base, 3, &mac));
        assert!(!matches(&key, "u", "f", b"seed2", &base, 3, &mac));
        assert!(!matches(
            &SecretKey::from_bytes([8; 32]),
            "u",
            "f",
            b"seed",
            &base,
            3,
            &mac
        ));
        assert!(!matches(&key, "u", "f", b"seed", &base, 3, &mac[..31]));
        assert!(!matches(&key, "u", "f", b"seed", &base, 3, &[]));
    }
}
