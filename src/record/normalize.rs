//! Normalizers: the canonical form of a value before it is blind-indexed, so that
//! ` Jane@Example.COM ` and `jane@example.com` find the same record. The e-mail rules are
//! documented on [`Normalizer`].

use super::RecordError;
use core::fmt;
use std::sync::Arc;
use unicode_normalization::UnicodeNormalization;

type CustomFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// How a value is normalized before indexing.
///
/// # E-mail addresses
///
/// A normalizer decides which spellings count as one address. Merging too little only makes a
/// lookup miss; merging too much is an account takeover: if a look-alike address gets the token of
/// a customer's address, a lookup by the look-alike (a password reset typed by an attacker who owns
/// the look-alike mailbox) finds the customer's row. [`Normalizer::Email`] therefore merges only
/// spellings that are the same address, and refuses input that would need a riskier merge:
///
/// 1. Surrounding white space is removed (Unicode `White_Space`).
/// 2. Control characters are refused.
/// 3. Every character must be its own NFKC form. This refuses compatibility characters (fullwidth
///    `ｋ`, ligatures `ﬁ`, mathematical letters `𝐤`, superscripts, circled letters, the no-break
///    space) and the characters that Unicode replaces even under canonical normalization, such as
///    KELVIN SIGN U+212A (which NFC turns into `K`), OHM SIGN U+2126 and ANGSTROM SIGN U+212B.
///    Each of them looks like, or becomes, a different character than was typed, so
///    `\u{212A}ate@example.com` is refused instead of getting the token of `kate@example.com`.
///    After this step NFKC and NFC agree, so "NFKC" is what the address is normalized with.
/// 4. The address is put in NFC (canonical composition): `é` typed as one code point (U+00E9) and
///    as `e` + COMBINING ACUTE ACCENT (U+0301) give one token.
/// 5. It is lowercased with Unicode's default lowercase mapping (Rust's `str::to_lowercase`), then
///    put in NFC again.
/// 6. It must contain exactly one `@` with text on both sides.
///
/// Why lowercase mapping and not Unicode full case folding: case folding also merges `ß` with `ss`
/// and final `ς` with `σ`, which IDNA2008 keeps apart (`faß.de` and `fass.de` are different domains
/// with different owners), so folding would give the owner of one the other's token. Lowercasing
/// never maps a non-ASCII letter to an ASCII one once step 3 has refused KELVIN SIGN, so no
/// non-ASCII input can share a token with an ASCII address (tested for every Unicode scalar value).
/// Why not ASCII only: shops have customers with internationalized addresses (RFC 6531), and
/// refusing them would push applications to index such columns with weaker custom normalizers.
///
/// What this does not do: look-alikes from other scripts (Cyrillic `а` U+0430 for Latin `a`) and
/// invisible characters (U+200B ZERO WIDTH SPACE) are kept, so they are different addresses with
/// different tokens; a lookup by one finds nothing (spotting mixed-script addresses at sign-up is
/// the application's job, Unicode TS #39). A domain is not converted between its Unicode form and
/// its `xn--` A-label form, so `jane@bücher.example` and `jane@xn--bcher-kva.example` get different
/// tokens: store and look up addresses in one form. Sub-addressing (`jane+shop@`) and provider
/// rules (dots in Gmail local parts) are not applied; use [`Normalizer::custom`] on top if needed.
#[derive(Clone)]
#[non_exhaustive]
pub enum Normalizer {
    /// Trim surrounding white space only.
    Trim,
    /// E-mail address: trim, refuse control and compatibility characters (KELVIN SIGN and other
    /// look-alikes), compose (NFC), lowercase; must contain one `@` with text on both sides. The
    /// rules and the reasons for them are above, under "E-mail addresses".
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
    let trimmed = value.trim();
    if trimmed.is_ascii() {
        // The common case, and the same result as the general path below: ASCII text is its own
        // NFKC and NFC form, and its lowercase mapping is the ASCII one.
        if let Some(c) = trimmed.chars().find(char::is_ascii_control) {
            return Err(control_character(c));
        }
        return check_one_at(trimmed.to_ascii_lowercase());
    }
    email_unicode(trimmed)
}

/// The rules of the module documentation, for any trimmed text.
fn email_unicode(trimmed: &str) -> Result<String, RecordError> {
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(control_character(c));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|&c| !(c.is_ascii() || is_own_nfkc_form(c)))
    {
        let replacement: String = core::iter::once(c).nfkc().collect();
        return Err(RecordError::Normalize(format!(
            "an e-mail address cannot contain U+{:04X} `{c}`, a compatibility or look-alike form \
             of `{}`; type the address with the ordinary characters",
            u32::from(c),
            replacement.escape_debug()
        )));
    }
    let composed: String = trimmed.nfc().collect();
    check_one_at(composed.to_lowercase().nfc().collect())
}

fn control_character(c: char) -> RecordError {
    RecordError::Normalize(format!(
        "an e-mail address cannot contain the control character U+{:04X}",
        u32::from(c)
    ))
}

/// Accepts `normalized` if it has exactly one `@` with text on both sides.
fn check_one_at(normalized: String) -> Result<String, RecordError> {
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

/// Whether `c` is unchanged by NFKC: neither a compatibility character nor one that canonical
/// normalization replaces (a singleton such as KELVIN SIGN, or a composition exclusion).
fn is_own_nfkc_form(c: char) -> bool {
    let mut normalized = core::iter::once(c).nfkc();
    normalized.next() == Some(c) && normalized.next().is_none()
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

    fn email(value: &str) -> Result<String, RecordError> {
        Normalizer::Email.apply(value)
    }

    #[test]
    fn kelvin_sign_and_other_compatibility_look_alikes_are_refused() {
        for typed in [
            "\u{212A}ate@example.com",          // KELVIN SIGN, NFC makes it `K`
            "kate@example.\u{212A}om",          // in the domain too
            "\u{FF4B}ate@example.com",          // FULLWIDTH LATIN SMALL LETTER K
            "\u{1D424}ate@example.com",         // MATHEMATICAL BOLD SMALL K
            "\u{24DA}ate@example.com",          // CIRCLED LATIN SMALL LETTER K
            "\u{FB01}lip@example.com",          // LATIN SMALL LIGATURE FI
            "kate\u{FF20}example.com",          // FULLWIDTH COMMERCIAL AT
            "kate@example\u{2024}com",          // ONE DOT LEADER
            "\u{2126}mega@example.com",         // OHM SIGN
            "\u{212B}ngstr\u{F6}m@example.com", // ANGSTROM SIGN
            "k\u{A0}ate@example.com",           // NO-BREAK SPACE inside
            "kate\u{B2}@example.com",           // SUPERSCRIPT TWO
        ] {
            let err = email(typed).unwrap_err().to_string();
            assert!(err.contains("U+"), "{typed:?}: {err}");
        }
        let err = email("\u{212A}ate@example.com").unwrap_err().to_string();
        assert!(
            err.contains("U+212A") && err.contains("`K`") && !err.contains("ate@"),
            "{err}"
        );
        for typed in [
            "ja\u{0}ne@example.com",
            "ja\nne@example.com",
            "jane@exa\u{85}mple.com",
        ] {
            assert!(
                email(typed).unwrap_err().to_string().contains("control"),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn canonically_equal_spellings_share_one_form_and_nothing_more_is_merged() {
        let nfc = "jos\u{E9}@b\u{FC}cher.example";
        let nfd = "jose\u{301}@bu\u{308}cher.example";
        assert_eq!(email(nfc).unwrap(), nfc);
        assert_eq!(email(nfd).unwrap(), nfc);
        assert_eq!(email(" JOS\u{C9}@B\u{DC}CHER.EXAMPLE ").unwrap(), nfc);
        assert_eq!(email("JOSE\u{301}@BU\u{308}CHER.example").unwrap(), nfc);
        // Case variants are merged...
        assert_eq!(email("JANE@FA\u{1E9E}.DE").unwrap(), "jane@fa\u{DF}.de");
        assert_eq!(
            email("\u{130}nci@example.com").unwrap(),
            "i\u{307}nci@example.com"
        );
        // ...but not case folding's extra merges, nor the dotless i with i.
        assert_eq!(email("jane@fa\u{DF}.de").unwrap(), "jane@fa\u{DF}.de");
        assert_eq!(
            email("\u{131}nci@example.com").unwrap(),
            "\u{131}nci@example.com"
        );
        assert_eq!(email("\u{3C2}@example.com").unwrap(), "\u{3C2}@example.com");
        // Look-alikes from other scripts and invisible characters are other addresses.
        assert_eq!(
            email("\u{430}lice@example.com").unwrap(),
            "\u{430}lice@example.com"
        );
        assert_eq!(
            email("ka\u{200B}te@example.com").unwrap(),
            "ka\u{200B}te@example.com"
        );
    }

    /// The security property, over every Unicode scalar value: a non-ASCII character inside an
    /// address never yields an all-ASCII form, so no look-alike shares a token with an ASCII
    /// address. (Before NFKC checks, KELVIN SIGN gave `kate@example.com`.)
    #[test]
    fn no_non_ascii_character_makes_an_ascii_address() {
        for c in (0x80..=0x10_FFFF).filter_map(char::from_u32) {
            // Inside the local part and inside the domain (at either end, white space is trimmed).
            for typed in [
                format!("ka{c}te@example.com"),
                format!("kate@ex{c}ample.com"),
            ] {
                if let Ok(normalized) = email(&typed) {
                    assert!(
                        !normalized.is_ascii(),
                        "U+{:04X} in {typed:?} gives {normalized:?}",
                        u32::from(c)
                    );
                }
            }
        }
    }

    /// Every non-ASCII character whose NFKC form, lowercased, is one ASCII letter, digit, `@` or
    /// `.`: the compatibility look-alikes of an address's characters.
    fn compatibility_look_alikes() -> &'static std::collections::BTreeMap<char, Vec<char>> {
        static TABLE: std::sync::OnceLock<std::collections::BTreeMap<char, Vec<char>>> =
            std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut table = std::collections::BTreeMap::<char, Vec<char>>::new();
            for c in (0x80..=0x10_FFFF).filter_map(char::from_u32) {
                let folded: String = core::iter::once(c)
                    .nfkc()
                    .collect::<String>()
                    .to_lowercase();
                let mut chars = folded.chars();
                if let (Some(a), None) = (chars.next(), chars.next())
                    && (a.is_ascii_alphanumeric() || a == '@' || a == '.')
                {
                    table.entry(a).or_default().push(c);
                }
            }
            table
        })
    }

    /// Look-alikes from other scripts that NFKC leaves alone (Unicode TS #39 confusables).
    const SCRIPT_LOOK_ALIKES: &[(char, char)] = &[
        ('a', '\u{430}'),
        ('c', '\u{441}'),
        ('e', '\u{435}'),
        ('i', '\u{456}'),
        ('j', '\u{458}'),
        ('o', '\u{43E}'),
        ('o', '\u{3BF}'),
        ('p', '\u{440}'),
        ('s', '\u{455}'),
        ('x', '\u{445}'),
        ('y', '\u{443}'),
        ('g', '\u{261}'),
        ('l', '\u{4CF}'),
        ('v', '\u{3BD}'),
    ];

    proptest::proptest! {
        #[test]
        fn the_ascii_fast_path_agrees_with_the_general_rules(typed in "[\\x00-\\x7f]{0,24}") {
            let trimmed = typed.trim();
            let general = email_unicode(trimmed);
            proptest::prop_assert_eq!(email(&typed), general.clone());
            // The same for a typical address with the generated text inside.
            let typed = format!("Jane{typed}@Example.com");
            proptest::prop_assert_eq!(email(&typed), email_unicode(typed.trim()));
        }

        #[test]
        fn look_alikes_never_share_the_form_of_the_ascii_address(
            local in "[a-z0-9.]{1,12}",
            domain in "[a-z0-9]{1,12}\\.[a-z]{2,6}",
            at in proptest::sample::select((0..30).collect::<Vec<usize>>()),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let address = format!("{local}@{domain}");
            let original = email(&address).unwrap();
            let at = at % address.len();
            let target = address.chars().nth(at).unwrap();
            let table = compatibility_look_alikes();
            let mut candidates: Vec<char> = table.get(&target).cloned().unwrap_or_default();
            candidates.extend(SCRIPT_LOOK_ALIKES.iter().filter(|(a, _)| *a == target).map(|&(_, l)| l));
            proptest::prop_assume!(!candidates.is_empty());
            let look_alike = candidates[pick.index(candidates.len())];
            let spoofed: String = address
                .chars()
                .enumerate()
                .map(|(i, c)| if i == at { look_alike } else { c })
                .collect();
            let result = email(&spoofed);
            proptest::prop_assert_ne!(result.as_ref(), Ok(&original), "{:?}", spoofed);
            // Compatibility characters are refused; other scripts are simply other addresses.
            if table.get(&target).is_some_and(|l| l.contains(&look_alike)) {
                proptest::prop_assert!(result.is_err(), "{:?}", spoofed);
            }
        }

        #[test]
        fn nfc_nfd_and_ascii_case_spellings_share_one_form(
            local in "[a-zA-Z0-9._\u{C0}-\u{17F}\u{300}-\u{36F}\u{391}-\u{3C9}\u{410}-\u{44F}\u{AC00}-\u{AC20}\u{1100}-\u{1112}\u{1161}-\u{1175}]{1,12}",
            domain in "[a-zA-Z0-9\u{C0}-\u{17F}\u{300}-\u{36F}\u{1E00}-\u{1EFF}]{1,12}",
        ) {
            let typed = format!("{local}@{domain}.example");
            let result = email(&typed);
            let nfc: String = typed.nfc().collect();
            let nfd: String = typed.nfd().collect();
            // NFC and NFD spellings agree always; the typed text may hold a character that NFC
            // replaces (U+0340 for U+0300), which is refused while its NFC form is not. (Compared
            // as options: a refusal may name another code point of the same text.)
            proptest::prop_assert_eq!(email(&nfc).ok(), email(&nfd).ok());
            if result.is_ok() {
                proptest::prop_assert_eq!(email(&nfc).ok(), result.clone().ok());
            }
            proptest::prop_assert_eq!(email(&typed.to_ascii_uppercase()).ok(), result.clone().ok());
            if let Ok(normalized) = &result {
                // Idempotent, in NFC and NFKC, lowercase.
                let again = email(normalized);
                proptest::prop_assert_eq!(again.as_ref(), Ok(normalized));
                proptest::prop_assert!(normalized.nfkc().eq(normalized.chars()));
                proptest::prop_assert_eq!(&normalized.to_lowercase(), normalized);
            }
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
