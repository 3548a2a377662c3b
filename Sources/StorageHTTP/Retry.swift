// When a request is tried again (DESIGN.md §6): 5xx, 408, 429, 498 and transport failures, with
// exponential backoff and jitter; never other 4xx. The policy is a value so tests run it with
// no sleeping.

public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialDelay: Duration
    public var maximumDelay: Duration
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(
        attempts: Int = 5, initialDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(10),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.attempts = attempts
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.sleep = sleep
    }

    public static func isRetryable(status: Int) -> Bool {
        status >= 500 || status == 408 || status == 429 || status == 498
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
