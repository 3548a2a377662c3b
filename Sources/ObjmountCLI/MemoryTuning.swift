// MemoryTuning: glibc's malloc settings for a daemon that moves large buffers between threads.
// By default glibc keeps up to 8 arenas per core and raises its mmap threshold to the largest
// buffer freed so far (up to 32 MiB), so 1–4 MiB blocks and responses come from arenas that
// never give the memory back: the resident size stays at its peak. Fewer arenas and a fixed
// threshold let freed buffers go back to the system, keeping the daemon's RSS near what is in
// flight (DESIGN.md §9).

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
        _ = mallopt(-1, 1 << 20)  // M_TRIM_THRESHOLD: give back heap tops above 1 MiB
    }
}
