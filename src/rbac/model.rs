//! The policy document as written: the serde model shared by the TOML and JSON formats.
//!
//! Nothing here is checked beyond its shape (unknown keys are rejected); `validate.rs` resolves
//! names and checks meaning. docs/RBAC.md describes every key.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::view::{FieldKind, Visibility};

/// A whole policy document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    pub version: u32,
    /// The kinds of principal the policy knows; `["employee"]` when absent.
    #[serde(default)]
    pub principal_kinds: Option<Vec<String>>,
    #[serde(default)]
    pub resource_types: Entries<ResourceTypeDecl>,
    #[serde(default)]
    pub roles: Entries<RoleDecl>,
    #[serde(default)]
    pub rules: Vec<RuleDecl>,
}

/// `[resource_types.<name>]`: what can be done to a kind of resource and what it carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceTypeDecl {
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for people reading the policy")]
    pub description: Option<String>,
    pub actions: Vec<String>,
    #[serde(default)]
    pub attributes: Entries<AttributeType>,
    #[serde(default)]
    pub fields: Entries<FieldKind>,
}

/// The type of a resource attribute that conditions may test: `"id"`, `"integer"` or
/// `"ref:<kind>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttributeType {
    /// An identifier whose kind the declaration does not say (the format before typed
    /// references). A `principal_is` condition on it needs the policy to have one principal kind.
    Id,
    /// A whole number, like an amount in minor units (cents).
    Integer,
    /// A reference to an entity of this kind (a principal kind or a resource type).
    Ref(String),
}

impl AttributeType {
    pub(crate) fn describe(&self) -> String {
        match self {
            AttributeType::Id => "id".to_owned(),
            AttributeType::Integer => "integer".to_owned(),
            AttributeType::Ref(kind) => format!("ref:{kind}"),
        }
    }
}

impl<'de> Deserialize<'de> for AttributeType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "id" => Ok(AttributeType::Id),
            "integer" => Ok(AttributeType::Integer),
            _ => match text.strip_prefix("ref:") {
                Some(kind) => Ok(AttributeType::Ref(kind.to_owned())),
                // Worded like serde's own message, so that the loader adds "did you mean".
                None => Err(de::Error::custom(format_args!(
                    "unknown variant `{text}`, expected `id`, `integer` or `ref:<kind>` (like `ref:employee`)"
                ))),
            },
        }
    }
}

/// `[roles.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleDecl {
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for people reading the policy")]
    pub description: Option<String>,
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EffectDecl {
    Allow,
    Deny,
}

/// One `[[rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDecl {
    pub name: String,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for people reading the policy")]
    pub description: Option<String>,
    pub effect: EffectDecl,
    pub roles: Vec<String>,
    #[serde(default)]
    pub except_roles: Vec<String>,
    pub permissions: Vec<String>,
    #[serde(default)]
    pub fields: Option<Entries<Visibility>>,
    #[serde(default)]
    pub hide_fields: Option<Vec<String>>,
    #[serde(default)]
    pub mask_fields: Option<Vec<String>>,
    #[serde(default)]
    pub cross_tenant: Option<bool>,
    #[serde(default)]
    pub when: ConditionsDecl,
    /// Deny rules only: the rule applies unless every condition listed here is met.
    #[serde(default)]
    pub unless: Option<ConditionsDecl>,
}

/// A rule's `when` (or `unless`) table: every condition listed must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionsDecl {
    pub principal_is: Option<String>,
    #[serde(default)]
    pub below: Entries<i64>,
    #[serde(default)]
    pub at_most: Entries<i64>,
    #[serde(default)]
    pub at_least: Entries<i64>,
    #[serde(default)]
    pub above: Entries<i64>,
    pub mfa_within: Option<u64>,
    pub justification: Option<JustificationDecl>,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

/// What a `justification` condition asks of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JustificationDecl {
    /// Any justification.
    Any,
    /// A justification naming this very resource (its type and id).
    NamesResource,
}

/// A table read as an ordered list of entries, so that a JSON object's repeated key is reported
/// instead of silently replacing the first (TOML rejects repeated keys itself).
#[derive(Debug)]
pub(crate) struct Entries<V>(pub Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

/// A point in time: Unix seconds, a TOML offset date-time (`2025-01-31T18:00:00Z`) or the same
/// as an RFC 3339 string (for JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub u64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl<'de> Visitor<'de> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix seconds or a date-time with offset, like 2025-01-31T18:00:00Z")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                u64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("a time before 1970 is not supported"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                parse_datetime(v).map(Timestamp).map_err(E::custom)
            }

            // A TOML date-time arrives as a one-entry map holding its text.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Timestamp, A::Error> {
                let Some((_, text)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom("expected a date-time"));
                };
                self.visit_str(&text)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Timestamp, A::Error> {
                Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
            }
        }

        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// Parses an RFC 3339 date-time with an offset into Unix seconds.
fn parse_datetime(text: &str) -> Result<u64, String> {
    let parsed: toml::value::Datetime = text
        .parse()
        .map_err(|_| format!("`{text}` is not a date-time like 2025-01-31T18:00:00Z"))?;
    let (Some(date), Some(time), Some(offset)) = (parsed.date, parsed.time, parsed.offset) else {
        return Err(format!(
            "`{text}` needs a date, a time and a UTC offset, like 2025-01-31T18:00:00Z"
        ));
    };
    let offset_minutes: i64 = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_minutes * 60;
    u64::try_from(seconds).map_err(|_| format!("`{text}` is before 1970"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). Inputs come from
/// a parsed TOML date (year 0..=9999, month 1..=12, day 1..=31), so nothing overflows.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_convert_to_unix_seconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2025-01-31T18:00:00Z"), Ok(1_738_346_400));
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00+02:00"),
            Ok(1_709_200_800)
        );
        assert!(parse_datetime("2025-01-31").is_err());
        assert!(parse_datetime("2025-01-31T18:00:00").is_err());
        assert!(parse_datetime("1969-12-31T23:59:59Z").is_err());
        assert!(parse_datetime("tomorrow").is_err());
    }
}
