//! Peak memory that follows the chunk size, not the allocator's history (issue 12).
//!
//! glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32 MiB);
//! from then on 4 MiB request bodies come from the per-thread heaps, which each keep up to twice the
//! threshold of free memory before giving it back. The server's peak at 4 MiB chunks was 1.96x its
//! peak at 204800-byte chunks (28.8 against 14.7 MiB). A fixed threshold turns that adjustment off:
//! blocks of 1 MiB and more are mapped for themselves and unmapped when freed. Bodies of the official
//! 204800-byte chunks stay below it and are reused from the heap, as before.

/// Blocks from this size up are mapped and unmapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Call first thing in `main`, before other threads allocate.
pub fn bound_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before any other
    // thread exists, and an unsupported value is refused (answer 0), not undefined.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
