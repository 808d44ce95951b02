//! Every kind of policy load error, with the file, line and column it names and the fix it
//! suggests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::rbac::{Policy, PolicyError, PolicyErrorKind};

const TYPES: &str = r#"version = 1

[resource_types.order]
actions = ["view", "refund"]
attributes = { assigned_agent = "id", total = "integer" }
fields = { items = "text", email = "email" }

[roles.support]
[roles.finance]
"#;

/// Loads `TYPES` followed by `rest`, expecting an error.
fn error(rest: &str) -> (String, PolicyError) {
    let text = format!("{TYPES}{rest}");
    let error = Policy::from_toml(&text, "shop.toml").expect_err("the policy should not load");
    (text, error)
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

/// 1-based column of `needle` on its line.
fn column_of(text: &str, needle: &str) -> usize {
    let line = text.lines().find(|l| l.contains(needle)).unwrap();
    line[..line.find(needle).unwrap()].chars().count() + 1
}

fn assert_at(text: &str, error: &PolicyError, needle: &str) {
    let location = error.location();
    assert_eq!(location.source, "shop.toml");
    assert_eq!(location.line, Some(line_of(text, needle)), "{error}");
    assert_eq!(location.column, Some(column_of(text, needle)), "{error}");
}

fn rule(body: &str) -> String {
    format!("\n[[rules]]\nname = \"r\"\n{body}\n")
}

#[test]
fn valid_base_loads() {
    let text = format!(
        "{TYPES}{}",
        rule("effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]")
    );
    Policy::from_toml(&text, "shop.toml").unwrap();
}

#[test]
fn syntax_error_has_line_and_column() {
    let (text, e) = error("[[rules]]\nname = \"r\"\neffect = \n");
    assert!(matches!(e.kind(), PolicyErrorKind::Syntax { .. }), "{e}");
    assert_eq!(e.location().line, Some(line_of(&text, "effect = ")));
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nrolse = [\"support\"]\npermissions = [\"order:view\"]",
    ));
    let PolicyErrorKind::Syntax { message } = e.kind() else {
        panic!("{e}")
    };
    assert!(message.contains("unknown field `rolse`"), "{message}");
    assert!(message.ends_with("did you mean `roles`?"), "{message}");
    assert_at(&text, &e, "rolse");
}

#[test]
fn unknown_effect_suggests_allow() {
    let (text, e) = error(&rule(
        "effect = \"alow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]",
    ));
    let PolicyErrorKind::Syntax { message } = e.kind() else {
        panic!("{e}")
    };
    assert!(message.ends_with("did you mean `allow`?"), "{message}");
    assert_at(&text, &e, "\"alow\"");
}

#[test]
fn wrong_value_type_is_located() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = \"support\"\npermissions = [\"order:view\"]",
    ));
    assert!(matches!(e.kind(), PolicyErrorKind::Syntax { .. }), "{e}");
    assert_eq!(
        e.location().line,
        Some(line_of(&text, "roles = \"support\""))
    );
}

#[test]
fn duplicate_role_table_is_a_toml_error() {
    let (text, e) = error("[roles.support]\n");
    assert!(matches!(e.kind(), PolicyErrorKind::Syntax { .. }), "{e}");
    assert!(
        e.to_string().contains("duplicate") || e.to_string().contains("redefin"),
        "{e}"
    );
    assert_eq!(e.location().line, Some(text.lines().count()));
}

#[test]
fn unsupported_version() {
    let text = TYPES.replace("version = 1", "version = 2");
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert_eq!(e.kind(), &PolicyErrorKind::UnsupportedVersion { found: 2 });
    assert_at(&text, &e, "2");
}

#[test]
fn invalid_names() {
    let text = TYPES.replace("\"refund\"]", "\"refund all\"]");
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert!(
        matches!(e.kind(), PolicyErrorKind::InvalidName { what: "action", name, .. } if name == "refund all"),
        "{e}"
    );
    assert_at(&text, &e, "\"refund all\"");

    let (text, e) = error("[roles.\"ops:lead\"]\n");
    assert!(
        matches!(e.kind(), PolicyErrorKind::InvalidName { what: "role", .. }),
        "{e}"
    );
    assert_at(&text, &e, "\"ops:lead\"");
}

#[test]
fn duplicate_rule_name() {
    let body = "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]";
    let (text, e) = error(&format!("{}{}", rule(body), rule(body)));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::DuplicateName {
            what: "rule",
            name: "r".to_owned()
        }
    );
    // The second definition is the one reported.
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "name = \"r\"")
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert_eq!(e.location().line, Some(second));
    assert_eq!(e.location().path, "rules[1].name");
}

#[test]
fn duplicate_action() {
    let text = TYPES.replace("\"refund\"]", "\"refund\", \"view\"]");
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::DuplicateName {
            what: "action",
            name: "view".to_owned()
        }
    );
    assert_eq!(e.location().path, "resource_types.order.actions[2]");
}

#[test]
fn empty_lists() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = []\npermissions = [\"order:view\"]",
    ));
    assert_eq!(e.kind(), &PolicyErrorKind::EmptyList { key: "roles" });
    assert_at(&text, &e, "[]");
    let (_, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = []",
    ));
    assert_eq!(e.kind(), &PolicyErrorKind::EmptyList { key: "permissions" });
}

#[test]
fn unknown_role_in_rule_suggests_the_declared_one() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"finance\", \"suport\"]\npermissions = [\"order:view\"]",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownRole {
            name: "suport".to_owned(),
            suggestion: Some("support".to_owned())
        }
    );
    assert_at(&text, &e, "\"suport\"");
    assert_eq!(e.location().path, "rules[0].roles[1]");
    assert_eq!(
        e.to_string(),
        format!(
            "shop.toml:{}:{} (at `rules[0].roles[1]`): unknown role `suport`; did you mean `support`?",
            line_of(&text, "suport"),
            column_of(&text, "\"suport\"")
        )
    );
}

#[test]
fn unknown_role_in_inherits_and_except_roles() {
    let (text, e) = error("[roles.admin]\ninherits = [\"support\", \"marketing\"]\n");
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownRole {
            name: "marketing".to_owned(),
            suggestion: None
        }
    );
    assert_at(&text, &e, "\"marketing\"");

    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"*\"]\nexcept_roles = [\"admn\"]\npermissions = [\"order:view\"]",
    ));
    assert!(
        matches!(e.kind(), PolicyErrorKind::UnknownRole { name, .. } if name == "admn"),
        "{e}"
    );
    assert_at(&text, &e, "\"admn\"");
}

#[test]
fn role_cycles_are_named() {
    let (text, e) = error(
        "[roles.a]\ninherits = [\"b\"]\n[roles.b]\ninherits = [\"support\", \"c\"]\n[roles.c]\ninherits = [\"a\"]\n",
    );
    let PolicyErrorKind::RoleCycle { cycle } = e.kind() else {
        panic!("{e}")
    };
    assert_eq!(cycle, &["a", "b", "c", "a"]);
    assert!(
        e.to_string()
            .contains("`a` inherits `b` inherits `c` inherits `a`"),
        "{e}"
    );
    assert_at(&text, &e, "\"a\"]");

    let (_, e) = error("[roles.loop]\ninherits = [\"loop\"]\n");
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::RoleCycle {
            cycle: vec!["loop".into(), "loop".into()]
        }
    );
}

#[test]
fn invalid_permission() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order.view\"]",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::InvalidPermission {
            permission: "order.view".to_owned()
        }
    );
    assert_at(&text, &e, "\"order.view\"");
}

#[test]
fn unknown_resource_type_and_action() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"ordr:view\"]",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownResourceType {
            name: "ordr".to_owned(),
            suggestion: Some("order".to_owned())
        }
    );
    assert_at(&text, &e, "\"ordr:view\"");

    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:veiw\"]",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownAction {
            resource_type: "order".to_owned(),
            action: "veiw".to_owned(),
            suggestion: Some("view".to_owned())
        }
    );
    assert_at(&text, &e, "\"order:veiw\"");
}

#[test]
fn condition_on_undeclared_attribute() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = { principal_is = \"assigned_agnet\" }",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownAttribute {
            resource_type: "order".to_owned(),
            attribute: "assigned_agnet".to_owned(),
            suggestion: Some("assigned_agent".to_owned())
        }
    );
    assert_at(&text, &e, "\"assigned_agnet\"");

    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = { below = { totl = 100 } }",
    ));
    assert!(
        matches!(e.kind(), PolicyErrorKind::UnknownAttribute { attribute, .. } if attribute == "totl")
    );
    assert_at(&text, &e, "totl");
}

#[test]
fn condition_on_attribute_of_the_wrong_type() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = { below = { assigned_agent = 100 } }",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::AttributeType {
            resource_type: "order".to_owned(),
            attribute: "assigned_agent".to_owned(),
            declared: "id".to_owned(),
            needed: "integer".to_owned()
        }
    );
    assert_at(&text, &e, "assigned_agent = 100");
}

#[test]
fn unknown_field_in_grant_and_restriction() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\nfields = { emial = \"masked\" }",
    ));
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownField {
            resource_type: "order".to_owned(),
            field: "emial".to_owned(),
            suggestion: Some("email".to_owned())
        }
    );
    assert_at(&text, &e, "emial");

    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\nhide_fields = [\"items\", \"phone\"]",
    ));
    assert!(matches!(e.kind(), PolicyErrorKind::UnknownField { field, .. } if field == "phone"));
    assert_at(&text, &e, "\"phone\"");
}

#[test]
fn too_many_fields() {
    let fields: Vec<String> = (0..65).map(|i| format!("f{i} = \"text\"")).collect();
    let text = format!(
        "version = 1\n[resource_types.wide]\nactions = [\"view\"]\nfields = {{ {} }}\n",
        fields.join(", ")
    );
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::TooManyFields {
            resource_type: "wide".to_owned(),
            count: 65,
            max: 64
        }
    );
    assert_eq!(e.location().line, Some(4));
}

#[test]
fn keys_that_do_not_fit_the_effect() {
    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\nfields = { items = \"full\" }",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::KeyNotForEffect {
            key: "fields",
            effect: "deny",
            ..
        }
    ));
    assert_at(&text, &e, "fields = { items = \"full\"");
    assert!(
        e.to_string()
            .contains("`fields` has no meaning in a deny rule; "),
        "{e}"
    );

    let (_, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\nhide_fields = [\"items\"]",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::KeyNotForEffect {
            key: "hide_fields",
            effect: "allow",
            ..
        }
    ));
    assert!(e.to_string().contains("in an allow rule"), "{e}");

    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\ncross_tenant = true",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::KeyNotForEffect {
            key: "cross_tenant",
            ..
        }
    ));
    assert_at(&text, &e, "cross_tenant");
}

#[test]
fn invalid_condition_values() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nwhen = { mfa_within = 0 }",
    ));
    assert!(
        matches!(
            e.kind(),
            PolicyErrorKind::InvalidValue {
                key: "mfa_within",
                ..
            }
        ),
        "{e}"
    );
    assert_at(&text, &e, "0 }");

    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\n[rules.when]\nvalid_from = 2025-02-01T00:00:00Z\nvalid_until = 2025-01-01T00:00:00Z",
    ));
    assert!(
        matches!(
            e.kind(),
            PolicyErrorKind::InvalidValue {
                key: "valid_until",
                ..
            }
        ),
        "{e}"
    );
    assert_at(&text, &e, "2025-01-01T00:00:00Z");

    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nwhen = { valid_until = 2025-01-01 }",
    ));
    assert!(
        matches!(e.kind(), PolicyErrorKind::Syntax { message } if message.contains("UTC offset")),
        "{e}"
    );
    assert_eq!(e.location().line, Some(line_of(&text, "valid_until")));
}

#[test]
fn file_errors() {
    let e = Policy::from_path("/nonexistent/shop.toml").unwrap_err();
    assert!(matches!(e.kind(), PolicyErrorKind::Io { .. }), "{e}");
    assert_eq!(e.location().source, "/nonexistent/shop.toml");
    assert_eq!(e.location().line, None);

    let e = Policy::from_path("shop.yaml").unwrap_err();
    assert_eq!(e.kind(), &PolicyErrorKind::UnknownFormat);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "version = 1\n[roles.a]\ninherits = [\"b\"]\n").unwrap();
    let e = Policy::from_path(&path).unwrap_err();
    assert_eq!(e.location().source, path.display().to_string());
    assert_eq!(e.location().line, Some(3));
}

#[test]
fn json_errors() {
    let e = Policy::from_json(
        "{\n  \"version\": 1,\n  \"roles\": {\n    \"a\": {\"inherits\": [\"b\"]}\n  }\n}",
        "shop.json",
    )
    .unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownRole {
            name: "b".to_owned(),
            suggestion: None
        }
    );
    assert_eq!(e.location().path, "roles.a.inherits[0]");
    assert_eq!(e.location().line, None);

    let e = Policy::from_json(
        "{\n  \"version\": 1,\n  \"roles\": {\n    \"a\": {},,\n  }\n}",
        "shop.json",
    )
    .unwrap_err();
    assert!(matches!(e.kind(), PolicyErrorKind::Syntax { .. }), "{e}");
    assert_eq!(e.location().line, Some(4));
    assert!(!e.to_string().contains(" at line "), "{e}");

    // JSON allows repeated keys; the loader does not let the second silently win.
    let e = Policy::from_json(
        r#"{"version": 1, "roles": {"a": {}, "a": {"inherits": []}}}"#,
        "shop.json",
    )
    .unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::DuplicateName {
            what: "role",
            name: "a".to_owned()
        }
    );

    let e = Policy::from_json(
        r#"{"version": 1, "rules": [{"name": "r", "efect": "allow"}]}"#,
        "shop.json",
    )
    .unwrap_err();
    assert!(e.to_string().contains("did you mean `effect`?"), "{e}");
}

#[test]
fn unless_only_on_deny_rules_and_never_empty() {
    let (text, e) = error(&rule(
        "effect = \"allow\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nunless = { mfa_within = 300 }",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::KeyNotForEffect {
            key: "unless",
            effect: "allow",
            ..
        }
    ));
    assert_at(&text, &e, "unless = {");
    assert!(
        e.to_string().contains("write a deny rule with `unless`"),
        "{e}"
    );

    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nunless = {}",
    ));
    assert_eq!(e.kind(), &PolicyErrorKind::EmptyList { key: "unless" });
    assert_eq!(e.location().line, Some(line_of(&text, "unless = {}")));

    // `unless` conditions are checked like `when` conditions.
    let (text, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nunless = { below = { totl = 10 } }",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::UnknownAttribute { attribute, suggestion: Some(s), .. }
            if attribute == "totl" && s == "total"
    ));
    assert_at(&text, &e, "totl");
    let (_, e) = error(&rule(
        "effect = \"deny\"\nroles = [\"finance\"]\npermissions = [\"order:view\"]\nunless = { mfa_within = 0 }",
    ));
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::InvalidValue {
            key: "mfa_within",
            ..
        }
    ));
}

/// A schema with two kinds of principal, where a plain `id` attribute is ambiguous.
const TWO_KINDS: &str = r#"version = 1
principal_kinds = ["employee", "service"]

[resource_types.order]
actions = ["view", "refund"]
attributes = { assigned_agent = "id", assigned_bot = "ref:service", customer_id = "ref:customer", total = "integer" }

[resource_types.customer]
actions = ["view"]

[roles.support]
"#;

#[test]
fn ambiguous_entity_kind_names_the_rule_and_the_fix() {
    let text = format!(
        "{TWO_KINDS}\n[[rules]]\nname = \"refund-own\"\neffect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = {{ principal_is = \"assigned_agent\" }}\n"
    );
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::AmbiguousEntityKind {
            rule: "refund-own".to_owned(),
            resource_type: "order".to_owned(),
            attribute: "assigned_agent".to_owned(),
            principal_kinds: vec!["employee".to_owned(), "service".to_owned()],
        }
    );
    assert_at(&text, &e, "\"assigned_agent\" }");
    let message = e.to_string();
    assert!(
        message.contains("rule `refund-own`")
            && message.contains("principals may be `employee` or `service`")
            && message.contains("like `assigned_agent = \"ref:employee\"`"),
        "{message}"
    );

    // A typed attribute of a principal kind is fine.
    let ok = format!(
        "{TWO_KINDS}\n[[rules]]\nname = \"bot-refunds\"\neffect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = {{ principal_is = \"assigned_bot\" }}\n"
    );
    Policy::from_toml(&ok, "shop.toml").unwrap();
}

#[test]
fn principal_is_on_a_reference_to_a_non_principal() {
    let text = format!(
        "{TWO_KINDS}\n[[rules]]\nname = \"own-orders\"\neffect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:view\"]\nwhen = {{ principal_is = \"customer_id\" }}\n"
    );
    let e = Policy::from_toml(&text, "shop.toml").unwrap_err();
    assert!(matches!(
        e.kind(),
        PolicyErrorKind::NotAPrincipalKind { rule, kind, .. } if rule == "own-orders" && kind == "customer"
    ));
    assert!(
        e.to_string()
            .contains("test an attribute declared `ref:employee`"),
        "{e}"
    );
    assert_at(&text, &e, "\"customer_id\" }");
}

#[test]
fn entity_kinds_must_be_declared() {
    let (text, e) = error(
        "\n[resource_types.parcel]\nactions = [\"ship\"]\nattributes = { courier = \"ref:employe\" }\n",
    );
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownEntityKind {
            name: "employe".to_owned(),
            suggestion: Some("employee".to_owned()),
        }
    );
    assert_at(&text, &e, "\"ref:employe\"");
    // A resource type is a kind too.
    let text = format!(
        "{TYPES}\n[resource_types.parcel]\nactions = [\"ship\"]\nattributes = {{ order = \"ref:order\" }}\n"
    );
    Policy::from_toml(&text, "shop.toml").unwrap();

    let (text, e) = error(
        "\n[resource_types.parcel]\nactions = [\"ship\"]\nattributes = { courier = \"reference\" }\n",
    );
    assert!(
        matches!(e.kind(), PolicyErrorKind::Syntax { message } if message.contains("`ref:<kind>`")),
        "{e}"
    );
    assert_eq!(e.location().line, Some(line_of(&text, "\"reference\"")));
}

#[test]
fn principal_kinds_are_names() {
    for (kinds, expected) in [
        ("[]", "`principal_kinds` must not be empty"),
        ("[\"staff\", \"staff\"]", "duplicate principal kind `staff`"),
        ("[\"staff member\"]", "invalid principal kind name"),
    ] {
        let text = format!("version = 1\nprincipal_kinds = {kinds}\n");
        let e = Policy::from_toml(&text, "p.toml").unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
        assert_eq!(e.location().line, Some(2), "{e}");
    }
}

#[test]
fn plain_id_attributes_keep_working_with_one_principal_kind() {
    // The format before typed references: no `principal_kinds`, `assigned_agent = "id"`.
    let text = format!(
        "{TYPES}{}",
        rule(
            "effect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nwhen = { principal_is = \"assigned_agent\" }"
        )
    );
    let policy = Policy::from_toml(&text, "shop.toml").unwrap();
    assert_eq!(policy.principal_kinds().collect::<Vec<_>>(), ["employee"]);
}
