//! A tiny seeded generator (SplitMix64) and the sampling helpers the log generators use.
//!
//! Why not `rand`? `rand` documents that `StdRng`/`SmallRng` output may change between
//! releases; a benchmark input must stay byte-identical across dependency upgrades so
//! that numbers from different weeks compare the same records. SplitMix64 is ten lines,
//! passes BigCrush and is more than random enough for synthetic logs.

/// Deterministic pseudo-random source: the same seed always yields the same sequence.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 gives 0). The modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One element of a non-empty slice (the first when empty is impossible by
    /// construction: every pool in this crate is a non-empty constant).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One element chosen by weight: `(weight, item)` pairs.
    pub fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (w, item) in items {
            let w = u64::from(*w);
            if x < w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1].1
    }

    /// A value with a long tail, as byte counts and durations have: `lo * (hi/lo)^u^3`.
    pub fn skewed(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = (lo.max(1) as f64, hi.max(lo.max(1)) as f64);
        let u = self.unit();
        (lo * (hi / lo).powf(u * u * u)).round() as u64
    }

    /// Appends `n` lower-case hex digits.
    pub fn hex(&mut self, out: &mut String, n: usize) {
        self.alphabet(out, n, b"0123456789abcdef");
    }

    /// Appends `n` upper-case hex digits.
    pub fn hex_upper(&mut self, out: &mut String, n: usize) {
        self.alphabet(out, n, b"0123456789ABCDEF");
    }

    /// Appends `n` characters of the base64url alphabet (CloudFront request ids).
    pub fn base64ish(&mut self, out: &mut String, n: usize) {
        self.alphabet(
            out,
            n,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        );
    }

    /// Appends `n` characters drawn from `alphabet` (ASCII).
    pub fn alphabet(&mut self, out: &mut String, n: usize, alphabet: &[u8]) {
        for _ in 0..n {
            out.push(char::from(self.pick(alphabet)));
        }
    }

    /// `n` random hex digits as a new string.
    pub fn hex_string(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        self.hex(&mut s, n);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.range(3, 9)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.range(3, 9)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (3..=9).contains(x)));
        // All values of a small range show up: the generator is not stuck.
        for v in 3..=9 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn weighted_respects_zero_weights_and_skewed_stays_in_range() {
        let mut r = Rng::new(1);
        let items = [(0u32, "never"), (5, "a"), (1, "b")];
        for _ in 0..1000 {
            assert_ne!(r.weighted(&items), "never");
        }
        for _ in 0..1000 {
            let x = r.skewed(10, 5000);
            assert!((10..=5000).contains(&x), "{x}");
        }
    }
}
