#if canImport(Glibc)
    import Glibc
#endif

// ObjectStorage: the one interface between the filesystem core and every storage driver.
//
// A storage value is bound to one bucket/container (or an account-level view, later). Keys are
// the object names the server knows, as Swift `String`s (UTF-8 on the wire), compared by their
// bytes: never key a dictionary or set by them, or compare them with `==` / `<` (ByteString.swift). Everything a driver
// can fail with is a `StorageError`, which maps to one errno in one table (StorageError.errno).
// Byte payloads travel as `[UInt8]` for small bodies and as a file region for staged uploads,
// so a multi-gigabyte file is never read into memory by the core.

/// An object name as the server stores it.
public typealias ObjectKey = String

/// An entity tag: an opaque version identifier of an object's bytes.
public struct ETag: Hashable, Sendable, CustomStringConvertible {
    /// The usual ETag, an MD5 as 32 lower-case hex digits (bare, or in double quotes), is held
    /// as its 16 bytes rather than as a String: a mount holds one per object it has listed,
    /// millions of them. Every spelling maps to one form, so equality is the text's.
    private enum Form: Hashable, Sendable {
        case md5(UInt64, UInt64, quoted: Bool)
        case text(String)
    }
    private var form: Form

    public init(_ value: String) { form = Self.form(of: value) }

    public var value: String {
        get {
            switch form {
            case .text(let s): return s
            case .md5(let high, let low, let quoted):
                let hex = hex16(high) + hex16(low)
                return quoted ? "\"" + hex + "\"" : hex
            }
        }
        set { form = Self.form(of: newValue) }
    }
    public var description: String { value }

    private static func form(of value: String) -> Form {
        var digits = Substring(value)
        let quoted = digits.utf8.count == 34 && digits.utf8.first == 0x22 && digits.utf8.last == 0x22
        if quoted { digits = digits.dropFirst().dropLast() }
        guard digits.utf8.count == 32 else { return .text(value) }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, c) in digits.utf8.enumerated() {
            let nibble: UInt64
            switch c {
            case 0x30...0x39: nibble = UInt64(c - 0x30)
            case 0x61...0x66: nibble = UInt64(c - 0x61 + 10)
            default: return .text(value)  // upper case or not hex: kept as written
            }
            if i < 16 { high = high << 4 | nibble } else { low = low << 4 | nibble }
        }
        return .md5(high, low, quoted: quoted)
    }
}

/// `v` as 16 lower-case hex digits, zero-padded.
public func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.utf8.count) + s
}

/// A half-open byte range `[offset, offset + length)`.
public struct ByteRange: Hashable, Sendable {
    public var offset: Int64
    public var length: Int64
    public init(offset: Int64, length: Int64) {
        precondition(offset >= 0 && length >= 0)
        self.offset = offset
        self.length = length
    }
    public var end: Int64 { offset + length }
}

/// What a listing or a HEAD tells about one object. Equal when every field is, the key by its
/// bytes (two spellings of one text are two objects, see ByteString).
public struct ObjectInfo: Hashable, Sendable {
    public var key: ObjectKey
    public var size: Int64
    public var etag: ETag?
    /// When the server stored this version.
    public var lastModified: Timestamp
    public var contentType: String?
    /// User metadata with lower-case names and no protocol prefix (`mtime`, `mode`, ...).
    /// `nil` when the source (a listing, on most servers) does not carry it.
    public var metadata: [String: String]?

    public init(
        key: ObjectKey, size: Int64, etag: ETag?, lastModified: Timestamp,
        contentType: String? = nil, metadata: [String: String]? = nil
    ) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
        self.contentType = contentType
        self.metadata = metadata
    }

    // Every stored property, in step with the declarations above.
    public static func == (lhs: ObjectInfo, rhs: ObjectInfo) -> Bool {
        lhs.key.hasSameBytes(as: rhs.key) && lhs.size == rhs.size && lhs.etag == rhs.etag
            && lhs.lastModified == rhs.lastModified && lhs.contentType == rhs.contentType
            && lhs.metadata == rhs.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(key.byteString)
        hasher.combine(size)
        hasher.combine(etag)
        hasher.combine(lastModified)
        hasher.combine(contentType)
        hasher.combine(metadata)
    }
}

/// One page of a listing. With a delimiter, keys that contain it after the prefix are rolled
/// up into `commonPrefixes` (each ends with the delimiter).
public struct ListPage: Sendable {
    public var objects: [ObjectInfo]
    public var commonPrefixes: [String]
    /// Pass back to get the next page; `nil` when this is the last page.
    public var continuation: String?

    public init(objects: [ObjectInfo], commonPrefixes: [String], continuation: String?) {
        self.objects = objects
        self.commonPrefixes = commonPrefixes
        self.continuation = continuation
    }
}

/// The bytes of an upload: held in memory, or a region of a local file read when sent.
public enum Payload: Sendable {
    case bytes([UInt8])
    case file(path: String, offset: Int64, length: Int64)

    public var length: Int64 {
        switch self {
        case .bytes(let b): Int64(b.count)
        case .file(_, _, let length): length
        }
    }
}

extension Payload {
    /// The payload's bytes; a file region is read into memory that is not zero-filled first
    /// (touching fresh pages twice is what large writes cost most on small VMs).
    public func readBytes() throws(StorageError) -> [UInt8] {
        switch self {
        case .bytes(let b):
            return b
        case .file(let path, let offset, let length):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw StorageError.localIO(errno, "open \(path)") }
            defer { close(fd) }
            var failure: StorageError? = nil
            let out = [UInt8](unsafeUninitializedCapacity: Int(length)) { buffer, count in
                var done = 0
                while done < buffer.count {
                    let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 {
                        failure = .localIO(errno, "read \(path)")
                        break
                    }
                    if n == 0 {
                        failure = .localIO(EIO, "\(path) is shorter than expected")
                        break
                    }
                    done += n
                }
                count = done
            }
            if let failure { throw failure }
            return out
        }
    }
}

/// Content type and user metadata of an object being written.
public struct PutOptions: Sendable, Hashable {
    public var contentType: String?
    public var metadata: [String: String]
    /// The writer knows of no object under the key (it created the file): a driver may skip
    /// what only matters when one is replaced (Swift: finding an old large object's segments
    /// to delete them). If another client stored one meanwhile, its segments stay behind;
    /// nothing else changes.
    public var isNew: Bool
    /// Store only if no object has the key (`If-None-Match: *`): `put` throws
    /// `.preconditionFailed` when one does, on a server that honours the condition (one that
    /// does not stores anyway: ObjectFS finds out once per mount). A try sent again after a
    /// lost reply that finds the object its first try stored (same size and MD5 ETag) succeeds.
    public var ifAbsent: Bool
    public init(
        contentType: String? = nil, metadata: [String: String] = [:], isNew: Bool = false, ifAbsent: Bool = false
    ) {
        self.contentType = contentType
        self.metadata = metadata
        self.isNew = isNew
        self.ifAbsent = ifAbsent
    }
}

extension ObjectStorage {
    /// What a conditional PUT (`ifAbsent`) that the server refused (412) after it had been sent
    /// again finds at `key`: the object its own earlier try stored (its reply lost), if the
    /// object has the size and the MD5 ETag of the bytes sent; nil if it is another one.
    public func storedByAnEarlierTry(_ key: ObjectKey, size: Int64, md5: ETag) async -> ObjectInfo? {
        guard let found = try? await head(key), found.size == size, found.etag == md5 else { return nil }
        return found
    }
}

/// How a driver writes an explicit directory (DESIGN.md §3). Both are always read.
public enum DirectoryMarkerStyle: Sendable {
    /// A 0-byte object `dir/` (S3 convention).
    case trailingSlash
    /// A 0-byte object `dir` with `Content-Type: application/directory` (Swift/Hubic convention).
    case applicationDirectory
}

/// How much user metadata one object may carry. Sizes count names (without the protocol
/// prefix) and values in UTF-8 bytes.
public struct UserMetadataLimits: Sendable, Hashable {
    public var maximumCount: Int?
    public var maximumTotalBytes: Int
    public var maximumNameBytes: Int?
    public var maximumValueBytes: Int?
    public init(
        maximumCount: Int? = nil, maximumTotalBytes: Int, maximumNameBytes: Int? = nil, maximumValueBytes: Int? = nil
    ) {
        self.maximumCount = maximumCount
        self.maximumTotalBytes = maximumTotalBytes
        self.maximumNameBytes = maximumNameBytes
        self.maximumValueBytes = maximumValueBytes
    }
    /// S3 and KS3: 2 KB of names and values in all.
    public static let s3 = UserMetadataLimits(maximumTotalBytes: 2048)
    /// OpenStack Swift's default constraints (`max_meta_*` in swift.conf): 90 names, 4096 bytes
    /// in all, names up to 128 and values up to 256 bytes.
    public static let swift = UserMetadataLimits(
        maximumCount: 90, maximumTotalBytes: 4096, maximumNameBytes: 128, maximumValueBytes: 256)
}

public struct StorageCapabilities: Sendable {
    public var directoryMarkerStyle: DirectoryMarkerStyle
    /// Smallest part of a multipart upload except the last.
    public var minimumPartSize: Int64
    public var maximumPartCount: Int
    public var userMetadataLimits: UserMetadataLimits
    /// False where a key needs a container part (`bucket/...`): an account-level store holds
    /// only buckets at its top, so a file there can never be stored.
    public var topLevelObjects = true
    /// `uploadPartCopy` makes a part from a range of a stored object without sending its bytes
    /// (S3's UploadPartCopy; a segment copied on the server for a Swift SLO).
    public var copiesParts = false
    /// Largest range one `uploadPartCopy` takes (S3: 5 GiB).
    public var maximumCopiedPartSize: Int64 = 5 << 30
    public init(
        directoryMarkerStyle: DirectoryMarkerStyle, minimumPartSize: Int64 = 5 << 20,
        maximumPartCount: Int = 10_000, userMetadataLimits: UserMetadataLimits = .s3
    ) {
        self.directoryMarkerStyle = directoryMarkerStyle
        self.minimumPartSize = minimumPartSize
        self.maximumPartCount = maximumPartCount
        self.userMetadataLimits = userMetadataLimits
    }
}

/// Space figures for `statfs`; each is `nil` where the server does not report it.
public struct AccountInfo: Sendable, Hashable {
    public var bytesUsed: Int64?
    public var objectCount: Int64?
    public var quotaBytes: Int64?
    public init(bytesUsed: Int64? = nil, objectCount: Int64? = nil, quotaBytes: Int64? = nil) {
        self.bytesUsed = bytesUsed
        self.objectCount = objectCount
        self.quotaBytes = quotaBytes
    }
}

/// Equal when key and upload ID have the same bytes.
public struct MultipartUpload: Hashable, Sendable {
    public var key: ObjectKey
    public var uploadID: String
    public init(key: ObjectKey, uploadID: String) {
        self.key = key
        self.uploadID = uploadID
    }

    public static func == (lhs: MultipartUpload, rhs: MultipartUpload) -> Bool {
        lhs.key.hasSameBytes(as: rhs.key) && lhs.uploadID.hasSameBytes(as: rhs.uploadID)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(key.byteString)
        hasher.combine(uploadID.byteString)
    }
}

public struct UploadedPart: Hashable, Sendable {
    public var number: Int
    public var etag: ETag
    public init(number: Int, etag: ETag) {
        self.number = number
        self.etag = etag
    }
}

/// A bucket (S3, KS3) or container (Swift) seen as a flat, sorted key space.
public protocol ObjectStorage: Sendable {
    var capabilities: StorageCapabilities { get }

    /// Keys starting with `prefix`, in byte order, at most `maxKeys` entries (objects plus
    /// common prefixes) per page.
    func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws
        -> ListPage
    /// Throws `StorageError.notFound` when there is no such object.
    func head(_ key: ObjectKey) async throws -> ObjectInfo
    /// The bytes of `range` (clipped to the object's end), or of the whole object for `nil`.
    /// With `ifMatch`, throws `.preconditionFailed` if the object changed.
    func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8]
    /// The same bytes as `get`, handed to `sink` as they arrive instead of collected whole
    /// (how the block cache fills: a reply body never sits in memory whole). Drivers that
    /// cannot stream inherit a version that calls `get`.
    func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws
    func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo
    /// Server-side copy. `metadata == nil` keeps the source's content type and metadata.
    func copy(from source: ObjectKey, to destination: ObjectKey, replacing metadata: PutOptions?)
        async throws -> ObjectInfo
    /// Deletes every key (and a large object's segments); keys that do not exist are not an error.
    func delete(_ keys: [ObjectKey]) async throws
    /// Deletes the old names of objects that were copied elsewhere by `copy`: data they share
    /// with the copies (a Swift large object's segments) stays.
    func removeAfterMove(_ keys: [ObjectKey]) async throws

    func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload
    func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws
        -> UploadedPart
    func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws
        -> ObjectInfo
    func abortMultipartUpload(_ upload: MultipartUpload) async throws
    /// Part `number` of `upload` made on the server from `range` of the object at `source`,
    /// which must still be version `ifMatch` (else `.preconditionFailed`; `.notFound` if gone).
    /// Only where `capabilities.copiesParts`.
    func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart

    func accountInfo() async throws -> AccountInfo
}

/// Where a streamed GET puts its body, chunk by chunk, in order: each chunk is copied in by
/// `append` (no allocation per chunk), then `drain` lets the sink pass on what is complete —
/// the body waits for it (back-pressure).
public protocol BodySink: Sendable {
    /// The body starts at byte `at` of what was asked for: 0, or where an attempt that broke
    /// off stopped (the retry asks for the rest only).
    func begin(at: Int64)
    func append(_ bytes: UnsafeRawBufferPointer)
    func drain() async
}

extension ObjectStorage {
    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        throw StorageError.invalidArgument("this server cannot copy parts")
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws {
        let bytes = try await get(key, range: range, ifMatch: ifMatch)
        sink.begin(at: 0)
        bytes.withUnsafeBytes { sink.append($0) }
        await sink.drain()
    }

    public func removeAfterMove(_ keys: [ObjectKey]) async throws {
        try await delete(keys)
    }

    /// Every page of a listing, concatenated.
    public func listAll(prefix: String, delimiter: String?) async throws -> ListPage {
        var all = ListPage(objects: [], commonPrefixes: [], continuation: nil)
        var token: String? = nil
        repeat {
            let page = try await list(
                prefix: prefix, delimiter: delimiter, continuation: token, maxKeys: nil)
            all.objects += page.objects
            all.commonPrefixes += page.commonPrefixes
            token = page.continuation
        } while token != nil
        return all
    }
}

/// Read-only facts a driver can tell about an object beyond its ObjectInfo (S3 and KS3: the
/// storage class and the ACL), shown as extended attributes `user.objmount.<name>`. Each is
/// fetched only when asked for: listing the names costs no request.
public protocol ObjectAttributeSource: Sendable {
    /// The names this driver answers, e.g. `storage_class`, `acl`.
    var attributeNames: [String] { get }
    /// The value of one attribute of `key`; throws `.notFound` when there is no such object.
    func attribute(_ name: String, of key: ObjectKey) async throws -> String
}
