import MemoryStorage
import ObjectFS
import ObjectStorage
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `count` bytes, byte i being `byte(i)`. Written through a pointer: the tests run unoptimized,
/// where `(0..<n).map` costs ~300 ns a byte and megabytes of test data held both cooperative
/// threads for seconds at the start of every run (timing-bound tests beside them then failed).
func bytes(_ count: Int, _ byte: (Int) -> UInt8) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        guard let base = buffer.baseAddress else { return }
        var i = 0
        while i < count {
            base[i] = byte(i)
            i &+= 1
        }
        initialized = count
    }
}

/// A clock the test moves by hand: cache expiry without sleeping.
final class ManualClock: TimeSource {
    private let ns = Mutex<Int64>(1_000_000_000)
    func monotonicNanoseconds() -> Int64 { ns.withLock { $0 } }
    func wallClock() -> Timestamp { Timestamp(seconds: 1_700_000_000 + ns.withLock { $0 } / 1_000_000_000) }
    func advance(seconds: Double) { ns.withLock { $0 += Int64(seconds * 1e9) } }
}

/// The names the filesystem told the kernel to forget, in order.
final class KernelInvalidations: Sendable {
    private let names = Mutex<[(InodeNumber, String)]>([])
    func add(_ parent: InodeNumber, _ name: String) { names.withLock { $0.append((parent, name)) } }
    func contains(_ parent: InodeNumber, _ name: String) -> Bool {
        names.withLock { $0.contains { $0.0 == parent && $0.1 == name } }
    }
    var count: Int { names.withLock { $0.count } }
    var all: [(InodeNumber, String)] { names.withLock { $0 } }
}

/// The inodes a kernel holds (as FuseKit counts lookups), for the inode limit's tests.
final class KernelLookups: Sendable {
    private let counts = Mutex<[InodeNumber: Int]>([:])
    func add(_ ino: InodeNumber) { counts.withLock { $0[ino, default: 0] += 1 } }
    func remove(_ ino: InodeNumber) { counts.withLock { $0[ino] = nil } }
    func holds(_ ino: InodeNumber) -> Bool { counts.withLock { $0[ino] != nil } }
}

struct Harness {
    let memory: MemoryStorage
    let storage: FaultInjectingStorage<MemoryStorage>
    let fs: ObjectFS
    let clock: ManualClock
    let ttl: Double
    let stagingDirectory: String
    let invalidated = KernelInvalidations()

    init(
        prefix: String = "", markerStyle: DirectoryMarkerStyle = .trailingSlash, ttl: Double = 10,
        readOnly: Bool = false, multipartThreshold: Int64 = 64 << 20, partSize: Int64 = 16 << 20,
        fixedOwner: Bool = false, blockSize: Int64 = 1 << 20,
        metadataPrefetch: Int = 0, storeMetadataInListings: Bool = true,
        writeBack: Duration? = nil, journalIn stagingDirectory: String? = nil, store: MemoryStorage? = nil,
        inodeLimit: Int = 100_000, kernel: KernelLookups? = nil
    ) throws {
        memory = store ?? MemoryStorage(markerStyle: markerStyle, pageSize: 5, minimumPartSize: 8)
        storage = FaultInjectingStorage(memory)
        clock = ManualClock()
        self.ttl = ttl
        let staging = stagingDirectory ?? uniqueStagingDirectory()
        self.stagingDirectory = staging
        var config = ObjectFSConfiguration(prefix: prefix, uid: 1000, gid: 1000, stagingDirectory: staging)
        config.metadataTTL = .milliseconds(Int64(ttl * 1000))
        config.readOnly = readOnly
        config.fixedOwner = fixedOwner
        config.blockSize = blockSize
        config.metadataPrefetch = metadataPrefetch
        config.multipartThreshold = multipartThreshold
        config.partSize = partSize
        // `writeBack`: close returns at once, the upload starts after this delay.
        if let delay = writeBack {
            config.writeBack = true
            config.writeBackDelay = delay
        }
        config.journaled = stagingDirectory != nil
        let invalidated = self.invalidated
        config.invalidateEntry = { invalidated.add($0, $1) }
        config.inodeLimit = inodeLimit
        if let kernel { config.kernelHolds = { kernel.holds($0) } }
        fs = try ObjectFS(storage: storage, configuration: config, clock: clock)
    }

    /// Lets every cached listing, attribute and negative entry expire.
    func expireCaches() { clock.advance(seconds: ttl + 1) }

    func resolve(_ path: String) async throws(FSError) -> FileAttributes {
        var attrs = try await fs.getattr(rootInode)
        for part in path.split(separator: "/") {
            attrs = try await fs.lookup(parent: attrs.ino, name: String(part))
        }
        return attrs
    }

    func parentAndName(_ path: String) async throws(FSError) -> (InodeNumber, String) {
        var parts = path.split(separator: "/").map(String.init)
        let name = parts.removeLast()
        let parent = try await resolve(parts.joined(separator: "/"))
        return (parent.ino, name)
    }

    /// create + write + close, as `cp` does.
    @discardableResult
    func writeFile(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) async throws(FSError) -> FileAttributes {
        let (parent, name) = try await parentAndName(path)
        let (attrs, fh) = try await fs.create(
            parent: parent, name: name, mode: mode, flags: OpenFlags(posix: O_WRONLY | O_CREAT | O_TRUNC))
        if !bytes.isEmpty { _ = try await fs.write(fh, offset: 0, data: bytes) }
        do {
            try await fs.flush(fh)
        } catch {
            await fs.release(fh)
            throw error
        }
        await fs.release(fh)
        return attrs
    }

    func readFile(_ path: String) async throws(FSError) -> [UInt8] {
        let a = try await resolve(path)
        let fh = try await fs.open(a.ino, flags: .readOnly)
        var out: [UInt8] = []
        while true {
            let chunk = try await fs.read(fh, offset: Int64(out.count), count: 7)
            if chunk.isEmpty { break }
            out += chunk
        }
        await fs.release(fh)
        return out
    }

    func mkdir(_ path: String) async throws(FSError) {
        let (parent, name) = try await parentAndName(path)
        _ = try await fs.mkdir(parent: parent, name: name, mode: 0o755)
    }

    func names(_ path: String) async throws(FSError) -> [String] {
        try await fs.list(try await resolve(path).ino).map(\.name)
    }

    func keys() async -> [String] { await memory.snapshot().map(\.key) }

    func put(_ key: String, _ content: String = "x", contentType: String? = nil) async throws {
        _ = try await memory.put(
            key, payload: .bytes(Array(content.utf8)), options: PutOptions(contentType: contentType))
    }
}

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Expects `body` to fail with `errno`.
func expectErrno(_ errno: Int32, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation)
    async
{
    do {
        try await body()
        Issue.record("expected errno \(errno), got success", sourceLocation: sourceLocation)
    } catch let error as FSError {
        #expect(error.errno == errno, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected FSError \(errno), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Every filesystem under test gets its own staging directory: ObjectFS owns (and removes) the
/// directory it is given, and tests run in parallel.
func uniqueStagingDirectory() -> String {
    "/tmp/objmount-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
}
