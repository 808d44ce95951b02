//! `custodian`: the operator's command for a custodian key store.
//!
//! It is built on the library's public API only, like any application: it opens the store named by
//! `--store` (an SQLite file, or a `postgres://` URL with the `postgres` feature) with the root key
//! read the ways the library reads it (a key file, or the `CUSTODIAN_ROOT_KEY` variable), then runs
//! one command. Output is a table for people, or JSON with `--json`; nothing secret is printed.
//!
//! Exit codes: 0 success; 1 the operation was refused, a check failed (`doctor`, `policy test`,
//! `audit verify`, ...); 2 usage error; 3 the store or the root key could not be used.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod audit;
mod doctor;
mod keys;
mod mfa;
mod output;
mod policy;
mod store;
mod subjects;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Operate a custodian key store: keys, erasures, policies, MFA, the audit log, and a security
/// self-check.
#[derive(Debug, Parser)]
#[command(name = "custodian", version)]
#[command(after_help = "Exit codes: 0 success; 1 refused, or a check failed; \
    2 usage error; 3 store or root-key error.")]
pub(crate) struct Cli {
    #[command(flatten)]
    global: store::StoreArgs,

    /// Print JSON instead of tables (one document per command).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Key rings: versions, states, usage, rotation.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Customers' keys: history and erasure (with a receipt).
    #[command(subcommand)]
    Subjects(subjects::SubjectsCommand),
    /// Access policies: check, test, explain a decision (no store needed).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Staff MFA factors: status, unlock, reset.
    #[command(subcommand)]
    Mfa(mfa::MfaCommand),
    /// The tamper-evident audit log: entries, verification, checkpoints, proofs, receipts.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// A security self-check for cron or CI: each check passes, warns or fails, with the fix.
    Doctor(doctor::DoctorArgs),
}

/// What a command failed with, and so the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The operation was refused or a check failed (exit 1). The message may be empty when the
    /// command already printed why.
    Refused(String),
    /// The command line was wrong in a way clap cannot see (exit 2).
    Usage(String),
    /// The store, the root key or a file could not be used (exit 3).
    Store(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Store(_) => 3,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Usage(m) | Failure::Store(m) => m,
        }
    }
}

impl From<custodian::keys::KeyError> for Failure {
    fn from(error: custodian::keys::KeyError) -> Self {
        use custodian::keys::KeyError as E;
        match error {
            E::UnknownRing(_)
            | E::RingExists(_)
            | E::Refused(_)
            | E::SubjectKeysDepend { .. }
            | E::InvalidPolicy(_)
            | E::UsageExhausted { .. }
            | E::Conflict(_)
            | E::UnknownVersion { .. }
            | E::VersionDisabled { .. }
            | E::VersionDestroyed { .. }
            | E::SubjectErased { .. } => Failure::Refused(error.to_string()),
            other => Failure::Store(other.to_string()),
        }
    }
}

impl From<custodian::audit::AuditError> for Failure {
    fn from(error: custodian::audit::AuditError) -> Self {
        Failure::Store(error.to_string())
    }
}

impl From<custodian::mfa::MfaError> for Failure {
    fn from(error: custodian::mfa::MfaError) -> Self {
        use custodian::mfa::MfaError as E;
        match error {
            E::NotFound { .. } | E::Rejected(_) => Failure::Refused(error.to_string()),
            other => Failure::Store(other.to_string()),
        }
    }
}

impl From<custodian::Error> for Failure {
    fn from(error: custodian::Error) -> Self {
        match error {
            custodian::Error::Keys(e) => e.into(),
            custodian::Error::Mfa(e) => e.into(),
            other => Failure::Store(other.to_string()),
        }
    }
}

pub(crate) type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match cli.command {
        Command::Keys(command) => keys::run(&cli.global, &out, command),
        Command::Subjects(command) => subjects::run(&cli.global, &out, command),
        Command::Policy(command) => policy::run(&out, command),
        Command::Mfa(command) => mfa::run(&cli.global, &out, command),
        Command::Audit(command) => audit::run(&cli.global, &out, command),
        Command::Doctor(args) => doctor::run(&cli.global, &out, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message().is_empty() {
                eprintln!("error: {}", failure.message());
            }
            ExitCode::from(failure.code())
        }
    }
}
