"""Compiled (numba) kernels of stage 1 in memory: signatures, a band's pairs and exact Jaccard.

A band's sorted rows are walked once: each pair is made and pre-filtered at once, and an
over-full bucket is split where it lies, so the tens of millions of pairs templated text
proposes are never stored. The kernels release the GIL, so bands run in threads side by side.
They give what minhash's numpy path gives; minhash imports this module (and numba) only for
inputs of ``minhash.KERNEL_TEXTS`` texts or more, where they pay for their compile. This module
imports nothing of minhash's: minhash prepares the arrays the kernels read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
import pyarrow as pa
from numba.core import types
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

_U64 = np.uint64
_NIBBLES = np.uint64(0x1111111111111111)
_BYTES = np.uint64(0x0101010101010101)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _ctpop(typingctx: object, x: types.Type) -> tuple[Signature, Callable[..., object]]:
    """Count set bits with the CPU's instruction (numba has no popcount of its own)."""
    sig = types.uint64(types.uint64)

    def codegen(context: object, builder: Any, signature: Signature,
                args: Sequence[object]) -> object:
        return builder.ctpop(args[0])

    return sig, codegen


_popcount: Any = intrinsic(_ctpop)


@numba.njit(cache=True, nogil=True, inline="always")
def _differing_nibbles(packed: np.ndarray, a: int, b: int, words: int) -> int:
    total = _U64(0)
    for w in range(words):
        x = packed[a, w] ^ packed[b, w]
        x |= x >> _U64(2)
        x |= x >> _U64(1)
        total += _popcount(x & _NIBBLES)
    return int(total)


@numba.njit(cache=True, nogil=True, inline="always")
def _differing_bytes(packed: np.ndarray, a: int, b: int) -> int:
    total = _U64(0)
    for w in range(packed.shape[1]):
        x = packed[a, w] ^ packed[b, w]
        x |= x >> _U64(4)
        x |= x >> _U64(2)
        x |= x >> _U64(1)
        total += _popcount(x & _BYTES)
    return int(total)


@numba.njit(cache=True, nogil=True)
def _push(out: np.ndarray, k: int, earlier: int, later: int) -> np.ndarray:
    if k == out.shape[0]:  # copied by a loop: a slice assignment took 3 CPU-s to compile
        grown = np.empty((2 * out.shape[0], 2), dtype=np.int64)
        for i in range(k):
            grown[i, 0] = out[i, 0]
            grown[i, 1] = out[i, 1]
        out = grown
    out[k, 0] = earlier
    out[k, 1] = later
    return out


@numba.njit(cache=True, nogil=True)
def _passes(nib: np.ndarray, low: np.ndarray, a: int, b: int, text_a: int, text_b: int,
            head_slots: int, head_floor: int, num_slots: int, floor: int) -> bool:
    """Return whether rows a and b (texts text_a and text_b) keep head_floor equal head slots
    and floor equal low bytes.

    An equal low byte has an equal low nibble, so a pair with fewer than floor equal nibbles
    is dropped before its bytes are read.
    """
    if head_floor > 0 and head_slots - _differing_nibbles(nib, a, b, -(-head_slots // 16)) \
            < head_floor:
        return False
    if floor > 0:
        if num_slots - _differing_nibbles(nib, a, b, nib.shape[1]) < floor:
            return False
        if num_slots - _differing_bytes(low, text_a, text_b) < floor:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _split_value(nib: np.ndarray, row: int, slots: np.ndarray) -> np.uint64:
    sub = _U64(0)
    for j in range(slots.size):
        s = slots[j]
        nibble = (nib[row, s >> 4] >> _U64(4 * (s & 15))) & _U64(15)
        sub |= nibble << _U64(4 * j)
    return sub


@numba.njit(cache=True, nogil=True)
def band_candidates(sorted_keys: np.ndarray, texts: np.ndarray, nib: np.ndarray, low: np.ndarray,
                    slots: np.ndarray, max_pairs: int, head_slots: int, head_floor: int,
                    num_slots: int, floor: int) -> np.ndarray:
    """Return one band's pre-filtered pairs: band_bucket_pairs' pairs that slot_prefilter keeps.

    Args:
        sorted_keys: The band's keys that may repeat, sorted (by key, then text).
        texts: The text of each sorted key.
        nib: The low nibbles of every slot of each sorted key's text, packed
            (``_slot_bytes(sigs, bits=4)[texts]``: read in sequence).
        low: Each text's low bytes of every slot, packed (``_slot_bytes(sigs)``).
        slots: The head slots that split the band's over-full buckets (``split_slots``);
            empty for no split.
        max_pairs: Earliest texts of a bucket (or split bucket) each later text is paired with.
        head_slots: The first slots the pre-filter looks at (``min(num_perm, 64)``).
        head_floor: Fewest equal head slots a pair keeps (0: no pre-filter).
        num_slots: Slots of a signature.
        floor: Fewest equal low bytes a pair keeps (0: no check).

    Returns:
        (earlier, later) text pairs; a pair may repeat.
    """
    m = sorted_keys.size
    out = np.empty((max(16, m // 8), 2), dtype=np.int64)
    k = 0
    table = np.full(16, -1, dtype=np.int64)  # split bucket per hash slot, grown as needed
    sub_key = np.empty(m, dtype=np.uint64)
    first = np.empty((max(m, 1), max_pairs), dtype=np.int64)
    count = np.empty(max(m, 1), dtype=np.int64)
    start = 0
    while start < m:
        end = start + 1
        while end < m and sorted_keys[end] == sorted_keys[start]:
            end += 1
        for i in range(start + 1, end):
            later = texts[i]
            for j in range(start, min(i, start + max_pairs)):
                if _passes(nib, low, j, i, texts[j], later, head_slots, head_floor, num_slots,
                           floor):
                    out = _push(out, k, texts[j], later)
                    k += 1
        size = end - start
        if slots.size and size > max_pairs + 1:  # over-full: split by more slots
            bits = 4
            while (1 << bits) < 2 * size:
                bits += 1
            if table.size < (1 << bits):
                table = np.full(1 << bits, -1, dtype=np.int64)
            mask = np.int64((1 << bits) - 1)
            shift = _U64(64 - bits)
            groups = 0
            for i in range(start, end):
                text = texts[i]
                sub = _split_value(nib, i, slots)
                h = np.int64((sub * _GOLDEN) >> shift)
                while True:
                    g = table[h]
                    if g < 0:
                        g = groups
                        groups += 1
                        table[h] = g
                        sub_key[g] = sub
                        count[g] = 0
                        break
                    if sub_key[g] == sub:
                        break
                    h = (h + np.int64(1)) & mask
                c = count[g]
                for j in range(min(c, max_pairs)):
                    e = first[g, j]
                    if _passes(nib, low, e, i, texts[e], text, head_slots, head_floor,
                               num_slots, floor):
                        out = _push(out, k, texts[e], text)
                        k += 1
                if c < max_pairs:
                    first[g, c] = i
                count[g] = c + 1
            for slot in range(1 << bits):
                table[slot] = -1
        start = end
    return out[:k]


@numba.njit(cache=True, nogil=True)
def _sift_down(a: np.ndarray, lo: int, root: int, size: int) -> None:
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and a[lo + child + 1] > a[lo + child]:
            child += 1
        if a[lo + root] >= a[lo + child]:
            return
        a[lo + root], a[lo + child] = a[lo + child], a[lo + root]
        root = child


@numba.njit(cache=True, nogil=True)
def _heapsort(a: np.ndarray, lo: int, hi: int) -> None:
    """Sort a[lo:hi] in place (numba's np.sort took 2.5 CPU-s to compile; sets this long are rare)."""
    size = hi - lo
    for root in range(size // 2 - 1, -1, -1):
        _sift_down(a, lo, root, size)
    for end in range(size - 1, 0, -1):
        a[lo], a[lo + end] = a[lo + end], a[lo]
        _sift_down(a, lo, 0, end)


@numba.njit(cache=True, nogil=True)
def sorted_sets(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each set's distinct values sorted, and their offsets (sets as FeatureSets holds them)."""
    n = offsets.size - 1
    out = np.empty(values.size, dtype=values.dtype)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    k = 0
    for t in range(n):
        lo, hi = offsets[t], offsets[t + 1]
        start = k
        if hi - lo > 64:
            for i in range(lo, hi):
                out[start + i - lo] = values[i]
            _heapsort(out, start, start + hi - lo)
            for i in range(start, start + hi - lo):
                v = out[i]
                if k == start or out[k - 1] != v:
                    out[k] = v
                    k += 1
        else:
            for i in range(lo, hi):  # insertion sort, duplicates dropped
                v = values[i]
                j = k
                while j > start and out[j - 1] > v:
                    j -= 1
                if j > start and out[j - 1] == v:
                    continue
                for m in range(k, j, -1):
                    out[m] = out[m - 1]
                out[j] = v
                k += 1
        out_offsets[t + 1] = k
    return out[:k], out_offsets


@numba.njit(cache=True, nogil=True)
def sorted_jaccard(values: np.ndarray, offsets: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Return the exact Jaccard of each pair of sets given as sorted distinct values (sorted_sets)."""
    out = np.empty(pairs.shape[0], dtype=np.float64)
    for p in range(pairs.shape[0]):
        i, j = pairs[p, 0], pairs[p, 1]
        a, a_end = offsets[i], offsets[i + 1]
        b, b_end = offsets[j], offsets[j + 1]
        union = (a_end - a) + (b_end - b)
        inter = 0
        while a < a_end and b < b_end:
            va, vb = values[a], values[b]
            if va == vb:
                inter += 1
                a += 1
                b += 1
            elif va < vb:
                a += 1
            else:
                b += 1
        union -= inter
        out[p] = inter / union if union > 0 else 0.0
    return out


_MASK32 = _U64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _rotl(x: np.uint64, bits: int) -> np.uint64:
    return ((x << _U64(bits)) | (x >> _U64(32 - bits))) & _MASK32


@numba.njit(cache=True, nogil=True)
def sha1_heads(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return each string's SHA-1, first 4 bytes read little-endian (``minhash.token_hash``).

    Args:
        data: The strings' UTF-8 bytes, end to end.
        offsets: String i is data[offsets[i]:offsets[i + 1]].

    Returns:
        One uint64 per string, what hashlib gives, without a Python object per token.
    """
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint64)
    block = np.zeros(64, dtype=np.uint8)
    w = np.zeros(80, dtype=np.uint64)
    for t in range(n):
        lo, hi = offsets[t], offsets[t + 1]
        length = hi - lo
        blocks = (length + 8) // 64 + 1
        h0, h1, h2 = _U64(0x67452301), _U64(0xEFCDAB89), _U64(0x98BADCFE)
        h3, h4 = _U64(0x10325476), _U64(0xC3D2E1F0)
        for blk in range(blocks):
            for i in range(64):  # the message, 0x80, zeros, then its length in bits
                at = blk * 64 + i
                if at < length:
                    block[i] = data[lo + at]
                elif at == length:
                    block[i] = 0x80
                else:
                    block[i] = 0
            if blk == blocks - 1:
                bits = _U64(length) * _U64(8)
                for i in range(8):
                    block[63 - i] = np.uint8((bits >> _U64(8 * i)) & _U64(0xFF))
            for i in range(16):
                w[i] = (_U64(block[4 * i]) << _U64(24)) | (_U64(block[4 * i + 1]) << _U64(16)) \
                    | (_U64(block[4 * i + 2]) << _U64(8)) | _U64(block[4 * i + 3])
            for i in range(16, 80):
                w[i] = _rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
            a, b, c, d, e = h0, h1, h2, h3, h4
            for i in range(80):
                if i < 20:
                    f = (b & c) | ((~b & _MASK32) & d)
                    k = _U64(0x5A827999)
                elif i < 40:
                    f = b ^ c ^ d
                    k = _U64(0x6ED9EBA1)
                elif i < 60:
                    f = (b & c) | (b & d) | (c & d)
                    k = _U64(0x8F1BBCDC)
                else:
                    f = b ^ c ^ d
                    k = _U64(0xCA62C1D6)
                temp = (_rotl(a, 5) + f + e + k + w[i]) & _MASK32
                e, d, c, b, a = d, c, _rotl(b, 30), a, temp
            h0 = (h0 + a) & _MASK32
            h1 = (h1 + b) & _MASK32
            h2 = (h2 + c) & _MASK32
            h3 = (h3 + d) & _MASK32
            h4 = (h4 + e) & _MASK32
        out[t] = ((h0 & _U64(0xFF)) << _U64(24)) | ((h0 & _U64(0xFF00)) << _U64(8)) \
            | ((h0 >> _U64(8)) & _U64(0xFF00)) | (h0 >> _U64(24))
    return out


def token_hashes(dictionary: pa.Array) -> np.ndarray:
    """Return minhash.token_hashes of an Arrow string array's values, by sha1_heads.

    Args:
        dictionary: A batch's distinct tokens (``pyarrow`` string or large string, no nulls).

    Returns:
        Each token's hash as uint64.
    """
    wide = pa.types.is_large_string(dictionary.type)
    _, offsets_buffer, data_buffer = dictionary.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
    offsets = offsets[dictionary.offset : dictionary.offset + len(dictionary) + 1]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    return sha1_heads(data, offsets.astype(np.int64))


@numba.njit(cache=True, nogil=True)
def fold_signatures(mixed: np.ndarray, codes: np.ndarray, counts: np.ndarray, a: np.ndarray,
                    b: np.ndarray, out: np.ndarray) -> None:
    """Write each text's signature: per slot, the least a * h + b (mod 2^32) over its features.

    Args:
        mixed: Each distinct feature's 32-bit hash, already mixed (``_fmix32``).
        codes: The features of all texts in order, as indices into mixed.
        counts: Each text's number of features; a text without any gets the empty signature.
        a: The permutations' odd multipliers.
        b: The permutations' offsets.
        out: The signatures, one row a text.

    The permuted values are computed in registers, not gathered from a table of rows: reading
    a 512-byte row a feature cost more than the multiply-adds.
    """
    width = a.size
    at = 0
    for t in range(counts.size):
        row = out[t]
        for p in range(width):
            row[p] = np.uint32(0xFFFFFFFF)
        for f in range(at, at + counts[t]):
            h = mixed[codes[f]]
            for p in range(width):
                v = np.uint32(h * a[p] + b[p])  # numba widens uint32 products: wrap back
                if v < row[p]:
                    row[p] = v
        at += counts[t]

