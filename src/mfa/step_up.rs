//! The proof that a user just passed a second factor.
//!
//! A [`StepUp`] is made only by a successful verification (a TOTP code or a recovery code). It
//! carries who, with what, and when; the RBAC engine's "MFA within N seconds" condition consumes
//! [`StepUp::verified_at`], and the MFA layer itself asks for a fresh one before a factor is
//! disabled, replaced, added next to an active one, or unlocked.

use serde::Serialize;

/// How the user proved possession. Serializes as `"totp"` or `"recovery_code"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepUpMethod {
    /// A TOTP code of an active factor (or the code that confirmed its enrollment).
    Totp,
    /// One of the user's single-use recovery codes.
    RecoveryCode,
}

/// The factor id recorded in a [`StepUp`] made by a recovery code.
pub const RECOVERY_CODE_FACTOR: &str = "recovery-code";

/// A successful second-factor verification: user, factor, method and time.
///
/// It serializes (`{"user":..,"factor":..,"method":"totp","verified_at":..}`), to record it or
/// to keep it in a server-side session, but it does not deserialize: a step-up read back from
/// anything a client could have touched would be a verification claimed, not made. Rebuild a
/// stored one with [`StepUp::assume_verified_by_this_server`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepUp {
    user: String,
    factor: String,
    method: StepUpMethod,
    verified_at: u64,
}

impl StepUp {
    pub(crate) fn new(user: &str, factor: &str, method: StepUpMethod, verified_at: u64) -> Self {
        Self {
            user: user.to_owned(),
            factor: factor.to_owned(),
            method,
            verified_at,
        }
    }

    /// Rebuilds a step-up that this server recorded itself, for example in a server-side session
    /// after an earlier request verified a code. Never build one from anything the client sent:
    /// that would let a client claim a verification that did not happen.
    pub fn assume_verified_by_this_server(
        user: &str,
        factor: &str,
        method: StepUpMethod,
        verified_at: u64,
    ) -> Self {
        Self::new(user, factor, method, verified_at)
    }

    /// The user who verified.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The factor id, or [`RECOVERY_CODE_FACTOR`].
    pub fn factor(&self) -> &str {
        &self.factor
    }

    /// TOTP or recovery code.
    pub fn method(&self) -> StepUpMethod {
        self.method
    }

    /// Unix time (seconds) of the verification: what the RBAC "MFA within N seconds" condition takes.
    pub fn verified_at(&self) -> u64 {
        self.verified_at
    }

    /// Whether the verification happened at most `max_age` seconds before `now` (and not in the
    /// future, which would mean a clock problem).
    pub fn is_fresh(&self, now: u64, max_age: u64) -> bool {
        self.verified_at <= now && now - self.verified_at <= max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        let proof = StepUp::new("u1", "phone", StepUpMethod::Totp, 1_000);
        assert!(proof.is_fresh(1_000, 300));
        assert!(proof.is_fresh(1_300, 300));
        assert!(!proof.is_fresh(1_301, 300));
        assert!(
            !proof.is_fresh(999, 300),
            "a verification in the future is not fresh"
        );
        assert_eq!(proof.verified_at(), 1_000);
    }
}
