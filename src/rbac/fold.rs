//! Names that look alike: the key under which two policy names collide.
//!
//! `Support` and `support`, or `ｓｕｐｐｏｒｔ` (fullwidth) and `support`, are different strings,
//! so they load as different roles; a reader of the policy, or of an audit record, would take
//! them for one. The loader warns when two names of the same kind have the same key.

use unicode_normalization::UnicodeNormalization;

/// The comparison key of a name, close to Unicode's NFKC_Casefold: NFKC, then case folding
/// with default-ignorable characters (zero-width joiners, soft hyphens, variation selectors)
/// removed, then NFKC again (folding can undo a composition).
///
/// Case folding here is the standard library's per-character lowercase mapping plus the full
/// case foldings that lowercase does not do: `ß` and `ẞ` fold to `ss`, final sigma `ς` and the
/// combining ypogegrammeni to `σ` and `ι`. It differs from Unicode full case folding for Greek
/// letters with a subscript iota, which lowercase to themselves rather than to two letters, so
/// `ᾳ` and `αι` do not collide.
pub(crate) fn fold(name: &str) -> String {
    let mut lowered = String::with_capacity(name.len());
    for c in name.nfkc().filter(|c| !is_default_ignorable(*c)) {
        match c {
            'ß' | 'ẞ' => lowered.push_str("ss"),
            'ς' => lowered.push('σ'),
            '\u{345}' => lowered.push('ι'),
            _ => lowered.extend(c.to_lowercase()),
        }
    }
    lowered.nfkc().collect()
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt): characters
/// that render as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_width_and_compatibility_forms_collide() {
        assert_eq!(fold("Support"), fold("support"));
        assert_eq!(fold("SUPPORT"), fold("support"));
        // Fullwidth letters (U+FF53 ...) are compatibility forms of ASCII.
        assert_eq!(fold("\u{ff53}upport"), "support");
        // The "fi" ligature, the Kelvin sign, the long s.
        assert_eq!(fold("\u{fb01}nance"), "finance");
        assert_eq!(fold("\u{212a}ey"), "key");
        assert_eq!(fold("\u{17f}upport"), "support");
        // Composed and decomposed é.
        assert_eq!(fold("caf\u{e9}"), fold("cafe\u{301}"));
        assert_eq!(fold("Stra\u{df}e"), "strasse");
        assert_eq!(fold("\u{3a3}\u{3c2}"), "\u{3c3}\u{3c3}");
        // Invisible characters: a zero-width joiner, a soft hyphen.
        assert_eq!(fold("ad\u{200d}min"), "admin");
        assert_eq!(fold("ad\u{ad}min"), "admin");
    }

    #[test]
    fn distinct_names_stay_distinct() {
        assert_ne!(fold("support"), fold("supports"));
        assert_ne!(fold("admin"), fold("adm1n"));
        // Cyrillic а (U+0430) is a confusable, not a compatibility form: out of scope here.
        assert_ne!(fold("\u{430}dmin"), fold("admin"));
    }
}
