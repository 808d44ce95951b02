//! `custodian subjects`: a customer's key history, and erasure with its receipt.

use crate::output::{Output, Table, time};
use crate::store::{self, StoreArgs};
use crate::{Failure, Outcome};
use custodian::audit::{Action, ErasureReceipt};
use custodian::keys::KeyManager;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SubjectsCommand {
    /// Every generation of the subject's key: created, erased, wrapped by which version.
    Status {
        /// The subject id (the customer id the application seals under).
        subject: String,
        /// The data ring.
        #[arg(long, default_value = "customers")]
        ring: String,
    },
    /// Crypto-shreds the subject (every value sealed for them stops opening) and prints the
    /// erasure receipt, which anyone verifies with `custodian audit verify-receipt`.
    Erase {
        /// The subject id.
        subject: String,
        /// The data ring.
        #[arg(long, default_value = "customers")]
        ring: String,
        /// The ring of staff MFA seeds: a staff member's key there is erased too, as
        /// `Custodian::erase_subject` does.
        #[arg(long, default_value = custodian::DEFAULT_MFA_RING)]
        mfa_ring: String,
        /// Also write the receipt (JSON) to this file.
        #[arg(long, value_name = "FILE")]
        receipt: Option<PathBuf>,
    },
}

pub(crate) fn run(args: &StoreArgs, out: &Output, command: SubjectsCommand) -> Outcome {
    let opened = store::open(args)?;
    let keys = &opened.keys;
    let now = opened.now();
    match command {
        SubjectsCommand::Status { subject, ring } => {
            keys.ring_info(&ring, now)?;
            let history = keys.subject_history(&ring, &subject)?;
            let (state, described) = match history.last() {
                None => ("none", "no key (nothing sealed for this subject yet)"),
                Some(g) if g.erased_at.is_some() => ("erased", "erased"),
                Some(_) => ("live", "live"),
            };
            if out.json {
                let generations: Vec<_> = history
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "generation": g.generation,
                            "created_at": g.created_at,
                            "erased_at": g.erased_at,
                            "wrapped_by": g.wrapped_by,
                        })
                    })
                    .collect();
                return out.json(&serde_json::json!({
                    "ring": ring,
                    "subject": subject,
                    "state": state,
                    "generations": generations,
                }));
            }
            println!("subject `{subject}` in ring `{ring}`: {described}");
            if !history.is_empty() {
                let mut table = Table::new(&["GENERATION", "CREATED", "ERASED", "WRAPPED BY"]);
                for g in &history {
                    table.row(vec![
                        g.generation.to_string(),
                        if g.created_at == 0 {
                            "-".into()
                        } else {
                            time(g.created_at)
                        },
                        g.erased_at.map_or("-".into(), time),
                        if g.wrapped_by == 0 {
                            "-".into()
                        } else {
                            format!("version {}", g.wrapped_by)
                        },
                    ]);
                }
                table.print();
            }
            Ok(())
        }
        SubjectsCommand::Erase {
            subject,
            ring,
            mfa_ring,
            receipt: receipt_file,
        } => {
            keys.ring_info(&ring, now)?;
            let erasure = keys.erase_subject_by(&ring, &subject, &args.actor, now)?;
            erase_staff_seeds(keys, &mfa_ring, &subject, &args.actor, now)?;
            let signer = keys.checkpoint_signer(&args.origin)?;
            let receipt = match erasure.audit_index {
                Some(_) => keys.erasure_receipt(&erasure, &signer, now)?,
                // Erased before: the receipt of the first erasure, found in the log.
                None => {
                    let index = erasure_index(keys, &ring, &subject)?;
                    keys.audit_log().erasure_receipt(index, &signer, now)?
                }
            };
            let text = serde_json::to_string_pretty(&receipt)
                .map_err(|e| Failure::Store(format!("cannot write the receipt: {e}")))?;
            if let Some(path) = &receipt_file {
                std::fs::write(path, format!("{text}\n")).map_err(|e| {
                    Failure::Store(format!(
                        "cannot write receipt file `{}`: {e}",
                        path.display()
                    ))
                })?;
            }
            if out.json {
                return out.json(&serde_json::json!({
                    "erasure": erasure,
                    "receipt": receipt,
                    "verifier_key": signer.verifier().verifier_key(),
                }));
            }
            let what = if erasure.newly_erased {
                "erased now"
            } else {
                "was already erased"
            };
            eprintln!(
                "subject `{subject}` {what} (ring `{ring}`, generation {}, at {}); {}",
                erasure.generation,
                time(erasure.erased_at),
                if erasure.purged {
                    "its key is gone from the database files"
                } else {
                    "its key bytes may remain in the write-ahead log until readers finish (see `custodian doctor`)"
                }
            );
            eprintln!(
                "receipt (verify with `custodian audit verify-receipt FILE --verifier-key {}`):",
                signer.verifier().verifier_key()
            );
            println!("{text}");
            Ok(())
        }
    }
}

/// Erases the subject in the MFA ring too if they have a live key there (they are staff), as
/// `Custodian::erase_subject` does; a store without that ring has no staff seeds.
fn erase_staff_seeds(
    keys: &KeyManager,
    mfa_ring: &str,
    subject: &str,
    actor: &str,
    now: u64,
) -> Outcome {
    if !keys.ring_names()?.iter().any(|name| name == mfa_ring) {
        return Ok(());
    }
    let history = keys.subject_history(mfa_ring, subject)?;
    if history.iter().any(|g| g.erased_at.is_none()) {
        keys.erase_subject_by(mfa_ring, subject, actor, now)?;
    }
    Ok(())
}

/// The index of the audit entry of the subject's latest successful erasure in `ring`.
fn erasure_index(keys: &KeyManager, ring: &str, subject: &str) -> Result<u64, Failure> {
    let log = keys.audit_log();
    let size = log.tree_size()?;
    let entries = log.entries(0..size)?;
    entries
        .iter()
        .rev()
        .find(|entry| {
            entry.event.action == Action::SubjectErased
                && entry.event.resource == ring
                && entry.event.subject.as_deref() == Some(subject)
                && entry.event.outcome == custodian::audit::Outcome::Success
        })
        .map(|entry| entry.index)
        .ok_or_else(|| {
            Failure::Store(format!(
                "subject `{subject}` is erased in `{ring}`, but the audit log has no entry of it (erased before the log existed?)"
            ))
        })
}

/// Reads a receipt file.
pub(crate) fn read_receipt(path: &std::path::Path) -> Result<ErasureReceipt, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Store(format!("cannot read receipt `{}`: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::Refused(format!(
            "`{}` is not an erasure receipt: {e}",
            path.display()
        ))
    })
}
