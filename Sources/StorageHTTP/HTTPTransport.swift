// HTTPTransport: the one place requests go out. A small protocol so that auth flows, retries and
// reply parsing are tested against scripted replies, without a network; `AHCTransport` is the
// real one over async-http-client.

import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import ObjectStorage
import Synchronization

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?
    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
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

/// A transport failure below HTTP (connection refused or reset, timeout, TLS).
public struct TransportError: Error, CustomStringConvertible {
    public var description: String
}

public final class AHCTransport: HTTPTransport {
    let client: HTTPClient
    let timeout: TimeAmount
    let maxBody: Int

    /// Redirects are not followed: the Hubic grant needs to read a 302's Location, and no
    /// storage API redirects.
    public init(timeout: Duration = .seconds(120), maxBody: Int = 256 << 20) {
        var config = HTTPClient.Configuration()
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let c = timeout.components
        self.timeout = .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
        self.maxBody = maxBody
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
        } else if request.method == "PUT" || request.method == "POST" {
            r.headers.replaceOrAdd(name: "Content-Length", value: "0")
        }
        do {
            let response = try await client.execute(r, timeout: timeout)
            var buffer = try await response.body.collect(upTo: maxBody)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            return HTTPResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: bytes)
        } catch let e as HTTPClientError {
            throw TransportError(description: "\(e)")
        } catch let e as IOError {
            throw TransportError(description: "\(e)")
        } catch let e as ChannelError {
            throw TransportError(description: "\(e)")
        }
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
        return handler(request, n)
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
