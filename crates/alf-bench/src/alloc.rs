//! The one counting global allocator of the workspace, for the benchmarks (allocations
//! per event) and the daemon's memory tests (live and peak heap bytes).
//!
//! A process has one global allocator, so the counters are process-wide statics; a
//! binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: CountingAlloc<std::alloc::System> = CountingAlloc::tracking_bytes(std::alloc::System);
//! ```
//!
//! [`CountingAlloc::counting_calls`] only counts calls (one relaxed add per allocation:
//! what throughput benchmarks can afford); [`CountingAlloc::tracking_bytes`] also keeps
//! the live and peak byte counts the memory tests assert on.
//!
//! A test harness that shares the process with what it measures (the memory tests' HTTP
//! intake decodes every request body) calls [`exclude_this_thread`] on the threads it
//! runs on, so its own buffers stay out of the byte counts. Memory allocated on an
//! excluded thread must be freed there (or after the measurement) to keep the counts
//! exact.
#![allow(unsafe_code)] // A GlobalAlloc implementation is unsafe by definition.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Signed: memory of an excluded thread freed on a counted one must not wrap the count.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Const-initialised without destructor: reading it never allocates.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

/// Leaves this thread's allocations out of the byte counts (not out of [`allocations`]).
pub fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

fn counted_thread() -> bool {
    !EXCLUDED.try_with(Cell::get).unwrap_or(false)
}

fn signed(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

/// Wraps the allocator `A` (mimalloc in the benchmarks, as in production; the system
/// allocator in tests) and counts what goes through it.
pub struct CountingAlloc<A> {
    inner: A,
    track_bytes: bool,
}

impl<A> CountingAlloc<A> {
    /// Counts allocation calls ([`allocations`]) only.
    pub const fn counting_calls(inner: A) -> Self {
        CountingAlloc {
            inner,
            track_bytes: false,
        }
    }

    /// Counts calls, and live and peak heap bytes ([`live_bytes`], [`peak_bytes`]).
    pub const fn tracking_bytes(inner: A) -> Self {
        CountingAlloc {
            inner,
            track_bytes: true,
        }
    }

    fn grew(&self, bytes: usize) {
        if self.track_bytes && counted_thread() {
            let bytes = signed(bytes);
            let now = LIVE
                .fetch_add(bytes, Ordering::Relaxed)
                .saturating_add(bytes);
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn shrank(&self, bytes: usize) {
        if self.track_bytes && counted_thread() {
            LIVE.fetch_sub(signed(bytes), Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `inner`; the counters have no effect on
// the memory handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Counted as the moment both blocks may exist (a moving realloc copies), so a
        // peak is never under-reported.
        self.grew(new_size);
        // SAFETY: same contract as the caller's.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if p.is_null() {
            self.shrank(new_size);
        } else {
            self.shrank(layout.size());
        }
        p
    }
}

/// Allocation calls (`alloc` and `realloc`) since the process started.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Heap bytes allocated and not yet freed (0 unless [`CountingAlloc::tracking_bytes`]).
pub fn live_bytes() -> usize {
    usize::try_from(LIVE.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The highest [`live_bytes`] since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    usize::try_from(PEAK.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Starts a new peak measurement at the current live bytes, and returns them (the
/// base to subtract from [`peak_bytes`]).
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    usize::try_from(live).unwrap_or(0)
}
