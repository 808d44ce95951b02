#!/usr/bin/env python3
"""A partial decoder for custodian ciphertext format v1, written from docs/FORMAT.md alone.

Usage: python3 tools/decode_v1.py  (decrypts the first worked example of docs/FORMAT.md)
Needs the `cryptography` package. Not part of the Rust build; it exists to show that the document
is enough for another implementation to decrypt.

What it does not do (see docs/FORMAT.md, "An independent decoder"): XChaCha20-Poly1305 (suite 3);
the header checks other than magic, version and total length; the strict text form; encryption.
"""
import base64, re, struct, sys
from pathlib import Path
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

SUITES = {1: ("AES-256-GCM", 12), 2: ("ChaCha20-Poly1305", 12)}  # 3 (XChaCha) needs another library


def encode_context(pairs):
    out = struct.pack(">H", len(pairs))
    for k, v in sorted((k.encode(), v.encode()) for k, v in pairs.items()):
        out += struct.pack(">H", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def decrypt(blob, kek, context):
    if blob[:3] != b"CST" or blob[3] != 1:
        raise ValueError("not a v1 ciphertext")
    suite = blob[4]
    name, n = SUITES[suite]
    pos = 5
    name_len = blob[pos]; pos += 1
    ring = blob[pos:pos + name_len].decode("ascii"); pos += name_len
    (version,) = struct.unpack(">I", blob[pos:pos + 4]); pos += 4
    subject_len = blob[pos]; pos += 1
    subject = blob[pos:pos + subject_len].decode() or None; pos += subject_len
    (payload_len,) = struct.unpack(">I", blob[pos:pos + 4]); pos += 4
    key_header = blob[:pos]
    if len(blob) != pos + n + 48 + n + payload_len + 16:
        raise ValueError("length does not match payload_len")
    aead = AESGCM if suite == 1 else ChaCha20Poly1305
    ctx = encode_context(context)
    wrap_nonce = blob[pos:pos + n]; pos += n
    dek = aead(kek).decrypt(wrap_nonce, blob[pos:pos + 48], key_header + ctx); pos += 48
    data_nonce = blob[pos:pos + n]; pos += n
    plaintext = aead(dek).decrypt(data_nonce, blob[pos:], blob[:5] + ctx)
    return (ring, version, subject), plaintext


def main():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()
    block = doc.split("```text worked-example")[1].split("```")[0]
    values, current = {}, None
    for line in block.splitlines():
        m = re.match(r"^([A-Za-z ]+): (.*)$", line)
        if m:
            current = m.group(1); values[current] = m.group(2)
        elif line.startswith("  ") and current:
            values[current] += line
    hexval = lambda k: bytes.fromhex("".join(values[k].split()))
    context = {"table": "customers", "record": "42", "field": "email"}
    assert encode_context(context) == hexval("context encoding")
    key_id, plaintext = decrypt(hexval("ciphertext"), hexval("KEK"), context)
    text = values["text form"].strip()
    assert text.startswith("cst1:")
    body = text[5:]
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == hexval("ciphertext")
    print(key_id, plaintext)
    assert plaintext == b"jane@example.com"
    return 0


if __name__ == "__main__":
    sys.exit(main())
