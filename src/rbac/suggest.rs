//! "Did you mean `support`?": the closest known name to a misspelt one.

/// Returns the candidate closest to `unknown` by edit distance, if it is close enough to be a
/// plausible typo: at most one edit per three characters of the longer name, so names shorter
/// than three characters get no suggestion (`b` for `a` would be noise).
pub(crate) fn closest<'c, I>(unknown: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'c str>,
{
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(unknown, candidate);
        let longest = unknown.chars().count().max(candidate.chars().count());
        let allowed = longest / 3;
        if distance == 0 || distance > allowed {
            continue;
        }
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name.to_owned())
}

/// Edit distance over `char`s counting insertions, deletions, substitutions and swaps of two
/// neighbours (optimal string alignment), case-insensitive because `Support` for `support` and
/// `rolse` for `roles` are the commonest slips.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let at = |row: &[usize], j: usize| row.get(j).copied().unwrap_or(usize::MAX);
    // Three rows of the dynamic-programming table: two back (for swaps), one back, current.
    let mut before: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let ca = a.get(i - 1);
        let mut current = Vec::with_capacity(b.len().saturating_add(1));
        current.push(i);
        for j in 1..=b.len() {
            let cb = b.get(j - 1);
            let cost = usize::from(ca != cb);
            let mut best = at(&previous, j - 1)
                .saturating_add(cost)
                .min(at(&previous, j).saturating_add(1))
                .min(at(&current, j - 1).saturating_add(1));
            if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                best = best.min(at(&before, j - 2).saturating_add(1));
            }
            current.push(best);
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous.last().copied().unwrap_or(0)
}

/// Formats an optional suggestion as a `; did you mean ...?` suffix for error messages.
pub(crate) fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!("; did you mean `{name}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("support", "support"), 0);
        assert_eq!(edit_distance("suport", "support"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("Finance", "finance"), 0);
        assert_eq!(edit_distance("rolse", "roles"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn suggests_only_plausible_typos() {
        let roles = ["support", "fulfillment", "finance", "admin"];
        assert_eq!(closest("suport", roles), Some("support".to_owned()));
        assert_eq!(closest("fulfilment", roles), Some("fulfillment".to_owned()));
        assert_eq!(closest("marketing", roles), None);
        assert_eq!(closest("", roles), None);
    }
}
