// OpenStackAccount: the account-level operations of Swift (containers listed, created, deleted;
// copies between containers) for `AccountStorage`, which maps a whole account to one key space
// for account-level mounts.

import Foundation
import ObjectStorage
import StorageHTTP
import Synchronization

public final class OpenStackAccount: BucketService {
    let tokens: TokenCache
    let transport: any HTTPTransport
    let retry: RetryPolicy
    let cluster: OpenStackStorage.ClusterInfo
    /// Answers account-level requests (its container name is not used).
    let root: OpenStackStorage
    private let containers = Mutex<[String: OpenStackStorage]>([:])
    public let capabilities: StorageCapabilities

    public static func connect(
        authenticator: any SwiftAuthenticator, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy()
    ) async throws(StorageError) -> AccountStorage {
        let tokens = TokenCache(authenticator: authenticator, transport: transport)
        let creds: SwiftCredentials
        do { creds = try await tokens.credentials() } catch { throw error.storageError }
        let cluster = await OpenStackStorage.readInfo(storageURL: creds.storageURL, transport: transport)
        let probe = OpenStackStorage(
            container: "", tokens: tokens, transport: transport, retry: retry.firstContact, cluster: cluster)
        let r = try await probe.call("HEAD", "")
        try probe.check(r, "account")
        return AccountStorage(OpenStackAccount(tokens: tokens, transport: transport, retry: retry, cluster: cluster))
    }

    init(tokens: TokenCache, transport: any HTTPTransport, retry: RetryPolicy, cluster: OpenStackStorage.ClusterInfo) {
        self.tokens = tokens
        self.transport = transport
        self.retry = retry
        self.cluster = cluster
        self.root = OpenStackStorage(
            container: "", tokens: tokens, transport: transport, retry: retry, cluster: cluster)
        self.capabilities = root.capabilities
    }

    /// The storage of one container (made once, sharing the token cache and connections).
    public func bucket(_ name: String) -> any ObjectStorage { container(name) }

    func container(_ name: String) -> OpenStackStorage {
        containers.withLock { c in
            if let s = c[name] { return s }
            let s = OpenStackStorage(
                container: name, tokens: tokens, transport: transport, retry: retry, cluster: cluster)
            c[name] = s
            return s
        }
    }

    public func listBuckets(prefix: String, after marker: String?, limit: Int) async throws -> (
        names: [String], more: Bool
    ) {
        let r = try await root.call(
            "GET", "",
            query: [
                ("format", "json"), ("prefix", prefix.isEmpty ? nil : prefix), ("marker", marker),
                ("limit", String(limit)),
            ])
        try root.check(r, "account listing")
        let names = try SwiftListing.parseContainers(r.body).map(\.name)
        return (names, names.count >= limit)
    }

    public func headBucket(_ name: String) async throws {
        let r = try await root.call("HEAD", OpenStackStorage.containerPath(name))
        try root.check(r, name)
    }

    public func createBucket(_ name: String) async throws {
        let r = try await root.call("PUT", OpenStackStorage.containerPath(name))
        try root.check(r, "container \(name)")
    }

    public func deleteBucket(_ name: String) async throws {
        let r = try await root.call("DELETE", OpenStackStorage.containerPath(name))
        if r.status == 409 { throw StorageError.notEmpty("container \(name)") }
        try root.check(r, "container \(name)")
    }

    public func copy(
        from source: ObjectKey, inBucket sourceBucket: String, to destination: ObjectKey, inBucket bucket: String,
        replacing: PutOptions?
    ) async throws -> ObjectInfo {
        try await container(bucket).copy(
            fromPath: container(sourceBucket).objectPath(source), to: destination, replacing: replacing,
            sourceName: sourceBucket + "/" + source)
    }

    public func accountInfo() async throws -> AccountInfo { try await root.accountInfo() }
}
