// S3Account: the account-level operations of S3 and KS3 (ListBuckets, CreateBucket,
// DeleteBucket, copies between buckets) for `AccountStorage`, which maps all the buckets of an
// account to one key space for account-level mounts (`s3://`).

import ObjectStorage
import S3Signing
import StorageHTTP
import Synchronization

public final class S3Account: BucketService {
    /// Answers service-level requests; its own bucket name is not used.
    let root: S3Storage
    private let buckets = Mutex<[String: S3Storage]>([:])
    public var capabilities: StorageCapabilities { root.capabilities }

    init(root: S3Storage) {
        self.root = root
    }

    /// Checks the credentials with one ListBuckets (not retried when the server cannot be reached).
    public static func connect(
        provider: S3Provider, endpoint: S3Endpoint, credentials: SigningCredentials, storageClass: String? = nil,
        transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy()
    ) async throws(StorageError) -> AccountStorage {
        let probe = S3Storage(
            bucket: "", provider: provider, endpoint: endpoint, credentials: credentials, storageClass: storageClass,
            transport: transport, retry: retry.firstContact)
        _ = try await probe.listBuckets()
        let root = S3Storage(
            bucket: "", provider: provider, endpoint: endpoint, credentials: credentials, storageClass: storageClass,
            transport: transport, retry: retry)
        return AccountStorage(S3Account(root: root))
    }

    public func bucket(_ name: String) -> any ObjectStorage { storage(name) }

    func storage(_ name: String) -> S3Storage {
        buckets.withLock { b in
            if let s = b[name] { return s }
            let s = S3Storage(
                bucket: name, provider: root.provider, endpoint: root.endpoint, credentials: root.credentials,
                storageClass: root.storageClass, transport: root.transport, retry: root.retry)
            b[name] = s
            return s
        }
    }

    /// ListBuckets has no paging or prefix: one call, filtered here.
    public func listBuckets(prefix: String, after marker: String?, limit: Int) async throws -> (
        names: [String], more: Bool
    ) {
        let all = try await root.listBuckets().filter { $0.hasPrefix(prefix) && (marker == nil || $0 > marker!) }
            .sorted()
        return (Array(all.prefix(limit)), all.count > limit)
    }

    public func headBucket(_ name: String) async throws {
        let r = try await root.send("HEAD", bucket: name)
        if r.status == 404 { throw StorageError.notFound("bucket \(name)") }
        try root.check(r, "bucket \(name)")
    }

    public func createBucket(_ name: String) async throws { try await root.createBucket(name) }

    public func deleteBucket(_ name: String) async throws { try await root.deleteBucket(name) }

    public func copy(
        from source: ObjectKey, inBucket sourceBucket: String, to destination: ObjectKey, inBucket bucket: String,
        replacing: PutOptions?
    ) async throws -> ObjectInfo {
        try await storage(bucket).copy(from: source, inBucket: sourceBucket, to: destination, replacing: replacing)
    }

    public func accountInfo() async throws -> AccountInfo { AccountInfo() }
}
