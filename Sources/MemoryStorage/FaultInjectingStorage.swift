// FaultInjectingStorage: wraps any ObjectStorage to add latency and scripted failures, so tests
// can show what the filesystem does when the server is slow or fails (EIO, never a hang or a
// false success). Faults are scripted per operation kind and consumed in order.

import ObjectStorage
import Synchronization

public enum StorageOperation: String, Sendable, CaseIterable {
    case list, head, get, put, copy, delete, multipart, accountInfo
}

public final class FaultInjectingStorage<Base: ObjectStorage>: ObjectStorage, Sendable {
    public let base: Base
    private let state = Mutex<State>(State())

    struct State {
        var latency: Duration = .zero
        var faults: [StorageOperation: [StorageError]] = [:]
        var calls: [StorageOperation: Int] = [:]
        var bytesRead: Int64 = 0
    }

    public init(_ base: Base, latency: Duration = .zero) {
        self.base = base
        state.withLock { $0.latency = latency }
    }

    public var capabilities: StorageCapabilities { base.capabilities }

    /// The next `count` calls of `operation` throw `error`.
    public func fail(_ operation: StorageOperation, with error: StorageError, count: Int = 1) {
        state.withLock { $0.faults[operation, default: []] += Array(repeating: error, count: count) }
    }

    public func setLatency(_ latency: Duration) {
        state.withLock { $0.latency = latency }
    }

    /// How many times each operation was called (including failed calls).
    public func calls(_ operation: StorageOperation) -> Int {
        state.withLock { $0.calls[operation, default: 0] }
    }

    /// Bytes returned by `get` so far: what a server would have sent.
    public var bytesRead: Int64 { state.withLock { $0.bytesRead } }

    private func enter(_ op: StorageOperation) async throws {
        let (delay, fault) = state.withLock { s -> (Duration, StorageError?) in
            s.calls[op, default: 0] += 1
            var queue = s.faults[op, default: []]
            let f = queue.isEmpty ? nil : queue.removeFirst()
            s.faults[op] = queue
            return (s.latency, f)
        }
        if delay > .zero { try await Task.sleep(for: delay) }
        if let f = fault { throw f }
    }

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?)
        async throws -> ListPage
    {
        try await enter(.list)
        return try await base.list(
            prefix: prefix, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        try await enter(.head)
        return try await base.head(key)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        try await enter(.get)
        let bytes = try await base.get(key, range: range, ifMatch: ifMatch)
        state.withLock { $0.bytesRead += Int64(bytes.count) }
        return bytes
    }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws
        -> ObjectInfo
    {
        try await enter(.put)
        return try await base.put(key, payload: payload, options: options)
    }

    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing: PutOptions?)
        async throws -> ObjectInfo
    {
        try await enter(.copy)
        return try await base.copy(from: source, to: destination, replacing: replacing)
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        try await enter(.delete)
        try await base.delete(keys)
    }

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws
        -> MultipartUpload
    {
        try await enter(.multipart)
        return try await base.createMultipartUpload(key, options: options)
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws
        -> UploadedPart
    {
        try await enter(.multipart)
        return try await base.uploadPart(upload, number: number, payload: payload)
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart])
        async throws -> ObjectInfo
    {
        try await enter(.multipart)
        return try await base.completeMultipartUpload(upload, parts: parts)
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        try await enter(.multipart)
        try await base.abortMultipartUpload(upload)
    }

    public func accountInfo() async throws -> AccountInfo {
        try await enter(.accountInfo)
        return try await base.accountInfo()
    }
}
