//! Verification a server can trust: skew window, replay protection, throttling and lockout.
//!
//! [`Verifier::verify`] never mutates anything. It takes the factor with its current
//! [`FactorState`] and returns the state to persist, on success ([`Verified::state`]) and on
//! failure ([`Rejected::state`]) alike. Persist it with compare-and-set: write the new state only
//! if the stored one is still the state you verified against (a generation column, see
//! [`super::MfaService`] over any [`super::FactorStore`]); if the write loses, the code was not accepted. Without
//! that, two concurrent requests with the same code could both succeed.

use super::enrollment::Factor;
use super::error::{MfaError, RejectReason};
use super::otp::normalize_code;
use super::step_up::{StepUp, StepUpMethod};
use core::fmt;
use serde::Serialize;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

/// Where a factor is in its life cycle. Serializes as `{"type":"pending","expires_at":..}`,
/// `{"type":"active"}` or `{"type":"disabled"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Phase {
    /// Secret generated and shown; waiting for one valid code until `expires_at` (Unix seconds).
    Pending {
        /// Unix time after which the enrollment can no longer be confirmed.
        expires_at: u64,
    },
    /// Confirmed; usable to log in.
    Active,
    /// Turned off by the user after a step-up, or by an administrator; never accepted again. A
    /// new enrollment of the same factor id replaces it.
    Disabled,
}

impl Phase {
    /// A short lowercase name (`pending`, `active`, `disabled`), also used by the SQLite store.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending { .. } => "pending",
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// The mutable part of a factor, to be persisted atomically after every verification.
///
/// Serializes with its field names (`phase`, `last_step`, `failures`, `retry_at`, `locked`); it
/// holds no secret (the seed is in the [`Factor`], which does not serialize).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FactorState {
    phase: Phase,
    last_step: Option<u64>,
    failures: u32,
    retry_at: u64,
    locked: bool,
}

impl FactorState {
    /// The state of a new, unconfirmed enrollment.
    pub fn pending(expires_at: u64) -> Self {
        Self {
            phase: Phase::Pending { expires_at },
            last_step: None,
            failures: 0,
            retry_at: 0,
            locked: false,
        }
    }

    /// Rebuilds a stored state (for custom stores). Prefer the values this module returned.
    pub fn from_stored(
        phase: Phase,
        last_step: Option<u64>,
        failures: u32,
        retry_at: u64,
        locked: bool,
    ) -> Self {
        Self {
            phase,
            last_step,
            failures,
            retry_at,
            locked,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The last accepted time step: codes of this or earlier steps are refused as replays.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    /// Consecutive failed attempts since the last success or reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// No code is checked before this Unix time (0 when not throttled).
    pub fn retry_at(&self) -> u64 {
        self.retry_at
    }

    /// Whether the factor is locked until an administrative reset or a recovery code.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// An administrator's reset: clears failures, throttle and lock, keeps the replay mark.
    /// Record who did it in the audit log.
    pub fn admin_reset(&self) -> Self {
        Self {
            failures: 0,
            retry_at: 0,
            locked: false,
            ..*self
        }
    }

    pub(crate) fn with_phase(&self, phase: Phase) -> Self {
        Self { phase, ..*self }
    }
}

/// How many time steps around the current one are accepted, to allow for clock skew and typing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    back: u8,
    forward: u8,
}

impl Window {
    /// Most steps accepted on either side. Each step widens a guesser's odds, so keep it small.
    pub const MAX_STEPS: u8 = 10;

    /// Accepts `back` earlier and `forward` later steps (each at most [`Window::MAX_STEPS`]).
    pub fn new(back: u8, forward: u8) -> Result<Self, MfaError> {
        for (setting, steps) in [("window.back", back), ("window.forward", forward)] {
            if steps > Self::MAX_STEPS {
                return Err(MfaError::InvalidSetting {
                    setting,
                    reason: format!(
                        "at most {} steps, got `{steps}`; a wide window makes guessing easier, fix the clocks instead",
                        Self::MAX_STEPS
                    ),
                });
            }
        }
        Ok(Self { back, forward })
    }

    /// Steps accepted before the current one.
    pub fn back(&self) -> u8 {
        self.back
    }

    /// Steps accepted after the current one.
    pub fn forward(&self) -> u8 {
        self.forward
    }
}

impl Default for Window {
    /// One step either way (RFC 6238 section 5.2 recommends at most one step of delay).
    fn default() -> Self {
        Self {
            back: 1,
            forward: 1,
        }
    }
}

/// Brute-force protection: free failures, then growing delays, then a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    free_failures: u32,
    base_delay: u64,
    max_delay: u64,
    lock_after: u32,
}

impl LockoutPolicy {
    /// NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts.
    pub const MAX_LOCK_AFTER: u32 = 100;

    /// After `free_failures` consecutive failures, each further failure blocks attempts for
    /// `base_delay` seconds, doubling up to `max_delay`; the `lock_after`-th consecutive failure
    /// (at most 100) locks the factor until an administrative reset or a recovery code.
    pub fn new(
        free_failures: u32,
        base_delay: u64,
        max_delay: u64,
        lock_after: u32,
    ) -> Result<Self, MfaError> {
        let invalid = |setting, reason: String| Err(MfaError::InvalidSetting { setting, reason });
        if lock_after == 0 || lock_after > Self::MAX_LOCK_AFTER {
            return invalid(
                "lock_after",
                format!(
                    "must be from 1 to {} (NIST SP 800-63B 5.2.2), got `{lock_after}`",
                    Self::MAX_LOCK_AFTER
                ),
            );
        }
        if free_failures >= lock_after {
            return invalid(
                "free_failures",
                format!(
                    "must be below `lock_after` ({lock_after}), got `{free_failures}`, or no delay ever applies"
                ),
            );
        }
        if base_delay == 0 {
            return invalid("base_delay", "must be at least 1 second, got `0`".into());
        }
        if max_delay < base_delay {
            return invalid(
                "max_delay",
                format!("must be at least `base_delay` ({base_delay} s), got `{max_delay}`"),
            );
        }
        Ok(Self {
            free_failures,
            base_delay,
            max_delay,
            lock_after,
        })
    }

    /// Failures allowed before delays start.
    pub fn free_failures(&self) -> u32 {
        self.free_failures
    }

    /// The consecutive failure that locks the factor.
    pub fn lock_after(&self) -> u32 {
        self.lock_after
    }

    /// Seconds to wait after the `failures`-th consecutive failure.
    pub fn delay_after(&self, failures: u32) -> u64 {
        let Some(over) = failures.checked_sub(self.free_failures + 1) else {
            return 0;
        };
        let factor = 1u64.checked_shl(over).unwrap_or(u64::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

impl Default for LockoutPolicy {
    /// 3 free failures, then 30 s doubling to 15 min, lock at the 10th consecutive failure. A
    /// guesser gets 10 tries of 3 codes each: odds of 3 in 100,000 for 6 digits.
    fn default() -> Self {
        Self {
            free_failures: 3,
            base_delay: 30,
            max_delay: 15 * 60,
            lock_after: 10,
        }
    }
}

/// The MFA policy and the operations that follow it. Cheap to build; share one per application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verifier {
    pub(crate) window: Window,
    pub(crate) lockout: LockoutPolicy,
    pub(crate) enrollment_ttl: u64,
    pub(crate) step_up_max_age: u64,
}

impl Default for Verifier {
    /// Window +-1 step, [`LockoutPolicy::default`], 10 minutes to confirm an enrollment, step-up
    /// valid for 5 minutes.
    fn default() -> Self {
        Self {
            window: Window::default(),
            lockout: LockoutPolicy::default(),
            enrollment_ttl: 10 * 60,
            step_up_max_age: 5 * 60,
        }
    }
}

impl Verifier {
    /// Replaces the skew window.
    pub fn with_window(self, window: Window) -> Self {
        Self { window, ..self }
    }

    /// Replaces the lockout policy.
    pub fn with_lockout(self, lockout: LockoutPolicy) -> Self {
        Self { lockout, ..self }
    }

    /// Seconds a pending enrollment can be confirmed (at least 1).
    pub fn with_enrollment_ttl(self, seconds: u64) -> Result<Self, MfaError> {
        if seconds == 0 {
            return Err(MfaError::InvalidSetting {
                setting: "enrollment_ttl",
                reason: "must be at least 1 second, got `0`".into(),
            });
        }
        Ok(Self {
            enrollment_ttl: seconds,
            ..self
        })
    }

    /// Seconds a [`StepUp`] counts as fresh for disabling, adding, replacing or unlocking a factor.
    pub fn with_step_up_max_age(self, seconds: u64) -> Self {
        Self {
            step_up_max_age: seconds,
            ..self
        }
    }

    /// The skew window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The lockout policy.
    pub fn lockout(&self) -> LockoutPolicy {
        self.lockout
    }

    /// Checks a login code of an active factor at Unix time `now`.
    ///
    /// Accepts the first step in the window that is later than the last accepted step and whose
    /// code matches (in constant time); adjacent steps can share a code, and picking the first
    /// later one keeps a replay from sliding forward. Persist the returned state with
    /// compare-and-set in both the `Ok` and the `Err` case.
    ///
    /// A code that matches only steps at or before the replay mark is refused as
    /// [`RejectReason::Replayed`] and leaves the state unchanged: it is not a failure. An accepted
    /// step is never more than `window.forward` steps after the step of `now`, so one login moves
    /// the replay mark at most that far ahead of the accepting server's clock.
    pub fn verify(&self, factor: &Factor, code: &str, now: u64) -> Result<Verified, Rejected> {
        let state = factor.state();
        if state.phase != Phase::Active {
            return Err(Rejected::unchanged(RejectReason::NotActive, state));
        }
        self.check(factor, code, now, Phase::Active)
    }

    /// The shared core: gate on lock and throttle, then match the window, then book the result.
    pub(crate) fn check(
        &self,
        factor: &Factor,
        code: &str,
        now: u64,
        phase_after_success: Phase,
    ) -> Result<Verified, Rejected> {
        let state = factor.state();
        if state.locked {
            return Err(Rejected::unchanged(RejectReason::Locked, state));
        }
        if now < state.retry_at {
            let retry_at = state.retry_at;
            return Err(Rejected::unchanged(
                RejectReason::Throttled { retry_at },
                state,
            ));
        }
        let params = factor.key().params();
        let Some(typed) = normalize_code(code, params.digits().get()) else {
            return Err(self.failure(RejectReason::Malformed, state, now));
        };
        let Ok(keyed) = factor.key().keyed() else {
            // Cannot happen (HMAC takes keys of any length); refuse rather than panic.
            return Err(self.failure(RejectReason::WrongCode, state, now));
        };

        let current = params.step_at(now);
        let first = current.saturating_sub(u64::from(self.window.back));
        let last = current.saturating_add(u64::from(self.window.forward));
        let mut accepted_step = 0u64;
        let mut found = Choice::from(0);
        let mut replayed = Choice::from(0);
        // Every step of the window is computed and compared, match or not, so the time taken
        // does not tell which step matched.
        // Compared as numbers: the digits were checked above, so equal numbers are equal codes.
        let mut typed = typed.value();
        for step in first..=last {
            let mut candidate = keyed.value(step, params.digits());
            let matches = candidate.ct_eq(&typed);
            candidate.zeroize();
            // Public information: the step number and the stored replay mark.
            let fresh = Choice::from(u8::from(state.last_step.is_none_or(|l| step > l)));
            let take = matches & fresh & !found;
            accepted_step.conditional_assign(&step, take);
            found |= take;
            replayed |= matches & !fresh;
        }
        typed.zeroize();

        if bool::from(found) {
            let new_state = FactorState {
                phase: phase_after_success,
                last_step: Some(accepted_step),
                failures: 0,
                retry_at: 0,
                locked: false,
            };
            let step_up = StepUp::new(factor.user(), factor.id(), StepUpMethod::Totp, now);
            Ok(Verified {
                step: accepted_step,
                state: new_state,
                step_up,
            })
        } else if bool::from(replayed) {
            // The code is genuine but already spent (or its step is at or behind the replay
            // mark, as after a clock step back). Knowing a spent code gives no guessing power, so
            // it is not counted toward the throttle or the lock; the audit reason records it.
            Err(Rejected::unchanged(RejectReason::Replayed, state))
        } else {
            Err(self.failure(RejectReason::WrongCode, state, now))
        }
    }

    /// Books one failed attempt: count it, then throttle or lock.
    fn failure(&self, reason: RejectReason, state: &FactorState, now: u64) -> Rejected {
        let failures = state.failures.saturating_add(1);
        let locked = failures >= self.lockout.lock_after;
        let retry_at = if locked {
            0
        } else {
            match self.lockout.delay_after(failures) {
                0 => 0,
                delay => now.saturating_add(delay),
            }
        };
        Rejected {
            reason,
            state: FactorState {
                failures,
                retry_at,
                locked,
                ..*state
            },
        }
    }
}

/// A code was accepted. Persist [`Verified::state`] (compare-and-set) before acting on it.
///
/// Serializes as `{"step":..,"state":{..},"step_up":{..}}`; the code itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[must_use = "persist the new state, or the same code can be used again"]
pub struct Verified {
    step: u64,
    state: FactorState,
    step_up: StepUp,
}

impl Verified {
    /// The accepted time step (now the replay mark).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The state to persist.
    pub fn state(&self) -> &FactorState {
        &self.state
    }

    /// The step-up assertion for RBAC and for protected factor changes. Valid only once the new
    /// state is persisted.
    pub fn step_up(&self) -> &StepUp {
        &self.step_up
    }

    /// Splits into the state to persist and the step-up.
    pub fn into_parts(self) -> (FactorState, StepUp) {
        (self.state, self.step_up)
    }
}

/// A code was refused. Shows the caller only "code rejected, try later"; the reason is for the
/// audit log. Persist [`Rejected::state`] (compare-and-set): it counts the failure.
///
/// Serializes as `{"reason":{"type":..},"state":{..}}`, for the audit trail or a SIEM; never send
/// it to the person who typed the code.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[must_use = "persist the new state, or failures are never counted"]
pub struct Rejected {
    reason: RejectReason,
    state: FactorState,
}

impl Rejected {
    pub(crate) fn unchanged(reason: RejectReason, state: &FactorState) -> Self {
        Self {
            reason,
            state: *state,
        }
    }

    /// Why, for the audit log only.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The state to persist (the failure counted, throttle or lock applied).
    pub fn state(&self) -> &FactorState {
        &self.state
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .field("state", &self.state)
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("code rejected, try later")
    }
}

impl std::error::Error for Rejected {}

impl From<Rejected> for MfaError {
    fn from(rejected: Rejected) -> Self {
        Self::Rejected(rejected.reason)
    }
}
