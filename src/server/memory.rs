//! The process's heap, as the allocator (glibc's malloc) sees it: what is in use, and giving
//! back what is free. RSS cannot tell memory in use from memory glibc keeps for reuse, so the
//! metrics report the allocator's own count (`commandbridge_heap_in_use_bytes`).

/// Bytes the program holds from malloc (small chunks in every arena plus mmapped blocks);
/// `None` where the allocator cannot say (not glibc). `mallinfo2` needs glibc 2.33 or later
/// (Debian 12, Ubuntu 22.04, RHEL 9): the binary does not link against an older one.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics (under its arena locks).
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns freed heap to the system. glibc keeps what many streams freed (most of it in the
/// worker threads' arenas) for reuse: harmless, but it reads as a leak in RSS after an attacker's
/// burst of streams, and the next burst may land in other arenas.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
