// When a request is tried again (DESIGN.md §6): 5xx, 408, 429, 498 and transport failures, with
// exponential backoff and jitter; never other 4xx. The policy is a value so tests run it with
// no sleeping. At the first contact with a server (mount, `objmount url`, `cleanup`) a server
// that cannot be reached at all (connection refused, unknown host) fails at once: a wrong
// endpoint or a server that is down says so in a second, not after a minute of retries.

import ObjectStorage

public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialDelay: Duration
    public var maximumDelay: Duration
    public var sleep: @Sendable (Duration) async throws -> Void
    /// Whether a server that cannot be reached at all (`TransportError.isUnreachable`) is tried
    /// again; false for the first contact.
    public var retriesUnreachable = true

    public init(
        attempts: Int = 5, initialDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(10),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.attempts = attempts
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.sleep = sleep
    }

    /// This policy for the first request to a server: what cannot be reached fails at once.
    public var firstContact: RetryPolicy {
        var p = self
        p.retriesUnreachable = false
        return p
    }

    /// Whether try number `attempt` (1 = the first) that failed with `error` below HTTP is tried
    /// again.
    public func retries(_ error: any Error, after attempt: Int) -> Bool {
        guard attempt < attempts, !(error is CancellationError), !Task.isCancelled else { return false }
        if let e = error as? TransportError, e.isUnreachable { return retriesUnreachable }
        return true
    }

    /// 501 (Not Implemented) is not: a server that does not do what was asked never will.
    public static func isRetryable(status: Int) -> Bool {
        (status >= 500 && status != 501) || status == 408 || status == 429 || status == 498
    }

    /// The delay before try number `attempt` (1 = the first retry): doubling, capped, with up to
    /// half of it random so that many clients do not retry in step.
    public func delay(before attempt: Int) -> Duration {
        var d = initialDelay
        for _ in 1..<max(1, attempt) where d < maximumDelay { d = d * 2 }
        if d > maximumDelay { d = maximumDelay }
        let jitter = Double.random(in: 0...0.5)
        return d - d * jitter
    }
}

extension StorageError {
    /// The error of a request that failed below HTTP (after its retries): a server that cannot be
    /// reached is said as such, in one line (which request does not matter: none can go);
    /// otherwise which request failed, and why.
    public static func transport(_ error: any Error, request what: String) -> StorageError {
        if let e = error as? TransportError, e.isUnreachable { return .unavailable(e.description) }
        return .unavailable("\(what): \(error)")
    }
}
