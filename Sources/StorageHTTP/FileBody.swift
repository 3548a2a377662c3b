// FileBody: request bodies read from a local file while they are sent, in chunks read on the
// I/O pool, and their digest computed the same way — so an upload part or a staged file is never
// held whole in memory (DESIGN.md §9).

import Crypto
@_spi(CustomByteBufferAllocator) import NIOCore
import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `length` bytes of the file at `path` from `offset`.
public struct FileRegion: Sendable, Hashable {
    public var path: String
    public var offset: Int64
    public var length: Int64
    public init(path: String, offset: Int64, length: Int64) {
        self.path = path
        self.offset = offset
        self.length = length
    }

    /// Bytes read per chunk.
    static let chunk = 256 << 10

    /// Calls `body` with the region's bytes in order, a chunk at a time, through one buffer
    /// (no allocation per chunk: an upload's MD5 pass leaves nothing to fragment the heap).
    func forEachChunk(_ body: (UnsafeRawBufferPointer) -> Void) throws(StorageError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .localIO(errno, "cannot open \(path)") }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var position: Int64 = 0
        while position < length {
            let want = Int(min(Int64(Self.chunk), length - position))
            let n = pread(fd, buffer.baseAddress!, want, off_t(offset + position))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw .localIO(errno, "cannot read \(path)") }
            if n == 0 { throw .localIO(EIO, "\(path) is shorter than its upload") }
            body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            position += Int64(n)
        }
    }

    /// Reads `count` bytes from `position` (relative to the region) into the buffer the HTTP
    /// client sends (one copy, one allocation), on the calling thread.
    func readBuffer(at position: Int64, count: Int) throws(StorageError) -> ByteBuffer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .localIO(errno, "cannot open \(path)") }
        defer { close(fd) }
        var buffer = ChunkMemory.allocator.buffer(capacity: count)
        var failure: Int32 = 0
        let start = off_t(offset + position)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            var done = 0
            while done < count {
                let n = pread(fd, raw.baseAddress! + done, count - done, start + off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failure = errno }
                if n <= 0 { break }
                done += n
            }
            return done
        }
        if failure != 0 { throw .localIO(failure, "cannot read \(path)") }
        guard buffer.readableBytes == count else { throw .localIO(EIO, "\(path) is shorter than its upload") }
        return buffer
    }
}

/// Memory of upload chunks: a mapping of its own each. Freed by NIO's threads, 256 KiB chunks
/// from malloc fragmented its arenas: a 1 GiB upload grew the daemon's resident size by 15–30
/// MiB (peaks of 53–68 MiB; 48–54 this way). A fresh mapping per chunk, though, is zeroed by the
/// kernel page by page: a quarter of the daemon's CPU while it uploads (`clear_page` under the
/// chunk reads, measured with perf on a 1 GiB upload), which on a machine whose cores the
/// server shares is upload time. So up to `spares` mappings of the chunk size are kept and
/// reused (1 MiB resident at most); others go back to the kernel when sent.
enum ChunkMemory {
    /// Bytes before the address handed out: the mapping's length (16-byte aligned).
    static let header = 16

    static let allocator = ByteBufferAllocator(
        allocate: { size in ChunkMemory.map(size) },
        reallocate: { old, oldSize, newSize in
            let new = ChunkMemory.map(newSize)
            if let old {
                new?.copyMemory(from: old, byteCount: min(oldSize, newSize))
                ChunkMemory.unmap(old)
            }
            return new
        },
        deallocate: { ChunkMemory.unmap($0) },
        copy: { $0.copyMemory(from: $1, byteCount: $2) })

    /// Chunk mappings kept for reuse (their addresses).
    static let spares = 4
    private static let pool = Mutex<[UInt]>([])

    static func map(_ size: Int) -> UnsafeMutableRawPointer? {
        let total = size + header
        if total == FileRegion.chunk + header, let reused = pool.withLock({ $0.popLast() }),
            let base = UnsafeMutableRawPointer(bitPattern: reused)
        {
            return base + header
        }
        guard let base = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            base != MAP_FAILED
        else { return nil }
        base.storeBytes(of: total, as: Int.self)
        return base + header
    }

    static func unmap(_ pointer: UnsafeMutableRawPointer) {
        let base = pointer - header
        let total = base.load(as: Int.self)
        if total == FileRegion.chunk + header {
            let kept = pool.withLock { spares -> Bool in
                guard spares.count < Self.spares else { return false }
                spares.append(UInt(bitPattern: base))
                return true
            }
            if kept { return }
        }
        munmap(base, total)
    }
}

/// The chunks of a file region, each read on the I/O pool when the HTTP client asks for it.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let region: FileRegion
    init(_ region: FileRegion) { self.region = region }

    struct AsyncIterator: AsyncIteratorProtocol {
        let region: FileRegion
        var position: Int64 = 0
        mutating func next() async throws -> ByteBuffer? {
            guard position < region.length else { return nil }
            let count = Int(Swift.min(Int64(FileRegion.chunk), region.length - position))
            let (region, at) = (self.region, position)
            let buffer = try await BlockingIOPool.shared.run { try region.readBuffer(at: at, count: count) }
            position += Int64(count)
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(region: region) }
}

/// What a driver sends for a payload: the bytes, or the file region to stream, and its digest —
/// MD5 (Content-MD5, Swift's ETag) or SHA-256 (a SigV4 signed payload; SHA-256 runs on the CPU's
/// SHA extensions here, about 2.3× MD5's speed).
public struct PreparedBody: Sendable {
    public enum Digest: Sendable { case md5, sha256 }
    public var bytes: [UInt8]?
    public var file: FileRegion?
    /// The digest named by `kind`.
    public var digest: [UInt8]
    public var kind: Digest
    public var length: Int64

    /// The MD5, when that is the digest computed.
    public var md5: [UInt8]? { kind == .md5 ? digest : nil }

    /// Reads nothing into memory for a file payload: its digest is computed chunk by chunk on the
    /// I/O pool (large in-memory bodies are hashed there too).
    public static func prepare(_ payload: Payload, digest kind: Digest = .md5) async throws -> PreparedBody {
        switch payload {
        case .bytes(let b):
            let digest = await BlockingIOPool.shared.run(over: b.count) {
                kind == .md5 ? Array(Insecure.MD5.hash(data: b)) : Array(SHA256.hash(data: b))
            }
            return PreparedBody(bytes: b, file: nil, digest: digest, kind: kind, length: Int64(b.count))
        case .file(let path, let offset, let length):
            let region = FileRegion(path: path, offset: offset, length: length)
            let digest = try await BlockingIOPool.shared.run { () throws -> [UInt8] in
                switch kind {
                case .md5: try Self.hash(region, Insecure.MD5())
                case .sha256: try Self.hash(region, SHA256())
                }
            }
            return PreparedBody(bytes: nil, file: region, digest: digest, kind: kind, length: length)
        }
    }

    private static func hash<H: HashFunction>(_ region: FileRegion, _ function: H) throws -> [UInt8] {
        var h = function
        try region.forEachChunk { h.update(bufferPointer: $0) }
        return Array(h.finalize())
    }

    /// The digest as lower-case hex digits (Swift's ETag header, SigV4's payload hash).
    public var hex: String {
        digest.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }
}
