// OpenStackAccount: a whole Swift account as one key space, for account-level mounts. The first
// path segment is the container: `photos/2024/cat.jpg` is `cat.jpg`'s key `2024/cat.jpg` in
// container `photos`. To the filesystem a container is a directory with a marker:
// - listing the root lists the containers (as common prefixes),
// - `head("c")` of an existing container answers like a Swift directory marker,
// - writing the marker of a top-level directory (mkdir) creates the container,
// - deleting it (rmdir, after the filesystem checked it is empty) deletes the container.
// Everything below the first segment is forwarded to that container's OpenStackStorage.

import Foundation
import ObjectStorage
import StorageHTTP
import Synchronization

public final class OpenStackAccount: ObjectStorage {
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
    ) async throws(StorageError) -> OpenStackAccount {
        let tokens = TokenCache(authenticator: authenticator, transport: transport)
        let creds: SwiftCredentials
        do { creds = try await tokens.credentials() } catch { throw error.storageError }
        let cluster = await OpenStackStorage.readInfo(storageURL: creds.storageURL, transport: transport)
        let account = OpenStackAccount(tokens: tokens, transport: transport, retry: retry, cluster: cluster)
        let r = try await account.root.call("HEAD", "")
        try account.root.check(r, "account")
        return account
    }

    init(tokens: TokenCache, transport: any HTTPTransport, retry: RetryPolicy, cluster: OpenStackStorage.ClusterInfo) {
        self.tokens = tokens
        self.transport = transport
        self.retry = retry
        self.cluster = cluster
        self.root = OpenStackStorage(container: "", tokens: tokens, transport: transport, retry: retry, cluster: cluster)
        self.capabilities = root.capabilities
    }

    /// The storage of one container (made once, sharing the token cache and connections).
    func container(_ name: String) -> OpenStackStorage {
        containers.withLock { c in
            if let s = c[name] { return s }
            let s = OpenStackStorage(container: name, tokens: tokens, transport: transport, retry: retry, cluster: cluster)
            c[name] = s
            return s
        }
    }

    /// `c/rest` → ("c", "rest"); `c` → ("c", nil).
    static func split(_ key: String) -> (container: String, rest: String?) {
        guard let slash = key.firstIndex(of: "/") else { return (key, nil) }
        return (String(key[..<slash]), String(key[key.index(after: slash)...]))
    }

    // MARK: - Listing

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws -> ListPage {
        let (name, rest) = Self.split(prefix)
        guard let rest else { return try await listContainers(prefix: name, continuation: continuation, maxKeys: maxKeys) }
        let page: ListPage
        do {
            page = try await container(name).list(prefix: rest, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
        } catch StorageError.notFound {
            return ListPage(objects: [], commonPrefixes: [], continuation: nil)
        }
        var out = ListPage(objects: [], commonPrefixes: page.commonPrefixes.map { name + "/" + $0 }, continuation: page.continuation)
        out.objects = page.objects.map { o in
            var o = o
            o.key = name + "/" + o.key
            return o
        }
        // With a delimiter, the container's own level `c/` is what a directory listing of the
        // root-level directory needs; without one the caller wants every key below.
        return out
    }

    /// Containers whose names start with `prefix`, as common prefixes `name/`.
    func listContainers(prefix: String, continuation: String?, maxKeys: Int?) async throws -> ListPage {
        let limit = min(max(1, maxKeys ?? 10_000), 10_000)
        let r = try await root.call(
            "GET", "", query: [("format", "json"), ("prefix", prefix.isEmpty ? nil : prefix), ("marker", continuation.map { String($0.dropLast()) }),
                ("limit", String(limit))])
        try root.check(r, "account listing")
        let names = try SwiftListing.parseContainers(r.body).map(\.name)
        return ListPage(objects: [], commonPrefixes: names.map { $0 + "/" }, continuation: names.count >= limit ? names.last.map { $0 + "/" } : nil)
    }

    // MARK: - Objects

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else {
            // A container: a directory marker that always exists while the container does.
            let r = try await root.call("HEAD", OpenStackStorage.containerPath(name))
            try root.check(r, key)
            return ObjectInfo(key: key, size: 0, etag: nil, lastModified: .zero, contentType: "application/directory", metadata: [:])
        }
        var info = try await container(name).head(rest)
        info.key = key
        return info
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else { return [] }
        return try await container(name).get(rest, range: range, ifMatch: ifMatch)
    }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else {
            // mkdir at the account root (a directory marker): create the container.
            guard payload.length == 0, options.contentType?.hasPrefix("application/directory") == true || key.hasSuffix("/") else {
                throw StorageError.accessDenied("files cannot be stored at the account level, only in containers")
            }
            let r = try await root.call("PUT", OpenStackStorage.containerPath(name))
            try root.check(r, "container \(name)")
            return try await head(name)
        }
        var info = try await container(name).put(rest, payload: payload, options: options)
        info.key = key
        return info
    }

    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing: PutOptions?) async throws -> ObjectInfo {
        let (srcContainer, srcKey) = Self.split(source)
        let (dstContainer, dstKey) = Self.split(destination)
        guard let srcKey, let dstKey, !srcKey.isEmpty, !dstKey.isEmpty else {
            throw StorageError.accessDenied("containers cannot be renamed")
        }
        var info = try await container(dstContainer).copy(
            fromPath: container(srcContainer).objectPath(srcKey), to: dstKey, replacing: replacing, sourceName: source)
        info.key = destination
        return info
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        for (name, group) in Dictionary(grouping: keys, by: { Self.split($0).container }) {
            var objects: [String] = []
            var containerItself = false
            for key in group {
                if let rest = Self.split(key).rest, !rest.isEmpty { objects.append(rest) } else { containerItself = true }
            }
            if !objects.isEmpty { try await container(name).delete(objects) }
            if containerItself {
                let r = try await root.call("DELETE", OpenStackStorage.containerPath(name))
                if r.status == 409 { throw StorageError.notEmpty("container \(name)") }
                if r.status != 404 { try root.check(r, "container \(name)") }
            }
        }
    }

    public func removeAfterMove(_ keys: [ObjectKey]) async throws {
        for (name, group) in Dictionary(grouping: keys, by: { Self.split($0).container }) {
            try await container(name).removeAfterMove(group.compactMap { Self.split($0).rest }.filter { !$0.isEmpty })
        }
    }

    // MARK: - Multipart

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        let (name, rest) = Self.split(key)
        let u = try await container(name).createMultipartUpload(rest ?? "", options: options)
        return MultipartUpload(key: key, uploadID: u.uploadID)
    }

    func inner(_ upload: MultipartUpload) -> (OpenStackStorage, MultipartUpload) {
        let (name, rest) = Self.split(upload.key)
        return (container(name), MultipartUpload(key: rest ?? "", uploadID: upload.uploadID))
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        let (s, u) = inner(upload)
        return try await s.uploadPart(u, number: number, payload: payload)
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> ObjectInfo {
        let (s, u) = inner(upload)
        var info = try await s.completeMultipartUpload(u, parts: parts)
        info.key = upload.key
        return info
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let (s, u) = inner(upload)
        try await s.abortMultipartUpload(u)
    }

    public func accountInfo() async throws -> AccountInfo { try await root.accountInfo() }
}
