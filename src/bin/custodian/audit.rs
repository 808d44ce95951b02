//! `custodian audit`: read, verify and prove the audit log kept in the key store.

use crate::output::{Output, Table, time};
use crate::store::{self, StoreArgs};
use crate::{Failure, Outcome};
use custodian::audit::{
    AuditEntry, Checkpoint, CheckpointVerifier, SignedCheckpoint, verify_receipt,
};
use custodian::keys::KeyManager;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// The newest entries (ids, names and digests only: the log holds no customer data).
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
    },
    /// Checks every entry against its stored hash and the tree, and against a checkpoint kept
    /// outside the store if one is given (which is what exposes a rolled-back database).
    Verify {
        /// A checkpoint saved earlier by `custodian audit checkpoint --out`.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Signs a checkpoint of the log as it is now. Keep it outside the database.
    Checkpoint {
        /// Also write the checkpoint text to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// An inclusion proof of entry INDEX in the log as it is now, with a fresh checkpoint; or,
    /// with `--from`, a consistency proof from an older checkpoint's size.
    Prove {
        /// The entry's index.
        #[arg(required_unless_present = "from")]
        index: Option<u64>,
        /// The older tree size for a consistency proof.
        #[arg(long, value_name = "SIZE", conflicts_with = "index")]
        from: Option<u64>,
    },
    /// Verifies an erasure receipt with the log's public key alone (no store needed with
    /// `--verifier-key`; otherwise the store's own key is used).
    VerifyReceipt {
        /// The receipt (JSON, as `custodian subjects erase` prints it).
        file: PathBuf,
        /// The log's published verifier key (`<origin>+<key id>+<base64 key>`).
        #[arg(long, value_name = "KEY")]
        verifier_key: Option<String>,
    },
}

pub(crate) fn run(args: &StoreArgs, out: &Output, command: AuditCommand) -> Outcome {
    if let AuditCommand::VerifyReceipt {
        file,
        verifier_key: Some(key),
    } = &command
    {
        let verifier = CheckpointVerifier::from_verifier_key(key)
            .map_err(|e| Failure::Usage(format!("--verifier-key: {e}")))?;
        return verify_receipt_file(out, file, &verifier);
    }
    let opened = store::open(args)?;
    let keys = &opened.keys;
    let now = opened.now();
    let log = keys.audit_log();
    match command {
        AuditCommand::Tail { lines } => {
            let size = log.tree_size()?;
            let entries = log.entries(size.saturating_sub(lines)..size)?;
            if out.json {
                return out.json(&entries);
            }
            print_entries(&entries);
            Ok(())
        }
        AuditCommand::Verify { checkpoint } => {
            let signer = keys.checkpoint_signer(&args.origin)?;
            let (checked, trusted) = match &checkpoint {
                Some(path) => (read_checkpoint(path, &signer.verifier(), now)?, true),
                None => {
                    let signed = log.checkpoint(&signer, now)?;
                    (signer.verifier().verify(&signed, now)?, false)
                }
            };
            let unsigned = log
                .verify_store(&checked)
                .map_err(|e| Failure::Refused(format!("the audit log does not verify: {e}")))?;
            if out.json {
                return out.json(&serde_json::json!({
                    "verified": true,
                    "tree_size": checked.tree_size(),
                    "unsigned_entries": unsigned,
                    "against_kept_checkpoint": trusted,
                    "checkpoint_time": checked.timestamp(),
                }));
            }
            if trusted {
                println!(
                    "ok: the log extends the checkpoint of {} ({} entries); {unsigned} entries since",
                    time(checked.timestamp()),
                    checked.tree_size()
                );
            } else {
                println!(
                    "ok: {} entries match their stored hashes and the tree (no kept checkpoint given: a rollback of the whole database is caught only with `--checkpoint FILE`)",
                    checked.tree_size()
                );
            }
            Ok(())
        }
        AuditCommand::Checkpoint { out: file } => {
            let signer = keys.checkpoint_signer(&args.origin)?;
            let signed = log.checkpoint(&signer, now)?;
            if let Some(path) = &file {
                std::fs::write(path, signed.as_str()).map_err(|e| {
                    Failure::Store(format!("cannot write checkpoint `{}`: {e}", path.display()))
                })?;
            }
            if out.json {
                return out.json(&serde_json::json!({
                    "checkpoint": signed,
                    "verifier_key": signer.verifier().verifier_key(),
                }));
            }
            print!("{signed}");
            eprintln!(
                "verifier key (publish it for auditors): {}",
                signer.verifier().verifier_key()
            );
            Ok(())
        }
        AuditCommand::Prove { index, from } => {
            let signer = keys.checkpoint_signer(&args.origin)?;
            let size = log.tree_size()?;
            let signed = log.checkpoint(&signer, now)?;
            let checkpoint = signer.verifier().verify(&signed, now)?;
            let size = checkpoint.tree_size().min(size);
            let value = match (index, from) {
                (Some(index), _) => {
                    if index >= size {
                        return Err(Failure::Refused(format!(
                            "no entry {index}: the log has {size} entries"
                        )));
                    }
                    let entry = log
                        .entries(index..index.saturating_add(1))?
                        .pop()
                        .ok_or_else(|| {
                            Failure::Refused(format!(
                                "no entry {index}: the log has {size} entries"
                            ))
                        })?;
                    serde_json::json!({
                        "entry": entry,
                        "proof": log.inclusion_proof(index, size)?,
                        "checkpoint": signed,
                    })
                }
                (None, Some(old)) if old > size => {
                    return Err(Failure::Refused(format!(
                        "`--from {old}` is larger than the log, which has {size} entries"
                    )));
                }
                (None, Some(old)) => serde_json::json!({
                    "proof": log.consistency_proof(old, size)?,
                    "checkpoint": signed,
                }),
                (None, None) => {
                    return Err(Failure::Usage("give an INDEX or `--from SIZE`".into()));
                }
            };
            // A proof is data for another program: JSON in both modes.
            out.json(&value)
        }
        AuditCommand::VerifyReceipt { file, .. } => {
            let signer = keys.checkpoint_signer(&args.origin)?;
            verify_receipt_file(out, &file, &signer.verifier())
        }
    }
}

fn verify_receipt_file(out: &Output, file: &Path, verifier: &CheckpointVerifier) -> Outcome {
    let receipt = crate::subjects::read_receipt(file)?;
    let now = store::now();
    let checkpoint = verify_receipt(&receipt, verifier, now)
        .map_err(|e| Failure::Refused(format!("the receipt does not verify: {e}")))?;
    let event = &receipt.entry.event;
    if out.json {
        return out.json(&serde_json::json!({
            "verified": true,
            "subject": event.subject,
            "ring": event.resource,
            "erased_at": event.time,
            "actor": event.actor,
            "entry": receipt.entry.index,
            "tree_size": checkpoint.tree_size(),
            "checkpoint_time": checkpoint.timestamp(),
        }));
    }
    println!(
        "ok: subject `{}` was erased from ring `{}` at {} by `{}` (entry {} of a log of {} entries signed at {})",
        event.subject.as_deref().unwrap_or_default(),
        event.resource,
        time(event.time),
        event.actor,
        receipt.entry.index,
        checkpoint.tree_size(),
        time(checkpoint.timestamp())
    );
    Ok(())
}

/// Reads a kept checkpoint and checks its signature with the store's key.
pub(crate) fn read_checkpoint(
    path: &Path,
    verifier: &CheckpointVerifier,
    now: u64,
) -> Result<Checkpoint, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Store(format!("cannot read checkpoint `{}`: {e}", path.display())))?;
    verifier
        .verify(&SignedCheckpoint::from_text(text), now)
        .map_err(|e| {
            Failure::Refused(format!(
                "checkpoint `{}` does not verify with this store's key: {e}",
                path.display()
            ))
        })
}

fn print_entries(entries: &[AuditEntry]) {
    let mut table = Table::new(&[
        "INDEX", "TIME", "ACTOR", "ACTION", "RESOURCE", "SUBJECT", "OUTCOME",
    ]);
    for entry in entries {
        let e = &entry.event;
        table.row(vec![
            entry.index.to_string(),
            time(e.time),
            e.actor.clone(),
            e.action.name().to_owned(),
            e.resource.clone(),
            e.subject.clone().unwrap_or_else(|| "-".into()),
            format!("{:?}", e.outcome).to_lowercase(),
        ]);
    }
    table.print();
}

/// The verifier of the store's checkpoints.
pub(crate) fn verifier(keys: &KeyManager, origin: &str) -> Result<CheckpointVerifier, Failure> {
    Ok(keys.checkpoint_signer(origin)?.verifier())
}
