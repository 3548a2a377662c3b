// AdaptiveWidth: how many metadata HEADs to keep in flight. A far server answers 16 HEADs in
// the time a near one answers hundreds, so a fixed width is too narrow for one or too wide for
// the other. The width starts at `start` and is judged once per round (as many answers as the
// width): while answers take about as long as the quickest one seen (the server's round trip
// without a queue), it doubles; when they take several times that (requests queue at the
// server, or at this machine's CPU), it shrinks by a quarter. Never outside `range`.

struct AdaptiveWidth {
    let range: ClosedRange<Int>
    private(set) var width: Int
    /// The quickest answer seen, in nanoseconds.
    private var quickest: Int64 = .max
    private var roundTotal: Int64 = 0
    private var roundCount = 0
    /// Slack added to both bounds, so that a few hundred microseconds of jitter on a near
    /// server do not read as a queue.
    static let slack: Int64 = 1_000_000

    init(start: Int, range: ClosedRange<Int>) {
        self.range = range
        width = min(range.upperBound, max(range.lowerBound, start))
    }

    /// Records how long one request took; returns the new width when this answer ends a round
    /// that changed it.
    mutating func record(nanoseconds: Int64) -> Int? {
        let took = max(0, nanoseconds)
        quickest = min(quickest, took)
        roundTotal += took
        roundCount += 1
        guard roundCount >= width else { return nil }
        let mean = roundTotal / Int64(roundCount)
        roundTotal = 0
        roundCount = 0
        let old = width
        if mean <= 2 * quickest + Self.slack {
            width = min(range.upperBound, width * 2)
        } else if mean > 4 * quickest + 4 * Self.slack {
            width = max(range.lowerBound, width * 3 / 4)
        }
        return width == old ? nil : width
    }
}
