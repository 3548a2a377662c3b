// MemoryTuning: glibc's malloc settings for a daemon that moves large buffers between threads.
// By default glibc keeps up to 8 arenas per core and raises its mmap threshold to the largest
// buffer freed so far (up to 32 MiB), so 1–4 MiB blocks and responses come from arenas that
// never give the memory back: the resident size stays at its peak. Two arenas and fixed
// thresholds keep the daemon's RSS near what is in flight (DESIGN.md §9).

#if canImport(Glibc)
    import Glibc
#endif

enum MemoryTuning {
    private typealias MallOpt = @convention(c) (Int32, Int32) -> Int32

    /// `mallopt` is not in Swift's Glibc module; it is looked up at run time.
    static func apply() {
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        _ = mallopt(-8, 2)  // M_ARENA_MAX
        // Blocks and replies (up to 4 MiB) come from the arenas: mapping each anew costs a
        // page fault per 4 KiB (10 % of a sequential read's CPU). Heap tops above 8 MiB go back.
        _ = mallopt(-3, 32 << 20)  // M_MMAP_THRESHOLD
        _ = mallopt(-1, 8 << 20)  // M_TRIM_THRESHOLD
    }
}
