// MemoryTuning: glibc's malloc settings for a daemon that moves large buffers between threads.
// By default glibc keeps up to 8 arenas per core and raises its mmap threshold to the largest
// buffer freed so far (up to 32 MiB), so 1–4 MiB blocks and responses come from arenas that
// never give the memory back: the resident size stays at its peak. Two arenas and fixed
// thresholds keep the daemon's RSS near what is in flight (DESIGN.md §9). What the arenas
// still hold free after a burst (8 parallel readers left ~20 MB free inside them, 17 MiB of it
// resident) goes back once the mount is idle: `trimWhenIdle`.

import Dispatch

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

    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// Every `interval`, once requests came and then none for a whole interval: `release()`
    /// (buffers kept for reuse) and glibc's `malloc_trim(0)`, which gives back the free pages
    /// inside the arenas too (M_TRIM_THRESHOLD only returns the top of a heap). A burst's
    /// leftovers then do not stay resident into the next one. The timer is cancelled by the
    /// caller.
    static func trimWhenIdle(
        every interval: DispatchTimeInterval = .milliseconds(250), activity: @escaping @Sendable () -> Int,
        release: @escaping @Sendable () -> Void
    ) -> any DispatchSourceTimer {
        let trim = dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: MallocTrim.self) }
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        // Only the timer's handler touches it (a serial source).
        nonisolated(unsafe) var idle = IdleTrim(activity: activity())
        timer.setEventHandler {
            guard idle.tick(activity: activity()) else { return }
            release()
            _ = trim?(0)
        }
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
        timer.resume()
        return timer
    }
}

/// When to trim, tick by tick: once requests came and then none for a whole tick; not before
/// any request, not while requests keep coming, not again while the mount stays idle.
struct IdleTrim {
    private var seen: Int
    private var trimmed: Int

    init(activity: Int) {
        seen = activity
        trimmed = activity
    }

    /// `activity` is the request count now; true when this tick should trim.
    mutating func tick(activity now: Int) -> Bool {
        defer { seen = now }
        guard now == seen, now != trimmed else { return false }
        trimmed = now
        return true
    }
}
