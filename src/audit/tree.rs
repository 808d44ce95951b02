//! Storage-agnostic Merkle tree maths over a flat, append-only table of stored hashes.
//!
//! Every complete subtree of the log (a leaf is a subtree of one) has one hash, stored once, in
//! the order appends produce them: appending entry `n` stores its leaf hash and then the hash of
//! every subtree that leaf completes. That order gives each node `(level, n)` (the `n`-th subtree
//! of `2^level` leaves) one integer, [`stored_hash_index`], the scheme of Go's
//! `golang.org/x/mod/sumdb/tlog`. A memory vector, an SQLite or a PostgreSQL table
//! `(index INTEGER PRIMARY KEY, hash BLOB)` can then back the tree: appends only insert, and a tree
//! hash or a proof is a handful of point reads, asked for in one batch through [`HashReader`].
//!
//! Every function here first computes *which* stored hashes it needs, reads them in one call, and
//! then hashes synchronously, so an asynchronous store can prefetch the same indexes.

use super::error::AuditError;
use super::hash::{EMPTY_ROOT, Hash, node_hash};

/// The largest tree size supported: 2^62 entries keeps every stored-hash index inside a `u64`.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Reads stored hashes by their index (see [`stored_hash_index`]).
///
/// One call asks for every hash an operation needs, in increasing index order and without
/// repeats, so that a database can answer with one query. The answer must have exactly one hash per index, in the same order.
pub trait HashReader {
    /// The hashes stored at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or_else(|| {
                        AuditError::StoreContract(format!(
                            "stored hash {index} asked for, but only {} are stored",
                            self.len()
                        ))
                    })
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        (**self).read_hashes(indexes)
    }
}

/// The stored-hash index of node `(level, n)`: the `n`-th complete subtree of `2^level` leaves.
///
/// The node is stored together with its last leaf, `m = (n + 1) * 2^level - 1`, right after the
/// `2m - popcount(m)` hashes stored for the entries before it, at offset `level` (the leaf first,
/// then each subtree it completes, smallest first). The caller keeps `(n + 1) << level` at or
/// below [`MAX_TREE_SIZE`].
pub const fn stored_hash_index(level: u32, n: u64) -> u64 {
    let last_leaf = ((n + 1) << level) - 1;
    stored_hash_count(last_leaf) + level as u64
}

/// How many hashes a tree of `size` entries has stored: `2 * size - popcount(size)`.
pub const fn stored_hash_count(size: u64) -> u64 {
    2 * size - size.count_ones() as u64
}

/// Refuses sizes past [`MAX_TREE_SIZE`].
pub(crate) fn check_size(size: u64) -> Result<(), AuditError> {
    if size > MAX_TREE_SIZE {
        return Err(AuditError::TreeTooLarge(size));
    }
    Ok(())
}

/// The complete subtrees `(level, n)` that cover the leaves `lo..hi`, left to right, largest first.
///
/// INVARIANT: `lo` is a multiple of a power of two at least `hi - lo` (true of every range the
/// RFC 9162 recursions produce from `0..size`), so the greedy split equals the RFC's split at the
/// largest power of two smaller than the range.
fn cover(lo: u64, hi: u64, out: &mut Vec<(u32, u64)>) {
    let mut lo = lo;
    while lo < hi {
        let width = hi - lo;
        // The largest power of two that fits in the range and that `lo` is aligned to.
        let mut level = 63 - width.leading_zeros();
        if lo != 0 {
            level = level.min(lo.trailing_zeros());
        }
        out.push((level, lo >> level));
        lo += 1 << level;
    }
}

/// A range of leaves `lo..hi` whose hash (RFC 9162 `MTH(D[lo:hi])`) a proof needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

/// Reads, in one call, what is needed to hash each span, and returns the spans' hashes in order.
pub(crate) fn span_hashes<R: HashReader + ?Sized>(
    spans: &[Span],
    reader: &R,
) -> Result<Vec<Hash>, AuditError> {
    let mut nodes = Vec::new();
    let mut counts = Vec::with_capacity(spans.len());
    for span in spans {
        let before = nodes.len();
        cover(span.lo, span.hi, &mut nodes);
        counts.push(nodes.len() - before);
    }
    let wanted: Vec<u64> = nodes
        .iter()
        .map(|&(level, n)| stored_hash_index(level, n))
        .collect();
    // One read, in increasing order and without repeats, as the reader's contract promises.
    let mut indexes = wanted.clone();
    indexes.sort_unstable();
    indexes.dedup();
    let read = read_exactly(reader, &indexes)?;
    let hashes = wanted
        .iter()
        .map(|index| {
            indexes
                .binary_search(index)
                .ok()
                .and_then(|at| read.get(at))
                .copied()
                .ok_or_else(short_read)
        })
        .collect::<Result<Vec<Hash>, AuditError>>()?;
    let mut rest = hashes.as_slice();
    let mut out = Vec::with_capacity(spans.len());
    for count in counts {
        let (mine, tail) = rest.split_at_checked(count).ok_or_else(short_read)?;
        rest = tail;
        out.push(fold(mine).ok_or_else(short_read)?);
    }
    Ok(out)
}

/// Hashes complete subtrees, given left to right, into the hash of the range they cover.
fn fold(subtrees: &[Hash]) -> Option<Hash> {
    let (last, init) = subtrees.split_last()?;
    Some(
        init.iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    )
}

fn short_read() -> AuditError {
    AuditError::StoreContract("fewer hashes than indexes".into())
}

/// Calls the reader and checks it answered one hash per index.
fn read_exactly<R: HashReader + ?Sized>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, AuditError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(AuditError::StoreContract(format!(
            "{} hashes asked for, {} returned",
            indexes.len(),
            hashes.len()
        )));
    }
    Ok(hashes)
}

/// The root hash of the first `size` entries (RFC 9162 `MTH(D[0:size])`), from at most
/// `log2(size) + 1` stored hashes read in one call. The empty tree's root is `SHA-256("")`.
pub fn tree_hash<R: HashReader + ?Sized>(size: u64, reader: &R) -> Result<Hash, AuditError> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let hashes = span_hashes(&[Span { lo: 0, hi: size }], reader)?;
    hashes.first().copied().ok_or_else(short_read)
}

/// The stored hashes to append when the leaves `leaf_hashes` are added to a tree of `size`
/// entries, in stored-index order starting at [`stored_hash_count`]`(size)`.
///
/// Reads, in one call, the roots of the complete subtrees of the current tree (at most
/// `log2(size) + 1`); the hashes of the new leaves themselves come from the argument. Entry `n`
/// adds its leaf hash and one hash per trailing one bit of `n`, so a batch of `k` adds `2k` hashes
/// or a few fewer.
pub fn hashes_to_append<R: HashReader + ?Sized>(
    size: u64,
    leaf_hashes: &[Hash],
    reader: &R,
) -> Result<Vec<Hash>, AuditError> {
    let added = u64::try_from(leaf_hashes.len()).map_err(|_| AuditError::TreeTooLarge(u64::MAX))?;
    let new_size = size
        .checked_add(added)
        .ok_or(AuditError::TreeTooLarge(u64::MAX))?;
    check_size(new_size)?;
    let mut nodes = Vec::new();
    cover(0, size, &mut nodes);
    let indexes = node_indexes(&nodes);
    let roots = read_exactly(reader, &indexes)?;
    let mut frontier = Frontier {
        subtrees: nodes.iter().map(|&(level, _)| level).zip(roots).collect(),
    };
    let mut out = Vec::with_capacity(leaf_hashes.len() * 2);
    for leaf in leaf_hashes {
        frontier.push(*leaf, |hash| out.push(hash));
    }
    Ok(out)
}

/// The stored hashes [`hashes_to_append`] reads to append to a tree of `size` entries (the roots
/// of its complete subtrees, in increasing index order), so that an asynchronous store can read
/// them before it calls a synchronous build.
#[cfg(any(feature = "postgres", test))]
pub(crate) fn append_reads(size: u64) -> Result<Vec<u64>, AuditError> {
    check_size(size)?;
    let mut nodes = Vec::new();
    cover(0, size, &mut nodes);
    Ok(node_indexes(&nodes))
}

fn node_indexes(nodes: &[(u32, u64)]) -> Vec<u64> {
    nodes
        .iter()
        .map(|&(level, n)| stored_hash_index(level, n))
        .collect()
}

/// The roots of the complete subtrees of a tree, largest first: all that is needed to append
/// leaves and to compute the root, in `O(log n)` memory (a "compact range" from `0`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    subtrees: Vec<(u32, Hash)>,
}

impl Frontier {
    /// Appends a leaf, passing each stored hash it adds to `stored` (the leaf first, then every
    /// subtree it completes).
    pub(crate) fn push(&mut self, leaf: Hash, mut stored: impl FnMut(Hash)) {
        stored(leaf);
        let (mut level, mut hash) = (0, leaf);
        while let Some(&(top_level, top_hash)) = self.subtrees.last() {
            if top_level != level {
                break;
            }
            self.subtrees.pop();
            hash = node_hash(&top_hash, &hash);
            level += 1;
            stored(hash);
        }
        self.subtrees.push((level, hash));
    }

    /// The root of the leaves pushed so far (RFC 9162 `MTH`).
    pub(crate) fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.subtrees.iter().map(|&(_, hash)| hash).collect();
        fold(&hashes).unwrap_or(EMPTY_ROOT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::hash::leaf_hash;

    /// The index a naive simulation of appends gives each node, for every node of 100 entries.
    #[test]
    fn stored_hash_index_matches_the_append_order() {
        let mut order = Vec::new();
        for n in 0u64..100 {
            order.push((0u32, n));
            let mut level = 0;
            let mut m = n;
            while m & 1 == 1 {
                level += 1;
                m >>= 1;
                order.push((level, m));
            }
        }
        for (index, &(level, n)) in order.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), index as u64, "({level}, {n})");
        }
        assert_eq!(stored_hash_count(100), order.len() as u64);
    }

    #[test]
    fn batch_appends_equal_single_appends() {
        let leaves: Vec<Hash> = (0u32..77).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut one_by_one: Vec<Hash> = Vec::new();
        for (size, leaf) in leaves.iter().enumerate() {
            let added = hashes_to_append(size as u64, &[*leaf], &one_by_one).unwrap();
            assert_eq!(one_by_one.len() as u64, stored_hash_count(size as u64));
            one_by_one.extend(added);
        }
        let mut batched: Vec<Hash> = Vec::new();
        for chunk in [&leaves[..5], &leaves[5..6], &leaves[6..40], &leaves[40..]] {
            let size = stored_to_size(&batched, leaves.len());
            batched.extend(hashes_to_append(size, chunk, &batched).unwrap());
        }
        assert_eq!(one_by_one, batched);
    }

    fn stored_to_size(stored: &[Hash], max: usize) -> u64 {
        (0..=max as u64)
            .find(|&s| stored_hash_count(s) == stored.len() as u64)
            .unwrap()
    }

    #[test]
    fn frontier_root_equals_tree_hash() {
        let mut stored: Vec<Hash> = Vec::new();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), EMPTY_ROOT);
        for i in 0u32..50 {
            frontier.push(leaf_hash(&i.to_be_bytes()), |h| stored.push(h));
            assert_eq!(
                frontier.root(),
                tree_hash(u64::from(i) + 1, &stored).unwrap()
            );
        }
    }

    #[test]
    fn sizes_past_the_limit_are_refused() {
        assert!(matches!(
            tree_hash(MAX_TREE_SIZE + 1, &Vec::new()),
            Err(AuditError::TreeTooLarge(_))
        ));
        assert!(hashes_to_append(u64::MAX, &[EMPTY_ROOT], &Vec::new()).is_err());
    }

    /// A reader that records what it is asked for.
    struct Recording<'a>(&'a [Hash], std::cell::RefCell<Vec<u64>>);

    impl HashReader for Recording<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
            self.1.borrow_mut().extend_from_slice(indexes);
            self.0.read_hashes(indexes)
        }
    }

    #[test]
    fn append_reads_are_what_an_append_reads() {
        let mut stored: Vec<Hash> = Vec::new();
        for size in 0..70u64 {
            let recording = Recording(&stored, std::cell::RefCell::new(Vec::new()));
            let leaf = leaf_hash(&size.to_be_bytes());
            let added = hashes_to_append(size, &[leaf], &recording).unwrap();
            assert_eq!(
                recording.1.into_inner(),
                append_reads(size).unwrap(),
                "size {size}"
            );
            stored.extend(added);
        }
        assert!(append_reads(MAX_TREE_SIZE + 1).is_err());
    }

    #[test]
    fn a_short_reader_is_an_error_not_a_panic() {
        let stored: Vec<Hash> = vec![EMPTY_ROOT];
        assert!(matches!(
            tree_hash(5, &stored),
            Err(AuditError::StoreContract(_))
        ));
    }
}
