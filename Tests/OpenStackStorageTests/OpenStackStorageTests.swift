// Hermetic tests of the Swift driver: a scripted transport plays the server.

import ObjectStorage
import StorageHTTP
import Synchronization
import Testing

@testable import OpenStackStorage

func header(_ r: HTTPRequest, _ name: String) -> String? { r.header(name) }

let noSleep = RetryPolicy(attempts: 4, sleep: { _ in })
let storageURL = "http://swift.test/v1/AUTH_test"

/// A server with auth v1 at /auth/v1.0 handing out `token-N`, and `object` for the rest.
func server(
    tokenValid: @escaping @Sendable (String) -> Bool = { _ in true },
    object: @escaping @Sendable (HTTPRequest) -> HTTPResponse
) -> ScriptedTransport {
    let issued = Mutex(0)
    return ScriptedTransport { r, _ in
        if r.url.hasSuffix("/auth/v1.0") {
            guard header(r, "X-Auth-Key") == "secret" else { return HTTPResponse(status: 401) }
            let n = issued.withLock {
                $0 += 1; return $0
            }
            return HTTPResponse(
                status: 200,
                headers: [
                    ("X-Storage-Url", storageURL), ("X-Auth-Token", "token-\(n)"), ("X-Auth-Token-Expires", "3600"),
                ])
        }
        if r.url.hasSuffix("/info") {
            return HTTPResponse(
                status: 200, body: Array(#"{"slo":{"max_manifest_segments":1000},"bulk_delete":{}}"#.utf8))
        }
        guard let t = header(r, "X-Auth-Token"), tokenValid(t) else { return HTTPResponse(status: 401) }
        if r.method == "HEAD" && r.url.hasSuffix("/AUTH_test/c") { return HTTPResponse(status: 204) }
        if r.method == "HEAD" && r.url.hasSuffix("/AUTH_test/c_segments") { return HTTPResponse(status: 404) }
        return object(r)
    }
}

func connect(_ t: ScriptedTransport, key: String = "secret") async throws -> OpenStackStorage {
    try await OpenStackStorage.connect(
        container: "c", authenticator: TempAuth(authURL: "http://swift.test/auth/v1.0", user: "test:tester", key: key),
        transport: t, retry: noSleep)
}

@Suite struct SwiftDriverTests {
    @Test func wrongCredentialsAreAccessDeniedWithoutTheKey() async throws {
        let t = server { _ in HTTPResponse(status: 500) }
        do {
            _ = try await connect(t, key: "s3cr3t-42")
            Issue.record("connected")
        } catch let e as StorageError {
            #expect(e.errno == 13)
            #expect(!"\(e)".contains("s3cr3t-42"))
            #expect("\(e)".contains("test:tester"))
        }
    }

    @Test func aRejectedTokenIsRenewedOnce() async throws {
        // Only the second token is accepted: the first request gets 401, then succeeds.
        let t = server(tokenValid: { $0 == "token-2" }) { r in
            HTTPResponse(status: 200, headers: [("Content-Length", "3"), ("ETag", "\"abc\"")], body: Array("hey".utf8))
        }
        let s = try await connect(t)
        #expect(try await s.get("k", range: nil, ifMatch: nil) == Array("hey".utf8))
        #expect(t.requests.filter { $0.url.hasSuffix("/auth/v1.0") }.count == 2)
    }

    @Test func aTokenRejectedTwiceIsAnError() async throws {
        let t = server(tokenValid: { $0 == "token-1" }) { _ in HTTPResponse(status: 401) }
        let s = try await connect(t)
        await #expect(throws: StorageError.self) { try await s.head("k") }
    }

    @Test func serverErrorsAreRetriedThenReported() async throws {
        let calls = Mutex(0)
        let t = server { r in
            let n = calls.withLock {
                $0 += 1; return $0
            }
            return n < 3 ? HTTPResponse(status: 503) : HTTPResponse(status: 200, headers: [("Content-Length", "0")])
        }
        let s = try await connect(t)
        _ = try await s.head("k")
        #expect(calls.withLock { $0 } == 3)
        let always = server { _ in HTTPResponse(status: 503) }
        let s2 = try await connect(always)
        do {
            _ = try await s2.head("k")
            Issue.record("no error")
        } catch let e as StorageError {
            #expect(e.errno == 5)
        }
    }

    @Test func clientErrorsAreNotRetried() async throws {
        let calls = Mutex(0)
        let t = server { _ in
            calls.withLock { $0 += 1 }; return HTTPResponse(status: 404)
        }
        let s = try await connect(t)
        await #expect(throws: StorageError.notFound("k")) { try await s.head("k") }
        #expect(calls.withLock { $0 } == 1)
    }

    @Test func listingsPageWithMarker() async throws {
        let t = server { r in
            let marker = r.url.components(after: "marker=")
            let names = marker == nil ? ["a", "b/"] : ["c"]
            var json = names.map {
                $0.hasSuffix("/")
                    ? #"{"subdir":"\#($0)"}"#
                    : #"{"name":"\#($0)","bytes":1,"hash":"h","last_modified":"2024-05-06T07:08:09.123456","content_type":"text/plain"}"#
            }
            if marker != nil { json = [json[0]] }
            return HTTPResponse(status: 200, body: Array("[\(json.joined(separator: ","))]".utf8))
        }
        let s = try await connect(t)
        let first = try await s.list(prefix: "", delimiter: "/", continuation: nil, maxKeys: 2)
        #expect(first.objects.map(\.key) == ["a"])
        #expect(first.commonPrefixes == ["b/"])
        #expect(first.continuation == "b/")
        #expect(first.objects[0].lastModified == Timestamp(seconds: 1_714_979_289, nanoseconds: 123_456_000))
        let second = try await s.list(prefix: "", delimiter: "/", continuation: first.continuation, maxKeys: 2)
        #expect(second.objects.map(\.key) == ["c"] && second.continuation == nil)
        let listing = t.requests.last!.url
        #expect(listing.contains("format=json") && listing.contains("marker=b%2F") && listing.contains("delimiter=%2F"))
    }

    @Test func putSendsTheMD5AndMetadata() async throws {
        let t = server { r in HTTPResponse(status: r.method == "PUT" ? 201 : 404) }
        let s = try await connect(t)
        _ = try await s.put(
            "dir/a b.txt", payload: .bytes(Array("hello".utf8)),
            options: PutOptions(metadata: ["mtime": "1700000000.5"]))
        let put = t.requests.last!
        #expect(put.url == storageURL + "/c/dir/a%20b.txt")
        #expect(header(put, "ETag") == "5d41402abc4b2a76b9719d911017c592")
        #expect(header(put, "X-Object-Meta-Mtime") == "1700000000.5")
    }

    /// A conditional PUT sent again after a 503 that finds an object with its own size and MD5
    /// (its first try was stored) succeeds; one that finds other bytes is a conflict.
    @Test func aRetriedConditionalPutThatFindsItsOwnObjectSucceeds() async throws {
        let md5OfHello = "5d41402abc4b2a76b9719d911017c592"
        for (stored, ours) in [(md5OfHello, true), ("0123456789abcdef0123456789abcdef", false)] {
            let puts = Mutex(0)
            let t = server { r in
                if r.method == "HEAD" {
                    return HTTPResponse(status: 200, headers: [("Content-Length", "5"), ("Etag", stored)])
                }
                let n = puts.withLock {
                    $0 += 1; return $0
                }
                #expect(header(r, "If-None-Match") == "*")
                return HTTPResponse(status: n == 1 ? 503 : 412)
            }
            let s = try await connect(t)
            let put = {
                try await s.put("k", payload: .bytes(Array("hello".utf8)), options: PutOptions(ifAbsent: true))
            }
            if ours {
                #expect(try await put().etag == ETag(md5OfHello))
            } else {
                await #expect(throws: StorageError.preconditionFailed("k")) { try await put() }
            }
        }
    }

    @Test func rangedReadsAskForTheRangeAndTheVersion() async throws {
        let t = server { r in HTTPResponse(status: 206, body: Array("wor".utf8)) }
        let s = try await connect(t)
        #expect(try await s.get("k", range: ByteRange(offset: 6, length: 3), ifMatch: ETag("e1")) == Array("wor".utf8))
        let get = t.requests.last!
        #expect(header(get, "Range") == "bytes=6-8")
        #expect(header(get, "If-Match") == "\"e1\"")
    }

    @Test func aStreamedRangedReadGoesToTheSink() async throws {
        let t = server { _ in HTTPResponse(status: 206, body: Array("wor".utf8)) }
        let s = try await connect(t)
        let sink = Collected()
        try await s.get("k", range: ByteRange(offset: 6, length: 3), ifMatch: ETag("e1"), into: sink)
        #expect(sink.bytes.withLock { $0 } == Array("wor".utf8))
        #expect(header(t.requests.last!, "Range") == "bytes=6-8")
        #expect(header(t.requests.last!, "If-Match") == "\"e1\"")
    }

    @Test func aBrokenOffBodyIsResumedWhereItStopped() async throws {
        let t = server { r in
            r.header("Range") == "bytes=6-8"
                ? HTTPResponse(status: 206, headers: [("X-Scripted-Cut", "1")], body: Array("wor".utf8))
                : HTTPResponse(status: 206, body: Array("or".utf8))
        }
        let s = try await connect(t)
        let sink = Collected()
        try await s.get("k", range: ByteRange(offset: 6, length: 3), ifMatch: nil, into: sink)
        #expect(sink.bytes.withLock { $0 } == Array("wor".utf8))
        #expect(header(t.requests.last!, "Range") == "bytes=7-8")
    }

    @Test func headReadsMetadataAndHubicMtime() async throws {
        let t = server { _ in
            HTTPResponse(
                status: 200,
                headers: [
                    ("Content-Length", "12"), ("ETag", "\"abc\""), ("X-Timestamp", "1700000000.25"),
                    ("Content-Type", "text/plain"), ("X-Object-Meta-Hubiclocallastmodified", "2015-11-09T14:24:56"),
                    ("X-Object-Meta-Mode", "33188"),
                ])
        }
        let s = try await connect(t)
        let info = try await s.head("k")
        #expect(info.size == 12 && info.etag == ETag("abc") && info.contentType == "text/plain")
        #expect(info.lastModified == Timestamp(seconds: 1_700_000_000, nanoseconds: 250_000_000))
        #expect(info.metadata?["mode"] == "33188")
        #expect(info.metadata?["mtime"] == "1447079096")
    }

    @Test func quotaComesFromTheHeadersTheServersUse() async throws {
        let t = server { _ in
            HTTPResponse(
                status: 204,
                headers: [
                    ("X-Account-Bytes-Used", "100"), ("X-Account-Object-Count", "3"), ("X-Account-Meta-Quota", "1000"),
                ])
        }
        let s = try await connect(t)
        #expect(try await s.accountInfo() == AccountInfo(bytesUsed: 100, objectCount: 3, quotaBytes: 1000))
    }
}

@Suite struct SwiftParsingTests {
    @Test(arguments: [
        ("1970-01-01T00:00:00", Timestamp(seconds: 0)),
        ("2014-01-15T16:41:49.390270", Timestamp(seconds: 1_389_804_109, nanoseconds: 390_270_000)),
        ("2015-11-09T14:24:56+01:00", Timestamp(seconds: 1_447_075_496)),
        ("2015-11-09T14:24:56Z", Timestamp(seconds: 1_447_079_096)),
    ])
    func listingTimes(_ text: String, _ expected: Timestamp) {
        #expect(HTTPDate.parseISO8601(text) == expected)
    }

    @Test func urlEncodingKeepsSlashesInPathsOnly() {
        #expect(URLEncoding.encode("a b/ü?", keepSlash: true) == "a%20b/%C3%BC%3F")
        #expect(URLEncoding.encode("a/b") == "a%2Fb")
        #expect(URLEncoding.decodeForm("a%2Fb+c") == "a/b c")
    }

    /// A segment path splits at the first "/" byte, also where the "/" and a combining mark that
    /// follows it are one `Character` (a key starting with the mark).
    @Test func segmentPathsSplitAtTheFirstSlashByte() {
        let split = OpenStackStorage.splitContainer("c_segments/\u{301}x/slo/1/")
        #expect(split.map { Array($0.container.utf8) } == Array("c_segments".utf8))
        #expect(split.map { Array($0.name.utf8) } == Array("\u{301}x/slo/1/".utf8))
        #expect(OpenStackStorage.splitContainer("c") == nil)
        #expect(OpenStackStorage.splitContainer("/x") == nil)
        #expect(OpenStackStorage.splitContainer("c/") == nil)
    }

    @Test func retryDelaysGrowAndStayCapped() {
        let p = RetryPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        for attempt in 1...10 {
            let d = p.delay(before: attempt)
            #expect(d <= .seconds(1) && d >= .milliseconds(50))
        }
        #expect(RetryPolicy.isRetryable(status: 503) && RetryPolicy.isRetryable(status: 429))
        #expect(!RetryPolicy.isRetryable(status: 404) && !RetryPolicy.isRetryable(status: 403))
        #expect(!RetryPolicy.isRetryable(status: 501))  // Not Implemented: never will be
    }
}

extension String {
    func components(after marker: String) -> String? {
        guard let r = firstRange(of: marker) else { return nil }
        return String(self[r.upperBound...].prefix { $0 != "&" })
    }
}

@Suite struct KeystoneAndHubicParsingTests {
    static let catalog = Array(
        """
        {"token":{"expires_at":"2030-01-02T03:04:05.000000Z","catalog":[
          {"type":"identity","endpoints":[{"interface":"public","region_id":"GRA","url":"https://auth/v3"}]},
          {"type":"object-store","name":"swift","endpoints":[
            {"interface":"internal","region_id":"GRA","url":"https://internal.gra/v1/AUTH_p"},
            {"interface":"public","region_id":"SBG","url":"https://sbg/v1/AUTH_p"},
            {"interface":"public","region_id":"GRA","url":"https://gra/v1/AUTH_p"}]}]}}
        """.utf8)

    @Test func theEndpointIsPublicObjectStoreInTheRegion() throws {
        let c = try KeystoneV3Auth.credentials(token: "tok", body: Self.catalog, region: "GRA", interface: "public")
        #expect(c.storageURL == "https://gra/v1/AUTH_p" && c.token == "tok")
        #expect(c.expires == Timestamp(seconds: 1_893_553_445))
        #expect(throws: AuthError.self) {
            try KeystoneV3Auth.credentials(token: "tok", body: Self.catalog, region: "BHS", interface: "public")
        }
    }

    @Test func keystoneAuthPostsThePasswordAndReadsTheSubjectToken() async throws {
        let t = ScriptedTransport { r, _ in
            HTTPResponse(
                status: r.url.hasSuffix("/v3/auth/tokens") ? 201 : 404, headers: [("X-Subject-Token", "subject")],
                body: KeystoneAndHubicParsingTests.catalog)
        }
        let auth = KeystoneV3Auth(
            authURL: "https://auth.example/v3/", username: "u", password: "p", projectName: "proj", projectID: nil,
            region: "SBG")
        let c = try await auth.authenticate(using: t)
        #expect(c.storageURL == "https://sbg/v1/AUTH_p" && c.token == "subject")
        let body = String(decoding: t.requests[0].body ?? [], as: UTF8.self)
        #expect(body.contains("\"password\"") && body.contains("\"proj\""))
    }

    @Test func hubicPageAndRedirectParsing() {
        let page =
            #"<form><input type="hidden" name="oauth" value="123456"><input type="hidden" name="action" value="accepted"></form>"#
        #expect(HubicAuth.hiddenOAuthField(page) == "123456")
        #expect(HubicAuth.hiddenOAuthField("<html></html>") == nil)
        #expect(HubicAuth.queryValue("code", in: "http://localhost/?code=ab%2Fc&scope=x") == "ab/c")
    }
}

@Suite struct SwiftAbilityTests {
    @Test func aTempURLComesThroughThePresigningProtocol() async throws {
        let t = server { r in
            if r.method == "HEAD" && r.url.hasSuffix("/AUTH_test") {
                return HTTPResponse(status: 204, headers: [("X-Account-Meta-Temp-URL-Key", "k")])
            }
            return HTTPResponse(status: 404)
        }
        let presigner: any PresigningStorage = try await connect(t)
        let before = Timestamp.now().seconds
        let url = try await presigner.presignedURL(for: "a b.txt", expiresIn: 600)
        #expect(url.hasPrefix("http://swift.test/v1/AUTH_test/c/a%20b.txt?temp_url_sig="))
        let expires = try #require(url.split(separator: "=").last.flatMap { Int64($0) })
        #expect(expires >= before + 600 && expires <= Timestamp.now().seconds + 600)
    }

    @Test func anUnreachableAuthServiceFailsTheFirstContactAtOnce() async throws {
        let count = Mutex(0)
        let failing = ClosureTransport { _ in
            count.withLock { $0 += 1 }
            throw TransportError(kind: .connectionRefused, server: "http://swift.test")
        }
        await #expect(throws: StorageError.unavailable("cannot connect to http://swift.test: connection refused")) {
            _ = try await OpenStackStorage.connect(
                container: "c", authenticator: TempAuth(authURL: "http://swift.test/auth/v1.0", user: "u", key: "k"),
                transport: failing, retry: noSleep)
        }
        #expect(count.withLock { $0 } == 1)
    }

    @Test func onceMountedAnUnreachableAuthServiceIsWaitedFor() async throws {
        // Connected; then the token is rejected and the auth service refuses connections twice.
        let mounted = Mutex(false)
        let authCalls = Mutex(0)
        let inner = server(tokenValid: { $0 != "token-1" || !mounted.withLock { $0 } }) { _ in
            HTTPResponse(status: 200, headers: [("Content-Length", "2")], body: Array("ok".utf8))
        }
        let transport = ClosureTransport { r in
            if r.url.hasSuffix("/auth/v1.0") {
                let n = authCalls.withLock {
                    $0 += 1
                    return $0
                }
                if n == 2 || n == 3 { throw TransportError(kind: .connectionRefused, server: "http://swift.test") }
            }
            return try await inner.send(r)
        }
        let s = try await OpenStackStorage.connect(
            container: "c",
            authenticator: TempAuth(authURL: "http://swift.test/auth/v1.0", user: "test:tester", key: "secret"),
            transport: transport, retry: noSleep)
        mounted.withLock { $0 = true }
        #expect(try await s.get("k", range: nil, ifMatch: nil) == Array("ok".utf8))
        #expect(authCalls.withLock { $0 } == 4)
    }
}

/// A transport that answers with a function, which may throw.
final class ClosureTransport: HTTPTransport {
    let body: @Sendable (HTTPRequest) async throws -> HTTPResponse
    init(_ body: @escaping @Sendable (HTTPRequest) async throws -> HTTPResponse) { self.body = body }
    func send(_ request: HTTPRequest) async throws -> HTTPResponse { try await body(request) }
}

final class Collected: BodySink {
    let bytes = Mutex<[UInt8]>([])
    func begin(at: Int64) { bytes.withLock { $0.removeLast($0.count - Int(at)) } }
    func append(_ chunk: UnsafeRawBufferPointer) { bytes.withLock { $0 += chunk } }
    func drain() async {}
}
