import Synchronization
import Testing

@testable import ObjmountCLI

@Suite struct MemoryTuningTests {
    /// The idle trim gives memory back once after each burst of requests: not before any
    /// request, not while requests keep coming, not again while the mount stays idle. Tick by
    /// tick, so a loaded machine cannot change the answer.
    @Test func theIdleTrimReleasesOnceAfterEachBurst() {
        var idle = IdleTrim(activity: 0)
        // No request yet: idle ticks never trim.
        #expect(idle.tick(activity: 0) == false)
        #expect(idle.tick(activity: 0) == false)
        // A burst: new requests at every tick.
        #expect(idle.tick(activity: 5) == false)
        #expect(idle.tick(activity: 9) == false)
        #expect(idle.tick(activity: 30) == false)
        // The first tick without a request trims, the ones after do not.
        #expect(idle.tick(activity: 30) == true)
        #expect(idle.tick(activity: 30) == false)
        #expect(idle.tick(activity: 30) == false)
        // The next burst, then one trim again.
        #expect(idle.tick(activity: 31) == false)
        #expect(idle.tick(activity: 31) == true)
        #expect(idle.tick(activity: 31) == false)
    }

    /// The timer drives it: after requests stop, a release comes within a few ticks.
    @Test func theTimerReleasesAfterRequestsStop() async throws {
        let requests = Mutex(0)
        let releases = Mutex(0)
        let timer = MemoryTuning.trimWhenIdle(
            every: .milliseconds(50), activity: { requests.withLock { $0 } },
            release: { releases.withLock { $0 += 1 } })
        defer { timer.cancel() }
        requests.withLock { $0 = 1 }
        let clock = ContinuousClock()
        let end = clock.now + .seconds(20)
        while releases.withLock({ $0 }) == 0, clock.now < end {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(releases.withLock { $0 } == 1)
    }
}
