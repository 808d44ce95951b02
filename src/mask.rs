//! Masking helpers: show a person enough of a value to recognise it, not enough to use it.
//!
//! Each helper takes any string (well-formed or not, any Unicode) and never panics: it walks
//! `char`s and never slices by byte index. Malformed input is masked completely rather than
//! partially, so a typo in stored data cannot reveal more than a well-formed value would.
//! The output length does not depend on the hidden part (except for [`email`]'s domain), so the
//! mask does not leak how long the hidden part was.
//!
//! ```
//! use custodian::mask;
//!
//! assert_eq!(mask::card_number("4242 4242 4242 4242"), "**** **** **** 4242");
//! assert_eq!(mask::email("jane@example.com"), "j***@example.com");
//! assert_eq!(mask::phone("+1 (555) 123-4567"), "********67");
//! assert_eq!(mask::text("Jane Doe"), "J***");
//! ```

/// What a fully masked value looks like.
pub const FULLY_MASKED: &str = "***";

/// Fewest digits a card number must have before its last four are shown (ISO/IEC 7812 numbers
/// have 12 to 19). With fewer, four digits would be most of the value, so nothing is shown.
const CARD_MIN_DIGITS: usize = 12;

/// Fewest digits a phone number must have before its last two are shown.
const PHONE_MIN_DIGITS: usize = 6;

/// Masks a payment card number down to its last four digits: `**** **** **** 4242`.
///
/// Spaces, dashes and other separators are ignored. A value with fewer than 12 ASCII digits is
/// not a card number and is masked completely (`**** **** **** ****`).
pub fn card_number(value: &str) -> String {
    let (count, last) = last_digits::<4>(value);
    if count < CARD_MIN_DIGITS {
        return "**** **** **** ****".to_owned();
    }
    let mut out = String::with_capacity(19);
    out.push_str("**** **** **** ");
    out.extend(last);
    out
}

/// Masks an email address to its first character and domain: `j***@example.com`.
///
/// The split is at the last `@`. A value without `@`, with an empty local part or domain, or
/// with a one-character local part (which the first character would reveal entirely) keeps no
/// character of the local part.
pub fn email(value: &str) -> String {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return FULLY_MASKED.to_owned();
    };
    if domain.is_empty() {
        return FULLY_MASKED.to_owned();
    }
    let mut chars = local.chars();
    let first = chars.next();
    let mut out = String::with_capacity(domain.len() + 8);
    if let (Some(first), Some(_)) = (first, chars.next()) {
        out.push(first);
    }
    out.push_str(FULLY_MASKED);
    out.push('@');
    out.push_str(domain);
    out
}

/// Masks a phone number to its last two digits: `********67`.
///
/// The output always has eight `*`, whatever the number's length or format. A value with fewer
/// than six ASCII digits is masked completely (`**********`).
pub fn phone(value: &str) -> String {
    let (count, last) = last_digits::<2>(value);
    if count < PHONE_MIN_DIGITS {
        return "**********".to_owned();
    }
    let mut out = String::with_capacity(10);
    out.push_str("********");
    out.extend(last);
    out
}

/// Masks free text (a name, an address) to its first character: `J***`.
///
/// Leading whitespace is skipped. A value of fewer than two characters is masked completely.
pub fn text(value: &str) -> String {
    let mut chars = value.trim_start().chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(_)) => {
            let mut out = String::with_capacity(8);
            out.push(first);
            out.push_str(FULLY_MASKED);
            out
        }
        _ => FULLY_MASKED.to_owned(),
    }
}

/// Counts the ASCII digits of `value` and returns the count with the last `N` of them (`'*'`
/// where there were fewer than `N`).
fn last_digits<const N: usize>(value: &str) -> (usize, [char; N]) {
    let mut last = ['*'; N];
    let mut count = 0usize;
    for c in value.chars().filter(char::is_ascii_digit) {
        count = count.saturating_add(1);
        last.rotate_left(1);
        if let Some(slot) = last.last_mut() {
            *slot = c;
        }
    }
    (count, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn card_number_keeps_last_four() {
        assert_eq!(card_number("4242424242424242"), "**** **** **** 4242");
        assert_eq!(card_number("4000-0566-5566-5556"), "**** **** **** 5556");
        assert_eq!(card_number(" 3782 822463 10005 "), "**** **** **** 0005");
    }

    #[test]
    fn card_number_too_short_shows_nothing() {
        assert_eq!(card_number("12345"), "**** **** **** ****");
        assert_eq!(card_number(""), "**** **** **** ****");
        assert_eq!(card_number("not a card"), "**** **** **** ****");
    }

    #[test]
    fn email_keeps_first_character_and_domain() {
        assert_eq!(email("jane@example.com"), "j***@example.com");
        assert_eq!(email("\"a@b\"@example.com"), "\"***@example.com");
        assert_eq!(email("élodie@exemple.fr"), "é***@exemple.fr");
    }

    #[test]
    fn email_malformed_is_fully_masked() {
        assert_eq!(email("no-at-sign"), "***");
        assert_eq!(email("jane@"), "***");
        assert_eq!(email("@example.com"), "***@example.com");
        assert_eq!(email("j@example.com"), "***@example.com");
    }

    #[test]
    fn phone_keeps_last_two_digits() {
        assert_eq!(phone("+1 (555) 123-4567"), "********67");
        assert_eq!(phone("030 1234 5678"), "********78");
        assert_eq!(phone("12"), "**********");
    }

    #[test]
    fn text_keeps_first_character() {
        assert_eq!(text("Jane Doe"), "J***");
        assert_eq!(text("  Zoë"), "Z***");
        assert_eq!(text("J"), "***");
        assert_eq!(text(""), "***");
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        for s in [
            "😀😀😀@😀",
            "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",
            "\u{0301}@x",
            "@",
            "@@",
            "\u{10FFFF}",
        ] {
            let _ = (card_number(s), email(s), phone(s), text(s));
        }
        // Non-ASCII digits are not digits here, so nothing of them is shown.
        assert_eq!(card_number("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"), "**** **** **** ****");
    }

    proptest! {
        #[test]
        fn never_panics_and_never_shows_more_than_allowed(s in any::<String>()) {
            let card = card_number(&s);
            prop_assert_eq!(card.chars().count(), 19);
            prop_assert!(card.chars().filter(char::is_ascii_digit).count() <= 4);
            let p = phone(&s);
            prop_assert_eq!(p.chars().count(), 10);
            prop_assert!(p.chars().filter(char::is_ascii_digit).count() <= 2);
            let t = text(&s);
            prop_assert!(t.chars().count() <= 4);
            let e = email(&s);
            prop_assert!(e.contains(FULLY_MASKED));
        }
    }
}
