// TransferCounters: what this process sent and received over HTTP, for `objmount status`:
// requests, retries, bytes up (request bodies) and down (response bodies). Relaxed atomics:
// figures to read, not to synchronize on.

import Synchronization

public final class TransferCounters: Sendable {
    public static let shared = TransferCounters()

    private let requestCount = Atomic<Int64>(0)
    private let retryCount = Atomic<Int64>(0)
    private let sent = Atomic<Int64>(0)
    private let received = Atomic<Int64>(0)

    public var requests: Int64 { requestCount.load(ordering: .relaxed) }
    public var retries: Int64 { retryCount.load(ordering: .relaxed) }
    public var bytesUp: Int64 { sent.load(ordering: .relaxed) }
    public var bytesDown: Int64 { received.load(ordering: .relaxed) }

    func request(sending bytes: Int64) {
        requestCount.add(1, ordering: .relaxed)
        sent.add(bytes, ordering: .relaxed)
    }

    func receive(_ bytes: Int) { received.add(Int64(bytes), ordering: .relaxed) }
    /// A request is about to be sent again (the drivers call this before each retry).
    public func retry() { retryCount.add(1, ordering: .relaxed) }
}
