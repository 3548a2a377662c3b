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
    /// Bytes of reads answered from the cache (`hits`) and of reads that waited for a fetch,
    /// started by them or earlier by read-ahead (`misses`), for `objmount status`.
    private let hitBytes = Atomic<Int64>(0)
    private let missBytes = Atomic<Int64>(0)
    var hits: Int64 { hitBytes.load(ordering: .relaxed) }
    var misses: Int64 { missBytes.load(ordering: .relaxed) }

    /// How a fetched block reaches its readers.
    enum Delivery: Sendable {
        /// In memory (the cache keeps whole blocks only, or had no room for this one).
        case bytes(ArraySlice<UInt8>)
        /// In the cache: read it there.
        case cached
    }

    /// One block being fetched, for everyone who waits for it.
    final class Pending: Sendable {
        private struct State {
            var result: Result<Delivery, any Error>?
            var waiters: [CheckedContinuation<Delivery, any Error>] = []
        }
        private let state = Mutex(State())

        func value() async throws -> Delivery {
            try await withCheckedThrowingContinuation { continuation in
                let done = state.withLock { s -> Result<Delivery, any Error>? in
                    if s.result == nil { s.waiters.append(continuation) }
                    return s.result
                }
                if let done { continuation.resume(with: done) }
            }
        }

        /// Settles the fetch for everyone who waits (the first result stands); returns whether
        /// anyone did.
        @discardableResult
        func finish(_ result: Result<Delivery, any Error>) -> Bool {
            let waiters = state.withLock { s -> [CheckedContinuation<Delivery, any Error>] in
                guard s.result == nil else { return [] }
                s.result = result
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume(with: result) }
            return !waiters.isEmpty
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
        fillConcurrency: Int = 8, maximumRunBlocks: Int64 = 16
    ) {
        self.storage = storage
        self.cache = cache
        self.budget = budget
        self.fillLimit = fillLimit
        self.fillConcurrency = fillConcurrency
        self.maximumRunBlocks = max(1, maximumRunBlocks)
    }

    var blockSize: Int64 { cache.blockSize }

    /// The largest read-ahead window the budget allows now: read-ahead may take half of what is
    /// free, and a run of `maximumRunBlocks` in flight holds `memoryNeed` of it. Where blocks
    /// are kept in memory, what is fetched ahead stays there until it is read, so the window is
    /// also at most the room left for read-ahead in that cache: with more readers at once,
    /// each window shrinks, and no block is dropped before its reader came. (A window that
    /// counted its own blocks as room would reach past what can be promised: the blocks it
    /// skipped would each be a GET of their own.)
    var windowLimit: Int64 {
        let run = maximumRunBlocks * blockSize
        let runs = min(budget.limit, budget.available) / 2 / memoryNeed(ByteRange(offset: 0, length: run))
        var limit = min(64 << 20, runs * run)
        if let memory = cache as? MemoryBlockCache { limit = min(limit, memory.roomAhead) }
        return max(blockSize, limit)
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
        hitBytes.add(Int64(done), ordering: .relaxed)
        return done
    }

    /// `count` bytes from `from` in block `index`: from a fetch in flight, the cache, or a new
    /// fetch.
    private func block(_ object: CachedObject, _ version: ObjectVersion, _ index: Int64, from: Int, count: Int)
        async throws -> [UInt8]
    {
        let id = BlockID(object: object.name, index: index)
        for _ in 0..<3 {
            // A fetch in flight, or one started now, unless the block is in the cache.
            var pending = waitFor(id)
            if pending == nil, cache.contains(object, block: index),
                let bytes = await cache.read(object, block: index, from: from, count: count)
            {
                hitBytes.add(Int64(bytes.count), ordering: .relaxed)
                return bytes
            }
            if pending == nil {
                pending = start(object, version, index..<(index + 1), reservation: .wait(.demand), demanded: true)[id]
            }
            guard let pending else { continue }
            do {
                if case .bytes(let bytes) = try await pending.value() {
                    cache.noteRead(object, block: index)
                    let out = Self.slice(bytes, from: from, count: count)
                    missBytes.add(Int64(out.count), ordering: .relaxed)
                    return out
                }
            } catch is CancellationError where !Task.isCancelled {
                continue  // a read-ahead cancelled just before this read wanted it
            }
            if let bytes = await cache.read(object, block: index, from: from, count: count) {
                missBytes.add(Int64(bytes.count), ordering: .relaxed)
                return bytes
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

    /// Starts fetching the blocks of `blocks` that are neither in flight nor cached, in runs of
    /// at most `maximumRunBlocks` (one ranged GET each); returns the fetch of every block of
    /// `blocks` that is in flight now, old or new.
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
                let promised: Int64
                if case .ifFree = reservation {
                    guard budget.tryReserve(memoryNeed(range)) else { return }
                    let memory = cache as? MemoryBlockCache
                    guard memory?.promise(range.length) ?? true else {
                        budget.release(memoryNeed(range))
                        return
                    }
                    promised = memory == nil ? 0 : range.length
                } else {
                    promised = 0
                }
                s.serial += 1
                let serial = s.serial
                let ids = (low...high).map { BlockID(object: object.name, index: $0) }
                let pendings = ids.map { _ in Pending() }
                let waitFor: MemoryBudget.Priority? = if case .wait(let p) = reservation { p } else { nil }
                let task = Task {
                    await self.runFetch(
                        object, version, range, ids, pendings, serial: serial, waitFor: waitFor, promised: promised)
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
                // Fetched and forgotten since the caller looked: in the cache now.
                if cache.contains(object, block: index) {
                    launch()
                    continue
                }
                if let last = run.last, last + 1 != index || Int64(run.count) >= maximumRunBlocks { launch() }
                run.append(index)
            }
            launch()
            return found
        }
    }

    /// One ranged GET for the blocks `ids`, its body streamed into the cache block by block
    /// (RunSink); each block goes to its waiters as soon as it is whole. Then the fetch is
    /// forgotten.
    private func runFetch(
        _ object: CachedObject, _ version: ObjectVersion, _ range: ByteRange, _ ids: [BlockID], _ pendings: [Pending],
        serial: UInt64, waitFor: MemoryBudget.Priority?, promised: Int64
    ) async {
        let memory = memoryNeed(range)
        if let priority = waitFor { await budget.reserve(memory, priority) }
        let cache = self.cache
        defer {
            budget.release(memory)
            if promised > 0 { (cache as? MemoryBlockCache)?.release(promised: promised) }
        }
        let sink = RunSink(
            lengths: ids.map { cache.length(of: $0.index, in: version.size) },
            writer: { k in await cache.begin(object, block: ids[k].index) },
            completed: { k, delivery in
                // Kept before its waiters have it, so that what they read is known to the cache.
                if case .bytes(let bytes) = delivery { await cache.store(object, block: ids[k].index, data: bytes) }
                if pendings[k].finish(.success(delivery)) { cache.noteRead(object, block: ids[k].index) }
            })
        do {
            await sink.prepare()
            try await storage.get(version.key, range: range, ifMatch: version.etag, into: sink)
            // A body shorter than the object's size said: what came, never cached.
            for (k, bytes) in await sink.unfinished() { pendings[k].finish(.success(.bytes(bytes))) }
        } catch {
            _ = await sink.unfinished()
            for pending in pendings { pending.finish(.failure(error)) }
        }
        forget(serial)
    }

    /// The memory a run of `range` holds while it streams: what a BlockWriter buffers, or one
    /// block where the cache takes whole blocks only; and what its connection holds received
    /// and not yet taken (`receiveBuffers`).
    private func memoryNeed(_ range: ByteRange) -> Int64 {
        min(range.length, cache is DiskBlockCache ? Int64(BlockWriter.bufferSize) : blockSize)
            + min(range.length, Self.receiveBuffers)
    }

    /// What a connection holds of a body it receives, beyond the sink's own buffer: the HTTP
    /// client reads up to four 64 KiB buffers per wake-up and keeps them until they are
    /// taken. Counting them keeps the runs in flight within the budget: heaptrack of eight
    /// files read at once found 8.4 MiB in receive buffers beside 9.5 MiB in writers.
    static let receiveBuffers: Int64 = 256 << 10

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

    /// A reader closed its file with `blocks` read ahead. On disk they go on into the cache
    /// (a reopen finds them); in memory they would hold room that other readers need: their
    /// runs are cancelled and what came gives its room back.
    func leave(_ object: CachedObject, _ blocks: Range<Int64>) {
        if cache is MemoryBlockCache { cancel(object, blocks) }
    }

    /// Cancels read-ahead runs over `blocks` that no read waits for (a jump); where blocks are
    /// kept in memory, those fetched already give their room back.
    private func cancel(_ object: CachedObject, _ blocks: Range<Int64>) {
        defer { (cache as? MemoryBlockCache)?.giveUp(object, blocks: blocks) }
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
            // Blocks already cached (on disk after a remount) are made ready first: opened and
            // read into the page cache, so that reads of them stop waiting on the disk.
            if blocks <= Int64(self.cache.warmLimit) {
                for index in 0..<blocks where self.cache.contains(object, block: index) {
                    if self.state.withLock({ $0.closing }) { return }
                    _ = await self.cache.warm(object, block: index)
                }
            }
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

/// Cuts a run's streamed body into its blocks. A block goes straight into a BlockWriter of the
/// cache when it gives one, else it is collected in memory; each whole block is handed to
/// `completed` (in order, once, whatever retries the body needs). The transport calls
/// `append` and `drain` one after the other, never at once, so the state needs no lock:
/// `append` puts bytes into the block (what runs past its end waits in `carry`), `drain` does
/// what needs waiting — writes, the commit of a whole block, the next block's writer.
final class RunSink: BodySink, @unchecked Sendable {
    private let lengths: [Int]
    private let writer: @Sendable (Int) async -> BlockWriter?
    private let completed: @Sendable (Int, Prefetcher.Delivery) async -> Void
    /// Bytes of the body kept so far (over all attempts), and where this attempt's body is.
    private var received = 0
    private var position = 0
    /// Blocks handed on; the one being filled, in a writer or in `memory`, and its bytes so far.
    private var done = 0
    private var current: BlockWriter?
    private var memory: [UInt8] = []
    private var filled = 0
    /// Bytes past the end of the block being filled.
    private var carry: [UInt8] = []

    init(
        lengths: [Int], writer: @escaping @Sendable (Int) async -> BlockWriter? = { _ in nil },
        completed: @escaping @Sendable (Int, Prefetcher.Delivery) async -> Void
    ) {
        self.lengths = lengths
        self.writer = writer
        self.completed = completed
    }

    /// Asks the cache for the first block's writer (before the body starts).
    func prepare() async {
        if !lengths.isEmpty { current = await writer(0) }
    }

    func begin(at: Int64) { position = Int(at) }

    func append(_ bytes: UnsafeRawBufferPointer) {
        // A retry that could not resume repeats what was received (the same version): skip it.
        let skip = min(bytes.count, max(0, received - position))
        position += bytes.count
        received += bytes.count - skip
        let rest = UnsafeRawBufferPointer(rebasing: bytes[skip...])
        if carry.isEmpty {
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[fill(rest)...]))
        } else {
            carry.append(contentsOf: rest)
        }
    }

    /// Puts the start of `bytes` into the block being filled; returns how many it took.
    private func fill(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard done < lengths.count else { return bytes.count }  // past the range: dropped
        let n = min(bytes.count, lengths[done] - filled)
        let part = UnsafeRawBufferPointer(rebasing: bytes[0..<n])
        if let w = current { w.append(part) } else { memory.append(contentsOf: part) }
        filled += n
        return n
    }

    func drain() async {
        while done < lengths.count {
            if filled == lengths[done] {
                await finishBlock()
            } else if !carry.isEmpty {
                let taken = carry.withUnsafeBytes { fill($0) }
                carry.removeFirst(taken)
            } else {
                if let w = current, w.needsFlush { await w.flush() }
                return
            }
        }
        carry = []
    }

    private func finishBlock() async {
        let k = done
        if let w = current {
            current = nil
            if await w.commit() {
                await completed(k, .cached)
            } else {
                await completed(k, .bytes(await w.abandon()[...]))
            }
        } else {
            let bytes = memory
            memory = []
            await completed(k, .bytes(bytes[...]))
        }
        done += 1
        filled = 0
        if done < lengths.count { current = await writer(done) }
    }

    /// The blocks the body did not complete: the part of one that came, then empty ones. Gives
    /// up the block being written.
    func unfinished() async -> [(Int, ArraySlice<UInt8>)] {
        guard done < lengths.count else { return [] }
        var partial = memory[...]
        if let w = current {
            current = nil
            partial = await w.abandon()[...]
        }
        memory = []
        return (done..<lengths.count).map { ($0, $0 == done ? partial : []) }
    }
}
