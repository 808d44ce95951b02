//! Normalizers: the canonical form of a value before it is blind-indexed, so that
//! ` Jane@Example.COM ` and `jane@example.com` find the same record.

use super::RecordError;
use core::fmt;
use std::sync::Arc;

type CustomFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// How a value is normalized before indexing.
#[derive(Clone)]
#[non_exhaustive]
pub enum Normalizer {
    /// Trim surrounding white space only.
    Trim,
    /// E-mail address: trim and lowercase; must contain one `@` with text on both sides.
    Email,
    /// Phone number: the digits of its international form (country code first), as E.164 without
    /// the `+`. A number written without `+` or `00` gets `default_country_code` after dropping one
    /// leading trunk `0`; without a default, such a number is refused.
    Phone {
        /// Country calling code for national numbers (44 for the UK, 1 for NANP), if any.
        default_country_code: Option<u16>,
    },
    /// The caller's own function; its error text is reported with the column name.
    Custom(Arc<CustomFn>),
}

impl Normalizer {
    /// A normalizer from a closure.
    pub fn custom(f: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static) -> Self {
        Normalizer::Custom(Arc::new(f))
    }

    /// Normalizes `value`.
    pub fn apply(&self, value: &str) -> Result<String, RecordError> {
        match self {
            Normalizer::Trim => Ok(value.trim().to_owned()),
            Normalizer::Email => email(value),
            Normalizer::Phone {
                default_country_code,
            } => phone(value, *default_country_code),
            Normalizer::Custom(f) => f(value).map_err(RecordError::Normalize),
        }
    }
}

impl fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Normalizer::Trim => f.write_str("Trim"),
            Normalizer::Email => f.write_str("Email"),
            Normalizer::Phone {
                default_country_code,
            } => f
                .debug_struct("Phone")
                .field("default_country_code", default_country_code)
                .finish(),
            Normalizer::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

fn email(value: &str) -> Result<String, RecordError> {
    let normalized = value.trim().to_lowercase();
    match normalized.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(normalized)
        }
        _ => Err(RecordError::Normalize(
            "an e-mail address needs exactly one `@` with text on both sides".into(),
        )),
    }
}

fn phone(value: &str, default_country_code: Option<u16>) -> Result<String, RecordError> {
    let trimmed = value.trim();
    if let Some(bad) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')' | '/')))
    {
        return Err(RecordError::Normalize(format!(
            "a phone number cannot contain {bad:?}"
        )));
    }
    if trimmed.chars().skip(1).any(|c| c == '+') {
        return Err(RecordError::Normalize(
            "`+` may only start a phone number".into(),
        ));
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let international = if trimmed.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        let code = default_country_code.ok_or_else(|| {
            RecordError::Normalize(
                "a phone number without `+` or `00` needs a default country code".into(),
            )
        })?;
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        format!("{code}{national}")
    };
    // E.164: at most 15 digits; the shortest real numbers have 8 with their country code.
    if !(8..=15).contains(&international.len()) || international.starts_with('0') {
        return Err(RecordError::Normalize(format!(
            "a phone number has 8 to 15 digits with its country code, got {}",
            international.len()
        )));
    }
    Ok(international)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            Normalizer::Email.apply("  Jane.Doe@Example.COM ").unwrap(),
            "jane.doe@example.com"
        );
        for bad in ["", "jane", "@example.com", "jane@", "a@b@c"] {
            assert!(Normalizer::Email.apply(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_become_international_digits() {
        let uk = Normalizer::Phone {
            default_country_code: Some(44),
        };
        assert_eq!(uk.apply("+44 20 7946 0958").unwrap(), "442079460958");
        assert_eq!(uk.apply("0044 (20) 7946-0958").unwrap(), "442079460958");
        assert_eq!(uk.apply("020 7946 0958").unwrap(), "442079460958");
        let none = Normalizer::Phone {
            default_country_code: None,
        };
        assert!(none.apply("020 7946 0958").is_err());
        assert_eq!(none.apply("+1 (415) 555-0100").unwrap(), "14155550100");
        for bad in ["+44 20 x946", "12+34", "+1234", "+1234567890123456", "☎"] {
            assert!(uk.apply(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn custom_normalizers_report_their_error() {
        let upper = Normalizer::custom(|v| {
            if v.is_empty() {
                Err("empty".into())
            } else {
                Ok(v.to_uppercase())
            }
        });
        assert_eq!(upper.apply("ab").unwrap(), "AB");
        assert_eq!(upper.apply(""), Err(RecordError::Normalize("empty".into())));
        assert_eq!(format!("{upper:?}"), "Custom(..)");
    }
}
