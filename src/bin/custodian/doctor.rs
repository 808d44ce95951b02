//! `custodian doctor`: a security self-assessment for cron or CI. Each check passes, warns or
//! fails with a one-line reason and the fix; any failure makes the exit code 1.

use crate::output::{Output, Status, Table, duration, parse_duration, time};
use crate::store::{self, Location, RootSource, StoreArgs};
use crate::{Failure, Outcome};
use custodian::keys::{KeyManager, RingInfo, VersionState};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The newest checkpoint kept outside the store (`custodian audit checkpoint --out FILE`):
    /// the log must extend it, and it must be recent.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// How old the kept checkpoint may be.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    checkpoint_max_age: String,
    /// How long a version may stay disabled (counted from when it was superseded) before it
    /// should be destroyed.
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    destroy_grace: String,
    /// Warn when a ring's primary has used this share of its age or encryption limit (percent).
    #[arg(long, default_value_t = 90, value_name = "PERCENT")]
    near_limit: u8,
    /// The access policy to check for warnings.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Staff, one `user-id role,role` line each (`#` comments): each should have an active MFA
    /// factor, none locked; one whose roles the `--policy` asks for a step-up fails without one.
    #[arg(long, value_name = "FILE")]
    staff: Option<PathBuf>,
    #[command(flatten)]
    rings: crate::mfa::RingNames,
}

/// One check's verdict.
#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Debug, Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, check: &str, status: Status, reason: String, fix: Option<String>) {
        self.checks.push(Check {
            check: check.to_owned(),
            status,
            reason,
            fix,
        });
    }

    fn pass(&mut self, check: &str, reason: String) {
        self.add(check, Status::Pass, reason, None);
    }

    fn warn(&mut self, check: &str, reason: String, fix: String) {
        self.add(check, Status::Warn, reason, Some(fix));
    }

    fn fail(&mut self, check: &str, reason: String, fix: String) {
        self.add(check, Status::Fail, reason, Some(fix));
    }

    fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass)
    }
}

pub(crate) fn run(args: &StoreArgs, out: &Output, doctor: &DoctorArgs) -> Outcome {
    let location = Location::parse(args)?;
    let checkpoint_max_age = parse_duration(&doctor.checkpoint_max_age).map_err(Failure::Usage)?;
    let destroy_grace = parse_duration(&doctor.destroy_grace).map_err(Failure::Usage)?;
    let mut report = Report::default();
    let now = store::now();

    root_key_file(&mut report, args);
    match &location {
        Location::Sqlite(path) => sqlite_settings(&mut report, path),
        Location::Postgres(url) => postgres_transport(&mut report, url),
    }
    match store::open(args) {
        Err(failure) => report.fail(
            "store",
            format!(
                "cannot open `{}` with the root key: {}",
                location.shown(),
                failure_message(&failure)
            ),
            "fix the root key and store arguments; the checks of rings, erasures and the audit log did not run".into(),
        ),
        Ok(opened) => {
            report.pass(
                "store",
                format!(
                    "`{}` opens, and the root key is the one it was created with",
                    location.shown()
                ),
            );
            rings(
                &mut report,
                &opened.keys,
                now,
                destroy_grace,
                doctor.near_limit,
            );
            match &location {
                Location::Sqlite(_) => purge(&mut report, &opened.keys),
                Location::Postgres(_) => report.warn(
                    "erasures-purged",
                    "PostgreSQL keeps erased key bytes in old row versions until VACUUM, and in its WAL, archives and backups; no client can confirm they are gone (docs/KEYSTORE.md)".into(),
                    "VACUUM custodian_subject_keys, custodian_ring_versions after erasures, and treat WAL archives and backups as key material".into(),
                ),
            }
            audit_log(&mut report, &opened.keys, args, doctor, now, checkpoint_max_age);
            if let Some(staff) = &doctor.staff {
                mfa(&mut report, &opened, doctor, staff);
            }
        }
    }
    if let Some(policy) = &doctor.policy {
        policy_warnings(&mut report, policy);
    }

    let worst = report.worst();
    if out.json {
        out.json(&serde_json::json!({ "status": worst, "checks": report.checks }))?;
    } else {
        let mut table = Table::new(&["CHECK", "REASON", "STATUS"]);
        for check in &report.checks {
            table.row(vec![
                check.check.clone(),
                check.reason.clone(),
                out.status(check.status),
            ]);
        }
        table.print();
        for check in report.checks.iter().filter(|c| c.status != Status::Pass) {
            if let Some(fix) = &check.fix {
                println!("{} {}: {fix}", out.status(check.status), check.check);
            }
        }
        println!("doctor: {}", out.status(worst));
    }
    if worst == Status::Fail {
        Err(Failure::Refused(String::new()))
    } else {
        Ok(())
    }
}

fn failure_message(failure: &Failure) -> String {
    match failure {
        Failure::Refused(m) | Failure::Usage(m) | Failure::Store(m) => m.clone(),
    }
}

/// The root key file must be readable by its owner only (the library refuses it otherwise).
fn root_key_file(report: &mut Report, args: &StoreArgs) {
    const CHECK: &str = "root-key";
    match RootSource::of(args) {
        Err(failure) => report.fail(
            CHECK,
            failure_message(&failure),
            "pass `--root-key FILE` or set CUSTODIAN_ROOT_KEY".into(),
        ),
        Ok(RootSource::Env) => report.pass(
            CHECK,
            format!("read from the environment variable {}", store::ROOT_KEY_VAR),
        ),
        Ok(RootSource::File(path)) => match std::fs::metadata(&path) {
            Err(e) => report.fail(
                CHECK,
                format!("cannot read key file `{}`: {e}", path.display()),
                "give the path of the application's root key file".into(),
            ),
            Ok(meta) => {
                let mode = file_mode(&meta);
                if mode & 0o077 != 0 {
                    report.fail(
                        CHECK,
                        format!(
                            "key file `{}` has mode {mode:04o}: group or others may read or write it",
                            path.display()
                        ),
                        format!("chmod 600 {}", path.display()),
                    );
                } else {
                    report.pass(
                        CHECK,
                        format!(
                            "key file `{}` has mode {mode:04o} (owner only)",
                            path.display()
                        ),
                    );
                }
            }
        },
    }
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_: &std::fs::Metadata) -> u32 {
    0o600
}

/// The SQLite settings the store relies on: WAL (readers never block the writer, and erasures
/// can be checkpointed out of the log), secure delete (freed pages are zeroed), and a database
/// file that only its owner reads.
fn sqlite_settings(report: &mut Report, path: &Path) {
    const CHECK: &str = "sqlite";
    if store::require_file(path).is_err() {
        // The store check says why.
        return;
    }
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match rusqlite::Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        Err(e) => {
            report.fail(
                CHECK,
                format!("cannot read `{}` as SQLite: {e}", path.display()),
                "check the store path".into(),
            );
            return;
        }
    };
    match conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0)) {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") => report.pass(
            "sqlite-wal",
            "journal_mode is WAL, as custodian sets it".into(),
        ),
        Ok(mode) => report.fail(
            "sqlite-wal",
            format!("journal_mode is `{mode}`, not WAL: another program changed it"),
            "find the tool that changed it; custodian sets WAL again whenever it opens the file"
                .into(),
        ),
        Err(e) => report.fail(
            "sqlite-wal",
            format!("cannot read journal_mode: {e}"),
            "check the store file".into(),
        ),
    }
    let secure = conn
        .execute_batch("PRAGMA secure_delete = ON")
        .and_then(|()| conn.query_row("PRAGMA secure_delete", [], |row| row.get::<_, i64>(0)));
    match secure {
        Ok(1) => report.pass(
            "sqlite-secure-delete",
            "this build's SQLite honours `PRAGMA secure_delete = ON`, which custodian sets on every connection".into(),
        ),
        Ok(other) => report.fail(
            "sqlite-secure-delete",
            format!("`PRAGMA secure_delete = ON` reads back as {other}: deleted key bytes may stay in free pages"),
            "build custodian with its bundled SQLite (the `sqlite` feature)".into(),
        ),
        Err(e) => report.fail(
            "sqlite-secure-delete",
            format!("cannot set secure_delete: {e}"),
            "check the store file".into(),
        ),
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = file_mode(&meta);
        if mode & 0o077 != 0 {
            report.warn(
                "sqlite-file",
                format!(
                    "`{}` has mode {mode:04o}: others can copy the wrapped keys and the audit log",
                    path.display()
                ),
                format!("chmod 600 {} (and its -wal and -shm files)", path.display()),
            );
        } else {
            report.pass(
                "sqlite-file",
                format!("`{}` has mode {mode:04o} (owner only)", path.display()),
            );
        }
    }
}

/// Encryption in transit: this build's PostgreSQL driver has no TLS, so only a connection that
/// never leaves the host is acceptable.
fn postgres_transport(report: &mut Report, url: &str) {
    const CHECK: &str = "postgres-tls";
    let host = postgres_host(url);
    let local = host.is_empty()
        || host.starts_with('/')
        || host.starts_with("%2F")
        || host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]";
    if local {
        report.warn(
            CHECK,
            format!("connection to `{host}` has no TLS (custodian enables no TLS feature of sqlx); it stays on this host"),
            "keep PostgreSQL on a loopback address or a Unix socket, or give the application a TLS pool (`Postgres::from_pool`)".into(),
        );
    } else {
        report.fail(
            CHECK,
            format!("connection to `{host}` has no TLS, so no certificate is verified: key rows cross the network in clear"),
            "connect through a loopback or Unix socket (or a TLS tunnel), or use an application pool with TLS and verify-full (`Postgres::from_pool`)".into(),
        );
    }
}

/// The host part of a `postgres://user:pw@host:port/db?...` URL (empty for none).
fn postgres_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if host_port.starts_with('[') {
        return host_port
            .split_once(']')
            .map_or(host_port.to_owned(), |(h, _)| format!("{h}]"));
    }
    host_port.split(':').next().unwrap_or_default().to_owned()
}

/// Rotation due or near, and versions disabled for longer than the grace period.
fn rings(report: &mut Report, keys: &KeyManager, now: u64, grace: u64, near_limit: u8) {
    let names = match keys.ring_names() {
        Ok(names) => names,
        Err(e) => {
            report.fail(
                "rings",
                format!("cannot list the key rings: {e}"),
                "check the store".into(),
            );
            return;
        }
    };
    if names.is_empty() {
        report.warn(
            "rings",
            "the store has no key ring".into(),
            "check that `--store` names the application's store".into(),
        );
    }
    for name in names {
        let check = format!("ring:{name}");
        let info = match keys.ring_info(&name, now) {
            Ok(info) => info,
            Err(e) => {
                report.fail(
                    &check,
                    format!("cannot read ring `{name}`: {e}"),
                    "the ring's rows fail their integrity check or the store is unreachable: restore from a backup you trust".into(),
                );
                continue;
            }
        };
        rotation(report, &check, &info, now, near_limit);
        disabled_versions(report, &info, now, grace);
    }
}

fn rotation(report: &mut Report, check: &str, info: &RingInfo, now: u64, near_limit: u8) {
    let name = &info.name;
    let Some(primary) = crate::keys::primary(info) else {
        report.fail(
            check,
            format!("ring `{name}` has no primary version"),
            format!("custodian keys rotate {name}"),
        );
        return;
    };
    let age = now.saturating_sub(primary.created_at);
    let used = primary.usage_reserved;
    let limit = info.policy.max_encryptions;
    let usage = crate::keys::percent(used, limit);
    if info.rotation_due(now) {
        let why = match info.policy.max_age_secs {
            Some(max) if age >= max => format!(
                "primary version {} is {} old, past the policy's {}",
                primary.version,
                duration(age),
                duration(max)
            ),
            _ => format!(
                "primary version {} used {used} of {limit} encryptions",
                primary.version
            ),
        };
        report.fail(
            check,
            format!("overdue for rotation: {why}"),
            format!("custodian keys rotate {name}"),
        );
        return;
    }
    let near = |part: u128, whole: u128| whole > 0 && part * 100 >= whole * u128::from(near_limit);
    let age_near = info
        .policy
        .max_age_secs
        .is_some_and(|max| near(u128::from(age), u128::from(max)));
    if age_near || near(u128::from(used), u128::from(limit)) {
        report.warn(
            check,
            format!(
                "near its rotation limit: primary version {} is {} old (max {}), usage {usage}",
                primary.version,
                duration(age),
                info.policy.max_age_secs.map_or("none".into(), duration)
            ),
            format!("custodian keys rotate {name} (soon)"),
        );
        return;
    }
    let Some(max_age) = info.policy.max_age_secs else {
        report.warn(
            check,
            format!(
                "no maximum age: rotation is never due by age (primary version {} is {} old, usage {usage})",
                primary.version,
                duration(age)
            ),
            format!("custodian keys policy {name} --max-age 365d (or the period your policy requires)"),
        );
        return;
    };
    report.pass(
        check,
        format!(
            "primary version {} is {} old (max {}), usage {usage}",
            primary.version,
            duration(age),
            duration(max_age)
        ),
    );
}

fn disabled_versions(report: &mut Report, info: &RingInfo, now: u64, grace: u64) {
    for v in &info.versions {
        if v.state != VersionState::Disabled {
            continue;
        }
        let since = v.superseded_at.unwrap_or(v.created_at);
        if now.saturating_sub(since) >= grace {
            report.warn(
                &format!("ring:{}:v{}", info.name, v.version),
                format!(
                    "version {} is disabled but not destroyed, superseded {} ago (grace {})",
                    v.version,
                    duration(now.saturating_sub(since)),
                    duration(grace)
                ),
                format!(
                    "once nothing needs it: custodian keys destroy {} {} --yes",
                    info.name, v.version
                ),
            );
        }
    }
}

/// Erased subject keys and destroyed versions must be gone from the database files, not only
/// from the tables (for SQLite: the write-ahead log checkpointed and truncated).
fn purge(report: &mut Report, keys: &KeyManager) {
    const CHECK: &str = "erasures-purged";
    match keys.purge(Duration::from_millis(500)) {
        Ok(true) => report.pass(
            CHECK,
            "erased and destroyed key material is gone from the database files".into(),
        ),
        Ok(false) => report.fail(
            CHECK,
            "erased or destroyed key bytes may remain in the write-ahead log: readers hold older snapshots".into(),
            "let long readers (backups, reports) finish, then run `custodian doctor` again".into(),
        ),
        Err(e) => report.fail(
            CHECK,
            format!("cannot purge: {e}"),
            "check the store".into(),
        ),
    }
}

fn audit_log(
    report: &mut Report,
    keys: &KeyManager,
    args: &StoreArgs,
    doctor: &DoctorArgs,
    now: u64,
    max_age: u64,
) {
    const CHECK: &str = "audit-log";
    let log = keys.audit_log();
    let verifier = match crate::audit::verifier(keys, &args.origin) {
        Ok(verifier) => verifier,
        Err(failure) => {
            report.fail(
                CHECK,
                format!(
                    "cannot read the checkpoint key: {}",
                    failure_message(&failure)
                ),
                "check the root key".into(),
            );
            return;
        }
    };
    let trusted = match &doctor.checkpoint {
        Some(path) => match crate::audit::read_checkpoint(path, &verifier, now) {
            Ok(checkpoint) => Some(checkpoint),
            Err(failure) => {
                report.fail(
                    "audit-checkpoint",
                    failure_message(&failure),
                    "give the newest checkpoint this store signed (`custodian audit checkpoint --out FILE`) and the application's `--origin`".into(),
                );
                None
            }
        },
        None => None,
    };
    // Against a fresh checkpoint: every entry matches its stored hash and the tree.
    let fresh = keys
        .checkpoint_signer(&args.origin)
        .map_err(|e| e.to_string())
        .and_then(|signer| log.checkpoint(&signer, now).map_err(|e| e.to_string()))
        .and_then(|signed| verifier.verify(&signed, now).map_err(|e| e.to_string()));
    let checked = match fresh {
        Ok(checkpoint) => log.verify_store(&checkpoint).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match checked {
        Ok(_) => report.pass(
            CHECK,
            "every entry matches its stored hash and the Merkle tree".into(),
        ),
        Err(e) => report.fail(
            CHECK,
            format!("the audit log does not verify: {e}"),
            "the database was edited outside custodian: restore it from a backup you trust and compare with `custodian audit verify --checkpoint FILE`".into(),
        ),
    }
    match (&doctor.checkpoint, trusted) {
        (None, _) => report.warn(
            "audit-checkpoint",
            "no kept checkpoint given: a rollback of the whole database would go unnoticed".into(),
            "keep `custodian audit checkpoint --out FILE` outside the database (cron), and pass it with `--checkpoint FILE`".into(),
        ),
        (Some(_), None) => {}
        (Some(path), Some(checkpoint)) => {
            match log.verify_against(&checkpoint) {
                Err(e) => report.fail(
                    "audit-checkpoint",
                    format!(
                        "the log does not extend checkpoint `{}`: {e}",
                        path.display()
                    ),
                    "the database was rolled back or its history rewritten: restore from a backup you trust".into(),
                ),
                Ok(()) => {
                    let age = now.saturating_sub(checkpoint.timestamp());
                    if age > max_age {
                        report.warn(
                            "audit-checkpoint",
                            format!(
                                "the log extends the kept checkpoint, but it was signed {} ago ({}), more than {}",
                                duration(age),
                                time(checkpoint.timestamp()),
                                duration(max_age)
                            ),
                            format!(
                                "custodian audit checkpoint --out {} (from cron)",
                                path.display()
                            ),
                        );
                    } else {
                        report.pass(
                            "audit-checkpoint",
                            format!(
                                "the log extends the kept checkpoint of {} ({} entries)",
                                time(checkpoint.timestamp()),
                                checkpoint.tree_size()
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn policy_warnings(report: &mut Report, path: &Path) {
    const CHECK: &str = "policy";
    match crate::policy::load(path) {
        Err(failure) => report.fail(
            CHECK,
            failure_message(&failure),
            "fix the policy file (`custodian policy check FILE`)".into(),
        ),
        Ok(policy) if policy.warnings().is_empty() => report.pass(
            CHECK,
            format!("`{}` loads without warnings", path.display()),
        ),
        Ok(policy) => {
            for warning in policy.warnings() {
                report.warn(
                    CHECK,
                    warning.to_string(),
                    format!("custodian policy check {}", path.display()),
                );
            }
        }
    }
}

/// One line of the staff list: `user-id [role,role,...]`.
#[derive(Debug)]
struct StaffMember {
    id: String,
    roles: Vec<String>,
}

fn read_staff(path: &Path) -> Result<Vec<StaffMember>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read staff list `{}`: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next().unwrap_or_default().to_owned();
            let roles = words
                .flat_map(|w| w.split(','))
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            StaffMember { id, roles }
        })
        .collect())
}

/// The first permission (`type:action (rule)`) on which the policy can ask a member with their
/// roles for an MFA step-up, under any resource attributes (`Policy::step_up_rules`).
fn step_up_needed(
    policy: &custodian::rbac::Policy,
    member: &StaffMember,
    now: u64,
) -> Option<String> {
    let roles: Vec<&str> = member.roles.iter().map(String::as_str).collect();
    policy.step_up_rules(&roles, now).first().map(|found| {
        format!(
            "{}:{} (rule `{}`)",
            found.resource_type, found.action, found.rule
        )
    })
}

/// Locked factors, and staff without an active factor: a failure when the policy asks their
/// roles for a step-up, a warning otherwise.
fn mfa(report: &mut Report, opened: &store::Opened, doctor: &DoctorArgs, staff: &Path) {
    const CHECK: &str = "mfa";
    let members = match read_staff(staff) {
        Ok(members) => members,
        Err(reason) => {
            report.fail(
                CHECK,
                reason,
                "give a file with one `user-id role,role` line per staff member".into(),
            );
            return;
        }
    };
    let policy = doctor
        .policy
        .as_deref()
        .and_then(|path| crate::policy::load(path).ok());
    let now = store::now();
    let enrolled_any = opened
        .keys
        .ring_names()
        .is_ok_and(|names| names.contains(&doctor.rings.mfa_ring));
    let service = if enrolled_any {
        match crate::mfa::service(opened, &doctor.rings) {
            Ok(service) => Some(service),
            Err(failure) => {
                report.fail(
                    CHECK,
                    format!("cannot open the MFA service: {}", failure_message(&failure)),
                    "check `--mfa-ring` and the store".into(),
                );
                return;
            }
        }
    } else {
        None
    };
    let mut clean = 0usize;
    for member in &members {
        let user = &member.id;
        let check = format!("mfa:{user}");
        let factors = match &service {
            None => Vec::new(),
            Some(service) => match crate::mfa::factor_views(service, user) {
                Ok(factors) => factors,
                Err(failure) => {
                    report.fail(
                        &check,
                        format!("factors of `{user}` cannot be read: {}", failure_message(&failure)),
                        "a factor row fails its state MAC: re-enroll the user after checking who changed it".into(),
                    );
                    continue;
                }
            },
        };
        let locked: Vec<&str> = factors
            .iter()
            .filter(|f| f.locked)
            .map(|f| f.factor.as_str())
            .collect();
        let active = factors.iter().any(|f| f.phase == "active");
        if !locked.is_empty() {
            report.warn(
                &check,
                format!("`{user}` has locked factors: {}", locked.join(", ")),
                format!(
                    "check with `{user}` who tried the codes, then `custodian mfa unlock {user}`"
                ),
            );
        } else if active {
            clean += 1;
        } else {
            let needed = policy
                .as_ref()
                .and_then(|policy| step_up_needed(policy, member, now));
            let fix = format!("have `{user}` enroll an authenticator");
            match needed {
                Some(permission) => report.fail(
                    &check,
                    format!(
                        "`{user}` has no active MFA factor, and the policy asks their roles for a step-up on {permission}"
                    ),
                    fix,
                ),
                None => report.warn(
                    &check,
                    format!("`{user}` has no active MFA factor"),
                    fix,
                ),
            }
        }
    }
    if clean == members.len() {
        report.pass(
            CHECK,
            format!("all {clean} staff have an active factor and none is locked"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::postgres_host;

    #[test]
    fn hosts_are_found_in_urls() {
        assert_eq!(
            postgres_host("postgres://u:p@db.internal:5432/shop"),
            "db.internal"
        );
        assert_eq!(
            postgres_host("postgres://127.0.0.1/shop?sslmode=disable"),
            "127.0.0.1"
        );
        assert_eq!(postgres_host("postgresql://u@[::1]:5433/x"), "[::1]");
        assert_eq!(postgres_host("postgres:///shop?host=/run/postgresql"), "");
    }
}
