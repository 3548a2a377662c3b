import Synchronization
import Testing

@testable import ObjmountCLI

@Suite struct MemoryTuningTests {
    /// The idle trim gives memory back once after each burst of requests: not before any
    /// request, not while requests keep coming, not again while the mount stays idle.
    @Test func theIdleTrimReleasesOnceAfterEachBurst() async throws {
        let requests = Mutex(0)
        let releases = Mutex(0)
        let timer = MemoryTuning.trimWhenIdle(
            every: .milliseconds(250), activity: { requests.withLock { $0 } },
            release: { releases.withLock { $0 += 1 } })
        defer { timer.cancel() }
        func burst() async throws {
            // A request every 2 ms for 0.8 s: three ticks or more, each seeing new requests.
            let clock = ContinuousClock()
            let end = clock.now + .milliseconds(800)
            while clock.now < end {
                requests.withLock { $0 += 1 }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        try await Task.sleep(for: .milliseconds(600))
        #expect(releases.withLock { $0 } == 0)
        try await burst()
        #expect(releases.withLock { $0 } == 0)
        try await Task.sleep(for: .milliseconds(1000))
        #expect(releases.withLock { $0 } == 1)
        try await burst()
        try await Task.sleep(for: .milliseconds(1000))
        #expect(releases.withLock { $0 } == 2)
    }
}
