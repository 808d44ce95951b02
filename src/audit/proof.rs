//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4): generation over a
//! [`HashReader`], and verification as pure functions over hashes, for an auditor with no store.
//!
//! A proof proves something only against a root that is trusted, which in practice means the root
//! of a verified [`Checkpoint`](super::Checkpoint): see [`verify_receipt`](super::verify_receipt)
//! and [`verify_checkpoint_consistency`](super::verify_checkpoint_consistency).

use serde::{Deserialize, Serialize};

use super::error::AuditError;
use super::hash::{Hash, node_hash};
use super::tree::{HashReader, Span, check_size, span_hashes};

/// The most hashes a proof can need: one per level of a tree of 2^62 entries, and one more for a
/// consistency proof's first hash. Longer proofs are refused before any hashing.
pub const MAX_PROOF_HASHES: usize = 64;

/// Proof that one entry is in the tree of a given size: the RFC 9162 audit path, leaf to root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry's index (0-based).
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The sibling hashes, from the leaf's sibling up to the root's child.
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Checks that `leaf` (the leaf hash of the entry) is at `leaf_index` in the tree with `root`.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), AuditError> {
        verify_inclusion(leaf, self.leaf_index, self.tree_size, &self.hashes, root)
    }
}

/// Proof that a tree of `old_size` entries is a prefix of the tree of `new_size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older (smaller) tree size.
    pub old_size: u64,
    /// The newer tree size.
    pub new_size: u64,
    /// The RFC 9162 consistency path.
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks that the tree with `old_root` is a prefix of the tree with `new_root`.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), AuditError> {
        verify_consistency(
            self.old_size,
            self.new_size,
            old_root,
            new_root,
            &self.hashes,
        )
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The audit path of leaf `index` in the tree of `tree_size` entries (RFC 9162 `PATH`), from
/// stored hashes read in one call.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    index: u64,
    tree_size: u64,
    reader: &R,
) -> Result<InclusionProof, AuditError> {
    check_size(tree_size)?;
    if index >= tree_size {
        return Err(AuditError::IndexOutOfRange { index, tree_size });
    }
    // Walk from the root down to the leaf; the path lists the siblings the other way round.
    let mut siblings = Vec::new();
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            siblings.push(Span { lo: lo + k, hi });
            hi = lo + k;
        } else {
            siblings.push(Span { lo, hi: lo + k });
            lo += k;
        }
    }
    siblings.reverse();
    Ok(InclusionProof {
        leaf_index: index,
        tree_size,
        hashes: span_hashes(&siblings, reader)?,
    })
}

/// The consistency path from the tree of `old_size` entries to the tree of `new_size` entries
/// (RFC 9162 `PROOF`), from stored hashes read in one call. Empty when the sizes are equal or the
/// old tree is empty.
pub fn consistency_proof<R: HashReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    reader: &R,
) -> Result<ConsistencyProof, AuditError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(AuditError::SizesReversed {
            old: old_size,
            new: new_size,
        });
    }
    let mut spans = Vec::new();
    if old_size > 0 {
        // SUBPROOF(m, D[lo:hi], complete), walked from the root down; reversed at the end.
        let (mut lo, mut hi, mut m, mut complete) = (0, new_size, old_size, true);
        while m != hi - lo {
            let k = split_point(hi - lo);
            if m <= k {
                spans.push(Span { lo: lo + k, hi });
                hi = lo + k;
            } else {
                spans.push(Span { lo, hi: lo + k });
                lo += k;
                m -= k;
                complete = false;
            }
        }
        if !complete {
            spans.push(Span { lo, hi });
        }
        spans.reverse();
    }
    Ok(ConsistencyProof {
        old_size,
        new_size,
        hashes: span_hashes(&spans, reader)?,
    })
}

/// The step both RFC 9162 verifiers share: "if LSB(fn) is not set, right-shift both fn and sn
/// equally until either LSB(fn) is set or fn is 0" (the node was the last one of its level, so
/// the path goes up without a sibling).
fn climb_right_edge(mut fn_: u64, mut sn: u64) -> (u64, u64) {
    while fn_ & 1 == 0 && fn_ != 0 {
        fn_ >>= 1;
        sn >>= 1;
    }
    (fn_, sn)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): `leaf` is entry `index` of the tree of
/// `tree_size` entries whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    let fail = |reason| AuditError::InclusionProof {
        index,
        tree_size,
        reason,
    };
    if index >= tree_size {
        return Err(fail("the leaf index is not below the tree size"));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(fail("the proof has more hashes than any tree needs"));
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(fail("the proof has more hashes than this tree size needs"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            (fn_, sn) = climb_right_edge(fn_, sn);
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("the proof has fewer hashes than this tree size needs"));
    }
    if r != *root {
        return Err(fail("the computed root differs from the expected root"));
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): the tree of `old_size` entries with
/// `old_root` is a prefix of the tree of `new_size` entries with `new_root`.
///
/// Equal sizes need an empty proof and equal roots. A proof from the empty tree proves nothing
/// and is refused, as transparency-dev/merkle does; a caller that trusts nothing yet has nothing
/// to check.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    let fail = |reason| AuditError::ConsistencyProof {
        old: old_size,
        new: new_size,
        reason,
    };
    if old_size > new_size {
        return Err(fail("the old size is larger than the new size"));
    }
    if old_size == 0 {
        return Err(fail("a proof from the empty tree proves nothing"));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(fail("equal sizes need an empty proof"));
        }
        if old_root != new_root {
            return Err(fail("equal sizes but different roots"));
        }
        return Ok(());
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(fail("the proof has more hashes than any tree needs"));
    }
    // Step 2: a power-of-two old tree is itself a node of the new tree, so the proof starts there.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(fail("the proof is empty")),
        }
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(fail("the proof has more hashes than these sizes need"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            (fn_, sn) = climb_right_edge(fn_, sn);
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(fail("the proof has fewer hashes than these sizes need"));
    }
    if fr != *old_root {
        return Err(fail(
            "the computed old root differs from the expected old root",
        ));
    }
    if sr != *new_root {
        return Err(fail(
            "the computed new root differs from the expected new root",
        ));
    }
    Ok(())
}
