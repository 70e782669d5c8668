//! Eight bytes at a time in a `u64` ("SIMD within a register"): the byte tests the
//! JSON writer runs on every string it writes.
//!
//! Why not `memchr`? Its searches win on long runs without a match; the strings here
//! are short (tens to hundreds of bytes), and the ones that need escaping have a match
//! every few bytes (a JSON line's quotes), where each call's set-up is most of its cost.

pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `w` equal to `byte`, and possibly of bytes above
/// one that is (the classic "has a zero byte" test): the lowest flag is always a
/// true one, and every true one is flagged.
#[inline]
pub(crate) fn has_byte(w: u64, byte: u8) -> u64 {
    let x = w ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The eight bytes at `at`, little-endian (the first byte lowest), if there are eight.
#[inline]
pub(crate) fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes.get(at..at + 8)?);
    Some(u64::from_le_bytes(w))
}
