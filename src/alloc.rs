//! The global allocator: the system allocator, except that very large allocations are mapped
//! with `MAP_NORESERVE`.
//!
//! Why: kafka-protocol 0.18 decodes an array by reserving `Vec::with_capacity(count)` from the
//! count on the wire before reading any element. A 20-byte request claiming 2^31 elements asks
//! for a few hundred GiB; the system allocator refuses, and an allocation failure aborts the
//! process (it cannot be caught). A frame-size cap does not help, because the count is not
//! checked against the bytes that follow.
//!
//! Instead of forking the crate or writing a second decoder to pre-validate every request
//! schema, large allocations (>= [`LARGE`]) are served by an anonymous `MAP_NORESERVE`
//! mapping. The kernel does not account address space of such mappings against memory, so the
//! reservation succeeds; the decode loop then fails on the first missing element having touched
//! at most the frame's own size worth of elements (the frame is capped by
//! `socket.request.max.bytes`), and the mapping is unmapped on drop. Legitimate allocations this
//! large are rare (they would be mmapped by malloc anyway) and behave the same once touched.
//!
//! The test `server::tests::absurd_array_counts_do_not_abort` sends such frames to a live broker.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Tunes glibc's allocator for a broker's allocation pattern; call once at startup.
///
/// Fetch reads and response buffers are 1 MiB-class blocks allocated and freed at high rates.
/// By default glibc serves blocks above its mmap threshold with a fresh mapping and unmaps them
/// on free, so every fetch paid page faults and kernel page clearing for its read buffer (about
/// 30% of the broker's time in the C1 benchmark profile). Serving blocks up to 32 MiB from the
/// heap and keeping up to 64 MiB of freed memory there makes them warm, reused memory instead.
pub fn tune_system_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the runtime starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Allocations at least this large are mapped with `MAP_NORESERVE`.
pub const LARGE: usize = 256 << 20;
const PAGE: usize = 4096;

/// See the module documentation.
pub struct GuardedAlloc;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // SAFETY: size is non-zero (>= LARGE).
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `ptr` came from `map` with this size (the layout decides the path).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size > 0 and a valid layout for it.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(&layout) && !is_large(&new_layout) {
            // SAFETY: both sides are System allocations.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block through its own path.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_reservation_succeeds_and_small_work_is_usable() {
        // 1 TiB of capacity: the system allocator would fail (abort) here.
        let mut v: Vec<u64> = Vec::with_capacity(1 << 37);
        v.extend(0..1000u64);
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        let mut w: Vec<u8> = Vec::with_capacity(300 << 20);
        w.resize(10, 7);
        w.shrink_to_fit();
        assert_eq!(w, vec![7u8; 10]);
    }
}
