//! `custodian keys`: rings, versions, states, usage against limits, age against the policy.

use crate::output::{Output, Table, duration, parse_duration, time};
use crate::store::{self, StoreArgs};
use crate::{Failure, Outcome};
use custodian::keys::{KeyManager, RingInfo, RotationPolicy, VersionInfo, VersionState};
use serde::Serialize;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Every ring: primary version, states, usage and whether rotation is due.
    List,
    /// One ring's versions, states, usage and policy.
    Status {
        /// The ring's name.
        ring: String,
    },
    /// Adds a version and makes it the primary, then rewraps the subject keys to it.
    Rotate {
        /// The ring's name.
        ring: String,
        /// Rotate only if the policy says it is due (age or usage); for cron.
        #[arg(long)]
        if_due: bool,
    },
    /// Rewraps the ring's subject keys to the primary version: finishes a rotation that was
    /// interrupted (safe to run at any time, and again).
    Rewrap {
        /// The ring's name.
        ring: String,
    },
    /// Stops VERSION (and every older version) from decrypting. Reversible until destroyed.
    Disable {
        /// The ring's name.
        ring: String,
        /// The newest version to disable; it must be older than the primary.
        version: u32,
    },
    /// Deletes the key material of a disabled VERSION for good. Data still under it is lost.
    Destroy {
        /// The ring's name.
        ring: String,
        /// The version to destroy; it must be disabled first.
        version: u32,
        /// Confirms that this is irreversible.
        #[arg(long)]
        yes: bool,
    },
    /// Shows the ring's rotation policy, or changes the parts given.
    Policy {
        /// The ring's name.
        ring: String,
        /// Rotate when the primary is this old (`90d`, `12h`, seconds), or `none`.
        #[arg(long, value_name = "DURATION|none")]
        max_age: Option<String>,
        /// Rotate after this many encryptions under the primary (1 to 2^32).
        #[arg(long, value_name = "N")]
        max_encryptions: Option<u64>,
        /// How long a change takes to reach every process, plus clock skew (`2m`, seconds).
        #[arg(long, value_name = "DURATION")]
        propagation: Option<String>,
    },
}

pub(crate) fn run(args: &StoreArgs, out: &Output, command: KeysCommand) -> Outcome {
    let opened = store::open(args)?;
    let keys = &opened.keys;
    let now = opened.now();
    match command {
        KeysCommand::List => list(keys, out, now),
        KeysCommand::Status { ring } => {
            let info = keys.ring_info(&ring, now)?;
            show_ring(out, &info, now)
        }
        KeysCommand::Rotate { ring, if_due } => {
            let rotation = if if_due {
                keys.rotate_if_due(&ring, now)?
            } else {
                Some(keys.rotate(&ring, now)?)
            };
            let Some(rotation) = rotation else {
                if out.json {
                    return out.json(&serde_json::json!({ "ring": ring, "rotated": false }));
                }
                println!("`{ring}` is not due for rotation; nothing changed");
                return Ok(());
            };
            // The rotation itself is one transaction; the subject keys follow, batch by batch.
            let rewrapped = rewrap_subject_keys(keys, out, &ring, now)?;
            if out.json {
                out.json(&serde_json::json!({
                    "ring": rotation.ring,
                    "rotated": true,
                    "new_version": rotation.new_version,
                    "subject_keys_rewrapped": rewrapped,
                }))
            } else {
                println!(
                    "rotated `{}`: version {} is the primary; {rewrapped} subject keys rewrapped",
                    rotation.ring, rotation.new_version
                );
                Ok(())
            }
        }
        KeysCommand::Rewrap { ring } => {
            keys.ring_info(&ring, now)?;
            let rewrapped = rewrap_subject_keys(keys, out, &ring, now)?;
            if out.json {
                out.json(&serde_json::json!({ "ring": ring, "subject_keys_rewrapped": rewrapped }))
            } else {
                println!("`{ring}`: {rewrapped} subject keys rewrapped to the primary version");
                Ok(())
            }
        }
        KeysCommand::Disable { ring, version } => disable(keys, out, &ring, version, now),
        KeysCommand::Destroy { ring, version, yes } => {
            if !yes {
                return Err(Failure::Refused(format!(
                    "destroying version {version} of `{ring}` is irreversible: data still under it can never be opened again; pass `--yes` to confirm"
                )));
            }
            let destruction = keys.destroy_version(&ring, version, now)?;
            if out.json {
                out.json(&serde_json::json!({
                    "ring": ring,
                    "version": version,
                    "newly_destroyed": destruction.newly_destroyed,
                    "purged": destruction.purged,
                }))
            } else {
                let what = if destruction.newly_destroyed {
                    "destroyed"
                } else {
                    "was already destroyed"
                };
                let purged = if destruction.purged {
                    "its bytes are gone from the database files"
                } else {
                    "its bytes may remain in the write-ahead log until readers finish; run `custodian doctor` later"
                };
                println!("version {version} of `{ring}` {what}; {purged}");
                Ok(())
            }
        }
        KeysCommand::Policy {
            ring,
            max_age,
            max_encryptions,
            propagation,
        } => {
            let info = keys.ring_info(&ring, now)?;
            if max_age.is_none() && max_encryptions.is_none() && propagation.is_none() {
                return show_policy(out, &info);
            }
            let mut policy = info.policy;
            if let Some(max_age) = max_age {
                policy.max_age_secs = if max_age == "none" {
                    None
                } else {
                    Some(parse_duration(&max_age).map_err(Failure::Usage)?)
                };
            }
            if let Some(max) = max_encryptions {
                policy.max_encryptions = max;
            }
            if let Some(propagation) = propagation {
                policy.propagation_secs = parse_duration(&propagation).map_err(Failure::Usage)?;
            }
            let info = keys.set_policy(&ring, policy, now)?;
            show_policy(out, &info)
        }
    }
}

/// Disables `version` and everything older: versions below it first become decrypt-only if
/// they are not already, as the ring's thresholds require.
fn disable(keys: &KeyManager, out: &Output, ring: &str, version: u32, now: u64) -> Outcome {
    let info = keys.ring_info(ring, now)?;
    if version >= info.primary_version {
        return Err(Failure::Refused(format!(
            "version {version} of `{ring}` is the primary or newer (primary: {}); rotate first",
            info.primary_version
        )));
    }
    let below = version.saturating_add(1);
    if info.min_encryption_version < below {
        keys.set_min_encryption_version(ring, below, now)?;
    }
    let info = if info.min_decryption_version < below {
        keys.set_min_decryption_version(ring, below, now)?
    } else {
        keys.ring_info(ring, now)?
    };
    if out.json {
        return out.json(&RingView::new(&info, now));
    }
    println!("versions up to {version} of `{ring}` no longer decrypt");
    show_ring(out, &info, now)
}

/// A ring as printed (`--json`): no key material, only what an administrator sees.
#[derive(Debug, Serialize)]
pub(crate) struct RingView {
    pub name: String,
    pub suite: &'static str,
    pub primary_version: u32,
    pub min_encryption_version: u32,
    pub min_decryption_version: u32,
    pub policy: PolicyView,
    pub rotation_due: bool,
    pub primary_age_secs: u64,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PolicyView {
    pub max_age_secs: Option<u64>,
    pub max_encryptions: u64,
    pub propagation_secs: u64,
}

impl From<RotationPolicy> for PolicyView {
    fn from(policy: RotationPolicy) -> Self {
        Self {
            max_age_secs: policy.max_age_secs,
            max_encryptions: policy.max_encryptions,
            propagation_secs: policy.propagation_secs,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct VersionView {
    pub version: u32,
    pub state: &'static str,
    pub created_at: u64,
    pub superseded_at: Option<u64>,
    pub usage_reserved: u64,
}

impl RingView {
    pub(crate) fn new(info: &RingInfo, now: u64) -> Self {
        Self {
            name: info.name.clone(),
            suite: info.suite.name(),
            primary_version: info.primary_version,
            min_encryption_version: info.min_encryption_version,
            min_decryption_version: info.min_decryption_version,
            policy: info.policy.into(),
            rotation_due: info.rotation_due(now),
            primary_age_secs: primary(info).map_or(0, |v| now.saturating_sub(v.created_at)),
            versions: info
                .versions
                .iter()
                .map(|v| VersionView {
                    version: v.version,
                    state: state_name(v.state),
                    created_at: v.created_at,
                    superseded_at: v.superseded_at,
                    usage_reserved: v.usage_reserved,
                })
                .collect(),
        }
    }
}

pub(crate) fn primary(info: &RingInfo) -> Option<&VersionInfo> {
    info.versions
        .iter()
        .find(|v| v.version == info.primary_version)
}

pub(crate) fn state_name(state: VersionState) -> &'static str {
    match state {
        VersionState::Active => "active",
        VersionState::DecryptOnly => "decrypt-only",
        VersionState::Disabled => "disabled",
        VersionState::Destroyed => "destroyed",
    }
}

/// `used / limit` as a percentage with one decimal.
pub(crate) fn percent(used: u64, limit: u64) -> String {
    if limit == 0 {
        return "-".into();
    }
    let tenths = u128::from(used) * 1000 / u128::from(limit);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

fn list(keys: &KeyManager, out: &Output, now: u64) -> Outcome {
    let mut rings = Vec::new();
    for name in keys.ring_names()? {
        rings.push(keys.ring_info(&name, now)?);
    }
    if out.json {
        let views: Vec<RingView> = rings.iter().map(|r| RingView::new(r, now)).collect();
        return out.json(&views);
    }
    let mut table = Table::new(&[
        "RING", "SUITE", "PRIMARY", "VERSIONS", "AGE", "MAX AGE", "USAGE", "ROTATION",
    ]);
    for info in &rings {
        let primary = primary(info);
        let live = info.live_versions().len();
        table.row(vec![
            info.name.clone(),
            info.suite.name().to_owned(),
            info.primary_version.to_string(),
            format!("{} ({live} live)", info.versions.len()),
            primary.map_or("-".into(), |v| duration(now.saturating_sub(v.created_at))),
            info.policy.max_age_secs.map_or("none".into(), duration),
            primary.map_or("-".into(), |v| {
                percent(v.usage_reserved, info.policy.max_encryptions)
            }),
            if info.rotation_due(now) { "due" } else { "ok" }.into(),
        ]);
    }
    table.print();
    Ok(())
}

fn show_ring(out: &Output, info: &RingInfo, now: u64) -> Outcome {
    if out.json {
        return out.json(&RingView::new(info, now));
    }
    println!(
        "ring `{}` ({}): primary version {}, encrypts from {}, decrypts from {}; rotation {}",
        info.name,
        info.suite.name(),
        info.primary_version,
        info.min_encryption_version,
        info.min_decryption_version,
        if info.rotation_due(now) {
            "due"
        } else {
            "not due"
        }
    );
    println!("{}", policy_line(&info.policy));
    let mut table = Table::new(&["VERSION", "STATE", "CREATED", "SUPERSEDED", "USAGE"]);
    for v in &info.versions {
        table.row(vec![
            v.version.to_string(),
            state_name(v.state).into(),
            time(v.created_at),
            v.superseded_at.map_or("-".into(), time),
            format!(
                "{} of {} ({})",
                v.usage_reserved,
                info.policy.max_encryptions,
                percent(v.usage_reserved, info.policy.max_encryptions)
            ),
        ]);
    }
    table.print();
    Ok(())
}

fn policy_line(policy: &RotationPolicy) -> String {
    format!(
        "policy: max age {}, max encryptions {}, propagation {}",
        policy.max_age_secs.map_or("none".into(), duration),
        policy.max_encryptions,
        duration(policy.propagation_secs)
    )
}

fn show_policy(out: &Output, info: &RingInfo) -> Outcome {
    if out.json {
        return out.json(&serde_json::json!({
            "ring": info.name,
            "policy": PolicyView::from(info.policy),
        }));
    }
    println!("ring `{}` {}", info.name, policy_line(&info.policy));
    Ok(())
}

/// Rewraps `ring`'s subject keys to its primary version, one store transaction per batch. On a
/// terminal a bar shows them done against the store's count of keys left below the primary.
/// Interrupting it loses nothing: `keys rewrap` resumes.
fn rewrap_subject_keys(
    keys: &KeyManager,
    out: &Output,
    ring: &str,
    now: u64,
) -> Result<u64, Failure> {
    let pending = keys.pending_subject_rewraps(ring, now)?;
    let bar = out.progress(pending, &format!("rewrapping subject keys of `{ring}`"));
    let total = rewrap_with_progress(keys, ring, now, &bar)?;
    bar.finish_and_clear();
    Ok(total)
}

/// The batches of [`rewrap_subject_keys`], moving `bar` to the running total after each.
fn rewrap_with_progress(
    keys: &KeyManager,
    ring: &str,
    now: u64,
    bar: &indicatif::ProgressBar,
) -> Result<u64, Failure> {
    let mut total = 0u64;
    loop {
        let batch = keys.rewrap_subject_keys_batch(ring, now)?;
        total += batch.rewrapped;
        // Another server that had not yet seen the rotation may add keys under the old version
        // meanwhile: the bar grows rather than overflowing.
        if bar.length().is_some_and(|len| total > len) {
            bar.set_length(total);
        }
        bar.set_position(total);
        if batch.done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian::EncryptionContext;
    use custodian::SecretKey;
    use custodian::crypto::Suite;
    use custodian::keys::{LocalRootKey, ManagerOptions, MemoryKeyStore};
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn the_rewrap_bar_runs_from_zero_to_the_counted_total() -> Result<(), Box<dyn std::error::Error>>
    {
        let options = ManagerOptions {
            subject_rewrap_batch: 3,
            change_feed_poll_ms: 0,
            ..ManagerOptions::default()
        };
        let keys = KeyManager::with_options(
            Arc::new(MemoryKeyStore::new()),
            Arc::new(LocalRootKey::new(&SecretKey::from_bytes([7; 32]))),
            options,
        )?;
        keys.create_ring("customers", Suite::default(), RotationPolicy::default(), T0)?;
        for i in 0..10 {
            let context = EncryptionContext::for_field("customers", i.to_string(), "email")?;
            keys.seal("customers", Some(&format!("cus_{i}")), &context, b"x", T0)?;
        }
        keys.rotate("customers", T0 + 1)?;
        let pending = keys.pending_subject_rewraps("customers", T0 + 1)?;
        assert_eq!(pending, 10);
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(pending),
            indicatif::ProgressDrawTarget::hidden(),
        );
        let total =
            rewrap_with_progress(&keys, "customers", T0 + 1, &bar).map_err(|f| format!("{f:?}"))?;
        assert_eq!(total, 10);
        assert_eq!((bar.position(), bar.length()), (10, Some(10)));
        assert_eq!(keys.pending_subject_rewraps("customers", T0 + 1)?, 0);
        Ok(())
    }
}
