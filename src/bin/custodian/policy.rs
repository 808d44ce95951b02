//! `custodian policy`: load and validate a policy, run its tests, explain one decision.

use crate::output::{Output, Status, Table};
use crate::{Failure, Outcome};
use custodian::rbac::{Justification, Policy, Reason, RequestContext, RequestSpec, Visibility};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Loads and validates a policy (TOML or JSON) and lists its warnings.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Exit with 1 on warnings too (for CI).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Runs a policy-test file (docs/RBAC.md, "Policy tests") against a policy.
    Test {
        /// The policy file.
        file: PathBuf,
        /// The test file (TOML).
        tests: PathBuf,
    },
    /// Explains the decision on one request: allowed or not, the deciding rule, the field view,
    /// and what would make it allow.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The request (JSON: principal, action, resource, context; see `--help`).
        #[arg(long_help = "The request as JSON, in the shape of a policy test:\n\
            {\"principal\": {\"id\": \"emp-7\", \"tenant\": \"store-1\", \"roles\": [\"support\"]},\n \
            \"action\": \"view\",\n \
            \"resource\": {\"type\": \"customer\", \"id\": \"42\", \"tenant\": \"store-1\", \"attributes\": {}},\n \
            \"context\": {\"now\": 1700000000, \"mfa_verified_at\": 1699999990,\n  \
            \"justification\": {\"ticket\": \"SUP-1\", \"names\": [\"customer\", \"42\"]}}}\n\
            `principal.kind`, `attributes` and `context` are optional; `context.now` defaults to the current time             (the shape of `custodian::rbac::RequestSpec`).")]
        request: PathBuf,
    },
}

pub(crate) fn run(out: &Output, command: PolicyCommand) -> Outcome {
    match command {
        PolicyCommand::Check {
            file,
            deny_warnings,
        } => check(out, &file, deny_warnings),
        PolicyCommand::Test { file, tests } => {
            let policy = load(&file)?;
            let report = policy
                .run_tests(&tests)
                .map_err(|e| Failure::Refused(e.to_string()))?;
            if out.json {
                let failures: Vec<_> = report
                    .failures()
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "name": f.name,
                            "line": f.line,
                            "mismatches": f.mismatches,
                            "actual": f.actual,
                        })
                    })
                    .collect();
                out.json(&serde_json::json!({
                    "policy": policy.source(),
                    "tests": tests.display().to_string(),
                    "passed": report.passed(),
                    "failed": report.failures().len(),
                    "failures": failures,
                }))?;
            } else {
                println!("{report}");
            }
            if report.all_passed() {
                Ok(())
            } else {
                Err(Failure::Refused(String::new()))
            }
        }
        PolicyCommand::Explain { file, request } => explain(out, &file, &request),
    }
}

/// Loads a policy; a policy that does not load is a failed check (exit 1), with the loader's
/// precise message (file, line, the fix).
pub(crate) fn load(path: &Path) -> Result<Policy, Failure> {
    Policy::from_path(path).map_err(|e| Failure::Refused(e.to_string()))
}

fn check(out: &Output, file: &Path, deny_warnings: bool) -> Outcome {
    let policy = load(file)?;
    let warnings: Vec<String> = policy.warnings().iter().map(ToString::to_string).collect();
    if out.json {
        out.json(&serde_json::json!({
            "policy": policy.source(),
            "digest": policy.digest(),
            "roles": policy.roles().count(),
            "rules": policy.rule_names().count(),
            "warnings": warnings,
        }))?;
    } else {
        println!(
            "{}: loaded ({} roles, {} rules, sha256 {})",
            policy.source(),
            policy.roles().count(),
            policy.rule_names().count(),
            policy.digest()
        );
        for warning in &warnings {
            println!("{}: {warning}", out.status(Status::Warn));
        }
        if warnings.is_empty() {
            println!("no warnings");
        }
    }
    if deny_warnings && !warnings.is_empty() {
        return Err(Failure::Refused(format!(
            "{} warnings (--deny-warnings)",
            warnings.len()
        )));
    }
    Ok(())
}

fn explain(out: &Output, file: &Path, request_path: &Path) -> Outcome {
    let policy = load(file)?;
    let text = std::fs::read_to_string(request_path).map_err(|e| {
        Failure::Store(format!(
            "cannot read request `{}`: {e}",
            request_path.display()
        ))
    })?;
    let request: RequestSpec = serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "request `{}` is not a request: {e} (see `custodian policy explain --help`)",
            request_path.display()
        ))
    })?;
    let principal = request.principal();
    let resource = request.resource();
    let now = request.now().unwrap_or_else(crate::store::now);
    let context = request.context(now);

    let decision = policy.check(&principal, request.action(), &resource, &context);
    let reason = decision.reason();
    let fields: Vec<(String, String, Visibility)> = decision
        .view()
        .iter()
        .map(|(name, kind, visibility)| (name.to_owned(), format!("{kind:?}"), visibility))
        .collect();
    let would_allow = if decision.is_allowed() {
        Vec::new()
    } else {
        what_would_allow(&policy, &request, now, &reason)
    };

    if out.json {
        let view: Vec<_> = fields
            .iter()
            .map(|(name, kind, visibility)| {
                serde_json::json!({ "field": name, "kind": kind.to_lowercase(), "visibility": visibility })
            })
            .collect();
        return out.json(&serde_json::json!({
            "allowed": decision.is_allowed(),
            "reason": reason.kind(),
            "rule": reason.rule(),
            "explanation": reason.to_string(),
            "restricted_by": decision.restricted_by(),
            "fields": view,
            "would_allow": would_allow,
            "policy_digest": policy.digest(),
        }));
    }
    println!(
        "{}: {reason}",
        if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        }
    );
    if let Some(rule) = decision.restricted_by() {
        println!("fields restricted by rule `{rule}`");
    }
    if !fields.is_empty() {
        let mut table = Table::new(&["FIELD", "KIND", "VISIBILITY"]);
        for (name, kind, visibility) in &fields {
            table.row(vec![
                name.clone(),
                kind.to_lowercase(),
                visibility.to_string(),
            ]);
        }
        table.print();
    }
    for hint in &would_allow {
        println!("would allow: {hint}");
    }
    Ok(())
}

/// What would turn a denial into an allow, each checked against the policy: the step-up or
/// justification the reason asks for, or a role the principal lacks. A forbid is never lifted.
fn what_would_allow(
    policy: &Policy,
    request: &RequestSpec,
    now: u64,
    reason: &Reason<'_>,
) -> Vec<String> {
    let mut hints = Vec::new();
    match reason {
        Reason::ForbiddenBy { rule } => {
            hints.push(format!(
                "nothing the caller can add: rule `{rule}` forbids it, and a forbid always wins"
            ));
            return hints;
        }
        Reason::UnknownResourceType { .. } | Reason::UnknownAction { .. } => {
            hints.push("a request the policy declares (check the resource type and action)".into());
            return hints;
        }
        _ => {}
    }
    let resource = &request.resource();
    // Everything the caller could present: a fresh MFA verification and a ticket naming this
    // resource.
    let full = RequestContext::at(now)
        .with_mfa_verified_at(now)
        .with_justification(
            Justification::ticket("explain").naming(resource.type_name(), resource.id()),
        );
    let principal = request.principal();
    let with_all = policy.check(&principal, request.action(), resource, &full);
    if with_all.is_allowed() {
        let rule = with_all.reason().rule().unwrap_or_default().to_owned();
        match reason {
            Reason::StepUpRequired { within_secs, .. } => hints.push(format!(
                "an MFA step-up at most {within_secs} s old (then rule `{rule}` allows, with a justification if it asks for one)"
            )),
            Reason::JustificationRequired { names_resource, .. } => hints.push(format!(
                "a justification{} (then rule `{rule}` allows)",
                if *names_resource {
                    " naming this resource"
                } else {
                    ""
                }
            )),
            _ => hints.push(format!(
                "a fresh MFA step-up and a justification naming this resource (rule `{rule}`)"
            )),
        }
        return hints;
    }
    // One more declared role, with everything presented.
    for role in policy.roles() {
        if principal.roles().iter().any(|r| r == role) {
            continue;
        }
        let candidate = request.principal().with_role(role);
        let decision = policy.check(&candidate, request.action(), resource, &full);
        if decision.is_allowed() {
            hints.push(format!(
                "role `{role}` (rule `{}`, with any step-up or justification it asks for)",
                decision.reason().rule().unwrap_or_default()
            ));
        }
    }
    if hints.is_empty() && principal.tenant() != resource.tenant() {
        hints.push(format!(
            "no role of tenant `{}` allows it on a resource of tenant `{}`; rules apply within the principal's own tenant unless `cross_tenant = true`",
            principal.tenant(),
            resource.tenant()
        ));
    }
    if hints.is_empty() {
        hints.push("no single added role, step-up or justification allows it".into());
    }
    hints
}
