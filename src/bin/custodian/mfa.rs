//! `custodian mfa`: a staff member's factors, and an administrator's unlock and reset (which
//! disables every factor, so that the member enrolls again).
//!
//! The factors are read through the facade's MFA service (`Custodian::mfa`), as the application
//! reads them: seeds stay sealed in the MFA ring and every row's state MAC is checked. The
//! application's data, index and MFA rings must exist (the facade would create missing ones; these
//! commands refuse instead); name them with `--data-ring`, `--index-ring` and `--mfa-ring` if the
//! application's differ.

use crate::output::{Output, Table, time};
use crate::store::{self, Opened, StoreArgs};
use crate::{Failure, Outcome};
use custodian::Custodian;
use custodian::mfa::{MfaService, Phase};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(crate) struct RingNames {
    /// The application's data ring.
    #[arg(long, default_value = "customers")]
    data_ring: String,
    /// The application's blind-index ring.
    #[arg(long, default_value = "blind-index")]
    index_ring: String,
    /// The ring that seals staff MFA seeds.
    #[arg(long, default_value = custodian::DEFAULT_MFA_RING)]
    pub mfa_ring: String,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MfaCommand {
    /// The user's factors: phase, failures, throttle, lock; and unused recovery codes.
    Status {
        /// The staff member's user id.
        user: String,
        #[command(flatten)]
        rings: RingNames,
    },
    /// Lifts the lock of the user's locked factors (or of FACTOR), after an identity check done
    /// outside custodian. Recorded in the audit log with `--actor` as the administrator.
    Unlock {
        /// The staff member's user id.
        user: String,
        /// Only this factor.
        factor: Option<String>,
        #[command(flatten)]
        rings: RingNames,
    },
    /// Disables every factor of the user and revokes their unused recovery codes, after an
    /// identity check done outside custodian (a lost or stolen phone): the user must enroll again
    /// and be given new recovery codes. Recorded in the audit log with `--actor` as the
    /// administrator.
    Reset {
        /// The staff member's user id.
        user: String,
        #[command(flatten)]
        rings: RingNames,
    },
}

/// One factor as printed: no seed, no code.
#[derive(Debug, Serialize)]
pub(crate) struct FactorView {
    pub factor: String,
    pub phase: &'static str,
    pub locked: bool,
    pub failures: u32,
    pub retry_at: u64,
}

pub(crate) fn run(args: &StoreArgs, out: &Output, command: MfaCommand) -> Outcome {
    let opened = store::open(args)?;
    match command {
        MfaCommand::Status { user, rings } => {
            let service = service(&opened, &rings)?;
            let factors = factor_views(&service, &user)?;
            let recovery = service.recovery_codes_remaining(&user)?;
            if out.json {
                return out.json(&serde_json::json!({
                    "user": user,
                    "factors": factors,
                    "recovery_codes_remaining": recovery,
                }));
            }
            if factors.is_empty() {
                println!("user `{user}` has no MFA factor");
            } else {
                let mut table = Table::new(&["FACTOR", "PHASE", "FAILURES", "RETRY AT", "LOCKED"]);
                for f in &factors {
                    table.row(vec![
                        f.factor.clone(),
                        f.phase.into(),
                        f.failures.to_string(),
                        if f.retry_at == 0 {
                            "-".into()
                        } else {
                            time(f.retry_at)
                        },
                        if f.locked { "locked" } else { "no" }.into(),
                    ]);
                }
                table.print();
            }
            println!("{recovery} unused recovery codes");
            Ok(())
        }
        MfaCommand::Unlock {
            user,
            factor,
            rings,
        } => {
            let service = service(&opened, &rings)?;
            let factors = factor_views(&service, &user)?;
            let targets: Vec<&FactorView> = match &factor {
                Some(id) => {
                    let found = factors.iter().find(|f| &f.factor == id).ok_or_else(|| {
                        Failure::Refused(format!("user `{user}` has no factor `{id}`"))
                    })?;
                    vec![found]
                }
                None => factors.iter().filter(|f| f.locked).collect(),
            };
            let now = opened.now();
            for target in &targets {
                service.admin_reset(&args.actor, &user, &target.factor, now)?;
            }
            report(out, "unlocked", &user, &targets)
        }
        MfaCommand::Reset { user, rings } => {
            let service = service(&opened, &rings)?;
            let factors = factor_views(&service, &user)?;
            if factors.is_empty() {
                return Err(Failure::Refused(format!("user `{user}` has no MFA factor")));
            }
            let now = opened.now();
            let mut disabled = Vec::new();
            for f in &factors {
                if service.admin_disable(&args.actor, &user, &f.factor, now)? {
                    disabled.push(f.factor.as_str());
                }
            }
            let revoked = service.admin_revoke_recovery_codes(&args.actor, &user, now)?;
            if out.json {
                return out.json(&serde_json::json!({
                    "user": user,
                    "disabled": disabled,
                    "must_enroll_again": true,
                    "recovery_codes_revoked": revoked,
                }));
            }
            if disabled.is_empty() {
                println!("every factor of `{user}` was already disabled; nothing changed");
            } else {
                println!("disabled factors of `{user}`: {}", disabled.join(", "));
            }
            println!(
                "revoked {revoked} unused recovery codes of `{user}`; `{user}` must enroll again and get new recovery codes"
            );
            Ok(())
        }
    }
}

fn report(out: &Output, verb: &str, user: &str, factors: &[&FactorView]) -> Outcome {
    let names: Vec<&str> = factors.iter().map(|f| f.factor.as_str()).collect();
    if out.json {
        return out.json(&serde_json::json!({ "user": user, verb: names }));
    }
    if names.is_empty() {
        println!("user `{user}` has no locked factor; nothing changed");
    } else {
        println!("{verb} factors of `{user}`: {}", names.join(", "));
    }
    Ok(())
}

/// The facade's MFA service over the store's factor tables.
///
/// The facade creates missing rings; an operator's command must not, so a store without them is
/// refused instead (no staff member has enrolled, or the names differ from the application's).
pub(crate) fn service(opened: &Opened, rings: &RingNames) -> Result<MfaService, Failure> {
    let existing = opened.keys.ring_names()?;
    for (ring, option) in [
        (&rings.data_ring, "--data-ring"),
        (&rings.index_ring, "--index-ring"),
        (&rings.mfa_ring, "--mfa-ring"),
    ] {
        if !existing.contains(ring) {
            return Err(Failure::Refused(format!(
                "the store has no ring `{ring}`: no staff member has enrolled yet, or the application names it otherwise (`{option}`)"
            )));
        }
    }
    let custodian = Custodian::builder()
        .with_store(Arc::clone(&opened.store))
        .root_key(SharedRoot(Arc::clone(&opened.root)))
        .rings(rings.data_ring.clone(), rings.index_ring.clone())
        .mfa_ring(rings.mfa_ring.clone())
        .build()?;
    Ok(custodian.mfa_with_store(opened.factor_store()?)?)
}

/// The user's factors with their states, each row's state MAC checked.
pub(crate) fn factor_views(service: &MfaService, user: &str) -> Result<Vec<FactorView>, Failure> {
    let mut views = Vec::new();
    for (factor, phase) in service.factors(user)? {
        let stored = service.load(user, &factor)?;
        let state = stored.factor.state();
        views.push(FactorView {
            factor,
            phase: match phase {
                Phase::Pending { .. } => "pending",
                Phase::Active => "active",
                Phase::Disabled => "disabled",
            },
            locked: state.is_locked(),
            failures: state.failures(),
            retry_at: state.retry_at(),
        });
    }
    Ok(views)
}

/// The opened root key, shared with the facade.
#[derive(Debug)]
struct SharedRoot(Arc<dyn custodian::keys::RootKeyProvider>);

impl custodian::keys::RootKeyProvider for SharedRoot {
    fn wrap(
        &self,
        aad: &[u8],
        key: &custodian::SecretKey,
    ) -> Result<Vec<u8>, custodian::keys::KeyError> {
        self.0.wrap(aad, key)
    }

    fn unwrap(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<custodian::SecretKey, custodian::keys::KeyError> {
        self.0.unwrap(aad, blob)
    }
}
