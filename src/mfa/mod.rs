//! TOTP multi-factor authentication that does the dangerous parts too.
//!
//! Generating and checking a code is the easy part. This module also remembers which code was used
//! (replay protection), counts failures (throttling, then a lock at no more than 100), confirms an
//! enrollment with one code before the factor counts, issues single-use recovery codes stored as
//! salted hashes, keeps the seed sealed at rest bound to its user and factor, and hands RBAC a
//! [`StepUp`] saying who verified when.
//!
//! - [`otp`]: HOTP (RFC 4226) and TOTP (RFC 6238), SHA-1/256/512, 6-8 digits, 64-bit time;
//! - [`secret`]: seeds from the CSPRNG (160 bits) and their base32 form;
//! - [`uri`]: `otpauth://` URIs; [`qr`]: their QR codes (feature `qr`);
//! - [`verify`]: the [`Verifier`] with skew window, replay mark, throttling and lockout;
//! - [`enrollment`]: a [`Factor`] and its pending -> active -> disabled life cycle;
//! - [`recovery`]: recovery codes; [`step_up`]: the proof of a fresh verification;
//! - [`sealed_seed`]: the seed at rest, sealed with the envelope layer and bound to user and factor;
//! - [`store`]: the [`FactorStore`] contract; [`MemoryFactorStore`], `SqliteFactorStore` (feature
//!   `sqlite`) and `PgFactorStore` (feature `postgres`) keep factors and recovery codes;
//! - [`MfaService`]: enrollment, login, step-up and recovery over any store, every outcome persisted
//!   with compare-and-set, seeds sealed.
//!
//! Every function where time matters takes `now`, Unix seconds. `docs/MFA.md` explains safe use,
//! the state machine, persistence and the storage formats.
//!
//! # Example
//!
//! ```
//! use custodian::mfa::{TotpKey, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::default();
//! let now = 1_700_000_000;
//!
//! // Enrollment: generate a key, show the URI (or its QR code), confirm one code.
//! let mut factor = verifier.begin_enrollment("user-42", "phone", TotpKey::generate()?, now)?;
//! let uri = factor.enrollment_uri("ACME Shop", "jane@example.com")?;
//! assert!(uri.to_uri().expose_secret().starts_with("otpauth://totp/ACME%20Shop:jane%40example.com?secret="));
//! let typed = factor.key().code_at(now)?; // what the user's app shows
//! let confirmed = verifier.confirm_enrollment(&factor, typed.expose_secret(), now)?;
//! factor.set_state(*confirmed.state()); // persist with compare-and-set in real code
//!
//! // The confirmation code is consumed: it cannot log in.
//! let replay = verifier.verify(&factor, typed.expose_secret(), now + 5).unwrap_err();
//! assert_eq!(replay.to_string(), "code rejected, try later");
//! factor.set_state(*replay.state()); // failures are persisted too
//!
//! // Thirty seconds later the next code logs in, and yields a step-up for RBAC.
//! let later = now + 30;
//! let login = verifier.verify(&factor, factor.key().code_at(later)?.expose_secret(), later)?;
//! assert_eq!(login.step_up().verified_at(), later);
//! # Ok(())
//! # }
//! ```

pub mod enrollment;
mod error;
mod memory;
pub mod otp;
#[cfg(feature = "qr")]
pub mod qr;
pub mod recovery;
mod ring_seeds;
pub mod sealed_seed;
pub mod secret;
mod service;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state_mac;
pub mod step_up;
pub mod store;
pub mod uri;
pub mod verify;

#[cfg(feature = "postgres")]
pub use crate::postgres::PgFactorStore;
pub use enrollment::Factor;
pub use error::{MfaError, RejectReason, SecretError, UriError};
pub use memory::MemoryFactorStore;
pub use otp::{Algorithm, Digits, OtpCode, TotpKey, TotpParams, hotp};
#[cfg(feature = "qr")]
pub use qr::{EnrollmentQr, TerminalBackground};
pub use recovery::{RecoveryCode, RecoveryCodeHash, RecoveryCodeSet};
pub use secret::{OtpSecret, SecretText};
pub use service::{MfaService, StoredFactor};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteFactorStore;
pub use step_up::{StepUp, StepUpMethod};
pub use store::{ConsumeOutcome, FactorRecord, FactorStore, StateWrite};
pub use uri::{OtpKind, OtpauthUri};
pub use verify::{FactorState, LockoutPolicy, Phase, Rejected, Verified, Verifier, Window};

/// Compiles and runs the examples of `docs/MFA.md` as doc tests.
#[doc = include_str!("../../docs/MFA.md")]
#[cfg(doctest)]
pub struct MfaGuideDoctests;
