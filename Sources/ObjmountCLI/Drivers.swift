// Building the storage of a remote: which driver, and where its credentials come from (the
// places their users already keep them: python-swiftclient's ST_* variables, or flags).

import MemoryStorage
import ObjectStorage
import OpenStackStorage
import S3Storage
import StorageHTTP

/// How a swift:// or hubic:// mount authenticates, from flags and the environment.
enum SwiftAuthSettings: Sendable {
    /// Auth v1 (`ST_AUTH`, `ST_USER`, `ST_KEY`, as python-swiftclient reads them).
    case v1(authURL: String, user: String, key: String)
    /// Keystone v3 (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME` or
    /// `OS_PROJECT_ID`, `OS_USER_DOMAIN_NAME`, `OS_PROJECT_DOMAIN_NAME`, `OS_REGION_NAME`).
    case keystone(KeystoneV3Auth)
    /// Hubic (`HUBIC_CLIENT_ID`, `HUBIC_CLIENT_SECRET`, and `HUBIC_REFRESH_TOKEN` or
    /// `HUBIC_USERNAME` + `HUBIC_PASSWORD`; `HUBIC_API_URL`, `HUBIC_REDIRECT_URI`).
    case hubic(
        apiURL: String, clientID: String, clientSecret: String, refreshToken: String?, username: String?,
        password: String?, redirectURI: String)

    var authenticator: any SwiftAuthenticator {
        switch self {
        case .v1(let url, let user, let key): TempAuth(authURL: url, user: user, key: key)
        case .keystone(let k): k
        case .hubic(let api, let id, let secret, let refresh, let user, let password, let redirect):
            HubicAuth(
                apiURL: api, clientID: id, clientSecret: secret, refreshToken: refresh, username: user,
                password: password, redirectURI: redirect)
        }
    }

    static func hubic() throws(CLIError) -> SwiftAuthSettings {
        let e = Paths.environment
        guard let id = e("HUBIC_CLIENT_ID"), let secret = e("HUBIC_CLIENT_SECRET") else {
            throw CLIError("hubic:// needs HUBIC_CLIENT_ID and HUBIC_CLIENT_SECRET (your Hubic application)")
        }
        let refresh = e("HUBIC_REFRESH_TOKEN") ?? HubicLogin.storedRefreshToken()
        let user = e("HUBIC_USERNAME")
        let password = e("HUBIC_PASSWORD")
        guard refresh != nil || (user != nil && password != nil) else {
            throw CLIError(
                "hubic:// needs HUBIC_REFRESH_TOKEN, or HUBIC_USERNAME and HUBIC_PASSWORD (or run: objmount login hubic)"
            )
        }
        return .hubic(
            apiURL: e("HUBIC_API_URL") ?? "https://api.hubic.com", clientID: id, clientSecret: secret,
            refreshToken: refresh,
            username: user, password: password, redirectURI: e("HUBIC_REDIRECT_URI") ?? "http://localhost/")
    }

    /// Flags and ST_* win; OS_* (Keystone v3) are used when no auth v1 URL is given. A missing
    /// piece is one clear error naming both places.
    static func resolve(authURL: String?, user: String?, key: String?) throws(CLIError) -> SwiftAuthSettings {
        let e = Paths.environment
        if authURL == nil && e("ST_AUTH") == nil, let os = e("OS_AUTH_URL") {
            guard let u = e("OS_USERNAME"), let p = e("OS_PASSWORD") else {
                throw CLIError("Keystone auth (OS_AUTH_URL) needs OS_USERNAME and OS_PASSWORD")
            }
            guard e("OS_PROJECT_NAME") ?? e("OS_TENANT_NAME") ?? e("OS_PROJECT_ID") != nil else {
                throw CLIError("Keystone auth (OS_AUTH_URL) needs OS_PROJECT_NAME or OS_PROJECT_ID")
            }
            return .keystone(
                KeystoneV3Auth(
                    authURL: os, username: u, password: p, projectName: e("OS_PROJECT_NAME") ?? e("OS_TENANT_NAME"),
                    projectID: e("OS_PROJECT_ID"), userDomain: e("OS_USER_DOMAIN_NAME") ?? "Default",
                    projectDomain: e("OS_PROJECT_DOMAIN_NAME") ?? "Default", region: e("OS_REGION_NAME"),
                    interface: e("OS_INTERFACE") ?? "public"))
        }
        let url = authURL ?? Paths.environment("ST_AUTH")
        let u = user ?? Paths.environment("ST_USER")
        let k = key ?? Paths.environment("ST_KEY")
        var missing: [String] = []
        if url == nil { missing.append("ST_AUTH (--auth-url)") }
        if u == nil { missing.append("ST_USER (--user)") }
        if k == nil { missing.append("ST_KEY (--key)") }
        guard missing.isEmpty else {
            throw CLIError(
                "swift:// needs credentials: set \(missing.joined(separator: ", ")), or OS_AUTH_URL and the OS_* variables"
            )
        }
        return .v1(authURL: url!, user: u!, key: k!)
    }
}

/// What a remote's driver needs, resolved in the command (so that a missing credential is an
/// error before anything starts) and again in the daemon, from the same flags and environment.
enum DriverSettings: Sendable {
    case memory
    case swift(SwiftAuthSettings)
    case s3(S3Settings)

    /// Where the data lives, without secrets: names the remote's block cache.
    var location: String {
        switch self {
        case .memory: "memory"
        case .swift(.v1(let url, let user, _)): "\(url) \(user)"
        case .swift(.keystone(let k)): "\(k.authURL) \(k.projectID ?? k.projectName ?? "") \(k.region ?? "")"
        case .swift(.hubic(let api, let id, _, _, let user, _, _)): "\(api) \(id) \(user ?? "")"
        case .s3(let s): "\(s.endpoint.scheme)://\(s.endpoint.host):\(s.endpoint.port ?? 0) \(s.endpoint.region)"
        }
    }

    static func resolve(
        _ remote: Remote, authURL: String? = nil, user: String? = nil, key: String? = nil,
        address: S3AddressOptions? = nil,
        storageClass: String? = nil
    ) throws(CLIError) -> DriverSettings {
        let endpoint = address?.endpoint
        let region = address?.region
        let pathStyle = address?.pathStyle ?? false
        if storageClass != nil && remote.scheme != .s3 && remote.scheme != .ks3 {
            throw CLIError("--storage-class applies to s3:// and ks3:// remotes only")
        }
        switch remote.scheme {
        case .memory: return .memory
        case .swift: return .swift(try SwiftAuthSettings.resolve(authURL: authURL, user: user, key: key))
        case .hubic: return .swift(try SwiftAuthSettings.hubic())
        case .s3:
            return .s3(
                try S3Settings.s3(endpoint: endpoint, region: region, pathStyle: pathStyle, storageClass: storageClass))
        case .ks3: return .s3(try S3Settings.ks3(endpoint: endpoint, pathStyle: pathStyle, storageClass: storageClass))
        }
    }
}

enum Drivers {
    /// The storage of a remote (memory:// is made by the caller, which may seed it).
    static func open(_ remote: Remote, _ settings: DriverSettings) async throws -> (any ObjectStorage, AHCTransport) {
        let transport = AHCTransport()
        do {
            switch settings {
            case .memory:
                throw StorageError.invalidArgument("memory:// has no driver to open")
            case .swift(let auth):
                if let container = remote.container {
                    let storage = try await OpenStackStorage.connect(
                        container: container, authenticator: auth.authenticator, transport: transport)
                    return (storage, transport)
                }
                return (
                    try await OpenStackAccount.connect(authenticator: auth.authenticator, transport: transport),
                    transport
                )
            case .s3(let s):
                guard let bucket = remote.container else {
                    let account = try await S3Account.connect(
                        provider: s.provider, endpoint: s.endpoint, credentials: s.credentials,
                        storageClass: s.storageClass,
                        transport: transport)
                    return (account, transport)
                }
                let storage = try await S3Storage.connect(
                    bucket: bucket, provider: s.provider, endpoint: s.endpoint, credentials: s.credentials,
                    storageClass: s.storageClass, transport: transport)
                return (storage, transport)
            }
        } catch {
            await transport.shutdown()
            throw error
        }
    }

    /// The one line a failed command on `remote` is reported with: a server that cannot be
    /// reached is named as such (`cannot connect to http://127.0.0.1:9: connection refused`),
    /// anything else says what was done to which remote (`cannot open s3://b: ...`).
    static func failure(of remote: Remote, _ error: any Error, doing what: String? = nil) -> String {
        if case .unavailable(let why)? = error as? StorageError, why.hasPrefix(TransportError.cannotConnect) {
            return why
        }
        let line = "\(error)".split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return (what.map { $0 + " " } ?? "") + "\(remote): " + line
    }

    /// Runs `body` with the presigning ability of a bucket or container remote, then closes its
    /// connections. s3:// and ks3:// sign locally: nothing is sent. swift:// connects (the
    /// TempURL key is the account's).
    static func withPresigner<T: Sendable>(
        _ remote: Remote, _ settings: DriverSettings, _ body: @Sendable (any PresigningStorage) async throws -> T
    ) async throws -> T {
        guard let container = remote.container else {
            throw StorageError.invalidArgument("\(remote) names no bucket or container")
        }
        switch settings {
        case .memory:
            throw StorageError.invalidArgument("memory:// objects live inside one process and have no URL")
        case .s3(let s):
            let transport = AHCTransport()
            let storage = S3Storage(
                bucket: container, provider: s.provider, endpoint: s.endpoint, credentials: s.credentials,
                transport: transport)
            return try await finally(transport) { try await body(storage) }
        case .swift(let auth):
            let transport = AHCTransport()
            return try await finally(transport) {
                try await body(
                    try await OpenStackStorage.connect(
                        container: container, authenticator: auth.authenticator, transport: transport))
            }
        }
    }

    /// Runs `body` with the pending multipart uploads of an s3:// or ks3:// bucket, or the
    /// unused segment sets of a swift:// or hubic:// container (after checking the credentials
    /// and the bucket as `open` does), then closes its connections.
    static func withUploadListing<T: Sendable>(
        _ remote: Remote, _ settings: DriverSettings, _ body: @Sendable (any IncompleteUploadListing) async throws -> T
    ) async throws -> T {
        if case .swift = settings, remote.container != nil {
            let (storage, transport) = try await open(remote, settings)
            return try await finally(transport) {
                guard let listing = storage as? any IncompleteUploadListing else {
                    throw StorageError.invalidArgument("\(remote) keeps no pending uploads")
                }
                return try await body(listing)
            }
        }
        guard case .s3(let s) = settings, let bucket = remote.container else {
            throw StorageError.invalidArgument("\(remote) keeps no pending uploads (only buckets and containers do)")
        }
        let transport = AHCTransport()
        return try await finally(transport) {
            try await body(
                try await S3Storage.connect(
                    bucket: bucket, provider: s.provider, endpoint: s.endpoint, credentials: s.credentials,
                    storageClass: s.storageClass, transport: transport))
        }
    }

    /// Runs `body`, then shuts `transport` down, also when `body` throws.
    private static func finally<T: Sendable>(_ transport: AHCTransport, _ body: () async throws -> T) async throws -> T
    {
        do {
            let result = try await body()
            await transport.shutdown()
            return result
        } catch {
            await transport.shutdown()
            throw error
        }
    }

    /// Runs `body` with the storage of a remote, then closes its connections.
    static func with<T: Sendable>(
        _ remote: Remote, _ settings: DriverSettings, _ body: @Sendable (any ObjectStorage) async throws -> T
    ) async throws -> T {
        let (storage, transport) = try await open(remote, settings)
        do {
            let result = try await body(storage)
            await transport.shutdown()
            return result
        } catch {
            await transport.shutdown()
            throw error
        }
    }
}
