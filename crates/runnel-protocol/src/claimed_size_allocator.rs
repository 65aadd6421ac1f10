//! A global allocator that makes a client-claimed allocation harmless.
//!
//! The generated decoders of the `kafka-protocol` crate (0.18) call `Vec::with_capacity(n)` with
//! array counts read off the wire before checking them against the bytes that remain (upstream
//! pull requests #152, #161 and #200 are still open). A 20-byte request claiming 2^31 elements
//! asks for hundreds of GiB; the allocator refuses and the process aborts.
//!
//! This allocator serves every allocation of [`LAZY_ALLOCATION_MIN_BYTES`] or more with an
//! anonymous `MAP_NORESERVE` mapping: the kernel hands out address space without committing
//! memory, the decoder touches only the pages of elements that really arrive (bounded by the
//! frame limit), then fails on the short input and the mapping is returned. Smaller
//! allocations go to the system allocator untouched. Runnel itself never asks for a GiB at once,
//! so nothing legitimate takes the mapped path.
//!
//! Install it in each binary and test that decodes untrusted frames:
//! `#[global_allocator] static ALLOCATOR: ClaimedSizeAllocator = ClaimedSizeAllocator;`
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are mapped lazily.
pub const LAZY_ALLOCATION_MIN_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimedSizeAllocator;

/// Below this, glibc's malloc serves allocations from its arenas instead of a fresh mapping.
const MMAP_THRESHOLD_BYTES: i32 = 16 << 20;
/// Free memory at the top of an arena beyond this goes back to the kernel.
const TRIM_THRESHOLD_BYTES: i32 = 32 << 20;

impl ClaimedSizeAllocator {
    /// Tunes the system allocator for a broker's allocation pattern; call once at start.
    ///
    /// Produce and fetch allocate buffers of a record set's size (often a MiB) on several I/O
    /// threads at once. With glibc's default, adaptive thresholds these kept being mapped,
    /// trimmed and faulted in again: page faults and page clearing took ~15% of a busy broker's
    /// CPU (`perf`, BENCHMARKS.md). Fixed thresholds keep such buffers in the arenas, at the
    /// cost of holding up to 32 MiB of free memory per arena. No-op off glibc.
    pub fn tune_system_allocator() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's parameters; called before the threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_ALLOCATION_MIN_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out comes from either `System` or `mmap`, and `is_lazy` on the
// layout (which the caller must pass back unchanged) decides which one takes it back.
unsafe impl GlobalAlloc for ClaimedSizeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            map_lazily(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Anonymous mappings are zero-filled.
            map_lazily(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new_ptr = self.alloc(new_layout);
        if !new_ptr.is_null() {
            ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new_ptr
    }
}

unsafe fn map_lazily(size: usize) -> *mut u8 {
    let mapped = libc::mmap(
        ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if mapped == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        mapped.cast()
    }
}
