// How many metadata HEADs go at once: the AdaptiveWidth's rounds, and the limiter it resizes.

import Synchronization
import Testing

@testable import ObjectFS

@Suite struct AdaptiveWidthTests {
    @Test func answersAsQuickAsTheQuickestDoubleTheWidthUpToTheMaximum() {
        var w = AdaptiveWidth(start: 32, range: 16...128)
        var widths: [Int] = []
        for _ in 0..<400 {
            if let n = w.record(nanoseconds: 20_000_000) { widths.append(n) }
        }
        #expect(widths == [64, 128])
        #expect(w.width == 128)
    }

    @Test func answersSlowedByAQueueShrinkTheWidthDownToTheMinimum() {
        var w = AdaptiveWidth(start: 32, range: 16...128)
        for _ in 0..<32 { _ = w.record(nanoseconds: 300_000) }  // a near server, no queue: 64
        #expect(w.width == 64)
        // Then every answer waits 20 ms in a queue: a quarter less each round, to 16.
        var widths: [Int] = []
        for _ in 0..<400 {
            if let n = w.record(nanoseconds: 20_000_000) { widths.append(n) }
        }
        #expect(widths == [48, 36, 27, 20, 16])
        // Answers in between (2x to 4x the quickest plus slack) keep the width.
        for _ in 0..<100 { #expect(w.record(nanoseconds: 3_000_000) == nil) }
        #expect(w.width == 16)
    }

    @Test func aLimiterResizedNarrowerLetsNobodyInUntilHoldersLeave() async {
        let limiter = AsyncLimiter(limit: 2)
        await limiter.acquire()
        await limiter.acquire()
        await limiter.resize(from: 2, to: 1)
        let entered = Mutex(false)
        let waiter = Task {
            await limiter.acquire()
            entered.withLock { $0 = true }
        }
        while await limiter.waiters.isEmpty { await Task.yield() }
        await limiter.release()  // one holder left: still at the new limit of 1
        try? await Task.sleep(for: .milliseconds(50))
        #expect(entered.withLock { $0 } == false)
        await limiter.release()
        await waiter.value
        #expect(entered.withLock { $0 })
        // Wider: a waiter gets in at once.
        let second = Task { await limiter.acquire() }
        while await limiter.waiters.isEmpty { await Task.yield() }
        await limiter.resize(from: 1, to: 2)
        await second.value
        #expect(await limiter.available == 0)
    }
}
