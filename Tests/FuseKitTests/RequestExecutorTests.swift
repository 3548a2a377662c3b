import Synchronization
import Testing

@testable import FuseKit

#if canImport(Glibc)
    import Glibc
#endif

private final class Flag: Sendable {
    let value = Atomic<Int>(0)
    var raised: Bool { value.load(ordering: .acquiring) > 0 }
    func raise() { value.add(1, ordering: .releasing) }
}

/// A request's task runs on the thread that serves it, and whatever it does after that
/// thread has left (a server's reply, a cancellation) still reaches it.
@Suite struct RequestExecutorTests {
    /// Waits up to `seconds` for `flag`; false if it never went up.
    private func eventually(_ flag: Flag, seconds: Double = 3) async -> Bool {
        for _ in 0..<Int(seconds * 100) {
            if flag.raised { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return flag.raised
    }

    @Test func workThatResumesAfterTheThreadLeftFinishes() async {
        let executor = RequestExecutor()
        let done = Flag()
        let steps = Flag()
        _ = Task(executorPreference: executor) {
            for _ in 0..<3 {
                try? await Task.sleep(for: .milliseconds(5))  // longer than the idle wait below
                steps.raise()
            }
            done.raise()
            executor.finish()
        }
        executor.serve(idle: 500_000)
        #expect(await eventually(done))
        #expect(steps.value.load(ordering: .acquiring) == 3)
    }

    @Test func aCancellationAfterTheThreadLeftReachesTheTask() async {
        let executor = RequestExecutor()
        let done = Flag()
        let task = Task(executorPreference: executor) {
            // Waits "for a server" until cancelled.
            try? await Task.sleep(for: .seconds(60))
            done.raise()
            executor.finish()
        }
        executor.serve(idle: 500_000)
        task.cancel()
        #expect(await eventually(done))
    }

    @Test func quickWorkRunsOnTheServingThread() async {
        let executor = RequestExecutor()
        let serving = UInt(pthread_self())
        let ranHere = Flag()
        _ = Task(executorPreference: executor) {
            if UInt(pthread_self()) == serving { ranHere.raise() }
            executor.finish()
        }
        executor.serve(idle: 500_000)
        #expect(ranHere.raised)
    }
}
