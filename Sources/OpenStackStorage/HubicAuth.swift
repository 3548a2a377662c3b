// Hubic: OAuth2 (client id/secret + the user's login, or a saved refresh token) gives an access
// token; GET /1.0/account/credentials with it gives a Swift token and endpoint (PROTOCOLS.md §2,
// as lhubic does it). The refresh token got by a login is kept for the next renewals, so the
// password is used once per process; `objmount login hubic` stores it for good.

import Foundation
import ObjectStorage
import StorageHTTP
import Synchronization

public final class HubicAuth: SwiftAuthenticator, Sendable {
    public let apiURL: String
    public let clientID: String
    let clientSecret: String
    let username: String?
    let password: String?
    public let redirectURI: String
    public let scope: String
    private let state = Mutex<(refreshToken: String?, accessToken: String?)>((nil, nil))

    public init(
        apiURL: String = "https://api.hubic.com", clientID: String, clientSecret: String, refreshToken: String?,
        username: String?, password: String?, redirectURI: String = "http://localhost/", scope: String = "credentials.r"
    ) {
        self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.username = username
        self.password = password
        self.redirectURI = redirectURI
        self.scope = scope
        state.withLock { $0.refreshToken = refreshToken }
    }

    public var summary: String { "Hubic client \(clientID)\(username.map { " for \($0)" } ?? "") at \(apiURL)" }

    /// The refresh token in use (after a login, the one it produced).
    public var refreshToken: String? { state.withLock { $0.refreshToken } }

    public func authenticate(using transport: any HTTPTransport) async throws(AuthError) -> SwiftCredentials {
        // A still valid access token is reused; an expired one is renewed once.
        for attempt in 0..<2 {
            let access: String
            if let a = state.withLock({ $0.accessToken }), attempt == 0 {
                access = a
            } else {
                access = try await newAccessToken(transport)
            }
            let r = try await send(
                transport,
                HTTPRequest(
                    method: "GET", url: apiURL + "/1.0/account/credentials",
                    headers: [("Authorization", "Bearer \(access)")]))
            if r.status == 401 {
                state.withLock { $0.accessToken = nil }
                continue
            }
            guard r.status == 200, let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
                let token = json["token"] as? String, let endpoint = json["endpoint"] as? String
            else { throw .failed("\(apiURL)/1.0/account/credentials answered HTTP \(r.status)") }
            let expires = (json["expires"] as? String).flatMap(HTTPDate.parseISO8601)
            return SwiftCredentials(storageURL: endpoint, token: token, expires: expires)
        }
        throw .rejected("Hubic refused a fresh access token for \(summary)")
    }

    /// An access token from the refresh token, or from the login dance when there is none.
    func newAccessToken(_ transport: any HTTPTransport) async throws(AuthError) -> String {
        if let refresh = state.withLock({ $0.refreshToken }) {
            let json = try await tokenRequest(transport, ["grant_type": "refresh_token", "refresh_token": refresh])
            guard let access = json["access_token"] as? String else {
                throw .failed("no access_token in Hubic's refresh reply")
            }
            state.withLock { $0.accessToken = access }
            return access
        }
        guard let username, let password else {
            throw .rejected(
                "Hubic needs HUBIC_REFRESH_TOKEN, or HUBIC_USERNAME and HUBIC_PASSWORD (or run: objmount login hubic)")
        }
        let code = try await authorizationCode(transport, username: username, password: password)
        let json = try await tokenRequest(
            transport, ["grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI])
        guard let access = json["access_token"] as? String else {
            throw .failed("no access_token in Hubic's token reply")
        }
        state.withLock {
            $0.accessToken = access
            if let r = json["refresh_token"] as? String { $0.refreshToken = r }
        }
        return access
    }

    /// The authorization page's hidden `oauth` field, then the grant form; the code comes back
    /// in the 302's Location.
    func authorizationCode(_ transport: any HTTPTransport, username: String, password: String) async throws(AuthError)
        -> String
    {
        let query = URLEncoding.query([
            ("client_id", clientID), ("redirect_uri", redirectURI), ("scope", scope), ("response_type", "code"),
            ("state", "objmount"),
        ])
        let page = try await send(transport, HTTPRequest(method: "GET", url: apiURL + "/oauth/auth/?" + query))
        guard page.status == 200 else { throw .rejected("Hubic refused client \(clientID) (HTTP \(page.status))") }
        guard let oauth = Self.hiddenOAuthField(page.text) else {
            throw .failed("Hubic's authorization page has no oauth field")
        }
        var form: [(String, String?)] = [
            ("oauth", oauth), ("action", "accepted"), ("login", username), ("user_pwd", password),
        ]
        for s in scope.split(separator: ",") {
            let parts = s.split(separator: ".")
            if parts.count == 2 { form.append((String(parts[0]), String(parts[1]))) }
        }
        let grant = try await send(
            transport,
            HTTPRequest(
                method: "POST", url: apiURL + "/oauth/auth/",
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Array(URLEncoding.query(form).utf8)))
        guard grant.status == 302, let location = grant.header("Location"),
            let code = Self.queryValue("code", in: location)
        else {
            throw .rejected("Hubic did not accept the login of \(username)")
        }
        return code
    }

    func tokenRequest(_ transport: any HTTPTransport, _ fields: [String: String]) async throws(AuthError) -> [String:
        Any]
    {
        let basic = Data("\(clientID):\(clientSecret)".utf8).base64EncodedString()
        let body = URLEncoding.query(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        let r = try await send(
            transport,
            HTTPRequest(
                method: "POST", url: apiURL + "/oauth/token/",
                headers: [("Authorization", "Basic \(basic)"), ("Content-Type", "application/x-www-form-urlencoded")],
                body: Array(body.utf8)))
        let json = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:]
        if r.status == 400 || r.status == 401 {
            let why = json["error_description"] as? String ?? json["error"] as? String ?? "HTTP \(r.status)"
            throw .rejected("Hubic refused the token request: \(why)")
        }
        guard r.status == 200 else { throw .failed("\(apiURL)/oauth/token/ answered HTTP \(r.status)") }
        return json
    }

    private func send(_ transport: any HTTPTransport, _ request: HTTPRequest) async throws(AuthError) -> HTTPResponse {
        do { return try await transport.send(request) } catch { throw .sending(to: apiURL, error) }
    }

    static func hiddenOAuthField(_ html: String) -> String? {
        guard let r = html.firstRange(of: "name=\"oauth\" value=\"") else { return nil }
        let digits = html[r.upperBound...].prefix { $0 != "\"" }
        return digits.isEmpty ? nil : String(digits)
    }

    static func queryValue(_ name: String, in url: String) -> String? {
        guard let q = url.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0] == name { return URLEncoding.decodeForm(kv[1]) }
        }
        return nil
    }
}
