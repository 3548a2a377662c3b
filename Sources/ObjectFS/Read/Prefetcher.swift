// Prefetcher: runs the actions of each handle's ReadWindow against the block cache and the
// storage. One per filesystem, shared by every handle and reader of every file:
// - a block is fetched once however many readers want it; the others wait for that fetch.
//   Contiguous blocks fetched ahead go in one ranged GET ("run") of up to `maximumRunBlocks`
//   blocks, pinned to the version's ETag; each block of a run is handed to its readers as soon
//   as the run's body is there, then kept in the cache;
// - demand reads take memory from the budget first; read-ahead only takes what is free (the
//   window shrinks when memory is short); a background fill of a randomly read file waits
//   behind both, and a read that misses never waits for it;
// - a block is in the cache before its fetch is forgotten, so no byte crosses the network
//   twice while the cache holds it.

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
    /// Blocks one read-ahead GET may cover.
    let maximumRunBlocks: Int64

    /// The bytes of one block being fetched, for everyone who waits for them.
    final class Pending: Sendable {
        private struct State {
            var result: Result<ArraySlice<UInt8>, any Error>?
            var waiters: [CheckedContinuation<ArraySlice<UInt8>, any Error>] = []
        }
        private let state = Mutex(State())

        func value() async throws -> ArraySlice<UInt8> {
            try await withCheckedThrowingContinuation { continuation in
                let done = state.withLock { s -> Result<ArraySlice<UInt8>, any Error>? in
                    if s.result == nil { s.waiters.append(continuation) }
                    return s.result
                }
                if let done { continuation.resume(with: done) }
            }
        }

        /// Settles the fetch for everyone who waits (the first result stands).
        func finish(_ result: Result<ArraySlice<UInt8>, any Error>) {
            let waiters = state.withLock { s -> [CheckedContinuation<ArraySlice<UInt8>, any Error>] in
                guard s.result == nil else { return [] }
                s.result = result
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume(with: result) }
        }
    }

    private struct Fetch {
        let run: UInt64
        let pending: Pending
    }
    private struct Run {
        let task: Task<Void, Never>
        let blocks: [BlockID]
        /// A read waits for one of its blocks: a closing read-ahead window does not cancel it.
        var demanded: Bool
    }
    private struct State {
        var fetches: [BlockID: Fetch] = [:]
        var runs: [UInt64: Run] = [:]
        var filling: Set<String> = []
        var serial: UInt64 = 0
        /// The filesystem is going away: no new background fill work.
        var closing = false
    }
    private let state = Mutex(State())

    init(
        storage: any ObjectStorage, cache: any BlockCache, budget: MemoryBudget, fillLimit: Int64,
        fillConcurrency: Int = 4, maximumRunBlocks: Int64 = 4
    ) {
        self.storage = storage
        self.cache = cache
        self.budget = budget
        self.fillLimit = fillLimit
        self.fillConcurrency = fillConcurrency
        self.maximumRunBlocks = max(1, maximumRunBlocks)
    }

    var blockSize: Int64 { cache.blockSize }

    /// The largest read-ahead window the budget allows now: a run in flight holds one block of
    /// its `maximumRunBlocks`, and read-ahead may take half of what is free.
    var windowLimit: Int64 {
        max(blockSize, min(32 << 20, budget.limit / 2 * maximumRunBlocks, budget.available / 2 * maximumRunBlocks))
    }

    /// Carries out `actions` (from the handle's ReadWindow) and returns the bytes of the read.
    func read(
        _ version: ObjectVersion, _ object: CachedObject, offset: Int64, count: Int, actions: [ReadWindow.Action]
    ) async throws -> [UInt8] {
        let end = min(offset + Int64(count), version.size)
        guard end > offset else { return [] }
        let first = offset / blockSize
        let last = (end - 1) / blockSize
        // What the read waits for goes out first, in one GET when it spans blocks.
        let missing = (first...last).filter { !cache.contains(object, block: $0) }
        if let low = missing.first, let high = missing.last {
            _ = start(object, version, low..<(high + 1), reservation: .wait(.demand), demanded: true)
        }
        perform(actions, object, version)
        if first == last {  // the usual case: no second copy
            return try await block(
                object, version, first, from: Int(offset - first * blockSize), count: Int(end - offset))
        }
        var out: [UInt8] = []
        out.reserveCapacity(Int(end - offset))
        for index in first...last {
            let start = index * blockSize
            let from = Int(max(offset, start) - start)
            let to = Int(min(end, start + blockSize) - start)
            let bytes = try await block(object, version, index, from: from, count: to - from)
            out += bytes
            if bytes.count < to - from { break }  // the object is shorter than its size said
        }
        return out
    }

    /// Starts the read-ahead, cancellations and fills that `actions` ask for (demand fetches
    /// are the read's own business). Never waits.
    func perform(_ actions: [ReadWindow.Action], _ object: CachedObject, _ version: ObjectVersion) {
        for action in actions {
            switch action {
            case .fetch(let blocks, .prefetch): prefetch(object, version, blocks)
            case .cancel(let blocks): cancel(object, blocks)
            case .fill: fill(object, version)
            case .fetch(_, .demand): break
            }
        }
    }

    /// Fills `buffer` from `offset` when every block it needs is cached and readable without
    /// waiting (BlockCache.readImmediately); returns the bytes read (fewer at the end of the
    /// object), or `nil` when the read must take the waiting path.
    func readImmediately(_ object: CachedObject, size: Int64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer)
        -> Int?
    {
        let end = min(offset + Int64(buffer.count), size)
        guard end > offset else { return 0 }
        var done = 0
        for index in (offset / blockSize)...((end - 1) / blockSize) {
            let start = index * blockSize
            let from = Int(max(offset, start) - start)
            let to = Int(min(end, start + blockSize) - start)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + to - from)])
            guard cache.readImmediately(object, block: index, from: from, into: part) else { return nil }
            done += to - from
        }
        return done
    }

    /// `count` bytes from `from` in block `index`: from a fetch in flight, the cache, or a new
    /// fetch.
    private func block(_ object: CachedObject, _ version: ObjectVersion, _ index: Int64, from: Int, count: Int)
        async throws -> [UInt8]
    {
        let id = BlockID(object: object.name, index: index)
        for _ in 0..<3 {
            if let pending = waitFor(id) {
                do {
                    return Self.slice(try await pending.value(), from: from, count: count)
                } catch is CancellationError where !Task.isCancelled {
                    continue  // a read-ahead cancelled just before this read wanted it
                }
            }
            if cache.contains(object, block: index),
                let bytes = await cache.read(object, block: index, from: from, count: count)
            {
                return bytes
            }
            let started = start(object, version, index..<(index + 1), reservation: .wait(.demand), demanded: true)
            if let pending = started[id] {
                return Self.slice(try await pending.value(), from: from, count: count)
            }
        }
        throw CancellationError()
    }

    /// The fetch in flight of block `id`, marked as waited for.
    private func waitFor(_ id: BlockID) -> Pending? {
        state.withLock { s -> Pending? in
            guard let fetch = s.fetches[id] else { return nil }
            s.runs[fetch.run]?.demanded = true
            return fetch.pending
        }
    }

    private static func slice(_ bytes: ArraySlice<UInt8>, from: Int, count: Int) -> [UInt8] {
        let start = bytes.startIndex + from
        let end = min(bytes.endIndex, start + count)
        return start < end ? Array(bytes[start..<end]) : []
    }

    enum Reservation {
        /// Wait for the memory (a read waits, or a background fill).
        case wait(MemoryBudget.Priority)
        /// Take it only if it is free now (read-ahead), else fetch nothing.
        case ifFree
    }

    /// Starts fetching the blocks of `blocks` that are not in flight yet, in runs of at most
    /// `maximumRunBlocks` (one ranged GET each); returns the fetch of every block of `blocks`
    /// that is in flight now, old or new.
    @discardableResult
    private func start(
        _ object: CachedObject, _ version: ObjectVersion, _ blocks: Range<Int64>, reservation: Reservation,
        demanded: Bool
    ) -> [BlockID: Pending] {
        state.withLock { s -> [BlockID: Pending] in
            var found: [BlockID: Pending] = [:]
            var run: [Int64] = []
            func launch() {
                guard let low = run.first, let high = run.last else { return }
                run = []
                let range = ByteRange(
                    offset: low * blockSize, length: min(version.size, (high + 1) * blockSize) - low * blockSize)
                guard range.length > 0 else { return }
                if case .ifFree = reservation, !budget.tryReserve(memoryNeed(range)) { return }
                s.serial += 1
                let serial = s.serial
                let ids = (low...high).map { BlockID(object: object.name, index: $0) }
                let pendings = ids.map { _ in Pending() }
                let waitFor: MemoryBudget.Priority? = if case .wait(let p) = reservation { p } else { nil }
                let task = Task {
                    await self.runFetch(object, version, range, ids, pendings, serial: serial, waitFor: waitFor)
                }
                for (id, pending) in zip(ids, pendings) {
                    s.fetches[id] = Fetch(run: serial, pending: pending)
                    found[id] = pending
                }
                s.runs[serial] = Run(task: task, blocks: ids, demanded: demanded)
            }
            for index in blocks where index * blockSize < version.size {
                let id = BlockID(object: object.name, index: index)
                if let fetch = s.fetches[id] {
                    launch()
                    if demanded { s.runs[fetch.run]?.demanded = true }
                    found[id] = fetch.pending
                    continue
                }
                if let last = run.last, last + 1 != index || Int64(run.count) >= maximumRunBlocks { launch() }
                run.append(index)
            }
            launch()
            return found
        }
    }

    /// One ranged GET for the blocks `ids`, its body streamed: each block, as soon as it is
    /// whole, goes to its waiters and into the cache, so a run holds one block in memory
    /// however long it is. Then the fetch is forgotten.
    private func runFetch(
        _ object: CachedObject, _ version: ObjectVersion, _ range: ByteRange, _ ids: [BlockID], _ pendings: [Pending],
        serial: UInt64, waitFor: MemoryBudget.Priority?
    ) async {
        let memory = memoryNeed(range)
        if let priority = waitFor { await budget.reserve(memory, priority) }
        defer { budget.release(memory) }
        let cache = self.cache
        let sink = RunSink(lengths: ids.map { cache.length(of: $0.index, in: version.size) }) { k, bytes in
            pendings[k].finish(.success(bytes))
            await cache.store(object, block: ids[k].index, data: bytes)
        }
        do {
            try await storage.get(version.key, range: range, ifMatch: version.etag, into: sink)
            // A body shorter than the object's size said: what came, never cached.
            for (k, bytes) in sink.unfinished() { pendings[k].finish(.success(bytes)) }
        } catch {
            for pending in pendings { pending.finish(.failure(error)) }
        }
        forget(serial)
    }

    /// The memory a run of `range` holds while it streams: one block.
    private func memoryNeed(_ range: ByteRange) -> Int64 { min(range.length, blockSize) }

    private func forget(_ serial: UInt64) {
        state.withLock { s in
            guard let run = s.runs.removeValue(forKey: serial) else { return }
            for id in run.blocks where s.fetches[id]?.run == serial { s.fetches[id] = nil }
        }
    }

    /// Read-ahead of the blocks that are neither cached nor in flight, while memory is free.
    private func prefetch(_ object: CachedObject, _ version: ObjectVersion, _ blocks: Range<Int64>) {
        var low = blocks.lowerBound
        while low < blocks.upperBound {
            // Runs of blocks not in the cache; those in flight are skipped by `start`.
            while low < blocks.upperBound && cache.contains(object, block: low) { low += 1 }
            var high = low
            while high < blocks.upperBound && !cache.contains(object, block: high) { high += 1 }
            if high > low { start(object, version, low..<high, reservation: .ifFree, demanded: false) }
            low = high
        }
    }

    /// Cancels read-ahead runs over `blocks` that no read waits for.
    private func cancel(_ object: CachedObject, _ blocks: Range<Int64>) {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            var tasks: [Task<Void, Never>] = []
            for index in blocks {
                let id = BlockID(object: object.name, index: index)
                guard let fetch = s.fetches[id], let run = s.runs[fetch.run], !run.demanded else { continue }
                s.runs[fetch.run] = nil
                for b in run.blocks where s.fetches[b]?.run == fetch.run { s.fetches[b] = nil }
                tasks.append(run.task)
            }
            return tasks
        }
        for t in tasks { t.cancel() }
    }

    private func isWanted(_ object: CachedObject, _ index: Int64) -> Bool {
        state.withLock { !$0.closing && $0.fetches[BlockID(object: object.name, index: index)] == nil }
            && !cache.contains(object, block: index)
    }

    /// Stops background fills and waits (at most `timeout`) until the fetches in flight have
    /// put their blocks in the cache: what was read before an unmount is there after it.
    func settle(timeout: Duration) async {
        state.withLock { $0.closing = true }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while state.withLock({ !$0.runs.isEmpty }) && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Fetches every block of a randomly read file that is not there yet, `fillConcurrency`
    /// blocks at a time, behind every read; once per file version, and only if the file fits
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
                var index: Int64 = 0
                while index < blocks && !failed {
                    guard self.isWanted(object, index) else {
                        index += 1
                        continue
                    }
                    // A run of the blocks still wanted from here, one GET.
                    var end = index + 1
                    while end < blocks && end - index < self.maximumRunBlocks && self.isWanted(object, end) { end += 1 }
                    let run = index..<end
                    index = end
                    if running == concurrency {
                        failed = !(await group.next() ?? true)
                        running -= 1
                    }
                    running += 1
                    let started = self.start(object, version, run, reservation: .wait(.background), demanded: true)
                    group.addTask {
                        do {
                            for pending in started.values { _ = try await pending.value() }
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

/// Cuts a run's streamed body into its blocks. Only the block being filled (and those completed
/// by the last chunk) are held; each whole block is handed to `completed` (in order, once,
/// whatever retries the body needs).
final class RunSink: BodySink {
    private struct State {
        /// Blocks handed on so far, and their bytes.
        var done = 0
        var doneBytes = 0
        /// Bytes of this attempt's body seen so far (an attempt starts again from 0).
        var position = 0
        var block: [UInt8] = []
        /// Blocks completed since the last `drain`.
        var whole: [[UInt8]] = []
    }
    private let lengths: [Int]
    private let completed: @Sendable (Int, ArraySlice<UInt8>) async -> Void
    private let state = Mutex(State())

    init(lengths: [Int], completed: @escaping @Sendable (Int, ArraySlice<UInt8>) async -> Void) {
        self.lengths = lengths
        self.completed = completed
    }

    func begin() {
        state.withLock { s in
            s.position = 0
            s.block = []
        }
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        state.withLock { s in
            var rest = bytes[...]
            // A retried body repeats the blocks already handed on: skip them.
            let skip = min(rest.count, max(0, s.doneBytes - s.position))
            rest = rest.dropFirst(skip)
            s.position += skip
            while !rest.isEmpty && s.done + s.whole.count < lengths.count {
                let want = lengths[s.done + s.whole.count]
                if s.block.isEmpty { s.block.reserveCapacity(want) }
                let take = rest.prefix(want - s.block.count)
                s.block.append(contentsOf: UnsafeRawBufferPointer(rebasing: take))
                rest = rest.dropFirst(take.count)
                s.position += take.count
                if s.block.count == want {
                    s.whole.append(s.block)
                    s.block = []
                    s.doneBytes += want
                }
            }
        }
    }

    func drain() async {
        let (first, whole) = state.withLock { s in
            defer {
                s.done += s.whole.count
                s.whole = []
            }
            return (s.done, s.whole)
        }
        for (k, bytes) in whole.enumerated() { await completed(first + k, bytes[...]) }
    }

    /// The blocks the body did not complete: the part of one that came, then empty ones.
    func unfinished() -> [(Int, ArraySlice<UInt8>)] {
        state.withLock { s in
            (s.done..<lengths.count).map { ($0, $0 == s.done ? s.block[...] : []) }
        }
    }
}
