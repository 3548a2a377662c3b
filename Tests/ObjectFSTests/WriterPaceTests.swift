// How many parts go beside a writer: WriterPace's transitions, with made-up sizes and instants.

import Testing

@testable import ObjectFS

@Suite struct WriterPaceTests {
    static let part: Int64 = 16 << 20
    let t0 = ContinuousClock.now

    func at(_ ms: Int) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }

    /// The parts' rate, bytes per second: a local server's.
    static let partRate = 400e6

    @Test func nothingGoesUntilTheWritersPaceAloneIsKnown() {
        var p = WriterPace(partSize: Self.part, size: 100 << 20, at: at(0))
        #expect(p.limit(size: (100 << 20) + Self.part - 1, at: at(10), partRate: Self.partRate, concurrency: 4) == 0)
        #expect(p.alone == nil)
        // A part past the threshold in 16 ms: ~1 GB/s, faster than the parts: one at a time.
        #expect(p.limit(size: (100 << 20) + Self.part, at: at(16), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(p.alone.map { $0 > 1e9 } == true)
    }

    @Test func aWriterNoFasterThanThePartsHasThemSentFourAtATime() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        // 16 MiB in 1 s: 16.8 MB/s.
        #expect(p.limit(size: Self.part, at: at(1000), partRate: Self.partRate, concurrency: 4) == 4)
        // Its pace kept beside the parts: still four.
        #expect(p.limit(size: 3 * Self.part, at: at(3000), partRate: Self.partRate, concurrency: 4) == 4)
        #expect(!p.yielded)
    }

    @Test func aWriterTheFirstPartsSlowDownHasNoMoreSentEarly() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        #expect(p.limit(size: Self.part, at: at(16), partRate: Self.partRate, concurrency: 4) == 1)
        // Two parts' worth in 64 ms with one beside it: half its pace alone. Once may be the
        // writer's own pause: one still goes.
        #expect(p.limit(size: 2 * Self.part, at: at(40), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(p.limit(size: 3 * Self.part, at: at(80), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(!p.yielded)
        // Twice in a row: none from now on.
        #expect(p.limit(size: 5 * Self.part, at: at(144), partRate: Self.partRate, concurrency: 4) == 0)
        #expect(p.yielded)
        // Fast again once none goes: still none (the rest waits for the close).
        #expect(p.limit(size: 10 * Self.part, at: at(200), partRate: Self.partRate, concurrency: 4) == 0)
    }

    @Test func oneSlowWindowBetweenGoodOnesStopsNothing() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        #expect(p.limit(size: Self.part, at: at(16), partRate: Self.partRate, concurrency: 4) == 1)
        // Slow (64 ms for two parts), good (32 ms), slow again: never twice in a row.
        #expect(p.limit(size: 3 * Self.part, at: at(80), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(p.limit(size: 5 * Self.part, at: at(112), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(p.limit(size: 7 * Self.part, at: at(176), partRate: Self.partRate, concurrency: 4) == 1)
        #expect(!p.yielded)
    }

    @Test func aWriterThatKeepsItsPaceKeepsOnePartBesideIt() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        #expect(p.limit(size: Self.part, at: at(16), partRate: Self.partRate, concurrency: 4) == 1)
        var size = Self.part
        var ms = 16
        for _ in 0..<20 {
            // 75 % of its pace alone: above the 70 % below which the parts stop.
            size += Self.part
            ms += 21
            #expect(p.limit(size: size, at: at(ms), partRate: Self.partRate, concurrency: 4) == 1)
        }
        #expect(!p.yielded)
    }

    @Test func aWriterSlowerThanThePartsKeepsThemWhateverItsPace() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        // 16 MiB in 1 s alone (16.8 MB/s), then two parts' worth in 4 s, twice: its own pauses.
        #expect(p.limit(size: Self.part, at: at(1000), partRate: Self.partRate, concurrency: 4) == 4)
        #expect(p.limit(size: 3 * Self.part, at: at(5000), partRate: Self.partRate, concurrency: 4) == 4)
        #expect(p.limit(size: 5 * Self.part, at: at(9000), partRate: Self.partRate, concurrency: 4) == 4)
        #expect(!p.yielded)
    }

    @Test func aWriterSlowedBelowThePartsRateButNotByThemGetsFour() {
        var p = WriterPace(partSize: Self.part, size: 0, at: at(0))
        // Alone: 16 MiB in 500 ms (33.6 MB/s), faster than parts at 20 MB/s: one.
        #expect(p.limit(size: Self.part, at: at(500), partRate: 20e6, concurrency: 4) == 1)
        // Then 2 parts in 1.3 s (25.8 MB/s, 77 % of alone), slower than parts at 30 MB/s: four.
        #expect(p.limit(size: 3 * Self.part, at: at(1800), partRate: 30e6, concurrency: 4) == 4)
        #expect(!p.yielded)
    }
}
