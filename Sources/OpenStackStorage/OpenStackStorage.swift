// OpenStackStorage: ObjectStorage over the OpenStack Swift API (auth v1, Keystone v3 and Hubic
// hand it a storage URL and token through TokenCache).
//
// - Every request goes through `call`: the token is added, a 401 re-authenticates once,
//   5xx / 408 / 429 / transport failures are retried with backoff (RetryPolicy), and the
//   status is mapped to a StorageError in one table (`failure`).
// - Listings are `format=json`, paged with `marker` past the 10,000-entry page.
// - Multipart uploads are Swift large objects: parts are segments in `<container>_segments`
//   named `<key>/slo/<upload id>/<part, 8 digits>`; completing writes an SLO manifest, or a DLO
//   manifest (X-Object-Manifest) where the cluster has no SLO (Hubic).
// - Deleting a large object deletes its segments; so does overwriting one. A rename keeps
//   them: `removeAfterMove` deletes only the old name.
// - POSIX metadata goes to `X-Object-Meta-<name>` (mtime as python-swiftclient and rclone write
//   it); directory markers are 0-byte `application/directory` objects.

import Crypto
import Foundation
import ObjectStorage
import StorageHTTP
import Synchronization

public final class OpenStackStorage: ObjectStorage, PresigningStorage, IncompleteUploadListing {
    public let container: String
    public let segmentContainer: String
    public let capabilities: StorageCapabilities
    public let cluster: ClusterInfo
    let tokens: TokenCache
    let transport: any HTTPTransport
    let retry: RetryPolicy
    /// What is known of `<container>_segments`: `nil` until checked (then it may exist).
    let segmentContainerExists = Mutex<Bool?>(nil)
    /// Content type and metadata of multipart uploads, sent with their manifest.
    private let uploadOptions = Mutex<[String: PutOptions]>([:])

    /// What `/info` says the cluster can do.
    public struct ClusterInfo: Sendable, Hashable {
        public var staticLargeObjects: Bool
        public var bulkDelete: Bool
        public var maxManifestSegments: Int
        public var maxFileSize: Int64
        public static let minimal = ClusterInfo(
            staticLargeObjects: false, bulkDelete: false, maxManifestSegments: 1000, maxFileSize: 5_368_709_122)
    }

    init(container: String, tokens: TokenCache, transport: any HTTPTransport, retry: RetryPolicy, cluster: ClusterInfo)
    {
        self.container = container
        self.segmentContainer = container + "_segments"
        self.tokens = tokens
        self.transport = transport
        self.retry = retry
        self.cluster = cluster
        var capabilities = StorageCapabilities(
            directoryMarkerStyle: .applicationDirectory, minimumPartSize: 1,
            maximumPartCount: cluster.staticLargeObjects ? cluster.maxManifestSegments : 10_000,
            userMetadataLimits: .swift)
        // A segment can be a ranged server-side copy (PUT with X-Copy-From and Range); DLO
        // segments are found by prefix, so only a static manifest takes them.
        capabilities.copiesParts = cluster.staticLargeObjects
        capabilities.maximumCopiedPartSize = cluster.maxFileSize
        self.capabilities = capabilities
    }

    /// Authenticates, reads the cluster's capabilities and checks that the container exists; a
    /// server that cannot be reached fails this at once (no retries).
    public static func connect(
        container: String, authenticator: any SwiftAuthenticator, transport: any HTTPTransport,
        retry: RetryPolicy = RetryPolicy()
    ) async throws(StorageError) -> OpenStackStorage {
        let tokens = TokenCache(authenticator: authenticator, transport: transport)
        let creds: SwiftCredentials
        do { creds = try await tokens.credentials() } catch { throw error.storageError }
        let cluster = await readInfo(storageURL: creds.storageURL, transport: transport)
        // The first requests to the storage URL: a server that cannot be reached fails them at once.
        let probe = OpenStackStorage(
            container: container, tokens: tokens, transport: transport, retry: retry.firstContact, cluster: cluster)
        let r = try await probe.call("HEAD", containerPath(container))
        if r.status == 404 { throw .notFound("container \(container)") }
        try probe.check(r, "container \(container)")
        let segments = try await probe.call("HEAD", containerPath(probe.segmentContainer))
        let storage = OpenStackStorage(
            container: container, tokens: tokens, transport: transport, retry: retry, cluster: cluster)
        storage.segmentContainerExists.withLock { $0 = segments.status != 404 }
        return storage
    }

    static func readInfo(storageURL: String, transport: any HTTPTransport) async -> ClusterInfo {
        guard let root = rootURL(storageURL),
            let r = try? await transport.send(HTTPRequest(method: "GET", url: root + "/info")), r.status == 200,
            let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        else { return .minimal }
        var info = ClusterInfo.minimal
        if let slo = json["slo"] as? [String: Any] {
            info.staticLargeObjects = true
            if let n = slo["max_manifest_segments"] as? Int { info.maxManifestSegments = n }
        }
        info.bulkDelete = json["bulk_delete"] != nil
        if let swift = json["swift"] as? [String: Any], let m = swift["max_file_size"] as? Int64 {
            info.maxFileSize = m
        }
        return info
    }

    /// `scheme://host[:port]` of a URL.
    static func rootURL(_ url: String) -> String? {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        let rest = url[schemeEnd.upperBound...]
        let host = rest.prefix { $0 != "/" }
        return String(url[..<schemeEnd.upperBound]) + host
    }

    static func containerPath(_ c: String) -> String { "/" + URLEncoding.encode(c) }
    func objectPath(_ key: ObjectKey, in c: String? = nil) -> String {
        Self.containerPath(c ?? container) + "/" + URLEncoding.encode(key, keepSlash: true)
    }

    // MARK: - Requests

    /// Sends a request to the storage URL + `path`, with the token, the 401 re-auth and retries.
    func call(
        _ method: String, _ path: String, query: [(String, String?)] = [], headers: [(String, String)] = [],
        body: [UInt8]? = nil, file: FileRegion? = nil, stream: ResponseStream? = nil
    )
        async throws(StorageError) -> HTTPResponse
    {
        var reauthenticated = false
        var attempt = 0
        while true {
            let creds: SwiftCredentials
            do {
                creds = try await tokens.credentials()
            } catch {
                // An auth service restarting while mounted is waited for, as the storage is.
                if case .unreachable(let e) = error, retry.retries(e, after: attempt + 1) {
                    attempt += 1
                    try await pause(attempt)
                    continue
                }
                throw error.storageError
            }
            let q = URLEncoding.query(query)
            let url = creds.storageURL + path + (q.isEmpty ? "" : "?" + q)
            var h = headers
            if let resume = stream?.resumeRangeHeader {
                h.removeAll { $0.0.lowercased() == "range" }
                h.append(("Range", resume))
            }
            h.append(("X-Auth-Token", creds.token))
            var response: HTTPResponse
            do {
                response = try await transport.send(
                    HTTPRequest(method: method, url: url, headers: h, body: body, file: file, stream: stream))
            } catch {
                attempt += 1
                if !retry.retries(error, after: attempt) { throw .transport(error, request: "\(method) \(path)") }
                try await pause(attempt)
                continue
            }
            if response.status == 401 && !reauthenticated {
                reauthenticated = true
                await tokens.reject(creds.token)
                continue
            }
            response.retried = attempt > 0
            if RetryPolicy.isRetryable(status: response.status) {
                attempt += 1
                if attempt >= retry.attempts { return response }
                try await pause(attempt)
                continue
            }
            return response
        }
    }

    private func pause(_ attempt: Int) async throws(StorageError) {
        TransferCounters.shared.retry()
        do { try await retry.sleep(retry.delay(before: attempt)) } catch { throw .unavailable("interrupted") }
    }

    /// The error for a non-2xx reply, in one table.
    func failure(_ r: HTTPResponse, _ what: String) -> StorageError {
        switch r.status {
        case 404: .notFound(what)
        case 412: .preconditionFailed(what)
        case 401, 403: .accessDenied("\(what): HTTP \(r.status)")
        case 409: .notEmpty(what)
        case 413: r.text.lowercased().contains("quota") ? .quotaExceeded : .entityTooLarge
        case 400, 411, 416, 422, 501: .invalidArgument("\(what): HTTP \(r.status) \(r.text.prefix(200))")
        case 500...: .unavailable("\(what): HTTP \(r.status)")
        default: .other("\(what): HTTP \(r.status)")
        }
    }

    func check(_ r: HTTPResponse, _ what: String) throws(StorageError) {
        guard (200..<300).contains(r.status) else { throw failure(r, what) }
    }

    // MARK: - ObjectStorage

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws -> ListPage
    {
        let limit = min(max(1, maxKeys ?? 10_000), 10_000)
        let r = try await call(
            "GET", Self.containerPath(container),
            query: [
                ("format", "json"), ("prefix", prefix), ("delimiter", delimiter), ("marker", continuation),
                ("limit", String(limit)),
            ])
        try check(r, "listing of \(container)")
        let page = try SwiftListing.parse(r.body, container: container)
        let count = page.objects.count + page.prefixes.count
        return ListPage(
            objects: page.objects, commonPrefixes: page.prefixes, continuation: count >= limit ? page.last : nil)
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        let r = try await call("HEAD", objectPath(key))
        try check(r, key)
        return SwiftListing.objectInfo(key: key, r)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        if range?.length == 0 { return [] }
        let r = try await call("GET", objectPath(key), headers: getHeaders(range, ifMatch))
        if r.status == 416 { return [] }
        try check(r, key)
        return r.body(of: range)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws {
        if range?.length == 0 { return sink.begin(at: 0) }
        let r = try await call(
            "GET", objectPath(key), headers: getHeaders(range, ifMatch),
            stream: ResponseStream(sink: sink, range: range))
        if r.status == 416 { return sink.begin(at: 0) }
        try check(r, key)
    }

    private func getHeaders(_ range: ByteRange?, _ ifMatch: ETag?) -> [(String, String)] {
        var headers: [(String, String)] = []
        if let range { headers.append(("Range", range.rangeHeader)) }
        if let ifMatch { headers.append(("If-Match", "\"\(ifMatch.value)\"")) }
        return headers
    }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        let body = try await PreparedBody.prepare(payload)
        let previous = options.isNew ? nil : try await largeObject(key)
        let md5 = body.hex
        var headers = metadataHeaders(options)
        headers.append(("ETag", md5))
        if options.ifAbsent { headers.append(("If-None-Match", "*")) }
        let r = try await call("PUT", objectPath(key), headers: headers, body: body.bytes, file: body.file)
        if r.status == 412 && r.retried && options.ifAbsent,
            let mine = await storedByAnEarlierTry(key, size: body.length, md5: ETag(md5))
        {
            return mine
        }
        try check(r, key)
        if let previous { try await deleteSegments(of: previous) }
        return ObjectInfo(
            key: key, size: body.length, etag: ETag(md5), lastModified: Timestamp.now(),
            contentType: options.contentType, metadata: options.metadata)
    }

    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing metadata: PutOptions?) async throws
        -> ObjectInfo
    {
        // The same bytes, not `==`: a copy between two spellings of one text (NFC and NFD) is a copy.
        if source.hasSameBytes(as: destination), let metadata {
            return try await replaceMetadata(of: source, with: metadata)
        }
        return try await copy(fromPath: objectPath(source), to: destination, replacing: metadata, sourceName: source)
    }

    /// New metadata for an object in place: a POST (the object's bytes are not copied, as a
    /// copy onto itself would), which replaces every `X-Object-Meta-*` and keeps the content
    /// type unless a new one is given. A POST also drops a dynamic large object's
    /// `X-Object-Manifest` unless it is sent again, so the HEAD before it reads it (a static
    /// large object's manifest is system metadata and stays).
    func replaceMetadata(of key: ObjectKey, with options: PutOptions) async throws -> ObjectInfo {
        let before = try await call("HEAD", objectPath(key))
        try check(before, key)
        var headers = metadataHeaders(options)
        if let manifest = before.header("X-Object-Manifest") { headers.append(("X-Object-Manifest", manifest)) }
        let r = try await call("POST", objectPath(key), headers: headers)
        try check(r, "metadata of \(key)")
        var info = SwiftListing.objectInfo(key: key, before)
        info.metadata = options.metadata
        if let t = options.contentType { info.contentType = t }
        return info
    }

    /// Server-side copy from `/container/object` (any container of the account).
    func copy(
        fromPath sourcePath: String, to destination: ObjectKey, replacing metadata: PutOptions?,
        sourceName source: String
    )
        async throws -> ObjectInfo
    {
        var headers: [(String, String)] = [("X-Copy-From", sourcePath)]
        if let metadata {
            headers.append(("X-Fresh-Metadata", "true"))
            headers += metadataHeaders(metadata)
        }
        // `multipart-manifest=get` copies a large object's manifest (its segments are shared)
        // instead of its bytes; plain objects are copied as usual.
        let r = try await call("PUT", objectPath(destination), query: [("multipart-manifest", "get")], headers: headers)
        if r.status == 404 { throw StorageError.notFound(source) }
        try check(r, "copy of \(source)")
        return try await head(destination)
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        // Without a segments container no key can be a large object: delete the names only.
        guard segmentContainerExists.withLock({ $0 != false }) else { return try await deleteNames(keys) }
        // Otherwise per object, so that a large object's segments go too.
        try await forEach(keys) { key in
            let large = try await self.largeObject(key)
            try await self.deleteNames([key])
            if let large { try await self.deleteSegments(of: large) }
        }
    }

    /// Deletes the old names of moved objects; segments shared with the copies stay.
    public func removeAfterMove(_ keys: [ObjectKey]) async throws {
        try await deleteNames(keys)
    }

    /// Plain deletes (bulk where the cluster has it): a manifest goes, its segments stay.
    func deleteNames(_ keys: [ObjectKey]) async throws {
        guard cluster.bulkDelete && keys.count > 1 else {
            return try await forEach(keys) { key in
                let r = try await self.call("DELETE", self.objectPath(key))
                if r.status != 404 { try self.check(r, key) }
            }
        }
        for start in stride(from: 0, to: keys.count, by: 1000) {
            let batch = keys[start..<min(start + 1000, keys.count)]
            let body = batch.map { URLEncoding.encode(container + "/" + $0, keepSlash: true) }.joined(separator: "\n")
            let r = try await call(
                "POST", "", query: [("bulk-delete", "")],
                headers: [("Content-Type", "text/plain"), ("Accept", "application/json")],
                body: Array(body.utf8))
            try check(r, "bulk delete")
            // Always 200: the outcome is in the body.
            guard let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
                throw StorageError.malformedReply("bulk delete reply is not JSON")
            }
            let errors = json["Errors"] as? [[Any]] ?? []
            if let first = errors.first {
                throw StorageError.other("bulk delete failed for \(errors.count) object(s), e.g. \(first)")
            }
        }
    }

    // MARK: - Large objects

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        try await ensureSegmentContainer()
        let now = Timestamp.now()
        let id = "\(now.seconds).\(padded6(Int(now.nanoseconds / 1000)))-\(UInt32.random(in: 0...UInt32.max))"
        uploadOptions.withLock { $0[id] = options }
        return MultipartUpload(key: key, uploadID: id)
    }

    func segmentPrefix(_ upload: MultipartUpload) -> String { "\(upload.key)/slo/\(upload.uploadID)/" }

    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        let body = try await PreparedBody.prepare(payload)
        let md5 = body.hex
        let name = segmentPrefix(upload) + padded8(number)
        let r = try await call(
            "PUT", objectPath(name, in: segmentContainer),
            headers: [("ETag", md5), ("Content-Type", "application/swiftclient-segment")], body: body.bytes,
            file: body.file)
        try check(r, "segment \(name)")
        return UploadedPart(number: number, etag: ETag("\(md5):\(body.length)"))
    }

    /// A segment copied on the server from `range` of `source` (the copy middleware applies
    /// `Range` and `If-Match` to the source).
    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        let name = segmentPrefix(upload) + padded8(number)
        var headers: [(String, String)] = [
            ("X-Copy-From", objectPath(source)),
            ("Range", "bytes=\(range.offset)-\(range.end - 1)"),
            ("Content-Type", "application/swiftclient-segment"),
        ]
        if let ifMatch { headers.append(("If-Match", "\"\(ifMatch.value)\"")) }
        let r = try await call("PUT", objectPath(name, in: segmentContainer), headers: headers)
        if r.status == 404 { throw StorageError.notFound(source) }
        try check(r, "segment \(name) copied from \(source)")
        guard let etag = r.header("ETag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) else {
            throw StorageError.malformedReply("segment copy reply has no ETag")
        }
        return UploadedPart(number: number, etag: ETag("\(etag):\(range.length)"))
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> ObjectInfo {
        let key = upload.key
        guard let options = uploadOptions.withLock({ $0.removeValue(forKey: upload.uploadID) }) else {
            throw StorageError.notFound("upload \(upload.uploadID)")
        }
        guard !parts.isEmpty else { throw StorageError.invalidArgument("an upload needs at least one part") }
        let previous = options.isNew ? nil : try await largeObject(key)
        let prefix = segmentPrefix(upload)
        var headers = metadataHeaders(options)
        let r: HTTPResponse
        if cluster.staticLargeObjects {
            var manifest: [[String: Any]] = []
            for part in parts {
                let pieces = part.etag.value.split(separator: ":")
                manifest.append([
                    "path": "/\(segmentContainer)/\(prefix)\(padded8(part.number))",
                    "etag": String(pieces[0]), "size_bytes": Int(pieces.count > 1 ? pieces[1] : "0") ?? 0,
                ])
            }
            let body = try JSONSerialization.data(withJSONObject: manifest)
            r = try await call(
                "PUT", objectPath(key), query: [("multipart-manifest", "put")], headers: headers, body: Array(body))
        } else {
            headers.append(("X-Object-Manifest", URLEncoding.encode(segmentContainer + "/" + prefix, keepSlash: true)))
            r = try await call("PUT", objectPath(key), headers: headers, body: [])
        }
        try check(r, "manifest of \(key)")
        if let previous { try await deleteSegments(of: previous) }
        return try await head(key)
    }

    /// Segment sets (`<container>_segments/<key>/slo/<upload id>/<part>`) that no object uses
    /// and no upload of this process is writing: what a crash or a lost reply left behind.
    /// `initiated` is when the oldest segment of the set was stored.
    public func incompleteUploads(prefix: String) async throws -> [IncompleteUpload] {
        guard segmentContainerExists.withLock({ $0 != false }) else { return [] }
        var sets: [MultipartUpload: Timestamp] = [:]
        for segment in try await listing(of: segmentContainer, prefix: prefix) {
            let parts = segment.key.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 4, parts[parts.count - 3] == "slo" else { continue }
            let key = parts.dropLast(3).joined(separator: "/")
            let upload = MultipartUpload(key: key, uploadID: String(parts[parts.count - 2]))
            sets[upload] = min(sets[upload] ?? segment.lastModified, segment.lastModified)
        }
        let writing = uploadOptions.withLock { Set($0.keys) }
        var found: [IncompleteUpload] = []
        for key in Set(sets.keys.map(\.key)) {
            let used: Set<String>
            switch try await largeObject(key) {
            case .slo(let names): used = Set(names.compactMap { Self.uploadID(ofSegment: $0) })
            case .dlo(let prefix): used = Self.uploadID(ofSegment: prefix + "0").map { [$0] } ?? []
            case nil: used = []
            }
            for (upload, initiated) in sets where upload.key == key {
                if !used.contains(upload.uploadID) && !writing.contains(upload.uploadID) {
                    found.append(IncompleteUpload(upload: upload, initiated: initiated))
                }
            }
        }
        return found
    }

    /// The upload id in a segment's `container/<key>/slo/<id>/<part>`.
    static func uploadID(ofSegment name: String) -> String? {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[parts.count - 3] == "slo" else { return nil }
        return String(parts[parts.count - 2])
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        uploadOptions.withLock { $0[upload.uploadID] = nil }
        try await deleteSegments(prefix: segmentContainer + "/" + segmentPrefix(upload))
    }

    /// Every object of `container` under `prefix` (none if the container does not exist).
    func listing(of container: String, prefix: String) async throws -> [ObjectInfo] {
        var marker: String? = nil
        var objects: [ObjectInfo] = []
        repeat {
            let r = try await call(
                "GET", Self.containerPath(container),
                query: [("format", "json"), ("prefix", prefix), ("marker", marker)])
            if r.status == 404 { return [] }
            try check(r, "listing of \(container)")
            let page = try SwiftListing.parse(r.body, container: container)
            objects += page.objects
            marker = page.objects.count >= 10_000 ? page.last : nil
        } while marker != nil
        return objects
    }

    /// A large object and where its segments are.
    enum LargeObject: Equatable {
        /// Static: the exact segments, as `container/name`.
        case slo([String])
        /// Dynamic: every object under `container/prefix`.
        case dlo(String)
    }

    /// What `key` is now, if it is a large object (so that its segments can go once it is
    /// replaced or deleted). Free when no segments container exists in the account.
    func largeObject(_ key: ObjectKey) async throws -> LargeObject? {
        guard segmentContainerExists.withLock({ $0 != false }) else { return nil }
        // A HEAD of the manifest itself (a ranged GET fails on a DLO's empty manifest: 416).
        let r = try await call("HEAD", objectPath(key), query: [("multipart-manifest", "get")])
        guard r.status == 200 else { return nil }
        if r.header("X-Object-Manifest") != nil || r.header("X-Static-Large-Object")?.lowercased() == "true" {
            return try await describeLargeObject(key)
        }
        return nil
    }

    private func describeLargeObject(_ key: ObjectKey) async throws -> LargeObject? {
        let r = try await call("GET", objectPath(key), query: [("multipart-manifest", "get")])
        guard r.status == 200 else { return nil }
        if let m = r.header("X-Object-Manifest") { return .dlo(URLEncoding.decodeForm(Substring(m))) }
        guard let list = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [[String: Any]] else { return nil }
        return .slo(
            list.compactMap {
                ($0["name"] as? String).map {
                    $0.utf8.first == UInt8(ascii: "/") ? String(decoding: $0.utf8.dropFirst(), as: UTF8.self) : $0
                }
            })
    }

    func deleteSegments(of previous: LargeObject) async throws {
        switch previous {
        case .dlo(let prefix): try await deleteSegments(prefix: prefix)
        case .slo(let names):
            try await forEach(names) { name in
                guard let path = Self.splitContainer(name) else { return }
                let r = try await self.call("DELETE", self.objectPath(path.name, in: path.container))
                if r.status != 404 { try self.check(r, name) }
            }
        }
    }

    /// Deletes every object of `container/prefix` (a DLO's segments, or an aborted upload's).
    func deleteSegments(prefix manifest: String) async throws {
        guard let path = Self.splitContainer(manifest) else { return }
        let c = path.container
        let names = try await listing(of: c, prefix: path.name).map(\.key)
        try await forEach(names) { name in
            let r = try await self.call("DELETE", self.objectPath(name, in: c))
            if r.status != 404 { try self.check(r, name) }
        }
    }

    /// `container/name` → (container, name), split at the first "/" byte (`split(separator:)`
    /// works on `Character`s, and a "/" followed by a combining mark is not one). `nil` without
    /// a "/" or when either side is empty.
    static func splitContainer(_ path: String) -> (container: String, name: String)? {
        let utf8 = path.utf8
        guard let slash = utf8.firstIndex(of: UInt8(ascii: "/")), slash != utf8.startIndex,
            utf8.index(after: slash) != utf8.endIndex
        else { return nil }
        return (
            String(decoding: utf8[..<slash], as: UTF8.self),
            String(decoding: utf8[utf8.index(after: slash)...], as: UTF8.self)
        )
    }

    func ensureSegmentContainer() async throws {
        if segmentContainerExists.withLock({ $0 == true }) { return }
        let r = try await call("PUT", Self.containerPath(segmentContainer))
        try check(r, "container \(segmentContainer)")
        segmentContainerExists.withLock { $0 = true }
    }

    // MARK: - Account

    /// Creates a container (idempotent), e.g. for tests and `mkdir` at an account-level root.
    public static func createContainer(
        _ name: String, authenticator: any SwiftAuthenticator, transport: any HTTPTransport
    ) async throws(StorageError) {
        let tokens = TokenCache(authenticator: authenticator, transport: transport)
        let storage = OpenStackStorage(
            container: name, tokens: tokens, transport: transport, retry: RetryPolicy(), cluster: .minimal)
        let r = try await storage.call("PUT", containerPath(name))
        try storage.check(r, "container \(name)")
    }

    public func accountInfo() async throws -> AccountInfo {
        let r = try await call("HEAD", "")
        try check(r, "account")
        func num(_ h: String) -> Int64? { r.header(h).flatMap { Int64($0.trimmingWhitespace()) } }
        let quota = num("X-Account-Meta-Quota") ?? num("X-Account-Quota-Bytes") ?? num("X-Account-Meta-Quota-Bytes")
        return AccountInfo(
            bytesUsed: num("X-Account-Bytes-Used"), objectCount: num("X-Account-Object-Count"), quotaBytes: quota)
    }

    // MARK: - Temporary URLs

    /// A TempURL anyone can GET `key` with until `expires` (epoch seconds): HMAC-SHA256 with the
    /// account's `Temp-URL-Key` over `GET\n<expires>\n<path>` (Swift's tempurl middleware).
    public func temporaryURL(_ key: ObjectKey, expires: Int64) async throws(StorageError) -> String {
        let r = try await call("HEAD", "")
        try check(r, "account")
        guard let secret = r.header("X-Account-Meta-Temp-URL-Key") ?? r.header("X-Account-Meta-Temp-URL-Key-2") else {
            throw .invalidArgument(
                "the account has no Temp-URL key; set one first, e.g.: swift post -m Temp-URL-Key:<secret>")
        }
        let creds: SwiftCredentials
        do { creds = try await tokens.credentials() } catch { throw error.storageError }
        guard let root = Self.rootURL(creds.storageURL) else {
            throw .malformedReply("storage URL \(creds.storageURL)")
        }
        let accountPath = String(creds.storageURL.dropFirst(root.count))
        let signedPath = URLEncoding.decodeForm(Substring(accountPath)) + "/" + container + "/" + key
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("GET\n\(expires)\n\(signedPath)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        let signature = mac.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
        return creds.storageURL + objectPath(key) + "?temp_url_sig=\(signature)&temp_url_expires=\(expires)"
    }

    /// `PresigningStorage`: a TempURL that expires `seconds` from now.
    public func presignedURL(for key: ObjectKey, expiresIn seconds: Int) async throws -> String {
        try await temporaryURL(key, expires: Timestamp.now().seconds + Int64(seconds))
    }

    // MARK: - Helpers

    func metadataHeaders(_ options: PutOptions) -> [(String, String)] {
        var h: [(String, String)] = []
        if let t = options.contentType { h.append(("Content-Type", t)) }
        for (k, v) in options.metadata.sorted(by: { $0.key < $1.key }) {
            h.append(("X-Object-Meta-" + k.prefix(1).uppercased() + k.dropFirst(), v))
        }
        return h
    }

    func forEach(_ items: [String], concurrency: Int = 8, _ body: @escaping @Sendable (String) async throws -> Void)
        async throws
    {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for item in items {
                if running >= concurrency {
                    try await group.next()
                    running -= 1
                }
                group.addTask { try await body(item) }
                running += 1
            }
            try await group.waitForAll()
        }
    }
}

/// `n` in decimal, zero-padded to `width` digits.
func padded8(_ n: Int) -> String { padded(n, 8) }
func padded6(_ n: Int) -> String { padded(n, 6) }

func padded(_ n: Int, _ width: Int) -> String {
    let s = String(n)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}
