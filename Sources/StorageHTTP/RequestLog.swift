// RequestLog: a line per HTTP request for `--log-level debug` — method, URL, status, time and
// bytes — with nothing that authenticates: no headers, no bodies, and the value of every query
// parameter not known to be harmless replaced by "…" (presigned URLs carry their signature,
// credential and token there). Off unless a sink is set; then one atomic load per request.

import Synchronization

public enum RequestLog {
    private static let sink = Mutex<(@Sendable (String) -> Void)?>(nil)
    private static let on = Atomic<Bool>(false)

    /// Sends a line per request to `sink` from now on (nil: stops).
    public static func send(to sink: (@Sendable (String) -> Void)?) {
        self.sink.withLock { $0 = sink }
        on.store(sink != nil, ordering: .releasing)
    }

    static var enabled: Bool { on.load(ordering: .acquiring) }

    static func record(
        _ method: String, _ url: String, outcome: String, since start: ContinuousClock.Instant, up: Int64, down: Int64
    ) {
        guard let sink = sink.withLock({ $0 }) else { return }
        let elapsed = ContinuousClock.now - start
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        sink("http: \(method) \(redacted(url)) -> \(outcome) in \(ms) ms, \(up) bytes up, \(down) down")
    }

    /// Query parameters whose values name what is asked for (listing position, upload part),
    /// never who asks: their values are kept in the log.
    static let harmless: Set<String> = [
        "prefix", "delimiter", "marker", "end_marker", "limit", "format", "max-keys", "list-type",
        "continuation-token", "start-after", "encoding-type", "fetch-owner", "uploads", "uploadid", "partnumber",
        "part-number-marker", "key-marker", "upload-id-marker", "max-uploads", "max-parts", "delete",
        "multipart-manifest", "versionid", "versioning", "acl", "location", "path", "bulk-delete",
        "symlink", "response-content-type",
    ]

    /// `url` with the value of each query parameter not in `harmless` replaced by "…".
    public static func redacted(_ url: String) -> String {
        guard let q = url.firstIndex(of: "?") else { return url }
        let query = url[url.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map {
            pair -> String in
            guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
            let name = pair[..<eq]
            return harmless.contains(name.lowercased()) ? String(pair) : name + "=…"
        }
        return url[...q] + query.joined(separator: "&")
    }
}
