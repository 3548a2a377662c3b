// AttributeCache: a GETATTR whose answer the filesystem gave a moment ago, and said was valid
// for a while, is answered on the libfuse thread that received it: no Task, no actor, no other
// thread to wake. A `stat` the kernel passes through (statx with AT_STATX_FORCE_SYNC, or one
// after its own validity ended sooner) then costs what the FUSE round trip costs.
//
// What is kept is exactly what the kernel itself may cache for as long (the attributes and the
// validity of the last getattr or lookup reply), so an answer from here is never staler than
// one from the kernel's cache. Every request that may change attributes (anything but
// getattr, lookup, opendir, releasedir, read, readlink, statfs and the extended-attribute reads)
// makes everything kept before it stale, when it starts and again when it ends: an answer
// computed while it ran is not kept either.

import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class AttributeCache: Sendable {
    private struct Entry {
        var attributes: FuseAttributes
        /// Monotonic nanoseconds.
        var until: UInt64
        var generation: UInt64
    }

    private struct State {
        var entries: [Inode: Entry] = [:]
        /// Raised by every change: entries of an older generation are stale.
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Entries kept at most (all are dropped when full: a `stat` loop has a working set far
    /// smaller, and an old entry costs only its GETATTR).
    static let capacity = 16_384

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// The generation now: what a reply computed from here on may be kept under.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// The attributes last kept for `ino` and the seconds of validity left, if any are left and
    /// nothing changed since.
    func fresh(_ ino: Inode) -> (attributes: FuseAttributes, seconds: Double)? {
        let t = Self.monotonicNanoseconds()
        return state.withLock { s in
            guard let e = s.entries[ino], e.generation == s.generation, e.until > t else { return nil }
            return (e.attributes, Double(e.until - t) / 1e9)
        }
    }

    /// Keeps a reply's attributes for `seconds`, unless something changed since `asked` (the
    /// generation read when the request came).
    func keep(_ a: FuseAttributes, for seconds: Double, askedAt asked: UInt64) {
        guard seconds > 0 else { return }
        let until = Self.monotonicNanoseconds() &+ UInt64(seconds * 1e9)
        state.withLock { s in
            guard s.generation == asked else { return }
            if s.entries.count >= Self.capacity { s.entries.removeAll(keepingCapacity: true) }
            s.entries[a.ino] = Entry(attributes: a, until: until, generation: asked)
        }
    }

    /// Something may have changed attributes: nothing kept so far is answered from here.
    func changed() {
        state.withLock { $0.generation &+= 1 }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
