//! A factor and its life cycle.
//!
//! ```text
//!                begin_enrollment                confirm_enrollment (one valid code, consumed)
//!   (nothing) ───────────────────▶ Pending ───────────────────────────────────────▶ Active
//!                                     │ expires_at passes: confirmation refused         │
//!                                     ▼                                                 │ disable (fresh step-up)
//!                              (start again)                                            ▼ or admin_disable
//!                                                                                    Disabled
//!                                              begin_enrollment of the same id: a new Pending row
//! ```
//!
//! The code that confirms an enrollment becomes the factor's replay mark, so it cannot be used
//! again to log in (hanko #2723). Adding a factor next to an active one, disabling one, and
//! unlocking one need a fresh [`StepUp`]; replacing a factor is adding the new one and then
//! disabling the old one with the step-up that the new one's confirmation returned. A disabled
//! factor never logs in again; enrolling the same factor id again replaces it with a new secret.

use super::error::{MfaError, RejectReason, excerpt};
use super::otp::TotpKey;
use super::step_up::{StepUp, StepUpMethod};
use super::uri::OtpauthUri;
use super::verify::{FactorState, Phase, Rejected, Verified, Verifier};

/// Latest Unix time (seconds) that MFA state can hold: `i64::MAX`, the largest SQLite integer.
const MAX_TIME: u64 = i64::MAX as u64;

/// Longest user or factor id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A TOTP factor of one user: ids, key and the mutable [`FactorState`].
#[derive(Debug)]
pub struct Factor {
    user: String,
    id: String,
    key: TotpKey,
    state: FactorState,
}

impl Factor {
    /// Rebuilds a stored factor (for custom stores).
    pub fn from_parts(
        user: &str,
        id: &str,
        key: TotpKey,
        state: FactorState,
    ) -> Result<Self, MfaError> {
        check_id("user id", user)?;
        check_id("factor id", id)?;
        Ok(Self {
            user: user.to_owned(),
            id: id.to_owned(),
            key,
            state,
        })
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The factor id (unique per user, for example `phone`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key.
    pub fn key(&self) -> &TotpKey {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> &FactorState {
        &self.state
    }

    /// Adopts a state returned by the verifier, once it has been persisted.
    pub fn set_state(&mut self, state: FactorState) {
        self.state = state;
    }

    /// The `otpauth://` URI to show (as text or QR code) while the enrollment is pending.
    ///
    /// `issuer` is the shop's name and `account` what the user recognises (their e-mail address).
    /// Refused once the factor is active, so a confirmed secret is never shown again.
    pub fn enrollment_uri(&self, issuer: &str, account: &str) -> Result<OtpauthUri, MfaError> {
        if !matches!(self.state.phase(), Phase::Pending { .. }) {
            return Err(self.wrong_phase("pending"));
        }
        Ok(OtpauthUri::totp(
            Some(issuer),
            account,
            self.key.duplicate(),
        )?)
    }

    fn wrong_phase(&self, expected: &'static str) -> MfaError {
        MfaError::WrongPhase {
            user: excerpt(&self.user),
            factor: excerpt(&self.id),
            expected,
            actual: self.state.phase().name(),
        }
    }
}

/// Checks a user or factor id: non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
pub(crate) fn check_id(what: &'static str, id: &str) -> Result<(), MfaError> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_ID_LEN {
        "must be at most 128 bytes"
    } else if id.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(MfaError::InvalidId {
        what,
        value: excerpt(id),
        reason,
    })
}

impl Verifier {
    /// Starts an enrollment: a pending factor that expires after the enrollment TTL.
    ///
    /// A `now` whose expiry would pass `i64::MAX` is refused (`InvalidSetting` for `now`).
    ///
    /// If the user already has an active factor, first demand a fresh step-up with
    /// [`Verifier::require_step_up`] (the SQLite store does), or whoever hijacked a session
    /// could add a factor of their own.
    pub fn begin_enrollment(
        &self,
        user: &str,
        factor_id: &str,
        key: TotpKey,
        now: u64,
    ) -> Result<Factor, MfaError> {
        let ttl = self.enrollment_ttl;
        let expires_at = now
            .checked_add(ttl)
            .filter(|&t| t <= MAX_TIME)
            .ok_or_else(|| MfaError::InvalidSetting {
                setting: "now",
                reason: format!(
                    "`{now}` is beyond the supported range: the enrollment would expire {ttl} s later, \
                     after {MAX_TIME} (the largest Unix time stored); pass the current time in seconds"
                ),
            })?;
        Factor::from_parts(user, factor_id, key, FactorState::pending(expires_at))
    }

    /// Confirms a pending enrollment with the first code from the user's app. On success the
    /// factor is active and this code's step is its replay mark (the code is consumed). Failures
    /// count towards the lockout like login failures.
    pub fn confirm_enrollment(
        &self,
        factor: &Factor,
        code: &str,
        now: u64,
    ) -> Result<Verified, Rejected> {
        match factor.state().phase() {
            Phase::Pending { expires_at } if now <= expires_at => {
                self.check(factor, code, now, Phase::Active)
            }
            Phase::Pending { .. } => Err(Rejected::unchanged(
                RejectReason::EnrollmentExpired,
                factor.state(),
            )),
            Phase::Active | Phase::Disabled => {
                Err(Rejected::unchanged(RejectReason::NotActive, factor.state()))
            }
        }
    }

    /// Checks that `step_up` is a fresh verification of `user` (within the step-up max age).
    pub fn require_step_up(&self, step_up: &StepUp, user: &str, now: u64) -> Result<(), MfaError> {
        let reason = if step_up.user() != user {
            "the step-up is for another user"
        } else if !step_up.is_fresh(now, self.step_up_max_age) {
            "the last verification is too old"
        } else {
            return Ok(());
        };
        Err(MfaError::StepUpRequired {
            user: excerpt(user),
            reason,
            max_age: self.step_up_max_age,
        })
    }

    /// Disables a factor. Needs a fresh step-up of the same user; returns the state to persist.
    pub fn disable(
        &self,
        factor: &Factor,
        step_up: &StepUp,
        now: u64,
    ) -> Result<FactorState, MfaError> {
        self.require_step_up(step_up, factor.user(), now)?;
        if factor.state().phase() == Phase::Disabled {
            return Err(factor.wrong_phase("pending or active"));
        }
        Ok(factor.state().with_phase(Phase::Disabled))
    }

    /// Lifts a lock (and any throttle) after the user proved themselves with a recovery code.
    /// Returns the state to persist. A TOTP step-up does not count: the locked factor may be the
    /// only one the user has, and a lock must not be lifted by the thing being guessed.
    pub fn unlock_with_recovery(
        &self,
        factor: &Factor,
        step_up: &StepUp,
        now: u64,
    ) -> Result<FactorState, MfaError> {
        self.require_step_up(step_up, factor.user(), now)?;
        if step_up.method() != StepUpMethod::RecoveryCode {
            return Err(MfaError::StepUpRequired {
                user: excerpt(factor.user()),
                reason: "unlocking needs a recovery code, not a TOTP code",
                max_age: self.step_up_max_age,
            });
        }
        Ok(factor.state().admin_reset())
    }
}
