// The storage conformance suite: one body of tests that every ObjectStorage driver must pass.
// A driver suite adds itself to `StorageUnderTest.all` (later issues: OpenStackStorage against
// the local Swift server, S3Storage against s3api), guarded by the environment it needs.

import MemoryStorage
import ObjectStorage
import OpenStackStorage
import S3Signing
import S3Storage
import StorageHTTP
import Testing

#if canImport(Glibc)
    import Glibc
#endif

struct StorageUnderTest: CustomTestStringConvertible, Sendable {
    let name: String
    let make: @Sendable () async throws -> any ObjectStorage
    var testDescription: String { name }

    static let all: [StorageUnderTest] =
        [
            StorageUnderTest(name: "memory") { MemoryStorage(pageSize: 7, minimumPartSize: 16) },
            StorageUnderTest(name: "memory+faults-wrapper") {
                FaultInjectingStorage(MemoryStorage(pageSize: 1000, minimumPartSize: 16))
            },
            // Driver suites plug in here, each when the environment names its server.
        ] + openStack + s3

    /// S3Storage against the Swift server's s3api (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, with OBJMOUNT_TEST_S3_BUCKET set by scripts/test.sh) — once as
    /// AWS (ListObjectsV2), once with ListObjects v1 and every copy made with UploadPartCopy —
    /// and as KS3 through the KS3 emulator (OBJMOUNT_TEST_KS3_ENDPOINT, KS3_* keys).
    /// A fresh bucket per test.
    static var s3: [StorageUnderTest] {
        var out: [StorageUnderTest] = []
        if env("OBJMOUNT_TEST_S3_BUCKET") != nil, let url = env("AWS_ENDPOINT_URL"), let ak = env("AWS_ACCESS_KEY_ID"),
            let sk = env("AWS_SECRET_ACCESS_KEY")
        {
            let credentials = SigningCredentials(accessKeyID: ak, secretAccessKey: sk)
            let region = env("AWS_REGION") ?? "us-east-1"
            out.append(s3Suite("s3api", provider: .aws, url: url, region: region, credentials: credentials))
            var v1 = S3Provider.aws
            v1.listVersion = 1
            v1.maximumCopySize = 0
            out.append(s3Suite("s3api-v1-partcopy", provider: v1, url: url, region: region, credentials: credentials))
        }
        if let url = env("OBJMOUNT_TEST_KS3_ENDPOINT"), let ak = env("KS3_ACCESS_KEY_ID"),
            let sk = env("KS3_SECRET_ACCESS_KEY")
        {
            var ks3 = S3Provider.ks3
            ks3.minimumPartSize = 5 << 20  // the emulator stores on s3api
            out.append(
                s3Suite(
                    "ks3-emulator", provider: ks3, url: url, region: "",
                    credentials: SigningCredentials(accessKeyID: ak, secretAccessKey: sk)))
        }
        return out
    }

    static func s3Suite(
        _ name: String, provider: S3Provider, url: String, region: String, credentials: SigningCredentials
    )
        -> StorageUnderTest
    {
        StorageUnderTest(name: name) {
            let endpoint = try S3Endpoint(url: url, region: region, forcePathStyle: true, provider: provider)
            let bucket = "conformance-\(UInt32.random(in: 0...UInt32.max))"
            let service = S3Storage(
                bucket: bucket, provider: provider, endpoint: endpoint, credentials: credentials,
                transport: sharedTransport)
            try await service.createBucket(bucket)
            return try await S3Storage.connect(
                bucket: bucket, provider: provider, endpoint: endpoint, credentials: credentials,
                transport: sharedTransport)
        }
    }

    /// OpenStackStorage against a real Swift server: `OBJMOUNT_TEST_SWIFT=1` with ST_AUTH,
    /// ST_USER, ST_KEY (scripts/test.sh sets them after `scripts/swift-server.sh start`).
    /// A fresh container per test; the no-SLO proxy (OBJMOUNT_SWIFT_NOSLO_AUTH) runs the DLO path.
    static var openStack: [StorageUnderTest] {
        guard env("OBJMOUNT_TEST_SWIFT") == "1", let auth = env("ST_AUTH"), let user = env("ST_USER"),
            let key = env("ST_KEY")
        else { return [] }
        var out = [swiftSuite("openstack-slo", auth: auth, user: user, key: key)]
        if let noSLO = env("OBJMOUNT_SWIFT_NOSLO_AUTH") {
            out.append(swiftSuite("openstack-dlo", auth: noSLO, user: user, key: key))
        }
        return out
    }

    static func swiftSuite(_ name: String, auth: String, user: String, key: String) -> StorageUnderTest {
        StorageUnderTest(name: name) {
            let transport = sharedTransport
            let container = "conformance-\(UInt32.random(in: 0...UInt32.max))"
            let authenticator = TempAuth(authURL: auth, user: user, key: key)
            try await OpenStackStorage.createContainer(container, authenticator: authenticator, transport: transport)
            return try await OpenStackStorage.connect(
                container: container, authenticator: authenticator, transport: transport)
        }
    }

    static let sharedTransport = AHCTransport()
}

func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct ConformanceTests {
    @Test(arguments: StorageUnderTest.all)
    func putGetHeadRoundTrip(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let info = try await st.put(
            "a/b.txt", payload: .bytes(bytes("hello world")), options: PutOptions(metadata: ["mtime": "1700000000.5"]))
        #expect(info.size == 11)
        let head = try await st.head("a/b.txt")
        #expect(head.size == 11)
        #expect(head.etag == info.etag)
        #expect(head.metadata?["mtime"] == "1700000000.5")
        #expect(try await st.get("a/b.txt", range: nil, ifMatch: nil) == bytes("hello world"))
        #expect(try await st.get("a/b.txt", range: ByteRange(offset: 6, length: 5), ifMatch: nil) == bytes("world"))
        #expect(try await st.get("a/b.txt", range: ByteRange(offset: 6, length: 100), ifMatch: nil) == bytes("world"))
    }

    @Test(arguments: StorageUnderTest.all)
    func missingObjectsAreNotFound(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        await #expect(throws: StorageError.notFound("nope")) { try await st.head("nope") }
        await #expect(throws: StorageError.notFound("nope")) { try await st.get("nope", range: nil, ifMatch: nil) }
        try await st.delete(["nope"])  // not an error
    }

    @Test(arguments: StorageUnderTest.all)
    func ifMatchDetectsAChangedObject(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let v1 = try await st.put("k", payload: .bytes(bytes("one")), options: PutOptions())
        let v2 = try await st.put("k", payload: .bytes(bytes("two")), options: PutOptions())
        #expect(v1.etag != v2.etag)
        await #expect(throws: StorageError.preconditionFailed("k")) {
            try await st.get("k", range: nil, ifMatch: v1.etag)
        }
        #expect(try await st.get("k", range: nil, ifMatch: v2.etag) == bytes("two"))
    }

    @Test(arguments: StorageUnderTest.all)
    func listingWithDelimiterRollsUpAndPages(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        var keys = ["top.txt", "dir/", "dir/a", "dir/b", "dir/sub/c", "dir/sub/d", "dir2/x", "dis"]
        for i in 0..<20 { keys.append("many/f\(String(format2: i))") }
        for k in keys { _ = try await st.put(k, payload: .bytes([1]), options: PutOptions()) }
        let root = try await st.listAll(prefix: "", delimiter: "/")
        #expect(root.commonPrefixes == ["dir/", "dir2/", "many/"])
        #expect(root.objects.map(\.key) == ["dis", "top.txt"])
        let dir = try await st.listAll(prefix: "dir/", delimiter: "/")
        #expect(dir.objects.map(\.key) == ["dir/", "dir/a", "dir/b"])
        #expect(dir.commonPrefixes == ["dir/sub/"])
        // Paging returns every key exactly once, in order.
        var seen: [String] = []
        var token: String? = nil
        var pages = 0
        repeat {
            let page = try await st.list(prefix: "many/", delimiter: "/", continuation: token, maxKeys: 6)
            #expect(page.objects.count <= 6)
            seen += page.objects.map(\.key)
            token = page.continuation
            pages += 1
        } while token != nil
        #expect(seen == (0..<20).map { "many/f\(String(format2: $0))" })
        #expect(pages >= 4)
        let flat = try await st.listAll(prefix: "dir/", delimiter: nil)
        #expect(flat.objects.map(\.key) == ["dir/", "dir/a", "dir/b", "dir/sub/c", "dir/sub/d"])
    }

    @Test(arguments: StorageUnderTest.all)
    func listingOrderIsByteOrder(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let keys = ["b", "a", "B", "é", "a b", "a-b", "z"]
        for k in keys { _ = try await st.put(k, payload: .bytes([]), options: PutOptions()) }
        let all = try await st.listAll(prefix: "", delimiter: "/")
        #expect(all.objects.map(\.key) == keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }

    /// A page that ends with a common prefix hands it back as the continuation; the next page
    /// starts after every key under it (it is not listed again).
    @Test(arguments: StorageUnderTest.all)
    func listingResumesAfterACommonPrefix(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        for k in ["a/1", "a/2", "b", "c/1"] { _ = try await st.put(k, payload: .bytes([]), options: PutOptions()) }
        var entries: [String] = []
        var token: String? = nil
        var pages = 0
        repeat {
            let page = try await st.list(prefix: "", delimiter: "/", continuation: token, maxKeys: 1)
            entries += page.commonPrefixes + page.objects.map(\.key)
            token = page.continuation
            pages += 1
        } while token != nil && pages < 10
        #expect(entries == ["a/", "b", "c/"])
    }

    /// `caf\u{E9}` (é precomposed, NFC) and `cafe\u{301}` (e + combining acute, NFD) are equal
    /// `String`s but two objects on every server: each lists, reads, copies and deletes on its own.
    @Test(arguments: StorageUnderTest.all)
    func unicodeSpellingsAreDistinctKeys(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let nfc = "nf/caf\u{E9}"
        let nfd = "nf/cafe\u{301}"
        #expect(nfc == nfd)  // to String they are one key
        _ = try await st.put(nfc, payload: .bytes(bytes("composed")), options: PutOptions(metadata: ["mtime": "1"]))
        _ = try await st.put(nfd, payload: .bytes(bytes("decomposed")), options: PutOptions(metadata: ["mtime": "2"]))
        // Two entries, in byte order (65 CC 81 before C3 A9), each with its own bytes.
        let listed = try await st.listAll(prefix: "nf/", delimiter: "/")
        #expect(listed.objects.map { bytes($0.key) } == [bytes(nfd), bytes(nfc)])
        #expect(listed.objects.map(\.size) == [10, 8])
        #expect(try await st.get(nfc, range: nil, ifMatch: nil) == bytes("composed"))
        #expect(try await st.get(nfd, range: nil, ifMatch: nil) == bytes("decomposed"))
        #expect(try await st.head(nfc).size == 8)
        #expect(try await st.head(nfd).size == 10)
        // A prefix matches bytes: `nf/cafe` is a prefix of the NFD spelling only.
        let byPrefix = try await st.listAll(prefix: "nf/cafe", delimiter: nil)
        #expect(byPrefix.objects.map { bytes($0.key) } == [bytes(nfd)])
        // Rolled up by a delimiter, the two spellings are two common prefixes.
        _ = try await st.put(nfc + "/x", payload: .bytes([]), options: PutOptions())
        _ = try await st.put(nfd + "/y", payload: .bytes([]), options: PutOptions())
        let rolled = try await st.listAll(prefix: "nf/", delimiter: "/")
        #expect(rolled.commonPrefixes.map(bytes) == [bytes(nfd + "/"), bytes(nfc + "/")])
        #expect(
            try await st.listAll(prefix: nfc + "/", delimiter: "/").objects.map { bytes($0.key) } == [bytes(nfc + "/x")]
        )
        // A copy onto the other spelling (new metadata) is a copy, not an update in place.
        _ = try await st.copy(from: nfc, to: nfd, replacing: PutOptions(metadata: ["mtime": "3"]))
        #expect(try await st.get(nfd, range: nil, ifMatch: nil) == bytes("composed"))
        #expect(try await st.head(nfd).metadata?["mtime"] == "3")
        #expect(try await st.head(nfc).metadata?["mtime"] == "1")
        // Deleting one spelling leaves the other.
        try await st.delete([nfd, nfd + "/y"])
        let left = try await st.listAll(prefix: "nf/", delimiter: nil)
        #expect(left.objects.map { bytes($0.key) } == [bytes(nfc), bytes(nfc + "/x")])
        #expect(try await st.get(nfc, range: nil, ifMatch: nil) == bytes("composed"))
        do {
            _ = try await st.head(nfd)
            Issue.record("\(s.name): the NFD spelling is still there after its delete")
        } catch StorageError.notFound {}
    }

    @Test(arguments: StorageUnderTest.all)
    func copyKeepsOrReplacesMetadata(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        _ = try await st.put(
            "src", payload: .bytes(bytes("data")),
            options: PutOptions(contentType: "text/plain", metadata: ["mtime": "5"]))
        _ = try await st.copy(from: "src", to: "dst", replacing: nil)
        #expect(try await st.get("dst", range: nil, ifMatch: nil) == bytes("data"))
        #expect(try await st.head("dst").metadata?["mtime"] == "5")
        _ = try await st.copy(from: "src", to: "src", replacing: PutOptions(metadata: ["mtime": "6"]))
        #expect(try await st.head("src").metadata?["mtime"] == "6")
        #expect(try await st.get("src", range: nil, ifMatch: nil) == bytes("data"))
        await #expect(throws: StorageError.notFound("ghost")) {
            try await st.copy(from: "ghost", to: "x", replacing: nil)
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func deleteManyRemovesEveryKey(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        for k in ["x/1", "x/2", "x/3", "y"] { _ = try await st.put(k, payload: .bytes([]), options: PutOptions()) }
        try await st.delete(["x/1", "x/2", "x/3", "missing"])
        #expect(try await st.listAll(prefix: "", delimiter: nil).objects.map(\.key) == ["y"])
    }

    @Test(arguments: StorageUnderTest.all)
    func multipartAssemblesPartsInOrder(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let min = Int(st.capabilities.minimumPartSize)
        let p1 = [UInt8](repeating: 1, count: min)
        let p2 = [UInt8](repeating: 2, count: min)
        let p3 = bytes("tail")
        let up = try await st.createMultipartUpload("big", options: PutOptions(metadata: ["mtime": "7"]))
        // Parts may arrive out of order.
        let r3 = try await st.uploadPart(up, number: 3, payload: .bytes(p3))
        let r1 = try await st.uploadPart(up, number: 1, payload: .bytes(p1))
        let r2 = try await st.uploadPart(up, number: 2, payload: .bytes(p2))
        let info = try await st.completeMultipartUpload(up, parts: [r1, r2, r3])
        #expect(info.size == Int64(2 * min + 4))
        #expect(try await st.get("big", range: nil, ifMatch: nil) == p1 + p2 + p3)
        #expect(try await st.head("big").metadata?["mtime"] == "7")
    }

    /// An object extended in place: its stored bytes become a part copied on the server from
    /// itself (a range of it), the rest a part sent; a copy from a changed version fails.
    @Test(arguments: StorageUnderTest.all)
    func aPartCopiedFromARangeOfTheObjectItReplaces(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        guard st.capabilities.copiesParts else { return }
        let min = Int(max(st.capabilities.minimumPartSize, 16))
        let old = (0..<(min + 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 3) }
        // The version extended is a multipart one itself (its ETag is of the `…-2` kind).
        let first = try await st.createMultipartUpload("log", options: PutOptions())
        let stored = try await st.completeMultipartUpload(
            first,
            parts: [
                try await st.uploadPart(first, number: 1, payload: .bytes(Array(old[0..<min]))),
                try await st.uploadPart(first, number: 2, payload: .bytes(Array(old[min...]))),
            ])
        let up = try await st.createMultipartUpload("log", options: PutOptions())
        let copied = try await st.uploadPartCopy(
            up, number: 1, from: "log", range: ByteRange(offset: 0, length: Int64(min + 5)), ifMatch: stored.etag)
        let sent = try await st.uploadPart(up, number: 2, payload: .bytes(bytes("appended")))
        let info = try await st.completeMultipartUpload(up, parts: [copied, sent])
        #expect(info.size == Int64(min + 5 + 8))
        #expect(try await st.get("log", range: nil, ifMatch: nil) == Array(old[0..<(min + 5)]) + bytes("appended"))
        // The version copied from is gone now: a copy that names it fails.
        let again = try await st.createMultipartUpload("log", options: PutOptions())
        do {
            _ = try await st.uploadPartCopy(
                again, number: 1, from: "log", range: ByteRange(offset: 0, length: 4), ifMatch: stored.etag)
            Issue.record("a part copied from a replaced version")
        } catch StorageError.preconditionFailed {
        } catch {
            Issue.record("expected preconditionFailed, got \(error)")
        }
        try await st.abortMultipartUpload(again)
    }

    @Test(arguments: StorageUnderTest.all)
    func newMetadataOnALargeObjectKeepsItsBytes(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let min = Int(st.capabilities.minimumPartSize)
        let p1 = [UInt8](repeating: 3, count: min)
        let p2 = bytes("end")
        let up = try await st.createMultipartUpload(
            "large", options: PutOptions(contentType: "text/plain", metadata: ["mtime": "1"]))
        let r1 = try await st.uploadPart(up, number: 1, payload: .bytes(p1))
        let r2 = try await st.uploadPart(up, number: 2, payload: .bytes(p2))
        let stored = try await st.completeMultipartUpload(up, parts: [r1, r2])
        let info = try await st.copy(
            from: "large", to: "large", replacing: PutOptions(metadata: ["mtime": "2", "mode": "33188"]))
        #expect(info.size == stored.size && info.metadata?["mtime"] == "2")
        let head = try await st.head("large")
        #expect(head.size == Int64(min + 3) && head.metadata?["mtime"] == "2" && head.metadata?["mode"] == "33188")
        #expect(try await st.get("large", range: nil, ifMatch: nil) == p1 + p2)
    }

    /// A new object's Content-Type is the one asked for, else what its name implies, on a PUT
    /// and on a multipart upload alike. Regression: s3api gave every multipart upload created
    /// without a type the type of the CompleteMultipartUpload request (`application/xml`).
    @Test(arguments: StorageUnderTest.all)
    func newObjectsGetTheTypeAskedForOrTheirNames(_ s: StorageUnderTest) async throws {
        // The in-process store keeps exactly what it is given (nil stays nil).
        guard !s.name.hasPrefix("memory") else { return }
        let st = try await s.make()
        _ = try await st.put("page.html", payload: .bytes(bytes("<p>")), options: PutOptions())
        _ = try await st.put(
            "asked.html", payload: .bytes(bytes("x")), options: PutOptions(contentType: "text/x-asked"))
        let min = Int(st.capabilities.minimumPartSize)
        for (key, type) in [("clip.mp4", nil), ("blob.unknownext", nil), ("large.txt", "application/x-asked")] {
            let up = try await st.createMultipartUpload(
                key, options: PutOptions(contentType: type, metadata: ["mtime": "1"]))
            let p1 = try await st.uploadPart(up, number: 1, payload: .bytes([UInt8](repeating: 7, count: min)))
            let p2 = try await st.uploadPart(up, number: 2, payload: .bytes(bytes("end")))
            _ = try await st.completeMultipartUpload(up, parts: [p1, p2])
        }
        var types: [String: String] = [:]
        for key in ["page.html", "asked.html", "clip.mp4", "blob.unknownext", "large.txt"] {
            types[key] = try await st.head(key).contentType.map { String($0.split(separator: ";")[0]) }
        }
        #expect(
            types == [
                "page.html": "text/html", "asked.html": "text/x-asked", "clip.mp4": "video/mp4",
                "blob.unknownext": "application/octet-stream", "large.txt": "application/x-asked",
            ])
    }

    @Test(arguments: StorageUnderTest.all)
    func abortedMultipartLeavesNothing(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let up = try await st.createMultipartUpload("never", options: PutOptions())
        _ = try await st.uploadPart(up, number: 1, payload: .bytes(bytes("x")))
        try await st.abortMultipartUpload(up)
        await #expect(throws: StorageError.notFound("never")) { try await st.head("never") }
        await #expect(throws: StorageError.self) { try await st.completeMultipartUpload(up, parts: []) }
    }

    @Test(arguments: StorageUnderTest.all)
    func uploadFromAFileRegion(_ s: StorageUnderTest) async throws {
        let st = try await s.make()
        let path = "/tmp/objmount-conformance-\(UInt32.random(in: 0...UInt32.max))"
        let content = bytes("0123456789")
        try writeFile(path, content)
        defer { removeFile(path) }
        _ = try await st.put("f", payload: .file(path: path, offset: 2, length: 5), options: PutOptions())
        #expect(try await st.get("f", range: nil, ifMatch: nil) == bytes("23456"))
    }
}

extension String {
    init(format2 n: Int) { self = n < 10 ? "0\(n)" : "\(n)" }
}
