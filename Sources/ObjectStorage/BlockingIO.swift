// BlockingIO: threads of their own for work that blocks or takes long — reads and writes of
// cache and staging files, renames, unlinks, directory scans, checksums of large bodies — so that the cooperative pool (one thread per core, two
// here) never waits on a disk (DESIGN.md §9). Async code awaits `run`; the threads live as long
// as the process.

import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public final class BlockingIOPool: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    /// The pool every ObjectFS in the process shares: four threads (two cores; a disk or a
    /// page-cache miss is waited on, not computed).
    public static let shared = BlockingIOPool(threads: 4)

    private let queue = Mutex<(jobs: [Job], head: Int)>(([], 0))
    private let available: UnsafeMutablePointer<sem_t>

    public init(threads: Int) {
        available = .allocate(capacity: 1)
        sem_init(available, 0, 0)
        for _ in 0..<max(1, threads) {
            let context = Unmanaged.passRetained(self).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, nil,
                { raw in
                    let pool = Unmanaged<BlockingIOPool>.fromOpaque(raw!).takeRetainedValue()
                    pool.work()
                    return nil
                }, context)
            precondition(rc == 0, "cannot start an I/O thread (errno \(rc))")
            pthread_detach(thread)
        }
    }

    /// Runs `body` on one of the pool's threads and returns what it returns.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result(catching: body)) }
        }
    }

    /// Runs `body` on one of the pool's threads; for work that cannot fail.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            submit { continuation.resume(returning: body()) }
        }
    }

    /// `body` on a pool thread when it works on `bytes` bytes or more (a checksum of a large
    /// body), inline otherwise: a thread hop costs more than hashing a few KiB.
    public func run<T: Sendable>(over bytes: Int, _ body: @escaping @Sendable () -> T) async -> T {
        bytes < Self.inlineLimit ? body() : await run(body)
    }

    public static let inlineLimit = 256 << 10

    public func submit(_ job: @escaping Job) {
        queue.withLock { $0.jobs.append(job) }
        sem_post(available)
    }

    private func work() {
        while true {
            while sem_wait(available) != 0 {}
            let job = queue.withLock { q -> Job in
                let job = q.jobs[q.head]
                q.jobs[q.head] = {}  // let go of what the job holds (a block's bytes) now
                q.head += 1
                // Drop the done part of the array now and then, not on every job.
                if q.head >= 64 && q.head * 2 >= q.jobs.count {
                    q.jobs.removeFirst(q.head)
                    q.head = 0
                }
                return job
            }
            job()
        }
    }
}

extension Payload {
    /// The payload's bytes, a file region read on the I/O pool (never on the cooperative pool).
    public func loadBytes() async throws -> [UInt8] {
        switch self {
        case .bytes(let b): return b
        case .file: return try await BlockingIOPool.shared.run { try self.readBytes() }
        }
    }
}
