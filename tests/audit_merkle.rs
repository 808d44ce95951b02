//! The Merkle tree maths of `custodian::audit` against published vectors, a naive reference, and
//! every single-bit or single-number corruption of a proof.
//!
//! Vectors: the RFC 6962 test data of Certificate Transparency as published by
//! transparency-dev/merkle (`testonly/constants.go`: leaves, roots at sizes 0..8, node hashes; and
//! the inclusion and consistency proofs of `proof/verify_test.go` before commit bcba819, which
//! moved the same proofs to `testdata/`). There the inclusion vectors number leaves from 1; here
//! they are converted to 0-based indexes, as the `testdata/inclusion/*/happy-path.json` files
//! give them.

use custodian::audit::{
    EMPTY_ROOT, Hash, HashReader, MAX_PROOF_HASHES, consistency_proof, hashes_to_append,
    inclusion_proof, leaf_hash, node_hash, stored_hash_count, tree_hash, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// transparency-dev/merkle `testonly.LeafInputs()`.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// transparency-dev/merkle `testonly.RootHashes()`: the root at each size 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// transparency-dev/merkle `testonly.NodeHashes()` level 0: the leaf hashes.
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// transparency-dev/merkle `inclusionProofs` (0-based leaf index, tree size, audit path).
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// transparency-dev/merkle `consistencyProofs` (old size, new size, path).
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// A flat table of stored hashes built by appending `leaves` one batch at a time.
fn store_of(leaves: &[Hash]) -> Vec<Hash> {
    let mut stored = Vec::new();
    for (size, leaf) in leaves.iter().enumerate() {
        stored.extend(hashes_to_append(size as u64, &[*leaf], &stored).unwrap());
    }
    assert_eq!(stored.len() as u64, stored_hash_count(leaves.len() as u64));
    stored
}

fn vector_store() -> Vec<Hash> {
    let leaves: Vec<Hash> = LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect();
    store_of(&leaves)
}

fn path(hexes: &[&str]) -> Vec<Hash> {
    hexes.iter().map(|x| h(x)).collect()
}

#[test]
fn leaf_hashes_match_the_published_ones() {
    for (leaf, want) in LEAVES.iter().zip(LEAF_HASHES) {
        assert_eq!(leaf_hash(&unhex(leaf)), h(want), "leaf {leaf:?}");
    }
    assert_eq!(EMPTY_ROOT, h(ROOTS[0]));
}

#[test]
fn roots_at_every_size_match_the_published_ones() {
    let stored = vector_store();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(
            tree_hash(size as u64, &stored).unwrap(),
            h(want),
            "size {size}"
        );
    }
}

#[test]
fn published_inclusion_proofs_are_generated_and_verify() {
    let stored = vector_store();
    for &(index, size, want) in INCLUSION {
        let proof = inclusion_proof(index, size, &stored).unwrap();
        assert_eq!(proof.hashes, path(want), "leaf {index} of {size}");
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        verify_inclusion(&leaf, index, size, &path(want), &root).unwrap();
        proof.verify(&leaf, &root).unwrap();
    }
}

#[test]
fn published_consistency_proofs_are_generated_and_verify() {
    let stored = vector_store();
    for &(old, new, want) in CONSISTENCY {
        let proof = consistency_proof(old, new, &stored).unwrap();
        assert_eq!(proof.hashes, path(want), "{old} -> {new}");
        let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        verify_consistency(old, new, &r1, &r2, &path(want)).unwrap();
        proof.verify(&r1, &r2).unwrap();
    }
}

/// transparency-dev/merkle `testdata/consistency/additional/*.json`: the edge cases of sizes 0
/// and 1, all refused but the one with equal sizes, an empty proof and equal roots.
#[test]
fn published_consistency_edge_cases() {
    let empty = EMPTY_ROOT;
    let other = h(ROOTS[1]);
    /// (size1, size2, root1, root2, proof, accepted)
    type Probe<'a> = (u64, u64, Hash, Hash, &'a [Hash], bool);
    let cases: &[Probe] = &[
        (0, 1, empty, empty, &[empty], false),
        (0, 0, empty, other, &[], false),
        (1, 1, empty, other, &[], false),
        (2, 1, other, empty, &[], false),
        (1, 0, other, empty, &[], false),
        (0, 1, other, empty, &[], false),
        (0, 1, empty, other, &[], false),
        (1, 1, other, other, &[], true),
        (0, 0, other, other, &[], false),
        (1, 2, other, empty, &[], false),
        (1, 1, empty, empty, &[empty], false),
        (0, 0, empty, empty, &[empty], false),
    ];
    for (i, &(s1, s2, r1, r2, proof, ok)) in cases.iter().enumerate() {
        assert_eq!(
            verify_consistency(s1, s2, &r1, &r2, proof).is_ok(),
            ok,
            "case {i}"
        );
    }
}

#[test]
fn proofs_outside_the_tree_are_refused() {
    let stored = vector_store();
    assert!(inclusion_proof(8, 8, &stored).is_err());
    assert!(inclusion_proof(0, 0, &stored).is_err());
    assert!(consistency_proof(5, 4, &stored).is_err());
    // Asking past the stored table is a store-contract error, not a panic.
    assert!(inclusion_proof(3, 9, &stored).is_err());
    assert!(consistency_proof(3, 20, &stored).is_err());
}

// ---- A naive reference: RFC 9162 §2.1 written plainly, over the whole list of entries. ----

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => Hash::digest(b""),
        1 => leaf_hash(&d[0]),
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path_ref(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path_ref(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path_ref(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// The length of PATH(m, D[n]) (for sizes past any real tree too).
fn path_len(m: usize, n: u64) -> usize {
    let (mut lo, mut hi, mut len) = (0u64, n, 0);
    while hi - lo > 1 {
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        if (m as u64) < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    len
}

/// The length of PROOF(m, D[n]) for 0 < m < n.
fn consistency_len(m: u64, n: u64) -> usize {
    let (mut lo, mut hi, mut m, mut complete, mut len) = (0u64, n, m, true, 0);
    while m != hi - lo {
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        if m <= k {
            hi = lo + k;
        } else {
            lo += k;
            m -= k;
            complete = false;
        }
        len += 1;
    }
    len + usize::from(!complete)
}

fn entries(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = (i as u32).to_be_bytes().to_vec();
            e.push(salt);
            e
        })
        .collect()
}

fn stored_for(d: &[Vec<u8>]) -> Vec<Hash> {
    let leaves: Vec<Hash> = d.iter().map(|e| leaf_hash(e)).collect();
    store_of(&leaves)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tree_hash_equals_the_naive_root(n in 0usize..300, salt: u8) {
        let d = entries(n, salt);
        let stored = stored_for(&d);
        for size in [0, n / 3, n / 2, n.saturating_sub(1), n] {
            prop_assert_eq!(tree_hash(size as u64, &stored).unwrap(), mth(&d[..size]));
        }
    }

    #[test]
    fn inclusion_proofs_equal_the_naive_path(n in 1usize..300, pick: prop::sample::Index, salt: u8) {
        let d = entries(n, salt);
        let stored = stored_for(&d);
        let size = 1 + pick.index(n);
        let m = pick.index(size);
        let proof = inclusion_proof(m as u64, size as u64, &stored).unwrap();
        prop_assert_eq!(&proof.hashes, &path_ref(m, &d[..size]));
        let root = mth(&d[..size]);
        prop_assert!(verify_inclusion(&leaf_hash(&d[m]), m as u64, size as u64, &proof.hashes, &root).is_ok());
    }

    #[test]
    fn consistency_proofs_equal_the_naive_proof(n in 1usize..300, a: prop::sample::Index, b: prop::sample::Index, salt: u8) {
        let d = entries(n, salt);
        let stored = stored_for(&d);
        let new = 1 + a.index(n);
        let old = 1 + b.index(new);
        let proof = consistency_proof(old as u64, new as u64, &stored).unwrap();
        prop_assert_eq!(&proof.hashes, &subproof(old, &d[..new], true));
        prop_assert!(verify_consistency(old as u64, new as u64, &mth(&d[..old]), &mth(&d[..new]), &proof.hashes).is_ok());
    }

    /// A verifier that accepts a proof for the wrong leaf, a wrong index, a wrong size, a flipped
    /// bit, a dropped, added or swapped hash is broken: every one of these must be refused.
    #[test]
    fn every_corrupted_inclusion_proof_is_refused(n in 1usize..70, pick: prop::sample::Index) {
        let d = entries(n, 7);
        let stored = stored_for(&d);
        let size = 1 + pick.index(n);
        let m = pick.index(size);
        let (leaf, root) = (leaf_hash(&d[m]), mth(&d[..size]));
        let (m64, size64) = (m as u64, size as u64);
        let good = inclusion_proof(m64, size64, &stored).unwrap().hashes;
        prop_assert!(verify_inclusion(&leaf, m64, size64, &good, &root).is_ok());

        for i in 0..good.len() {
            for bit in 0..256 {
                let mut bad = good.clone();
                let mut bytes = *bad[i].as_bytes();
                bytes[bit / 8] ^= 1 << (bit % 8);
                bad[i] = Hash::from_bytes(bytes);
                prop_assert!(verify_inclusion(&leaf, m64, size64, &bad, &root).is_err());
            }
        }
        for bit in 0..256 {
            let mut bytes = *leaf.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&Hash::from_bytes(bytes), m64, size64, &good, &root).is_err());
            let mut bytes = *root.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&leaf, m64, size64, &good, &Hash::from_bytes(bytes)).is_err());
        }
        for other in 0..size64 + 2 {
            if other != m64 {
                prop_assert!(verify_inclusion(&leaf, other, size64, &good, &root).is_err(), "index {}", other);
            }
        }
        for other_size in [0, size64.saturating_sub(1), size64 + 1, size64 * 2, size64 ^ 2, u64::MAX] {
            // A size whose audit path for this leaf has another length is refused. One of the
            // same length is not always: leaf 0 of 3 entries has the path [leaf 1, leaf 2], which
            // also "proves" leaf 0 of a 4-entry tree whose right half hashes like leaf 2. That is
            // why a proof counts only against a signed checkpoint, which binds size and root.
            if other_size != size64 && (other_size <= m64 || path_len(m, other_size) != good.len()) {
                prop_assert!(verify_inclusion(&leaf, m64, other_size, &good, &root).is_err(), "size {}", other_size);
            }
        }
        if !good.is_empty() {
            prop_assert!(verify_inclusion(&leaf, m64, size64, &good[1..], &root).is_err());
            prop_assert!(verify_inclusion(&leaf, m64, size64, &good[..good.len() - 1], &root).is_err());
        }
        let mut longer = good.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, m64, size64, &longer, &root).is_err());
        let mut preceded = vec![leaf];
        preceded.extend(&good);
        prop_assert!(verify_inclusion(&leaf, m64, size64, &preceded, &root).is_err());
        if good.len() >= 2 {
            let mut swapped = good.clone();
            swapped.swap(0, 1);
            if swapped != good {
                prop_assert!(verify_inclusion(&leaf, m64, size64, &swapped, &root).is_err());
            }
        }
    }

    #[test]
    fn every_corrupted_consistency_proof_is_refused(n in 2usize..70, a: prop::sample::Index, b: prop::sample::Index) {
        let d = entries(n, 9);
        let stored = stored_for(&d);
        let new = 2 + a.index(n - 1);
        let old = 1 + b.index(new - 1);
        let (old64, new64) = (old as u64, new as u64);
        let (r1, r2) = (mth(&d[..old]), mth(&d[..new]));
        let good = consistency_proof(old64, new64, &stored).unwrap().hashes;
        prop_assert!(verify_consistency(old64, new64, &r1, &r2, &good).is_ok());

        for i in 0..good.len() {
            for bit in 0..256 {
                let mut bad = good.clone();
                let mut bytes = *bad[i].as_bytes();
                bytes[bit / 8] ^= 1 << (bit % 8);
                bad[i] = Hash::from_bytes(bytes);
                prop_assert!(verify_consistency(old64, new64, &r1, &r2, &bad).is_err());
            }
        }
        for bit in 0..256 {
            let mut bytes = *r1.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(old64, new64, &Hash::from_bytes(bytes), &r2, &good).is_err());
            let mut bytes = *r2.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(old64, new64, &r1, &Hash::from_bytes(bytes), &good).is_err());
        }
        for other in 0..new64 + 2 {
            if other != old64 {
                prop_assert!(verify_consistency(other, new64, &r1, &r2, &good).is_err(), "old size {}", other);
            }
        }
        for other in [old64, new64 - 1, new64 + 1, new64 * 2, u64::MAX] {
            // As for inclusion proofs, only a size that changes the proof's length is refused
            // for certain; the checkpoint binds the size that counts.
            if other != new64 && (other <= old64 || consistency_len(old64, other) != good.len()) {
                prop_assert!(verify_consistency(old64, other, &r1, &r2, &good).is_err(), "new size {}", other);
            }
        }
        prop_assert!(verify_consistency(old64, new64, &r2, &r1, &good).is_err());
        prop_assert!(verify_consistency(old64, new64, &r1, &r2, &good[1..]).is_err());
        prop_assert!(verify_consistency(old64, new64, &r1, &r2, &good[..good.len() - 1]).is_err());
        let mut longer = good.clone();
        longer.push(r2);
        prop_assert!(verify_consistency(old64, new64, &r1, &r2, &longer).is_err());
        let mut preceded = vec![r1];
        preceded.extend(&good);
        prop_assert!(verify_consistency(old64, new64, &r1, &r2, &preceded).is_err());
    }
}

#[test]
fn oversized_proofs_are_refused_before_hashing() {
    let proof = vec![EMPTY_ROOT; MAX_PROOF_HASHES + 1];
    assert!(verify_inclusion(&EMPTY_ROOT, 0, u64::MAX, &proof, &EMPTY_ROOT).is_err());
    assert!(verify_consistency(3, u64::MAX, &EMPTY_ROOT, &EMPTY_ROOT, &proof).is_err());
}

/// A reader that records what it was asked, to check one batched read per operation.
struct CountingReader<'a> {
    stored: &'a [Hash],
    calls: std::cell::Cell<usize>,
    asked: std::cell::Cell<usize>,
}

impl HashReader for CountingReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, custodian::audit::AuditError> {
        self.calls.set(self.calls.get() + 1);
        self.asked.set(self.asked.get() + indexes.len());
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "indexes sorted: {indexes:?}"
        );
        self.stored.read_hashes(indexes)
    }
}

#[test]
fn each_operation_reads_the_store_once_and_little() {
    let d = entries(1000, 1);
    let stored = stored_for(&d);
    let reader = CountingReader {
        stored: &stored,
        calls: 0.into(),
        asked: 0.into(),
    };
    tree_hash(1000, &reader).unwrap();
    assert_eq!(reader.calls.get(), 1);
    assert!(reader.asked.get() <= 11, "{}", reader.asked.get());
    let before = reader.asked.get();
    inclusion_proof(517, 1000, &reader).unwrap();
    assert_eq!(reader.calls.get(), 2);
    assert!(reader.asked.get() - before <= 2 * 11);
    consistency_proof(333, 1000, &reader).unwrap();
    assert_eq!(reader.calls.get(), 3);
}

/// transparency-dev/merkle `testdata/inclusion/*/`: the published probes that change one number of
/// a good proof (`leafIdx-plus-@1`, `leafIdx-sub-@1`, `leafIdx-XOR-@2`, `treeSize-div-@2`,
/// `treeSize-mul-@2`, `wrong-leaf`, `empty-root`), all of which must fail.
#[test]
fn published_inclusion_probes_are_refused() {
    for &(index, size, hashes) in INCLUSION {
        let proof = path(hashes);
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        let bad_indexes = [index + 1, index.wrapping_sub(1), index ^ 2];
        for bad in bad_indexes {
            assert!(
                verify_inclusion(&leaf, bad, size, &proof, &root).is_err(),
                "{index}/{size} as {bad}"
            );
        }
        for bad in [size / 2, size * 2] {
            assert!(
                verify_inclusion(&leaf, index, bad, &proof, &root).is_err(),
                "{index}/{size} in {bad}"
            );
        }
        let wrong_leaf = leaf_hash(b"WrongLeaf");
        assert!(verify_inclusion(&wrong_leaf, index, size, &proof, &root).is_err());
        assert!(verify_inclusion(&leaf, index, size, &proof, &EMPTY_ROOT).is_err());
    }
}
