// Prefetcher: runs the actions of each handle's ReadWindow against the block cache and the
// storage. One per filesystem, shared by every handle and reader of every file:
// - a block is fetched once (one ranged GET, pinned to the version's ETag) however many readers
//   want it; the others wait for that fetch;
// - demand reads take memory from the budget first; read-ahead only takes what is free (the
//   window shrinks when memory is short); a background fill of a randomly read file waits
//   behind both, with a few GETs in flight, and a read that misses never waits for it;
// - every fetched block goes to the cache before the fetch is forgotten, so no byte crosses
//   the network twice while the cache holds it.

import ObjectStorage
import Synchronization

/// One version of an object, as a reader needs it.
public struct ObjectVersion: Sendable {
    public var key: ObjectKey
    public var etag: ETag?
    public var size: Int64
}

final class Prefetcher: Sendable {
    let storage: any ObjectStorage
    let cache: any BlockCache
    let budget: MemoryBudget
    /// Files up to this size are filled in the background once they are read at random
    /// (0: never).
    let fillLimit: Int64
    let fillConcurrency: Int

    private struct Fetch {
        let serial: UInt64
        let task: Task<[UInt8], any Error>
        /// A read waits for it: it is not cancelled when a window closes.
        var demanded: Bool
    }
    private struct State {
        var fetches: [BlockID: Fetch] = [:]
        var filling: Set<String> = []
        var serial: UInt64 = 0
    }
    private let state = Mutex(State())

    init(
        storage: any ObjectStorage, cache: any BlockCache, budget: MemoryBudget, fillLimit: Int64,
        fillConcurrency: Int = 8
    ) {
        self.storage = storage
        self.cache = cache
        self.budget = budget
        self.fillLimit = fillLimit
        self.fillConcurrency = fillConcurrency
    }

    var blockSize: Int64 { cache.blockSize }

    /// The largest read-ahead window the budget allows now.
    var windowLimit: Int64 {
        max(blockSize, min(16 << 20, budget.limit / 4, budget.available / 2))
    }

    /// Carries out `actions` (from the handle's ReadWindow) and returns the bytes of the read.
    func read(_ version: ObjectVersion, offset: Int64, count: Int, actions: [ReadWindow.Action]) async throws
        -> [UInt8]
    {
        let end = min(offset + Int64(count), version.size)
        guard end > offset else { return [] }
        let object = CachedObject(version)
        for action in actions {
            switch action {
            case .fetch(let blocks, .prefetch):
                for index in blocks { prefetch(object, version, index) }
            case .cancel(let blocks):
                cancel(object, blocks)
            case .fill:
                fill(object, version)
            case .fetch(_, .demand):
                break  // below
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(Int(end - offset))
        var index = offset / blockSize
        while index * blockSize < end {
            let start = index * blockSize
            let from = Int(max(offset, start) - start)
            let to = Int(min(end, start + blockSize) - start)
            let bytes = try await block(object, version, index, from: from, count: to - from)
            out += bytes
            if bytes.count < to - from { break }  // the object is shorter than its size said
            index += 1
        }
        return out
    }

    /// `count` bytes from `from` in block `index`: from a fetch in flight, the cache, or a new
    /// fetch.
    private func block(_ object: CachedObject, _ version: ObjectVersion, _ index: Int64, from: Int, count: Int)
        async throws -> [UInt8]
    {
        let id = BlockID(object: object.name, index: index)
        for _ in 0..<3 {
            let inFlight = state.withLock { s -> Task<[UInt8], any Error>? in
                s.fetches[id]?.demanded = true
                return s.fetches[id]?.task
            }
            if let task = inFlight {
                do {
                    return Self.slice(try await task.value, from: from, count: count)
                } catch is CancellationError where !Task.isCancelled {
                    continue  // a read-ahead cancelled just before this read wanted it
                }
            }
            if cache.contains(object, block: index),
                let bytes = await cache.read(object, block: index, from: from, count: count)
            {
                return bytes
            }
            let task = fetch(object, version, index, reserved: false, priority: .demand)
            return Self.slice(try await task.value, from: from, count: count)
        }
        throw CancellationError()
    }

    private static func slice(_ bytes: [UInt8], from: Int, count: Int) -> [UInt8] {
        let end = min(bytes.count, from + count)
        return from < end ? Array(bytes[from..<end]) : []
    }

    /// The fetch of block `index`: the one in flight, or a new one. `reserved`: the caller
    /// already took the block's bytes from the budget; `demanded`: something waits for it, so a
    /// closing read-ahead window does not cancel it.
    @discardableResult
    private func fetch(
        _ object: CachedObject, _ version: ObjectVersion, _ index: Int64, reserved: Bool,
        priority: MemoryBudget.Priority, demanded: Bool = true
    ) -> Task<[UInt8], any Error> {
        let id = BlockID(object: object.name, index: index)
        let length = Int64(cache.length(of: index, in: version.size))
        let (task, alreadyThere) = state.withLock { s -> (Task<[UInt8], any Error>, Bool) in
            if let existing = s.fetches[id] {
                if demanded { s.fetches[id]!.demanded = true }
                return (existing.task, true)
            }
            s.serial += 1
            let serial = s.serial
            let task = Task { () async throws -> [UInt8] in
                if !reserved { await self.budget.reserve(length, priority) }
                defer { self.budget.release(length) }
                do {
                    let bytes = try await self.storage.get(
                        version.key, range: ByteRange(offset: index * self.blockSize, length: length),
                        ifMatch: version.etag)
                    if Int64(bytes.count) == length { await self.cache.store(object, block: index, data: bytes) }
                    self.forget(id, serial)
                    return bytes
                } catch {
                    self.forget(id, serial)
                    throw error
                }
            }
            s.fetches[id] = Fetch(serial: serial, task: task, demanded: demanded)
            return (task, false)
        }
        if alreadyThere && reserved { budget.release(length) }
        return task
    }

    private func forget(_ id: BlockID, _ serial: UInt64) {
        state.withLock { s in
            if s.fetches[id]?.serial == serial { s.fetches[id] = nil }
        }
    }

    private func isWanted(_ object: CachedObject, _ index: Int64) -> Bool {
        state.withLock { $0.fetches[BlockID(object: object.name, index: index)] == nil }
            && !cache.contains(object, block: index)
    }

    /// Read-ahead of one block, if it is neither cached nor in flight and memory is free now.
    private func prefetch(_ object: CachedObject, _ version: ObjectVersion, _ index: Int64) {
        guard index * blockSize < version.size, isWanted(object, index) else { return }
        let length = Int64(cache.length(of: index, in: version.size))
        guard budget.tryReserve(length) else { return }
        fetch(object, version, index, reserved: true, priority: .demand, demanded: false)
    }

    /// Cancels read-ahead fetches of `blocks` that no read waits for.
    private func cancel(_ object: CachedObject, _ blocks: Range<Int64>) {
        let tasks = state.withLock { s -> [Task<[UInt8], any Error>] in
            var tasks: [Task<[UInt8], any Error>] = []
            for index in blocks {
                let id = BlockID(object: object.name, index: index)
                if let f = s.fetches[id], !f.demanded {
                    s.fetches[id] = nil
                    tasks.append(f.task)
                }
            }
            return tasks
        }
        for t in tasks { t.cancel() }
    }

    /// Fetches every block of a randomly read file that is not there yet, `fillConcurrency`
    /// at a time, behind every read; once per file version, and only if the file fits
    /// comfortably in the cache.
    private func fill(_ object: CachedObject, _ version: ObjectVersion) {
        guard fillLimit > 0, version.size <= fillLimit, version.etag != nil else { return }
        let first = state.withLock { $0.filling.insert(object.name).inserted }
        guard first else { return }
        let blocks = (version.size + blockSize - 1) / blockSize
        let concurrency = fillConcurrency
        Task(priority: .background) {
            defer { _ = self.state.withLock { $0.filling.remove(object.name) } }
            await withTaskGroup(of: Bool.self) { group in
                var running = 0
                var failed = false
                for index in 0..<blocks where !failed {
                    guard self.isWanted(object, index) else { continue }
                    if running == concurrency {
                        failed = !(await group.next() ?? true)
                        running -= 1
                    }
                    running += 1
                    group.addTask {
                        do {
                            _ = try await self.fetch(object, version, index, reserved: false, priority: .background)
                                .value
                            return true
                        } catch {
                            return false  // the object changed or the server failed: stop filling
                        }
                    }
                }
            }
        }
    }
}
