// HTTPTransport: the one place requests go out. A small protocol so that auth flows, retries and
// reply parsing are tested against scripted replies, without a network; `AHCTransport` is the
// real one over async-http-client.

import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?
    /// A body streamed from a region of a local file as it is sent (upload parts, staged
    /// files): never held whole in memory. `body` is `nil` then.
    public var file: FileRegion?
    /// Where a successful reply's body goes as it arrives; the response's `body` is then empty
    /// (error replies are collected as usual, to be parsed).
    public var stream: ResponseStream?
    public init(
        method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil, file: FileRegion? = nil,
        stream: ResponseStream? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.file = file
        self.stream = stream
    }
}

/// A GET body streamed to a sink. A retry after the body broke off resumes where it stopped:
/// the driver asks for the rest of the range (`resumeRangeHeader`), the sink hears where it
/// starts.
public struct ResponseStream: Sendable {
    public var sink: any BodySink
    /// The range the request asked for (`nil`: the whole object): a server that ignores it (a
    /// 200 with the whole object) has its body cut down to it.
    public var range: ByteRange?
    private let progress = Progress()

    public init(sink: any BodySink, range: ByteRange?) {
        self.sink = sink
        self.range = range
    }

    /// Bytes of the range handed to the sink so far, over all attempts.
    final class Progress: Sendable {
        let delivered = Mutex<Int64>(0)
    }

    public var delivered: Int64 { progress.delivered.withLock { $0 } }

    /// The Range header for the next attempt when an earlier one delivered part of the body;
    /// `nil`: send the request as it is.
    public var resumeRangeHeader: String? {
        let done = delivered
        guard done > 0 else { return nil }
        if let range { return ByteRange(offset: range.offset + done, length: range.length - done).rangeHeader }
        return "bytes=\(done)-"
    }

    /// Whether a reply with `status` goes to the sink.
    static func takes(_ status: Int) -> Bool { (200..<300).contains(status) }

    /// One attempt's body on its way to the sink: what to skip at its start (a 200 carries the
    /// whole object) and how much to keep.
    struct Cut {
        var skip: Int64
        var keep: Int64?

        /// The part of `count` next bytes that goes to the sink.
        mutating func take(_ count: Int) -> Range<Int> {
            let from = Int(min(Int64(count), skip))
            skip -= Int64(from)
            var to = count
            if let left = keep {
                to = from + Int(min(Int64(to - from), left))
                keep = left - Int64(to - from)
            }
            return from..<to
        }
    }

    /// Starts an attempt's body (with `status`): tells the sink where in the range it starts.
    func start(status: Int) -> Cut {
        let done = delivered
        sink.begin(at: done)
        guard status == 200 else { return Cut(skip: 0, keep: nil) }
        // A 200 is the whole object, whatever was asked.
        if let range { return Cut(skip: range.offset + done, keep: range.length - done) }
        return Cut(skip: done, keep: nil)
    }

    /// Hands `bytes` (a piece of the body, already cut) to the sink.
    func append(_ bytes: UnsafeRawBufferPointer) {
        sink.append(bytes)
        progress.delivered.withLock { $0 += Int64(bytes.count) }
    }
}

extension HTTPTransport {
    /// Sends a reply collected whole to `request.stream` (transports that cannot stream).
    public func deliver(_ response: HTTPResponse, of request: HTTPRequest) async -> HTTPResponse {
        guard let stream = request.stream, ResponseStream.takes(response.status) else { return response }
        var cut = stream.start(status: response.status)
        let part = cut.take(response.body.count)
        response.body.withUnsafeBytes { stream.append(UnsafeRawBufferPointer(rebasing: $0[part])) }
        await stream.sink.drain()
        var r = response
        r.body = []
        return r
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// An earlier try of this request went out and got no answer, or one that was tried again:
    /// the server may have done what it asked (a conditional PUT may find its own object).
    public var retried = false
    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
}

/// A transport failure below HTTP (connection refused or reset, timeout, TLS), with the server
/// it concerns. Its description is one line a user can act on, e.g.
/// `cannot connect to http://127.0.0.1:9: connection refused`.
public struct TransportError: Error, CustomStringConvertible, Hashable, Sendable {
    public enum Kind: Sendable, Hashable {
        /// Nothing listens at the address (ECONNREFUSED).
        case connectionRefused
        /// The host name does not resolve.
        case hostNotFound
        /// No route to the host or its network.
        case unreachable
        /// Connecting or waiting for the reply took too long.
        case timedOut
        /// The connection was reset or closed before the reply was complete.
        case connectionLost
        /// The TLS handshake failed (certificate, protocol).
        case tls
        case other
    }

    public var kind: Kind
    /// `scheme://host[:port]` of the request.
    public var server: String
    /// What the layer below said, where the kind alone does not tell enough.
    public var detail: String

    public init(kind: Kind, server: String, detail: String = "") {
        self.kind = kind
        self.server = server
        self.detail = detail
    }

    /// The start of the description of a server that could not be reached at all.
    public static let cannotConnect = "cannot connect to "

    /// Nothing was sent: the server cannot be reached at all (refused, unknown host, no route).
    /// Worth retrying while mounted (a server restarting), not at the first contact (a wrong
    /// endpoint or a server that is down).
    public var isUnreachable: Bool { kind == .connectionRefused || kind == .hostNotFound || kind == .unreachable }

    public var description: String {
        switch kind {
        case .connectionRefused: Self.cannotConnect + "\(server): connection refused"
        case .hostNotFound: Self.cannotConnect + "\(server): host not found"
        case .unreachable: Self.cannotConnect + "\(server): no route to host"
        case .timedOut: "\(server) did not answer in time"
        case .connectionLost: "connection to \(server) lost" + (detail.isEmpty ? "" : ": " + detail)
        case .tls: "TLS with \(server) failed" + (detail.isEmpty ? "" : ": " + detail)
        case .other: "\(server): " + (detail.isEmpty ? "transport error" : detail)
        }
    }

    /// `scheme://host[:port]` of a URL (the whole text if it has no `://`).
    public static func server(of url: String) -> String {
        guard let end = url.firstRange(of: "://") else { return url }
        let authority = url[end.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        // Credentials in a URL (user:password@host) never go into a message.
        let host = authority.split(separator: "@").last.map(String.init) ?? ""
        return String(url[..<end.upperBound]) + host
    }

    /// The kind of an errno from a socket.
    public static func kind(errno code: Int32) -> Kind {
        switch code {
        case ECONNREFUSED: .connectionRefused
        case ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL: .unreachable
        case ETIMEDOUT: .timedOut
        case ECONNRESET, ECONNABORTED, EPIPE: .connectionLost
        default: .other
        }
    }
}

public final class AHCTransport: HTTPTransport {
    let client: HTTPClient
    let maxBody: Int

    /// Redirects are not followed: the Hubic grant needs to read a 302's Location, and no
    /// storage API redirects. A connection that cannot be made fails the request at once
    /// (async-http-client would try again until its 10 s connect timeout): the drivers retry
    /// by their `RetryPolicy`, which knows whether this is the first contact.
    ///
    /// A request fails when nothing moves for `idleTimeout` — no byte of the reply once the
    /// request is sent (a server that accepts and never answers), no byte of the body sent —
    /// never for taking long while it makes progress (a large part on a slow uplink).
    public init(
        idleTimeout: Duration = .seconds(60), connectTimeout: Duration = .seconds(10), maxBody: Int = 256 << 20
    ) {
        var config = HTTPClient.Configuration()
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        // No spans: with the default (no-op) tracer the client still builds one per request and
        // sets its attributes, about 4 % of the daemon's CPU in a cold `ls -l` (one HEAD a file).
        config.tracing.tracer = nil
        // As many connections as the widest use: metadata HEADs go up to 128 at once to a far
        // server (the callers' own limits bound each kind of request).
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 128)
        config.connectionPool.retryConnectionEstablishment = false
        config.timeout = .init(
            connect: Self.amount(connectTimeout), read: Self.amount(idleTimeout), write: Self.amount(idleTimeout))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.maxBody = maxBody
    }

    static func amount(_ d: Duration) -> TimeAmount {
        let c = d.components
        return .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        var r = HTTPClientRequest(url: request.url)
        r.method = HTTPMethod(rawValue: request.method)
        for (k, v) in request.headers { r.headers.add(name: k, value: v) }
        if let body = request.body {
            r.body = .bytes(ByteBuffer(bytes: body))
        } else if let file = request.file {
            r.body = .stream(FileChunks(file), length: .known(file.length))
        } else if request.method == "PUT" || request.method == "POST" {
            r.headers.replaceOrAdd(name: "Content-Length", value: "0")
        }
        let up = Int64(request.body?.count ?? 0) + (request.file?.length ?? 0)
        TransferCounters.shared.request(sending: up)
        let started = RequestLog.enabled ? ContinuousClock.now : nil
        func logged(_ outcome: @autoclosure () -> String, _ down: Int64 = 0) {
            if let started {
                RequestLog.record(request.method, request.url, outcome: outcome(), since: started, up: up, down: down)
            }
        }
        do {
            // No deadline for the whole request: the idle timeouts above end one that stalls.
            let response = try await client.execute(r, deadline: .distantFuture)
            let status = Int(response.status.code)
            if let stream = request.stream, ResponseStream.takes(status) {
                var cut = stream.start(status: status)
                var down: Int64 = 0
                for try await chunk in response.body {
                    TransferCounters.shared.receive(chunk.readableBytes)
                    down += Int64(chunk.readableBytes)
                    chunk.withUnsafeReadableBytes { raw in
                        stream.append(UnsafeRawBufferPointer(rebasing: raw[cut.take(raw.count)]))
                    }
                    await stream.sink.drain()
                }
                logged("\(status)", down)
                return HTTPResponse(status: status, headers: response.headers.map { ($0.name, $0.value) })
            }
            // The body goes straight into one array of the announced length: no buffer that
            // grows by copying, no second copy (a 4 MiB read-ahead GET holds 4 MiB, not 12). A
            // HEAD's Content-Length is the object's, with no body: nothing to make room for.
            let announced =
                request.method == "HEAD" ? 0 : response.headers.first(name: "Content-Length").flatMap(Int.init) ?? 0
            var bytes: [UInt8] = []
            bytes.reserveCapacity(min(announced, maxBody))
            for try await chunk in response.body {
                guard bytes.count + chunk.readableBytes <= maxBody else {
                    throw TransportError(
                        kind: .other, server: TransportError.server(of: request.url),
                        detail: "a reply body of more than \(maxBody) bytes")
                }
                TransferCounters.shared.receive(chunk.readableBytes)
                chunk.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
            }
            logged("\(status)", Int64(bytes.count))
            return HTTPResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: bytes)
        } catch is CancellationError {
            logged("cancelled")
            throw CancellationError()
        } catch {
            let failure = Self.transportError(error, url: request.url)
            logged("\(failure)")
            throw failure
        }
    }

    /// What async-http-client or NIO threw, as a `TransportError` of the request's server.
    static func transportError(_ error: any Error, url: String) -> TransportError {
        let server = TransportError.server(of: url)
        switch error {
        case let e as TransportError:
            return e
        case let e as NIOConnectionError:
            // Every address tried failed: the first socket error says why; none means DNS.
            for failure in e.connectionErrors {
                if let io = failure.error as? IOError {
                    return TransportError(
                        kind: TransportError.kind(errno: io.errnoCode), server: server, detail: "\(io)")
                }
                if case ChannelError.connectTimeout = failure.error {
                    return TransportError(kind: .timedOut, server: server)
                }
            }
            if e.connectionErrors.isEmpty && (e.dnsAError != nil || e.dnsAAAAError != nil) {
                return TransportError(kind: .hostNotFound, server: server)
            }
            return TransportError(kind: .other, server: server, detail: oneLine(e))
        case let e as IOError:
            return TransportError(kind: TransportError.kind(errno: e.errnoCode), server: server, detail: oneLine(e))
        case let e as HTTPClientError:
            switch e {
            case .connectTimeout, .deadlineExceeded, .readTimeout, .writeTimeout:
                return TransportError(kind: .timedOut, server: server)
            case .remoteConnectionClosed:
                return TransportError(kind: .connectionLost, server: server, detail: "closed by the server")
            default:
                return TransportError(kind: .other, server: server, detail: oneLine(e))
            }
        case let e as ChannelError:
            switch e {
            case .connectTimeout: return TransportError(kind: .timedOut, server: server)
            case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed:
                return TransportError(kind: .connectionLost, server: server, detail: "closed")
            default: return TransportError(kind: .other, server: server, detail: oneLine(e))
            }
        default:
            // NIOSSL's errors (no dependency on it just for their type).
            let kind: TransportError.Kind = String(reflecting: type(of: error)).contains("SSL") ? .tls : .other
            return TransportError(kind: kind, server: server, detail: oneLine(error))
        }
    }

    /// The first line of an error's description.
    static func oneLine(_ error: any Error) -> String {
        String("\(error)".split(whereSeparator: \.isNewline).first ?? "")
    }
}

/// A transport that answers from a function and records every request: how the HTTP drivers'
/// hermetic tests script a server (the `Int` is the request's number, from 1).
public final class ScriptedTransport: HTTPTransport {
    let handler: @Sendable (HTTPRequest, Int) -> HTTPResponse
    let log = Mutex<[HTTPRequest]>([])
    public init(_ handler: @escaping @Sendable (HTTPRequest, Int) -> HTTPResponse) { self.handler = handler }
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let n = log.withLock {
            $0.append(request)
            return $0.count
        }
        var response = handler(request, n)
        // `X-Scripted-Cut: N`: the body breaks off after N bytes, as a connection lost mid-body
        // would (for tests of the resumption).
        if let cut = response.header("X-Scripted-Cut").flatMap(Int.init) {
            response.body = Array(response.body.prefix(cut))
            _ = await deliver(response, of: request)
            throw TransportError(kind: .connectionLost, server: TransportError.server(of: request.url), detail: "cut")
        }
        return await deliver(response, of: request)
    }
    public var requests: [HTTPRequest] { log.withLock { $0 } }
}

extension HTTPRequest {
    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }
}

extension ByteRange {
    /// The `Range` header value of this range (non-empty ranges only).
    public var rangeHeader: String { "bytes=\(offset)-\(end - 1)" }
}

extension HTTPResponse {
    /// The bytes of `range` from a successful GET: the body of a 206, or the part cut out of a
    /// 200 from a server that ignored the Range header.
    public func body(of range: ByteRange?) -> [UInt8] {
        guard status == 200, let range else { return body }
        let start = Int(min(range.offset, Int64(body.count)))
        let end = Int(min(range.end, Int64(body.count)))
        return Array(body[start..<end])
    }
}
