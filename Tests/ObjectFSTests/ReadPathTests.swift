// The read path (Read/): the ReadWindow's transitions, the block cache on disk (bound,
// persistence, damaged files, changed objects), one fetch per block for concurrent readers,
// the background fill of randomly read files, and the memory budget.

import MemoryStorage
import ObjectStorage
import Synchronization
import Testing

@testable import ObjectFS

#if canImport(Glibc)
    import Glibc
#endif

private let block: Int64 = 64 << 10

private func content(_ n: Int, seed: Int = 1) -> [UInt8] {
    bytes(n) { UInt8(truncatingIfNeeded: ($0 &* 7 &+ $0 / 251) ^ seed) }
}

/// An ObjectFS over `storage` with a disk block cache in `cache` (or none).
private func filesystem(
    _ storage: any ObjectStorage, cache: String?, cacheSize: Int64 = 64 << 20, memoryLimit: Int64 = 64 << 20,
    clock: ManualClock = ManualClock()
) throws -> ObjectFS {
    var config = ObjectFSConfiguration(uid: 1000, gid: 1000, stagingDirectory: uniqueStagingDirectory())
    config.blockSize = block
    config.blockCacheDirectory = cache
    config.blockCacheSize = cache == nil ? 0 : cacheSize
    config.blockCacheFreeSpaceFloor = 0
    config.memoryLimit = memoryLimit
    return try ObjectFS(storage: storage, configuration: config, clock: clock)
}

/// The whole file through one handle, in reads of `chunk` bytes, as `cat` does.
private func readAll(_ fs: ObjectFS, _ name: String, chunk: Int = 32 << 10) async throws -> [UInt8] {
    let a = try await fs.lookup(parent: rootInode, name: name)
    let fh = try await fs.open(a.ino, flags: .readOnly)
    var out: [UInt8] = []
    while true {
        let bytes = try await fs.read(fh, offset: Int64(out.count), count: chunk)
        if bytes.isEmpty { break }
        out += bytes
    }
    await fs.release(fh)
    return out
}

/// A storage holding `data` as "f", read once through a filesystem on a new cache directory,
/// which then holds every block of it (the filesystem is gone when this returns).
private func cachedObject(_ data: [UInt8]) async throws -> (FaultInjectingStorage<MemoryStorage>, String) {
    let storage = FaultInjectingStorage(MemoryStorage())
    _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
    let cache = cacheDirectory()
    let fs = try filesystem(storage, cache: cache)
    #expect(try await readAll(fs, "f") == data)
    await fs.settleReads()
    return (storage, cache)
}

/// A second filesystem on the same cache directory, once the first has let go of it (its
/// last tasks may still hold it for a moment).
private func remount(_ storage: any ObjectStorage, cache: String, cacheSize: Int64 = 64 << 20) async throws
    -> ObjectFS
{
    for _ in 0..<200 {
        let fs = try filesystem(storage, cache: cache, cacheSize: cacheSize)
        if fs.blockCacheProblem == nil { return fs }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw FSError(EBUSY, "the cache directory stayed locked")
}

private func blockFiles(_ cache: String) -> [String] {
    var out: [String] = []
    guard let dir = opendir(cache) else { return [] }
    while let e = readdir(dir) {
        let name = withUnsafePointer(to: e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." && name != "lock" { out.append(cache + "/" + name) }
    }
    closedir(dir)
    return out.sorted()
}

/// What `du` counts: the allocated bytes of the directory and everything in it.
private func diskUsage(_ cache: String) -> Int64 {
    var total: Int64 = 0
    for path in blockFiles(cache) + [cache, cache + "/lock"] {
        var st = stat()
        if stat(path, &st) == 0 { total += Int64(st.st_blocks) * 512 }
    }
    return total
}

private func cacheDirectory() -> String { uniqueStagingDirectory() + "-blocks" }

@Suite struct ReadWindowTests {
    let size: Int64 = 100 << 20

    @Test func aFirstReadFetchesOnlyItsBlocks() {
        var w = ReadWindow(blockSize: 1 << 20)
        #expect(w.read(offset: 0, length: 4096, size: size) == [.fetch(0..<1, .demand)])
        #expect(w.window == 0)
    }

    @Test func aSequentialRunOpensAWindowThatDoublesUpToTheCap() {
        var w = ReadWindow(blockSize: 1 << 20)
        w.maximumWindow = 8 << 20
        w.batch = 1
        _ = w.read(offset: 0, length: 128 << 10, size: size)
        // The second read continues the first: 1 MiB ahead.
        #expect(
            w.read(offset: 128 << 10, length: 128 << 10, size: size) == [
                .fetch(0..<1, .demand), .fetch(1..<2, .prefetch),
            ])
        #expect(w.window == 1 << 20)
        // Within the same block: nothing new is asked for, the window stays.
        #expect(w.read(offset: 256 << 10, length: 128 << 10, size: size) == [.fetch(0..<1, .demand)])
        // Each new block doubles the window; blocks already asked for are not asked again.
        #expect(
            w.read(offset: 1 << 20, length: 128 << 10, size: size) == [
                .fetch(1..<2, .demand), .fetch(2..<4, .prefetch),
            ])
        #expect(w.window == 2 << 20)
        #expect(
            w.read(offset: 2 << 20, length: 128 << 10, size: size) == [
                .fetch(2..<3, .demand), .fetch(4..<7, .prefetch),
            ])
        #expect(
            w.read(offset: 3 << 20, length: 128 << 10, size: size) == [
                .fetch(3..<4, .demand), .fetch(7..<12, .prefetch),
            ])
        #expect(w.window == 8 << 20)
        #expect(
            w.read(offset: 4 << 20, length: 128 << 10, size: size) == [
                .fetch(4..<5, .demand), .fetch(12..<13, .prefetch),
            ])
        #expect(w.window == 8 << 20)
    }

    @Test func readAheadIsAskedForInBatchesOfBlocks() {
        var w = ReadWindow(blockSize: 1 << 20)
        w.maximumWindow = 16 << 20
        var asked: [Range<Int64>] = []
        for i: Int64 in 0..<40 {
            for case .fetch(let r, .prefetch) in w.read(offset: i << 20, length: 1 << 20, size: size) {
                asked.append(r)
            }
        }
        // Once the window is wide, each request covers several blocks (`batch`, or half the
        // window's blocks while it is small), and together they cover every block after the two
        // read first, once.
        #expect(asked.filter { $0.count < 4 }.allSatisfy { $0.lowerBound < 8 })
        #expect(asked.map(\.lowerBound) == asked.indices.map { $0 == 0 ? 2 : asked[$0 - 1].upperBound })
        #expect(asked.last!.upperBound >= 40)
    }

    @Test func readsSlightlyOutOfOrderStillCountAsSequential() {
        var w = ReadWindow(blockSize: 1 << 20)
        _ = w.read(offset: 0, length: 128 << 10, size: size)
        _ = w.read(offset: 256 << 10, length: 128 << 10, size: size)  // the kernel's next request overtook
        #expect(w.read(offset: 128 << 10, length: 128 << 10, size: size) == [.fetch(0..<1, .demand)])
        #expect(w.window == 1 << 20)
        // The run reaches block 3; a request for block 1, sent earlier by the kernel, arrives late.
        _ = w.read(offset: 1 << 20, length: 1 << 20, size: size)
        _ = w.read(offset: 3 << 20, length: 1 << 20, size: size)
        #expect(w.read(offset: 2 << 20, length: 1 << 20, size: size) == [.fetch(2..<3, .demand)])
        #expect(w.randomReads == 0)
    }

    /// Requests served out of order (libfuse threads race): one that lands ahead of the
    /// furthest read but inside what the run fetched ahead is no jump, and cancels nothing.
    @Test func aReadAheadOfTheRunInsideItsReadAheadIsNoJump() {
        var w = ReadWindow(blockSize: 1 << 20)
        w.batch = 1
        _ = w.read(offset: 0, length: 1 << 20, size: size)
        _ = w.read(offset: 1 << 20, length: 1 << 20, size: size)
        _ = w.read(offset: 2 << 20, length: 1 << 20, size: size)  // blocks 3..<5 asked ahead
        let actions = w.read(offset: (4 << 20) + (512 << 10), length: 128 << 10, size: size)
        #expect(!actions.contains { if case .cancel = $0 { true } else { false } })
        #expect(w.randomReads == 0)
        // Beyond what was fetched ahead, it is a jump.
        #expect(w.read(offset: 40 << 20, length: 4096, size: size).contains(.cancel(5..<9)))
    }

    @Test func aJumpClosesTheWindowAndCancelsWhatWasAhead() {
        var w = ReadWindow(blockSize: 1 << 20)
        _ = w.read(offset: 0, length: 128 << 10, size: size)
        _ = w.read(offset: 128 << 10, length: 128 << 10, size: size)
        _ = w.read(offset: 1 << 20, length: 128 << 10, size: size)  // blocks 2..<4 asked ahead
        #expect(w.read(offset: 50 << 20, length: 4096, size: size) == [.fetch(50..<51, .demand), .cancel(2..<4)])
        #expect(w.window == 0)
        #expect(w.randomReads == 1)
    }

    @Test func randomReadsAskForAFillOnce() {
        var w = ReadWindow(blockSize: 1 << 20)
        var fills = 0
        for offset: Int64 in [90, 10, 50, 70, 20, 80, 30] {
            fills += w.read(offset: offset << 20, length: 4096, size: size).filter { $0 == .fill }.count
        }
        #expect(w.randomReads == 6)
        #expect(fills == 1)
    }

    @Test func theWindowStopsAtTheEndOfTheFile() {
        var w = ReadWindow(blockSize: 1 << 20)
        let small: Int64 = (3 << 20) + 100
        _ = w.read(offset: 0, length: 128 << 10, size: small)
        _ = w.read(offset: 128 << 10, length: 128 << 10, size: small)
        #expect(
            w.read(offset: 1 << 20, length: 128 << 10, size: small) == [
                .fetch(1..<2, .demand), .fetch(2..<4, .prefetch),
            ])
        #expect(w.read(offset: 2 << 20, length: 128 << 10, size: small) == [.fetch(2..<3, .demand)])
        #expect(w.read(offset: small, length: 4096, size: small) == [])
    }
}

@Suite struct BlockCacheTests {
    @Test func aSequentialReadFetchesEveryBlockOnceAndReadsRight() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 20 + 123)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        #expect(try await readAll(fs, "f") == data)
        // Every byte once; blocks read ahead go several to a GET.
        #expect(storage.bytesRead == Int64(data.count))
        #expect(storage.calls(.get) < 21)
    }

    @Test func aReadThatStartsFurtherOnDoesNotFetchTheFirstBlockAgain() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 8)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: nil)
        let a = try await fs.lookup(parent: rootInode, name: "f")
        let fh = try await fs.open(a.ino, flags: .readOnly)
        let start = Int(block) * 4
        #expect(try await fs.read(fh, offset: 0, count: 100) == Array(data[0..<100]))
        var offset = start
        while offset < data.count {
            #expect(
                try await fs.read(fh, offset: Int64(offset), count: 16 << 10)
                    == Array(data[offset..<offset + (16 << 10)]))
            offset += 16 << 10
        }
        await fs.release(fh)
        // Block 0, then blocks 4 to 7: each once.
        #expect(storage.bytesRead == 5 * block)
    }

    @Test func aRemountServesCachedBlocksWithoutAGet() async throws {
        let data = content(Int(block) * 6 + 5)
        let (storage, cache) = try await cachedObject(data)
        let before = storage.calls(.get)
        #expect(storage.bytesRead == Int64(data.count))
        let fs = try await remount(storage, cache: cache)
        #expect(try await readAll(fs, "f") == data)
        #expect(storage.calls(.get) == before)
    }

    /// `objmount status`'s cache figures: a first read misses every byte, a read after a
    /// remount hits every byte; the cache holds the blocks either way.
    @Test func statusCountsCacheHitsAndMissesInBytes() async throws {
        let data = content(Int(block) * 3 + 100)
        let storage = FaultInjectingStorage(MemoryStorage())
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let cache = cacheDirectory()
        do {  // the first mount, gone at the end of the block (it holds the cache directory)
            let first = try filesystem(storage, cache: cache)
            var status = await first.status()
            #expect(status.cacheHitBytes == 0 && status.cacheMissBytes == 0 && status.cacheCapacity == 64 << 20)
            #expect(try await readAll(first, "f") == data)
            await first.settleReads()
            status = await first.status()
            // The first block waited for its fetch; blocks read ahead may have been there in time.
            #expect(status.cacheMissBytes + status.cacheHitBytes == Int64(data.count))
            #expect(status.cacheMissBytes >= block && status.cacheUsed >= Int64(data.count))
        }
        let second = try await remount(storage, cache: cache)
        #expect(try await readAll(second, "f") == data)
        let status = await second.status()
        #expect(status.cacheHitBytes == Int64(data.count) && status.cacheMissBytes == 0)
    }

    @Test func aDamagedBlockFileIsDroppedAndFetchedAgain() async throws {
        let data = content(Int(block) * 4)
        let (storage, cache) = try await cachedObject(data)
        let files = blockFiles(cache)
        #expect(files.count == 4)
        // Flip one byte of the first block's data; cut the second short; empty the third.
        let f0 = open(files[0], O_RDWR)
        var byte: UInt8 = 0
        #expect(pread(f0, &byte, 1, 4096 + 1000) == 1)
        byte ^= 0x40
        #expect(pwrite(f0, &byte, 1, 4096 + 1000) == 1)
        close(f0)
        #expect(truncate(files[1], 4096 + 100) == 0)
        #expect(truncate(files[2], 0) == 0)
        let before = storage.bytesRead
        let fs = try await remount(storage, cache: cache)
        #expect(try await readAll(fs, "f") == data)
        #expect(storage.bytesRead == before + 3 * block)
        // Fetched again, the blocks are whole: a third mount needs no GET.
        let again = storage.calls(.get)
        _ = consume fs
        let third = try await remount(storage, cache: cache)
        #expect(try await readAll(third, "f") == data)
        #expect(storage.calls(.get) == again)
    }

    @Test func theCacheNeverGrowsAboveItsBound() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let bound: Int64 = 12 * (block + 4096) + DiskBlockCache.overhead
        var files: [[UInt8]] = []
        for i in 0..<6 {
            let data = content(Int(block) * 6, seed: i)
            files.append(data)
            _ = try await storage.put("f\(i)", payload: .bytes(data), options: PutOptions())
        }
        let cache = cacheDirectory()
        let fs = try filesystem(storage, cache: cache, cacheSize: bound)
        let dir = cache
        // 36 blocks read through a cache of 12: three times the bound.
        for (i, data) in files.enumerated() {
            #expect(try await readAll(fs, "f\(i)") == data)
            #expect(diskUsage(dir) <= bound)
        }
        #expect(blockFiles(dir).count <= 12)
        // The last file's blocks are the ones kept.
        let before = storage.calls(.get)
        #expect(try await readAll(fs, "f5") == files[5])
        #expect(storage.calls(.get) == before)
    }

    @Test func anObjectChangedByAnotherClientIsNeverServedFromOldBlocks() async throws {
        let memory = MemoryStorage()
        let storage = FaultInjectingStorage(memory)
        let old = content(Int(block) * 3, seed: 1)
        _ = try await storage.put("f", payload: .bytes(old), options: PutOptions())
        let clock = ManualClock()
        let fs = try filesystem(storage, cache: cacheDirectory(), clock: clock)
        #expect(try await readAll(fs, "f") == old)
        // Same size, other bytes: only the ETag tells them apart.
        let new = content(Int(block) * 3, seed: 2)
        _ = try await memory.put("f", payload: .bytes(new), options: PutOptions())
        clock.advance(seconds: 11)
        #expect(try await readAll(fs, "f") == new)
    }

    @Test func sixteenConcurrentReadersShareOneFetchPerBlock() async throws {
        let storage = FaultInjectingStorage(MemoryStorage(), latency: .milliseconds(20))
        let data = content(Int(block) * 10 + 7)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        _ = try await fs.lookup(parent: rootInode, name: "f")
        let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<16 { group.addTask { try await readAll(fs, "f", chunk: 16 << 10) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 16)
        #expect(results.allSatisfy { $0 == data })
        #expect(storage.bytesRead == Int64(data.count))
    }

    @Test func randomReadsFillTheRestOfTheFileInTheBackgroundOnce() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 16)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        let a = try await fs.lookup(parent: rootInode, name: "f")
        let fh = try await fs.open(a.ino, flags: .readOnly)
        for b: Int in [9, 2, 14, 5] {
            let offset = b * Int(block) + 100
            #expect(try await fs.read(fh, offset: Int64(offset), count: 4096) == Array(data[offset..<offset + 4096]))
        }
        // The fill fetches the other 12 blocks, each once.
        for _ in 0..<500 where storage.bytesRead < 16 * block { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(storage.bytesRead == 16 * block)
        for b in 0..<16 {
            let offset = b * Int(block)
            #expect(try await fs.read(fh, offset: Int64(offset), count: 4096) == Array(data[offset..<offset + 4096]))
        }
        #expect(storage.bytesRead == 16 * block)
        await fs.release(fh)
    }

    @Test func withoutADiskCacheReadsStillWorkAndRandomReadsFetchOnlyTheirBlocks() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 16)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        #expect(try await readAll(try filesystem(storage, cache: nil), "f") == data)
        let fs = try filesystem(storage, cache: nil)
        let a = try await fs.lookup(parent: rootInode, name: "f")
        let fh = try await fs.open(a.ino, flags: .readOnly)
        let before = storage.calls(.get)
        for b: Int in [9, 2, 14, 5, 11, 0] {
            let offset = b * Int(block) + 100
            #expect(try await fs.read(fh, offset: Int64(offset), count: 4096) == Array(data[offset..<offset + 4096]))
        }
        try await Task.sleep(for: .milliseconds(50))
        // No fill without a disk cache: one GET per block read, nothing else.
        #expect(storage.calls(.get) - before == 6)
        await fs.release(fh)
    }

    @Test func withoutADiskCacheReadAheadStaysWithinTheMemoryCacheAndFetchesEveryByteOnce() async throws {
        // The smallest memory limit: an 8 MiB budget, so 4 MiB (64 blocks) of blocks in memory,
        // while the budget alone would let the window grow to 12 MiB.
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 256 + 77)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: nil, memoryLimit: ObjectFSConfiguration.programMemory)
        #expect(try await readAll(fs, "f") == data)
        #expect(storage.bytesRead == Int64(data.count))
        // Read ahead: several blocks to a GET.
        #expect(storage.calls(.get) < 64)
        // Four readers at once, in whole blocks as the kernel's 1 MiB requests come, share the
        // room: their windows shrink, nothing is fetched twice. (In smaller pieces, a reader that
        // stalls halfway through a block while the others read on may find it dropped.)
        let files = (0..<4).map { content(Int(block) * 96 + $0, seed: $0 + 2) }
        for (i, bytes) in files.enumerated() {
            _ = try await storage.put("g\(i)", payload: .bytes(bytes), options: PutOptions())
        }
        var before = storage.bytesRead
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for (i, bytes) in files.enumerated() {
                group.addTask { try await readAll(fs, "g\(i)", chunk: Int(block)) == bytes }
            }
            for try await same in group { #expect(same) }
        }
        #expect(storage.bytesRead - before == Int64(files.map(\.count).reduce(0, +)))
        // Readers that leave with blocks fetched ahead and never read do not hold their room:
        // the next file is still read ahead, each byte once. (Three such readers hold all of
        // it otherwise, and every block of the next file is a GET of its own.)
        for i in 0..<3 {
            _ = try await storage.put(
                "h\(i)", payload: .bytes(content(Int(block) * 96, seed: 9 + i)), options: PutOptions())
            let a = try await fs.lookup(parent: rootInode, name: "h\(i)")
            let fh = try await fs.open(a.ino, flags: .readOnly)
            for k in 0..<8 { _ = try await fs.read(fh, offset: Int64(k) * block, count: Int(block)) }
            await fs.settleReads()
            await fs.release(fh)
        }
        before = storage.bytesRead
        let gets = storage.calls(.get)
        #expect(try await readAll(fs, "f", chunk: Int(block)) == data)
        #expect(storage.bytesRead - before == Int64(data.count))
        #expect(storage.calls(.get) - gets < 64)
    }

    @Test func aSecondMountOfTheSameCacheDirectoryRunsWithoutIt() async throws {
        let storage = MemoryStorage()
        let cache = cacheDirectory()
        let first = try filesystem(storage, cache: cache)
        let second = try filesystem(storage, cache: cache)
        #expect(first.blockCacheProblem == nil)
        #expect(second.blockCacheProblem?.contains("in use by another mount") == true)
    }
}

/// What `readImmediately` answers for `count` bytes at `offset`: the bytes, or nil.
private func immediate(_ fs: ObjectFS, _ fh: UInt64, _ offset: Int, _ count: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: count)
    guard let n = out.withUnsafeMutableBytes({ fs.readImmediately(fh, offset: Int64(offset), into: $0) }) else {
        return nil
    }
    return Array(out[0..<n])
}

/// Reads `blocks` through the actor until each is in the cache with its file open (the
/// second read of a stored block opens it), each read and each probe by a handle of its own
/// (one read per handle is never a sequential run, so nothing is read ahead).
private func warm(_ fs: ObjectFS, _ ino: InodeNumber, blocks: [Int]) async throws {
    for b in blocks {
        for _ in 0..<200 {
            let fh = try await fs.open(ino, flags: .readOnly)
            _ = try await fs.read(fh, offset: Int64(b) * block, count: 1)
            await fs.release(fh)
            let probe = try await fs.open(ino, flags: .readOnly)
            let ready = immediate(fs, probe, b * Int(block), 1) != nil
            await fs.release(probe)
            if ready { break }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

@Suite struct ImmediateReadTests {
    @Test func cachedBytesAreReadWithoutTheActorAndOnlyThen() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 3 + 1000)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        let a = try await fs.lookup(parent: rootInode, name: "f")
        let fh = try await fs.open(a.ino, flags: .readOnly)
        // Nothing read yet: the version is not known outside the actor.
        #expect(immediate(fs, fh, 0, 4096) == nil)
        try await warm(fs, a.ino, blocks: [0, 1, 3])
        let gets = storage.calls(.get)
        #expect(immediate(fs, fh, 100, 4096) == Array(data[100..<4196]))
        // Across two blocks, and the short end of the file.
        let across = Int(block) - 2048
        #expect(immediate(fs, fh, across, 4096) == Array(data[across..<across + 4096]))
        let tail = 3 * Int(block)
        #expect(immediate(fs, fh, tail, 4096) == Array(data[tail...]))
        #expect(immediate(fs, fh, data.count, 4096) == [])
        // Block 2 is not cached: that read goes through the actor.
        #expect(immediate(fs, fh, 2 * Int(block), 4096) == nil)
        #expect(storage.calls(.get) == gets)
        await fs.release(fh)
        #expect(immediate(fs, fh, 100, 4096) == nil)
    }

    @Test func afterARemountRandomReadsGetEveryCachedBlockReady() async throws {
        let data = content(Int(block) * 8)
        let (storage, cache) = try await cachedObject(data)
        let gets = storage.calls(.get)
        let fs = try await remount(storage, cache: cache)
        let a = try await fs.lookup(parent: rootInode, name: "f")
        let fh = try await fs.open(a.ino, flags: .readOnly)
        // Three jumps: the file counts as randomly read. Blocks 0, 2, 4 and 7 are not read.
        for b in [5, 1, 6, 3] {
            let offset = b * Int(block) + 100
            #expect(try await fs.read(fh, offset: Int64(offset), count: 4096) == Array(data[offset..<offset + 4096]))
        }
        // The background fill opens the others (and reads them in) instead of fetching them:
        // then every block reads without waiting, and nothing came from the server.
        func ready() -> Bool { (0..<8).allSatisfy { immediate(fs, fh, $0 * Int(block), 4096) != nil } }
        for _ in 0..<500 where !ready() { try await Task.sleep(for: .milliseconds(10)) }
        for b in 0..<8 {
            let offset = b * Int(block) + 7
            #expect(
                immediate(fs, fh, offset, 4096).map { $0 == Array(data[offset..<offset + 4096]) } == true, "block \(b)")
        }
        #expect(storage.calls(.get) == gets)
        await fs.release(fh)
    }

    @Test func aWriteSendsReadsBackToTheActor() async throws {
        let storage = MemoryStorage()
        let data = content(Int(block) * 2)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        let a = try await fs.lookup(parent: rootInode, name: "f")
        try await warm(fs, a.ino, blocks: [0, 1])
        let reader = try await fs.open(a.ino, flags: .readOnly)
        _ = try await fs.read(reader, offset: 0, count: 1)
        #expect(immediate(fs, reader, 0, 8) == Array(data[0..<8]))
        let writer = try await fs.open(a.ino, flags: .readWrite)
        let patch: [UInt8] = Array("changed!".utf8)
        try await fs.prepareWrite(writer)
        _ = try await fs.write(writer, offset: 0, data: patch)
        // The cached blocks are the old version now: never served for this file again.
        #expect(immediate(fs, reader, 0, 8) == nil)
        #expect(try await fs.read(reader, offset: 0, count: 8) == patch)
        await fs.release(writer)
        await fs.release(reader)
    }

    @Test func immediateReadsDriveTheHandlesReadAhead() async throws {
        let storage = FaultInjectingStorage(MemoryStorage())
        let data = content(Int(block) * 64)
        _ = try await storage.put("f", payload: .bytes(data), options: PutOptions())
        let fs = try filesystem(storage, cache: cacheDirectory())
        let a = try await fs.lookup(parent: rootInode, name: "f")
        try await warm(fs, a.ino, blocks: [0, 1])
        #expect(storage.bytesRead == 2 * block)
        let fh = try await fs.open(a.ino, flags: .readOnly)
        _ = try await fs.read(fh, offset: 0, count: 1)  // publishes the version
        // A sequential run served entirely outside the actor still reads ahead.
        var offset = 0
        while offset < 2 * Int(block) {
            #expect(immediate(fs, fh, offset, 16 << 10) == Array(data[offset..<offset + (16 << 10)]))
            offset += 16 << 10
        }
        for _ in 0..<500 where storage.bytesRead <= 2 * block { try await Task.sleep(for: .milliseconds(10)) }
        #expect(storage.bytesRead > 2 * block)
        await fs.release(fh)
    }
}

@Suite struct RunSinkTests {
    @Test func aStreamedRunIsCutIntoBlocksAndARetryRepeatsNone() async {
        let got = Mutex<[(Int, [UInt8])]>([])
        let sink = RunSink(lengths: [4, 4, 2]) { k, delivery in
            guard case .bytes(let bytes) = delivery else { return }
            got.withLock { $0.append((k, Array(bytes))) }
        }
        await sink.prepare()
        sink.begin(at: 0)
        Array("abcdef".utf8).withUnsafeBytes { sink.append($0) }
        await sink.drain()
        // The connection drops; a retry that cannot resume sends the body from its start.
        sink.begin(at: 0)
        Array("abcdefg".utf8).withUnsafeBytes { sink.append($0) }
        await sink.drain()
        // One that resumes sends the rest only.
        sink.begin(at: 7)
        Array("hi".utf8).withUnsafeBytes { sink.append($0) }
        await sink.drain()
        let blocks = got.withLock { $0 }
        #expect(blocks.map(\.0) == [0, 1])
        #expect(blocks.map(\.1) == [Array("abcd".utf8), Array("efgh".utf8)])
        // The body ended one byte short: the last block is what came.
        let rest = await sink.unfinished()
        #expect(rest.map(\.0) == [2])
        #expect(rest.map { Array($0.1) } == [Array("i".utf8)])
    }

    @Test func aBlockWrittenInPiecesReadsBackAndAnAbandonedOneLeavesNothing() async throws {
        let directory = cacheDirectory()
        let cache = try DiskBlockCache(
            directory: directory, blockSize: 1 << 20, capacity: 64 << 20, freeSpaceFloor: 0)
        let data = content((1 << 20) + 5)
        let object = CachedObject(ObjectVersion(key: "k", etag: ETag("e"), size: Int64(data.count)))
        // Block 0 in uneven pieces, flushed as a streamed body would be.
        let writer = try #require(await cache.begin(object, block: 0))
        var at = 0
        for piece in [1, 4095, 70_000, 300_000, 1 << 20] where at < 1 << 20 {
            let n = min(piece, (1 << 20) - at)
            data[at..<at + n].withUnsafeBytes { writer.append($0) }
            at += n
            if writer.needsFlush || at == 1 << 20 { await writer.flush() }
        }
        #expect(await writer.commit())
        #expect(await cache.read(object, block: 0, from: 0, count: 1 << 20) == Array(data[0..<(1 << 20)]))
        #expect(await cache.read(object, block: 0, from: 70_001, count: 9) == Array(data[70_001..<70_010]))
        // Block 1 given up half way: its bytes come back, no file or count stays.
        let used = cache.usedBytes
        let short = try #require(await cache.begin(object, block: 1))
        data[(1 << 20)..<((1 << 20) + 3)].withUnsafeBytes { short.append($0) }
        await short.flush()
        #expect(await short.abandon() == Array(data[(1 << 20)..<((1 << 20) + 3)]))
        #expect(cache.usedBytes == used)
        #expect(blockFiles(directory).count == 1)
        #expect(!cache.contains(object, block: 1))
    }
}

@Suite struct BlockFileTests {
    @Test func aHeaderReadsBackAndRejectsAnotherObjectsBlock() {
        let data = content(40_000)
        let layout = BlockFile.Layout(identity: Array("key\u{0}etag\u{0}40000".utf8), dataLength: data.count)
        let header = BlockFile.header(layout, sums: data.withUnsafeBytes { BlockFile.sectorSums($0) })
        #expect(header.count == 4096)
        let sums = header.withUnsafeBytes {
            BlockFile.sectorChecksums(header: UnsafeRawBufferPointer(rebasing: $0[0..<layout.headerLength]), layout)
        }
        #expect(sums?.count == 3)
        let other = BlockFile.Layout(identity: Array("key\u{0}etag2\u{0}40000".utf8), dataLength: data.count)
        let wrong = header.withUnsafeBytes {
            BlockFile.sectorChecksums(header: UnsafeRawBufferPointer(rebasing: $0[0..<other.headerLength]), other)
        }
        #expect(wrong == nil)
    }

    @Test func aReadFromThePageCacheNeedsNoIOThread() throws {
        let path = uniqueStagingDirectory() + ".probe"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer {
            close(fd)
            unlink(path)
        }
        let data = content(8192)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) } == 8192)
        var back = [UInt8](repeating: 0, count: 8192)
        // Just written, so in the page cache: preadv2(RWF_NOWAIT) answers at once.
        #expect(back.withUnsafeMutableBytes { OpenBlock.read(fd, $0, at: 0, nowait: true) } == .done)
        #expect(back == data)
    }

    @Test func theChecksumSeesEveryChangedByte() {
        var data = content(16 << 10)
        let reference = data.withUnsafeBytes { Checksum.of($0) }
        for i in stride(from: 0, to: data.count, by: 997) {
            data[i] ^= 1
            #expect(data.withUnsafeBytes { Checksum.of($0) } != reference)
            data[i] ^= 1
        }
        #expect(data.withUnsafeBytes { Checksum.of(UnsafeRawBufferPointer(rebasing: $0.dropLast())) } != reference)
    }

    @Test func theSectorSumSeesEveryChangedBitAndMovedPage() {
        var data = content(16 << 10)
        let reference = data.withUnsafeBytes { SectorSum.of($0) }
        for i in stride(from: 0, to: data.count, by: 7) {
            for bit in [UInt8(1), 0x80] {
                data[i] ^= bit
                #expect(data.withUnsafeBytes { SectorSum.of($0) } != reference)
                data[i] ^= bit
            }
        }
        // Shorter, longer, zeroed pages, pages that trade places, a tail that is not a stripe.
        #expect(data.withUnsafeBytes { SectorSum.of(UnsafeRawBufferPointer(rebasing: $0.dropLast())) } != reference)
        #expect((data + [0]).withUnsafeBytes { SectorSum.of($0) } != reference)
        var zeroed = data
        zeroed.replaceSubrange(4096..<8192, with: [UInt8](repeating: 0, count: 4096))
        #expect(zeroed.withUnsafeBytes { SectorSum.of($0) } != reference)
        var moved = data
        moved.replaceSubrange(0..<4096, with: data[8192..<12288])
        moved.replaceSubrange(8192..<12288, with: data[0..<4096])
        #expect(moved.withUnsafeBytes { SectorSum.of($0) } != reference)
        let odd = Array(data[0..<1000])
        var changed = odd
        changed[999] ^= 1
        #expect(odd.withUnsafeBytes { SectorSum.of($0) } != changed.withUnsafeBytes { SectorSum.of($0) })
    }
}

@Suite struct MemoryBudgetTests {
    @Test func readsThatWaitComeBeforeBackgroundWork() async throws {
        let budget = MemoryBudget(limit: 100)
        await budget.reserve(100)
        #expect(!budget.tryReserve(1))
        let order = Recorder()
        let background = Task {
            await budget.reserve(60, .background)
            order.add("background")
        }
        try await Task.sleep(for: .milliseconds(20))
        let demand = Task {
            await budget.reserve(60)
            order.add("demand")
        }
        try await Task.sleep(for: .milliseconds(20))
        budget.release(100)
        await demand.value
        #expect(order.items == ["demand"])
        budget.release(60)
        await background.value
        #expect(order.items == ["demand", "background"])
        budget.release(60)
        #expect(budget.used == 0)
        #expect(budget.peak == 100)
    }

    @Test func aRequestLargerThanTheBudgetGoesAlone() async {
        let budget = MemoryBudget(limit: 10)
        await budget.reserve(50)
        #expect(budget.used == 50)
        budget.release(50)
    }
}

private final class Recorder: Sendable {
    private let log = Mutex<[String]>([])
    func add(_ s: String) { log.withLock { $0.append(s) } }
    var items: [String] { log.withLock { $0 } }
}
