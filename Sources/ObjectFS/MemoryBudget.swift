// MemoryBudget: one bound on the bytes in flight — blocks being fetched (read-ahead windows and
// response buffers) and upload parts (DESIGN.md §9). Reads that a caller waits for come first;
// read-ahead takes only what is free at once (it shrinks when memory is short); background
// work waits behind everything else. Memory never grows with file size, file count or the
// number of open handles.

import Synchronization

final class MemoryBudget: Sendable {
    enum Priority: Int, Sendable {
        /// A caller waits for it: a read, an upload part.
        case demand = 0
        /// Filling a file's blocks in the background.
        case background = 1
    }

    let limit: Int64
    private struct Waiter {
        let bytes: Int64
        let continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var used: Int64 = 0
        var waiters: [[Waiter]] = [[], []]
        var peak: Int64 = 0
    }
    private let state = Mutex(State())

    init(limit: Int64) { self.limit = max(1, limit) }

    /// Waits until `bytes` fit, then takes them. A request larger than the whole budget is
    /// let through alone, so that it never waits for good.
    func reserve(_ bytes: Int64, _ priority: Priority = .demand) async {
        let granted = state.withLock { s -> Bool in
            guard s.waiters.allSatisfy(\.isEmpty), Self.fits(bytes, s.used, limit) else { return false }
            s.used += bytes
            s.peak = max(s.peak, s.used)
            return true
        }
        if granted { return }
        await withCheckedContinuation { continuation in
            let now = state.withLock { s -> Bool in
                if s.waiters.allSatisfy(\.isEmpty), Self.fits(bytes, s.used, limit) {
                    s.used += bytes
                    s.peak = max(s.peak, s.used)
                    return true
                }
                s.waiters[priority.rawValue].append(Waiter(bytes: bytes, continuation: continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Takes `bytes` if they are free now and the budget stays within `share` of its limit,
    /// without waiting (read-ahead takes at most half, so that reads and uploads that wait
    /// always find room).
    func tryReserve(_ bytes: Int64, share: Double = 0.5) -> Bool {
        state.withLock { s in
            guard s.waiters.allSatisfy(\.isEmpty), Double(s.used + bytes) <= Double(limit) * share else { return false }
            s.used += bytes
            s.peak = max(s.peak, s.used)
            return true
        }
    }

    func release(_ bytes: Int64) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.used -= bytes
            var ready: [CheckedContinuation<Void, Never>] = []
            for p in s.waiters.indices {
                while let w = s.waiters[p].first, Self.fits(w.bytes, s.used, limit) {
                    s.waiters[p].removeFirst()
                    s.used += w.bytes
                    s.peak = max(s.peak, s.used)
                    ready.append(w.continuation)
                }
                if !s.waiters[p].isEmpty { break }  // keep the order: nothing overtakes a waiter
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    private static func fits(_ bytes: Int64, _ used: Int64, _ limit: Int64) -> Bool {
        used + bytes <= limit || used == 0
    }

    /// Bytes taken now, and the most ever taken at once.
    var used: Int64 { state.withLock { $0.used } }
    var peak: Int64 { state.withLock { $0.peak } }
    /// Reservations waiting for room.
    var waiting: Int { state.withLock { $0.waiters.reduce(0) { $0 + $1.count } } }
    /// Bytes free now.
    var available: Int64 { state.withLock { max(0, limit - $0.used) } }
}
