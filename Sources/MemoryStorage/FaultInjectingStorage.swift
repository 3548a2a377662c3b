// FaultInjectingStorage: wraps any ObjectStorage to add latency and scripted failures, so tests
// can show what the filesystem does when the server is slow or fails (EIO, never a hang or a
// false success). Faults are scripted per operation kind and consumed in order.

import ObjectStorage
import Synchronization

public enum StorageOperation: String, Sendable, CaseIterable {
    case list, head, get, put, copy, delete, multipart, accountInfo
}

/// What a server does with a PUT that carries `If-None-Match: *` (`PutOptions.ifAbsent`).
public enum IfAbsentSupport: Sendable {
    /// Refuses it with 412 when an object has the key (MemoryStorage does).
    case honoured
    /// Stores the object anyway.
    case ignored
    /// Answers that it does not implement the header (Swift's s3api: 501).
    case refused
}

public final class FaultInjectingStorage<Base: ObjectStorage>: ObjectStorage, Sendable {
    public let base: Base
    private let state = Mutex<State>(State())

    struct State {
        var latency: Duration = .zero
        var faults: [StorageOperation: [StorageError]] = [:]
        var calls: [StorageOperation: Int] = [:]
        var waiting: [StorageOperation: Int] = [:]
        var mostWaiting: [StorageOperation: Int] = [:]
        var bytesRead: Int64 = 0
        var bytesSent: Int64 = 0
        var lateReplies: [StorageOperation: [LateReply]] = [:]
        var ifAbsent = IfAbsentSupport.honoured
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

    /// Plays a server that honours, ignores or refuses a conditional PUT.
    public func setIfAbsent(_ support: IfAbsentSupport) {
        state.withLock { $0.ifAbsent = support }
    }

    public func setLatency(_ latency: Duration) {
        state.withLock { $0.latency = latency }
    }

    /// The next call of `operation` (a list, head, put, or part upload for `.multipart`) does its work at once (a listing
    /// sees the store as it is now) but returns only once the test calls `release()` on the
    /// answer: a reply that arrives after what the filesystem did meanwhile.
    public func holdNextReply(of operation: StorageOperation) -> LateReply {
        let reply = LateReply()
        state.withLock { $0.lateReplies[operation, default: []].append(reply) }
        return reply
    }

    private func lateReply(_ op: StorageOperation) -> LateReply? {
        state.withLock { s in
            guard var queue = s.lateReplies[op], !queue.isEmpty else { return nil }
            let first = queue.removeFirst()
            s.lateReplies[op] = queue
            return first
        }
    }

    /// How many times each operation was called (including failed calls).
    public func calls(_ operation: StorageOperation) -> Int {
        state.withLock { $0.calls[operation, default: 0] }
    }

    /// The most calls of `operation` that were in their latency at once: how many the caller
    /// had in flight together.
    public func mostAtOnce(_ operation: StorageOperation) -> Int {
        state.withLock { $0.mostWaiting[operation, default: 0] }
    }

    /// Forgets the calls counted by `mostAtOnce` so far.
    public func resetMostAtOnce() {
        state.withLock { $0.mostWaiting = [:] }
    }

    /// Bytes returned by `get` so far: what a server would have sent.
    public var bytesRead: Int64 { state.withLock { $0.bytesRead } }
    /// Bytes of the bodies given to `put` and `uploadPart` so far: what a client would send.
    public var bytesSent: Int64 { state.withLock { $0.bytesSent } }

    private func enter(_ op: StorageOperation) async throws {
        let (delay, fault) = state.withLock { s -> (Duration, StorageError?) in
            s.calls[op, default: 0] += 1
            var queue = s.faults[op, default: []]
            let f = queue.isEmpty ? nil : queue.removeFirst()
            s.faults[op] = queue
            if s.latency > .zero {
                s.waiting[op, default: 0] += 1
                s.mostWaiting[op] = max(s.mostWaiting[op, default: 0], s.waiting[op, default: 0])
            }
            return (s.latency, f)
        }
        if delay > .zero {
            defer { state.withLock { $0.waiting[op, default: 0] -= 1 } }
            try await Task.sleep(for: delay)
        }
        if let f = fault { throw f }
    }

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?)
        async throws -> ListPage
    {
        try await enter(.list)
        return try await answered(.list) {
            try await base.list(prefix: prefix, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
        }
    }

    /// `work`'s answer (or error), returned once a reply held by `holdNextReply(of: op)`, if
    /// any, is released.
    private func answered<T>(_ op: StorageOperation, _ work: () async throws -> T) async throws -> T {
        let late = lateReply(op)
        let result: Result<T, any Error>
        do { result = .success(try await work()) } catch { result = .failure(error) }
        await late?.arrive()
        return try result.get()
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        try await enter(.head)
        return try await answered(.head) { try await base.head(key) }
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
        var options = options
        if options.ifAbsent {
            switch state.withLock({ $0.ifAbsent }) {
            case .honoured: break
            case .ignored: options.ifAbsent = false
            case .refused: throw StorageError.invalidArgument("\(key): NotImplemented: If-None-Match")
            }
        }
        state.withLock { $0.bytesSent += payload.length }
        return try await answered(.put) { [options] in try await base.put(key, payload: payload, options: options) }
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
        state.withLock { $0.bytesSent += payload.length }
        return try await answered(.multipart) { try await base.uploadPart(upload, number: number, payload: payload) }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart])
        async throws -> ObjectInfo
    {
        try await enter(.multipart)
        return try await base.completeMultipartUpload(upload, parts: parts)
    }

    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        try await enter(.multipart)
        return try await base.uploadPartCopy(upload, number: number, from: source, range: range, ifMatch: ifMatch)
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

/// A reply held back by `FaultInjectingStorage.holdNextReply(of:)`.
public final class LateReply: Sendable {
    private struct State {
        var arrived = false
        var released = false
        var caller: CheckedContinuation<Void, Never>?
        var watcher: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    /// Waits until the held call has its answer.
    public func arrived() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.arrived { return true }
                s.watcher = c
                return false
            }
            if now { c.resume() }
        }
    }

    /// Lets the held call return.
    public func release() {
        let caller = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.released = true
            defer { s.caller = nil }
            return s.caller
        }
        caller?.resume()
    }

    func arrive() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let (watcher, released) = state.withLock { s -> (CheckedContinuation<Void, Never>?, Bool) in
                s.arrived = true
                if !s.released { s.caller = c }
                defer { s.watcher = nil }
                return (s.watcher, s.released)
            }
            watcher?.resume()
            if released { c.resume() }
        }
    }
}
