// S3Storage: ObjectStorage over the S3 REST API, for AWS-compatible services (SigV4) and
// Kingsoft KS3 (KSS V2, `x-kss-*`). What differs between them is an `S3Provider` value.
//
// - Every request goes through `send`: signed afresh on each try (the date moves), retried with
//   backoff and jitter on 500/502/503/504, throttling and timeout codes and connection
//   failures (never on other 4xx), and a 200 whose body is an `<Error>` (CopyObject,
//   CompleteMultipartUpload) counts as that error.
// - Error replies are parsed and mapped to a StorageError in one table (`failure`).
// - Listings are ListObjectsV2 with `encoding-type=url` (or v1 with markers, per provider).
// - PUT bodies are checked by the server: SigV4 signs their SHA-256, KSS V2 sends Content-MD5;
//   large files are multipart uploads (parts in flight are the filesystem's choice); copies
//   above the provider's limit use UploadPartCopy.
// - POSIX metadata goes to `<prefix>meta-<name>` (mtime, mode, uid, gid as s3fs and rclone
//   write them); directory markers are 0-byte `dir/` objects.

import Crypto
import ObjectStorage
import S3Signing
import StorageHTTP

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

public final class S3Storage: ObjectStorage, ObjectAttributeSource, PresigningStorage, IncompleteUploadListing {
    public let bucket: String
    public let provider: S3Provider
    public let endpoint: S3Endpoint
    public let capabilities: StorageCapabilities
    /// Storage class of new objects; `nil` leaves it to the bucket's default.
    public let storageClass: String?
    let credentials: SigningCredentials
    let transport: any HTTPTransport
    let retry: RetryPolicy

    public init(
        bucket: String, provider: S3Provider, endpoint: S3Endpoint, credentials: SigningCredentials,
        storageClass: String? = nil, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy()
    ) {
        self.bucket = bucket
        self.provider = provider
        self.endpoint = endpoint.addressing(bucket: bucket)
        self.credentials = credentials
        self.storageClass = storageClass
        self.transport = transport
        self.retry = retry
        var capabilities = StorageCapabilities(
            directoryMarkerStyle: .trailingSlash, minimumPartSize: provider.minimumPartSize,
            maximumPartCount: provider.maximumPartCount)
        capabilities.copiesParts = true
        capabilities.maximumCopiedPartSize = provider.maximumCopySize
        self.capabilities = capabilities
    }

    /// Checks the credentials and that the bucket exists, with one listing request (a HEAD
    /// would hide the reason of a 403: its reply has no body), which is not retried when the
    /// server cannot be reached at all.
    public static func connect(
        bucket: String, provider: S3Provider, endpoint: S3Endpoint, credentials: SigningCredentials,
        storageClass: String? = nil, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy()
    ) async throws(StorageError) -> S3Storage {
        if let storageClass, !provider.storageClasses.contains(storageClass) {
            throw .invalidArgument(
                "storage class '\(storageClass)' is not one of \(provider.name)'s: \(provider.storageClasses.joined(separator: ", "))"
            )
        }
        // The first request: a server that cannot be reached fails it at once.
        let probe = S3Storage(
            bucket: bucket, provider: provider, endpoint: endpoint, credentials: credentials,
            storageClass: storageClass, transport: transport, retry: retry.firstContact)
        _ = try await probe.listPage(prefix: "", delimiter: "/", continuation: nil, maxKeys: 1)
        return S3Storage(
            bucket: bucket, provider: provider, endpoint: endpoint, credentials: credentials,
            storageClass: storageClass, transport: transport, retry: retry)
    }

    // MARK: - Requests

    /// Builds, signs and sends one request to `bucket` (`nil`: the service) and `key`, with
    /// retries. `errorIn200`: the reply may be a 200 whose body is an `<Error>`.
    func send(
        _ method: String, bucket: String?, key: String = "", query: [QueryItem] = [], headers: [HTTPHeader] = [],
        body: [UInt8]? = nil, file: FileRegion? = nil, payloadHash: String? = nil, errorIn200: Bool = false,
        stream: ResponseStream? = nil
    ) async throws(StorageError) -> HTTPResponse {
        let address = bucket == self.bucket ? endpoint : endpoint.addressing(bucket: bucket)
        var attempt = 0
        while true {
            var current = headers
            if let resume = stream?.resumeRangeHeader {
                current.removeAll { $0.name.lowercased() == "range" }
                current.append(HTTPHeader("Range", resume))
            }
            var request = sign(
                method, address: address, bucket: bucket, key: key, query: query, headers: current, body: body,
                file: file, payloadHash: payloadHash)
            request.stream = stream
            var response: HTTPResponse
            do {
                response = try await transport.send(request)
            } catch {
                attempt += 1
                if !retry.retries(error, after: attempt) {
                    throw .transport(error, request: "\(method) \(describe(bucket, key))")
                }
                try await pause(attempt)
                continue
            }
            if errorIn200, response.status == 200, let e = S3XML.error(response.body) {
                // The request failed after the status line went out: keep the body, give it the
                // status its code has, and let the usual rules decide.
                response.status = Self.retryableCodes.contains(e.code) ? 503 : 400
            }
            response.retried = attempt > 0
            if Self.isRetryable(response) {
                attempt += 1
                if attempt >= retry.attempts { return response }
                try await pause(attempt)
                continue
            }
            return response
        }
    }

    static let retryableCodes: Set<String> = [
        "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException",
        "PriorRequestNotComplete", "Throttling", "ThrottlingException", "RequestThrottled",
        "RequestLimitExceeded", "TooManyRequestsException",
    ]

    static func isRetryable(_ r: HTTPResponse) -> Bool {
        if [500, 502, 503, 504].contains(r.status) { return true }
        guard r.status >= 400, let e = S3XML.error(r.body) else { return false }
        return retryableCodes.contains(e.code)
    }

    private func pause(_ attempt: Int) async throws(StorageError) {
        TransferCounters.shared.retry()
        do { try await retry.sleep(retry.delay(before: attempt)) } catch { throw .unavailable("interrupted") }
    }

    func describe(_ bucket: String?, _ key: String) -> String {
        guard let bucket else { return "the service" }
        return key.isEmpty ? "bucket \(bucket)" : key
    }

    /// The URL and signed headers of a request. `payloadHash`: the body's SHA-256 in hex, when
    /// the caller computed it (`prepared`).
    func sign(
        _ method: String, address: S3Endpoint, bucket: String?, key: String, query: [QueryItem], headers: [HTTPHeader],
        body: [UInt8]?, file: FileRegion? = nil, payloadHash known: String? = nil
    ) -> HTTPRequest {
        let resource = S3Resource(bucket: bucket, key: key)
        let path = self.path(resource, address: address)
        let host = address.authority(bucket: bucket)
        let q = URIEncoding.query(query)
        let url = "\(address.scheme)://\(host)\(path)" + (q.isEmpty ? "" : "?" + q)
        let now = Date()
        var all = headers
        switch provider.signature {
        case .sigV4:
            // Uploads come hashed (`prepared`); other bodies are small XML documents.
            let payloadHash: String
            if let known {
                payloadHash = known
            } else if let body, !body.isEmpty {
                payloadHash = SigV4.payloadHash(body)
            } else {
                payloadHash = SigV4.emptyPayloadHash
            }
            let signable = SignableRequest(
                method: method, path: path, query: query, headers: headers + [HTTPHeader("Host", host)],
                payloadHash: payloadHash)
            all += SigV4.sign(signable, credentials: credentials, region: address.region, date: now)
        case .kssV2:
            let signable = SignableRequest(method: method, path: path, query: query, headers: headers)
            all += KSSV2.sign(signable, resource: resource, credentials: credentials, date: now)
        }
        return HTTPRequest(method: method, url: url, headers: all.map { ($0.name, $0.value) }, body: body, file: file)
    }

    /// The URL path of a bucket and key, as the provider's signer expects it.
    func path(_ resource: S3Resource, address: S3Endpoint) -> String {
        Self.path(resource, provider: provider, address: address)
    }

    static func path(_ resource: S3Resource, provider: S3Provider, address: S3Endpoint) -> String {
        switch provider.signature {
        case .kssV2:
            return KSSV2.path(resource, pathStyle: address.pathStyle)
        case .sigV4:
            var p = ""
            if address.pathStyle, let bucket = resource.bucket, !bucket.isEmpty { p = "/" + URIEncoding.encode(bucket) }
            p += resource.key.isEmpty ? (p.isEmpty ? "/" : "") : URIEncoding.path(resource.key)
            return p
        }
    }

    /// A URL anyone can GET `key` with for `seconds` from `now`.
    public func presignedURL(_ key: ObjectKey, expiresIn seconds: Int, now: Date = Date()) throws(StorageError)
        -> String
    {
        try Self.presignedURL(
            bucket: bucket, key: key, provider: provider, endpoint: endpoint, credentials: credentials,
            expiresIn: seconds,
            now: now)
    }

    /// `PresigningStorage`: the URL is signed locally, nothing is sent.
    public func presignedURL(for key: ObjectKey, expiresIn seconds: Int) async throws -> String {
        try presignedURL(key, expiresIn: seconds)
    }

    /// A URL anyone can GET `bucket/key` with for `seconds` from `now` (SigV4 query auth, at
    /// most 7 days; KSS `Signature`/`Expires`/`KSSAccessKeyId`). Computed locally: no request.
    public static func presignedURL(
        bucket: String, key: ObjectKey, provider: S3Provider, endpoint: S3Endpoint, credentials: SigningCredentials,
        expiresIn seconds: Int, now: Date = Date()
    ) throws(StorageError) -> String {
        let address = endpoint.addressing(bucket: bucket)
        let resource = S3Resource(bucket: bucket, key: key)
        let path = path(resource, provider: provider, address: address)
        let host = address.authority(bucket: bucket)
        let query: [QueryItem]
        switch provider.signature {
        case .sigV4:
            guard (1...SigV4.maximumExpiry).contains(seconds) else {
                throw .invalidArgument("a SigV4 presigned URL lasts 1 s to 7 days")
            }
            let request = SignableRequest(method: "GET", path: path, headers: [HTTPHeader("Host", host)])
            query = SigV4.presign(
                request, credentials: credentials, region: address.region, date: now, expires: seconds)
        case .kssV2:
            let expires = Int(now.timeIntervalSince1970) + seconds
            query = KSSV2.presign(
                SignableRequest(method: "GET", path: path), resource: resource, credentials: credentials,
                expires: expires)
        }
        return "\(address.scheme)://\(host)\(path)?" + URIEncoding.query(query)
    }

    // MARK: - Errors

    /// The error of a failed reply, in one table: the S3 error code decides, the status when
    /// there is no body (HEAD).
    func failure(_ r: HTTPResponse, _ what: String) -> StorageError {
        let e = S3XML.error(r.body)
        let message = e.map { "\($0.code): \($0.message)" } ?? "HTTP \(r.status)"
        switch e?.code {
        case "NoSuchKey", "NotFound", "NoSuchUpload": return .notFound(what)
        case "NoSuchBucket": return .notFound("bucket \(bucketName(in: e) ?? bucket)")
        case "SignatureDoesNotMatch": return .accessDenied("signature does not match — check the secret key")
        case "InvalidAccessKeyId":
            return .accessDenied("the server does not know this access key ID — check the access key")
        case "RequestTimeTooSkewed": return .accessDenied("the clock differs from the server's by more than 15 minutes")
        case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
            return .accessDenied("the session token is expired or invalid")
        case "AccessDenied", "AllAccessDisabled", "AccountProblem": return .accessDenied("\(what): \(message)")
        case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
            // The bucket lives in another region (S3 says which in a header or the body).
            let region = r.header("x-amz-bucket-region") ?? e?.fields["Region"]
            let endpoint = e?.fields["Endpoint"].map { " (endpoint \($0))" } ?? ""
            return .invalidArgument(
                "bucket \(bucket) is in another region\(region.map { ": use --region \($0)" } ?? "")\(endpoint)")
        case "PreconditionFailed", "ConditionalRequestConflict": return .preconditionFailed(what)
        case "BucketNotEmpty": return .notEmpty("bucket \(what)")
        case "EntityTooLarge", "MaxMessageLengthExceeded": return .entityTooLarge
        case "QuotaExceeded", "TooManyBuckets": return .quotaExceeded
        case "EntityTooSmall", "InvalidPart", "InvalidPartOrder", "InvalidArgument", "InvalidRequest", "MalformedXML",
            "InvalidDigest", "BadDigest", "InvalidRange", "InvalidStorageClass", "InvalidBucketName", "KeyTooLongError",
            "InvalidObjectName", "InvalidKey", "InvalidPartNum", "MetadataTooLarge",
            // A header the server does not implement (Swift's s3api: If-None-Match on a PUT).
            "NotImplemented":
            return .invalidArgument("\(what): \(message)")
        default: break
        }
        switch r.status {
        case 404: return .notFound(what)
        case 412: return .preconditionFailed(what)
        case 401, 403: return .accessDenied("\(what): \(message)")
        case 409: return .notEmpty(what)
        case 400, 411, 416, 501: return .invalidArgument("\(what): \(message)")
        case 500...: return .unavailable("\(what): \(message)")
        default: return .other("\(what): \(message)")
        }
    }

    private func bucketName(in e: S3ErrorReply?) -> String? { e?.fields["BucketName"] }

    func check(_ r: HTTPResponse, _ what: String) throws(StorageError) {
        guard (200..<300).contains(r.status) else { throw failure(r, what) }
    }

    func parsed<T>(_ what: String, _ parse: () throws(XMLParseError) -> T) throws(StorageError) -> T {
        do { return try parse() } catch { throw .malformedReply("\(what): \(error)") }
    }

    // MARK: - Listing

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws -> ListPage
    {
        try await listPage(prefix: prefix, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
    }

    func listPage(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws(StorageError)
        -> ListPage
    {
        let limit = min(max(1, maxKeys ?? 1000), 1000)
        var query = [QueryItem("encoding-type", "url"), QueryItem("max-keys", String(limit))]
        if !prefix.isEmpty { query.append(QueryItem("prefix", prefix)) }
        if let delimiter { query.append(QueryItem("delimiter", delimiter)) }
        if provider.listVersion >= 2 {
            query.insert(QueryItem("list-type", "2"), at: 0)
            if let continuation { query.append(QueryItem("continuation-token", continuation)) }
        } else if let continuation {
            query.append(QueryItem("marker", continuation))
        }
        let r = try await send("GET", bucket: bucket, query: query)
        try check(r, "listing of \(bucket)")
        let reply = try parsed("listing of \(bucket)") { () throws(XMLParseError) in try S3XML.listObjects(r.body) }
        let objects = reply.objects.map { o in
            ObjectInfo(
                key: o.key, size: o.size, etag: o.etag.map(ETag.init),
                lastModified: HTTPDate.parseISO8601(o.lastModified) ?? .zero)
        }
        var next: String? = nil
        if reply.isTruncated {
            if provider.listVersion >= 2 {
                next = reply.nextContinuationToken
            } else {
                // v1 names NextMarker only with a delimiter; otherwise the last key is the marker.
                next = reply.nextMarker ?? [objects.last?.key, reply.commonPrefixes.last].compactMap { $0 }.max()
            }
            if next == nil { throw .malformedReply("listing of \(bucket) is truncated but has no continuation") }
        }
        return ListPage(objects: objects, commonPrefixes: reply.commonPrefixes, continuation: next)
    }

    // MARK: - Objects

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        let r = try await send("HEAD", bucket: bucket, key: key)
        try check(r, key)
        return objectInfo(key: key, r)
    }

    func objectInfo(key: ObjectKey, _ r: HTTPResponse) -> ObjectInfo {
        var meta: [String: String] = [:]
        let prefix = provider.metadataPrefix
        for (name, value) in r.headers {
            let n = name.lowercased()
            if n.hasPrefix(prefix) { meta[String(n.dropFirst(prefix.count))] = value }
        }
        return ObjectInfo(
            key: key, size: r.header("Content-Length").flatMap { Int64($0) } ?? 0,
            etag: r.header("ETag").map(Self.etag),
            lastModified: r.header("Last-Modified").flatMap(HTTPDate.parseRFC1123) ?? .zero,
            contentType: r.header("Content-Type"), metadata: meta)
    }

    static func etag(_ header: String) -> ETag {
        ETag(String(header.filter { $0 != "\"" && $0 != " " }))
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        if range?.length == 0 { return [] }
        let r = try await send("GET", bucket: bucket, key: key, headers: getHeaders(range, ifMatch))
        if r.status == 416 { return [] }
        try check(r, key)
        return r.body(of: range)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws {
        if range?.length == 0 { return sink.begin(at: 0) }
        let r = try await send(
            "GET", bucket: bucket, key: key, headers: getHeaders(range, ifMatch),
            stream: ResponseStream(sink: sink, range: range))
        if r.status == 416 { return sink.begin(at: 0) }
        try check(r, key)
    }

    private func getHeaders(_ range: ByteRange?, _ ifMatch: ETag?) -> [HTTPHeader] {
        var headers: [HTTPHeader] = []
        if let range { headers.append(HTTPHeader("Range", range.rangeHeader)) }
        if let ifMatch { headers.append(HTTPHeader("If-Match", "\"\(ifMatch.value)\"")) }
        return headers
    }

    /// A payload hashed as the server checks it: SigV4 signs its SHA-256 (the server refuses a
    /// body that does not match, as it would a wrong Content-MD5, and SHA-256 costs less than
    /// half of MD5's CPU); KSS V2 signs Content-MD5.
    func prepared(_ payload: Payload) async throws -> PreparedBody {
        try await PreparedBody.prepare(payload, digest: provider.signature == .sigV4 ? .sha256 : .md5)
    }

    /// Sends a prepared body to `key` with its check: the signed SHA-256 or a Content-MD5.
    func send(
        _ method: String, key: String, query: [QueryItem] = [], headers: [HTTPHeader], prepared body: PreparedBody
    ) async throws(StorageError) -> HTTPResponse {
        try await send(
            method, bucket: bucket, key: key, query: query,
            headers: headers + (body.md5.map { [HTTPHeader("Content-MD5", $0.base64)] } ?? []), body: body.bytes,
            file: body.file, payloadHash: body.kind == .sha256 ? body.hex : nil)
    }

    /// The ETag a server that sends none would give: the body's MD5, when that was computed.
    static func md5ETag(_ body: PreparedBody) -> ETag? { body.md5 == nil ? nil : ETag(body.hex) }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        let body = try await prepared(payload)
        var headers = metadataHeaders(key, options, storageClass: storageClass)
        if options.ifAbsent { headers.append(HTTPHeader("If-None-Match", "*")) }
        let r = try await send("PUT", key: key, headers: headers, prepared: body)
        if r.status == 412 && r.retried && options.ifAbsent {
            var md5 = Self.md5ETag(body)
            if md5 == nil { md5 = ETag(try await PreparedBody.prepare(payload, digest: .md5).hex) }
            if let md5, let mine = await storedByAnEarlierTry(key, size: body.length, md5: md5) { return mine }
        }
        try check(r, key)
        return ObjectInfo(
            key: key, size: body.length, etag: r.header("ETag").map(Self.etag) ?? Self.md5ETag(body),
            lastModified: r.header("Last-Modified").flatMap(HTTPDate.parseRFC1123) ?? Timestamp.now(),
            contentType: MediaType.of(key, requested: options.contentType), metadata: options.metadata)
    }

    /// Server-side copy; keeps the source's storage class (S3 would otherwise reset it).
    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing: PutOptions?) async throws
        -> ObjectInfo
    {
        try await copy(from: source, inBucket: bucket, to: destination, replacing: replacing)
    }

    /// Server-side copy from any bucket of the account into this one.
    public func copy(
        from source: ObjectKey, inBucket sourceBucket: String, to destination: ObjectKey, replacing: PutOptions?
    )
        async throws -> ObjectInfo
    {
        let (info, sourceClass) = try await head(source, inBucket: sourceBucket)
        let options = replacing ?? PutOptions(contentType: info.contentType, metadata: info.metadata ?? [:])
        let copySource = "/" + sourceBucket + "/" + URIEncoding.encode(source, keepSlash: true)
        if info.size > provider.maximumCopySize {
            return try await copyInParts(
                copySource, size: info.size, to: destination, options: options, storageClass: sourceClass)
        }
        var headers = [HTTPHeader(provider.headerPrefix + "copy-source", copySource)]
        if let replacing {
            headers.append(HTTPHeader(provider.headerPrefix + "metadata-directive", "REPLACE"))
            headers += metadataHeaders(destination, replacing, storageClass: sourceClass)
        } else if let sourceClass {
            headers.append(HTTPHeader(provider.headerPrefix + "storage-class", sourceClass))
        }
        let r = try await send("PUT", bucket: bucket, key: destination, headers: headers, errorIn200: true)
        if r.status == 404 { throw StorageError.notFound(source) }
        try check(r, "copy of \(source)")
        let result = try parsed("copy of \(source)") { () throws(XMLParseError) in try S3XML.copyResult(r.body) }
        return ObjectInfo(
            key: destination, size: info.size, etag: result.etag.map(Self.etag) ?? info.etag,
            lastModified: result.lastModified.flatMap(HTTPDate.parseISO8601) ?? Timestamp.now(),
            contentType: replacing == nil
                ? info.contentType : MediaType.of(destination, requested: options.contentType),
            metadata: options.metadata)
    }

    /// HEAD, with the storage class the server names (nil when it names none: the default).
    func head(_ key: ObjectKey, inBucket: String? = nil) async throws(StorageError) -> (ObjectInfo, String?) {
        let r = try await send("HEAD", bucket: inBucket ?? bucket, key: key)
        try check(r, key)
        let named = r.header(provider.headerPrefix + "storage-class")
        return (objectInfo(key: key, r), named == provider.defaultStorageClass ? nil : named)
    }

    /// A copy above the single-request limit: a multipart upload of ranges of the source.
    func copyInParts(
        _ copySource: String, size: Int64, to destination: ObjectKey, options: PutOptions, storageClass: String?
    )
        async throws -> ObjectInfo
    {
        let maxParts = Int64(provider.maximumPartCount)
        let preferred: Int64 = max(provider.minimumPartSize, min(provider.maximumCopySize, 512 << 20))
        let partSize = (size + preferred - 1) / preferred > maxParts ? (size + maxParts - 1) / maxParts : preferred
        let upload = try await createUpload(destination, options: options, storageClass: storageClass)
        do {
            let count = Int((size + partSize - 1) / partSize)
            let parts = try await forEach(Array(1...count)) { (number: Int) async throws -> UploadedPart in
                let first = Int64(number - 1) * partSize
                let range = ByteRange(offset: first, length: min(size, first + partSize) - first)
                return try await self.copyPart(
                    upload, number: number, copySource: copySource, range: range, ifMatch: nil)
            }
            return try await completeMultipartUpload(upload, parts: parts.sorted { $0.number < $1.number })
        } catch {
            try? await abortMultipartUpload(upload)
            throw error
        }
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        if keys.count == 1 {
            let r = try await send("DELETE", bucket: bucket, key: keys[0])
            if r.status != 404 { try check(r, keys[0]) }
            return
        }
        let batches = stride(from: 0, to: keys.count, by: provider.maximumDeleteBatch).map {
            Array(keys[$0..<min($0 + provider.maximumDeleteBatch, keys.count)])
        }
        _ = try await forEach(batches, concurrency: 4) { batch in try await self.deleteBatch(batch) }
    }

    /// One DeleteObjects request; its 200 lists per-key failures.
    func deleteBatch(_ keys: [ObjectKey]) async throws(StorageError) {
        let body = S3XML.deleteRequest(keys: keys, quiet: true)
        let md5 = Array(Insecure.MD5.hash(data: body)).base64
        let r = try await send(
            "POST", bucket: bucket, query: [QueryItem("delete", "")],
            headers: [HTTPHeader("Content-MD5", md5), HTTPHeader("Content-Type", "application/xml")], body: body)
        try check(r, "delete of \(keys.count) objects")
        let reply = try parsed("delete reply") { () throws(XMLParseError) in try S3XML.deleteResult(r.body) }
        let failed = reply.errors.filter { $0.code != "NoSuchKey" }
        if let first = failed.first {
            throw .other(
                "delete failed for \(failed.count) object(s), e.g. \(first.key): \(first.code) \(first.message)")
        }
    }

    // MARK: - Multipart

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        try await createUpload(key, options: options, storageClass: storageClass)
    }

    func createUpload(_ key: ObjectKey, options: PutOptions, storageClass: String?) async throws(StorageError)
        -> MultipartUpload
    {
        let r = try await send(
            "POST", bucket: bucket, key: key, query: [QueryItem("uploads", "")],
            headers: metadataHeaders(key, options, storageClass: storageClass))
        try check(r, key)
        let id = try parsed("new upload of \(key)") { () throws(XMLParseError) in try S3XML.uploadID(r.body) }
        return MultipartUpload(key: key, uploadID: id)
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        let body = try await prepared(payload)
        let r = try await send(
            "PUT", key: upload.key,
            query: [QueryItem("partNumber", String(number)), QueryItem("uploadId", upload.uploadID)], headers: [],
            prepared: body)
        try check(r, "part \(number) of \(upload.key)")
        guard let etag = r.header("ETag").map(Self.etag) ?? Self.md5ETag(body) else {
            throw StorageError.malformedReply("no ETag for part \(number) of \(upload.key)")
        }
        return UploadedPart(number: number, etag: etag)
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> ObjectInfo {
        // No Content-Type: the object's type was set when the upload was created, and a service
        // that takes this request's type for the object's would make every large file
        // `application/xml`. The body's type needs no saying (S3 requires none).
        let body = S3XML.completeRequest(parts: parts.map { (number: $0.number, etag: $0.etag.value) })
        let r = try await send(
            "POST", bucket: bucket, key: upload.key, query: [QueryItem("uploadId", upload.uploadID)], body: body,
            errorIn200: true)
        try check(r, upload.key)
        return try await head(upload.key)
    }

    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        let copySource = "/" + bucket + "/" + URIEncoding.encode(source, keepSlash: true)
        guard let ifMatch, ifMatch.value.contains("-") else {
            return try await copyPart(upload, number: number, copySource: copySource, range: range, ifMatch: ifMatch)
        }
        // A multipart version's ETag (`…-N`): s3api compares x-amz-copy-source-if-match with
        // the ETag of the Swift large object behind it, never equal, so a HEAD checks it.
        let (info, _) = try await head(source)
        guard info.etag == ifMatch else { throw StorageError.preconditionFailed(source) }
        return try await copyPart(upload, number: number, copySource: copySource, range: range, ifMatch: nil)
    }

    /// UploadPartCopy: part `number` of `upload` is `range` of `copySource` (`/bucket/key`).
    func copyPart(
        _ upload: MultipartUpload, number: Int, copySource: String, range: ByteRange, ifMatch: ETag?
    ) async throws(StorageError) -> UploadedPart {
        var headers = [
            HTTPHeader(provider.headerPrefix + "copy-source", copySource),
            HTTPHeader(provider.headerPrefix + "copy-source-range", "bytes=\(range.offset)-\(range.end - 1)"),
        ]
        if let ifMatch {
            headers.append(HTTPHeader(provider.headerPrefix + "copy-source-if-match", "\"\(ifMatch.value)\""))
        }
        let r = try await send(
            "PUT", bucket: bucket, key: upload.key,
            query: [QueryItem("partNumber", String(number)), QueryItem("uploadId", upload.uploadID)],
            headers: headers, errorIn200: true)
        if r.status == 404 && ifMatch != nil { throw StorageError.notFound(copySource) }
        try check(r, "copy of part \(number) to \(upload.key)")
        let result = try parsed("copy of a part") { () throws(XMLParseError) in try S3XML.copyResult(r.body) }
        guard let etag = result.etag else { throw StorageError.malformedReply("part copy reply has no ETag") }
        return UploadedPart(number: number, etag: Self.etag(etag))
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let r = try await send(
            "DELETE", bucket: bucket, key: upload.key, query: [QueryItem("uploadId", upload.uploadID)])
        if r.status != 404 { try check(r, upload.key) }
    }

    /// Multipart uploads not completed nor aborted (left by a crash), under `prefix`.
    public func incompleteUploads(prefix: String) async throws -> [IncompleteUpload] {
        var out: [IncompleteUpload] = []
        var keyMarker: String? = nil
        var idMarker: String? = nil
        repeat {
            var query = [QueryItem("uploads", ""), QueryItem("encoding-type", "url")]
            if !prefix.isEmpty { query.append(QueryItem("prefix", prefix)) }
            if let keyMarker { query.append(QueryItem("key-marker", keyMarker)) }
            if let idMarker { query.append(QueryItem("upload-id-marker", idMarker)) }
            let r = try await send("GET", bucket: bucket, query: query)
            try check(r, "uploads of \(bucket)")
            let reply = try parsed("uploads of \(bucket)") { () throws(XMLParseError) in try S3XML.uploads(r.body) }
            out += reply.uploads.map {
                IncompleteUpload(
                    upload: MultipartUpload(key: $0.key, uploadID: $0.uploadID),
                    initiated: HTTPDate.parseISO8601($0.initiated) ?? .zero)
            }
            keyMarker = reply.isTruncated ? reply.nextKeyMarker : nil
            idMarker = reply.nextUploadIDMarker
        } while keyMarker != nil
        return out
    }

    // MARK: - Object attributes

    public var attributeNames: [String] { ["storage_class", "acl"] }

    /// The storage class (HEAD; the provider's default when the server names none) or the canned
    /// ACL (`GET ?acl`: `private`, `public-read`, …, or `custom`).
    public func attribute(_ name: String, of key: ObjectKey) async throws -> String {
        switch name {
        case "storage_class":
            return try await head(key).1 ?? provider.defaultStorageClass
        case "acl":
            let r = try await send("GET", bucket: bucket, key: key, query: [QueryItem("acl", "")])
            try check(r, key)
            return try parsed("ACL of \(key)") { () throws(XMLParseError) in try S3XML.acl(r.body) }.cannedName
        default:
            throw StorageError.invalidArgument("no attribute \(name)")
        }
    }

    // MARK: - Account

    public func accountInfo() async throws -> AccountInfo { AccountInfo() }

    /// The account's buckets (ListBuckets).
    public func listBuckets() async throws(StorageError) -> [String] {
        let r = try await send("GET", bucket: nil)
        try check(r, "bucket list")
        return try parsed("bucket list") { () throws(XMLParseError) in try S3XML.buckets(r.body) }.map(\.name)
    }

    /// Creates a bucket in the endpoint's region; one that exists and is ours is not an error.
    public func createBucket(_ name: String) async throws(StorageError) {
        let region = endpoint.region
        let body = S3XML.createBucketRequest(location: region.isEmpty ? nil : region)
        let r = try await send("PUT", bucket: name, body: body)
        if r.status == 409, S3XML.error(r.body)?.code == "BucketAlreadyOwnedByYou" { return }
        try check(r, "bucket \(name)")
    }

    /// Deletes an empty bucket.
    public func deleteBucket(_ name: String) async throws(StorageError) {
        let r = try await send("DELETE", bucket: name)
        try check(r, name)
    }

    // MARK: - Helpers

    /// The headers that make an object what `options` say: its Content-Type (the one asked for,
    /// else what `key`'s extension implies, else `application/octet-stream`: S3 would store
    /// `binary/octet-stream`), its metadata and storage class.
    func metadataHeaders(_ key: ObjectKey, _ options: PutOptions, storageClass: String?) -> [HTTPHeader] {
        var h = [HTTPHeader("Content-Type", MediaType.of(key, requested: options.contentType))]
        for (k, v) in options.metadata.sorted(by: { $0.key < $1.key }) {
            h.append(HTTPHeader(provider.metadataPrefix + k.lowercased(), v))
        }
        if let storageClass { h.append(HTTPHeader(provider.headerPrefix + "storage-class", storageClass)) }
        return h
    }

    /// Runs `body` over `items`, `concurrency` at a time; results in completion order.
    func forEach<Item: Sendable, Result: Sendable>(
        _ items: [Item], concurrency: Int = 4, _ body: @escaping @Sendable (Item) async throws -> Result
    ) async throws -> [Result] {
        try await withThrowingTaskGroup(of: Result.self) { group in
            var results: [Result] = []
            var running = 0
            for item in items {
                if running >= concurrency, let r = try await group.next() {
                    results.append(r)
                    running -= 1
                }
                group.addTask { try await body(item) }
                running += 1
            }
            while let r = try await group.next() { results.append(r) }
            return results
        }
    }
}

extension Array where Element == UInt8 {
    var base64: String { Data(self).base64EncodedString() }
}
