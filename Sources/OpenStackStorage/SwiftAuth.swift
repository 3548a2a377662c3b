// Auth providers turn the user's credentials into a Swift storage URL and token. Each is a
// value with one async `authenticate`; `TokenCache` keeps the result, renews it before it
// expires, and is told when the server says 401 (the storage then re-authenticates once).
// Secrets never appear in errors: messages name the user and the URL only.

import ObjectStorage
import StorageHTTP
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public struct SwiftCredentials: Sendable, Hashable {
    /// `https://host/v1/AUTH_account`
    public var storageURL: String
    public var token: String
    /// Wall-clock expiry if the auth service told it.
    public var expires: Timestamp?

    public init(storageURL: String, token: String, expires: Timestamp?) {
        self.storageURL = storageURL.hasSuffix("/") ? String(storageURL.dropLast()) : storageURL
        self.token = token
        self.expires = expires
    }
}

public enum AuthError: Error, CustomStringConvertible, Equatable {
    /// The service refused the credentials.
    case rejected(String)
    /// The service answered something unusable, or failed below HTTP.
    case failed(String)
    /// The service cannot be reached at all (connection refused, unknown host).
    case unreachable(TransportError)

    public var description: String {
        switch self {
        case .rejected(let why): "authentication rejected: \(why)"
        case .failed(let why): "authentication failed: \(why)"
        case .unreachable(let e): e.description
        }
    }

    var storageError: StorageError {
        switch self {
        case .rejected(let why): .accessDenied(why)
        case .failed(let why): .unavailable(why)
        case .unreachable(let e): .transport(e, request: "authentication")
        }
    }

    /// The error of an auth request to `url` that failed below HTTP.
    static func sending(to url: String, _ error: any Error) -> AuthError {
        if let e = error as? TransportError, e.isUnreachable { return .unreachable(e) }
        return .failed("cannot reach \(url): \(error)")
    }
}

public protocol SwiftAuthenticator: Sendable {
    /// A short description for messages (user and service, never a secret).
    var summary: String { get }
    func authenticate(using transport: any HTTPTransport) async throws(AuthError) -> SwiftCredentials
}

/// Auth v1: tempauth, swauth, Rackspace (`ST_AUTH`, `ST_USER`, `ST_KEY`).
public struct TempAuth: SwiftAuthenticator {
    public var authURL: String
    public var user: String
    public var key: String

    public init(authURL: String, user: String, key: String) {
        self.authURL = authURL
        self.user = user
        self.key = key
    }

    public var summary: String { "user \(user) at \(authURL)" }

    public func authenticate(using transport: any HTTPTransport) async throws(AuthError) -> SwiftCredentials {
        let r: HTTPResponse
        do {
            r = try await transport.send(
                HTTPRequest(method: "GET", url: authURL, headers: [("X-Auth-User", user), ("X-Auth-Key", key)]))
        } catch {
            throw .sending(to: authURL, error)
        }
        if r.status == 401 || r.status == 403 { throw .rejected("wrong user or key for \(summary)") }
        guard (200..<300).contains(r.status) else { throw .failed("\(authURL) answered HTTP \(r.status)") }
        guard let url = r.header("X-Storage-Url"), let token = r.header("X-Auth-Token") ?? r.header("X-Storage-Token")
        else {
            throw .failed("\(authURL) gave no X-Storage-Url / X-Auth-Token")
        }
        var expires: Timestamp? = nil
        if let s = r.header("X-Auth-Token-Expires"), let secs = Int64(s.trimmingWhitespace()) {
            expires = Timestamp(seconds: Timestamp.now().seconds + secs)
        }
        return SwiftCredentials(storageURL: url, token: token, expires: expires)
    }
}

/// A fixed storage URL and token (`--storage-url` + `--auth-token`, or tests).
public struct PresetAuth: SwiftAuthenticator {
    public var credentials: SwiftCredentials
    public init(_ credentials: SwiftCredentials) { self.credentials = credentials }
    public var summary: String { "token for \(credentials.storageURL)" }
    public func authenticate(using transport: any HTTPTransport) async throws(AuthError) -> SwiftCredentials {
        credentials
    }
}

/// Holds the current credentials: one authentication at a time, renewed `margin` seconds before
/// they expire, dropped when the server rejects the token.
public actor TokenCache {
    let authenticator: any SwiftAuthenticator
    let transport: any HTTPTransport
    let margin: Int64
    private var current: SwiftCredentials?
    private var pending: Task<SwiftCredentials, any Error>?
    private(set) var authentications = 0

    public init(authenticator: any SwiftAuthenticator, transport: any HTTPTransport, renewMarginSeconds: Int64 = 300) {
        self.authenticator = authenticator
        self.transport = transport
        self.margin = renewMarginSeconds
    }

    public func credentials() async throws(AuthError) -> SwiftCredentials {
        if let c = current, c.expires.map({ $0.seconds - margin > Timestamp.now().seconds }) ?? true { return c }
        if pending == nil {
            let a = authenticator
            let t = transport
            pending = Task { try await a.authenticate(using: t) }
        }
        let task = pending!
        do {
            let c = try await task.value
            if pending == task { pending = nil }
            current = c
            authentications += 1
            return c
        } catch {
            if pending == task { pending = nil }
            throw (error as? AuthError) ?? .failed("\(error)")
        }
    }

    /// The server said 401 to `token`: forget it (unless a newer one replaced it already).
    public func reject(_ token: String) {
        if current?.token == token { current = nil }
    }
}
