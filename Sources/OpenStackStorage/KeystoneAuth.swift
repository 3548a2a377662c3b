// Keystone v3 password auth (OVHcloud's Swift): POST /v3/auth/tokens, token in X-Subject-Token,
// the object-store endpoint chosen from the catalog as python-swiftclient chooses it
// (service type object-store, interface public, region when given).

import Foundation
import ObjectStorage
import StorageHTTP

public struct KeystoneV3Auth: SwiftAuthenticator {
    public var authURL: String
    public var username: String
    public var password: String
    public var projectName: String?
    public var projectID: String?
    public var userDomain: String
    public var projectDomain: String
    public var region: String?
    public var interface: String

    public init(
        authURL: String, username: String, password: String, projectName: String?, projectID: String?,
        userDomain: String = "Default", projectDomain: String = "Default", region: String?, interface: String = "public"
    ) {
        self.authURL = authURL
        self.username = username
        self.password = password
        self.projectName = projectName
        self.projectID = projectID
        self.userDomain = userDomain
        self.projectDomain = projectDomain
        self.region = region
        self.interface = interface
    }

    public var summary: String { "user \(username) at \(authURL)" }

    var tokensURL: String {
        var base = authURL.hasSuffix("/") ? String(authURL.dropLast()) : authURL
        if !base.hasSuffix("/v3") { base += "/v3" }
        return base + "/auth/tokens"
    }

    func requestBody() -> [UInt8] {
        func domain(_ d: String) -> [String: Any] { d.lowercased() == "default" ? ["id": "default"] : ["name": d] }
        var project: [String: Any] = [:]
        if let id = projectID {
            project["id"] = id
        } else if let name = projectName {
            project["name"] = name
            project["domain"] = domain(projectDomain)
        }
        var auth: [String: Any] = [
            "identity": [
                "methods": ["password"],
                "password": ["user": ["name": username, "domain": domain(userDomain), "password": password]],
            ]
        ]
        if !project.isEmpty { auth["scope"] = ["project": project] }
        return Array((try? JSONSerialization.data(withJSONObject: ["auth": auth])) ?? Data())
    }

    public func authenticate(using transport: any HTTPTransport) async throws(AuthError) -> SwiftCredentials {
        let r: HTTPResponse
        do {
            r = try await transport.send(
                HTTPRequest(
                    method: "POST", url: tokensURL, headers: [("Content-Type", "application/json")], body: requestBody()
                ))
        } catch {
            throw .sending(to: tokensURL, error)
        }
        if r.status == 401 || r.status == 403 { throw .rejected("wrong user, password or project for \(summary)") }
        guard r.status == 201 || r.status == 200 else { throw .failed("\(tokensURL) answered HTTP \(r.status)") }
        guard let token = r.header("X-Subject-Token") else { throw .failed("\(tokensURL) gave no X-Subject-Token") }
        return try Self.credentials(token: token, body: r.body, region: region, interface: interface)
    }

    /// The storage URL from a token reply's catalog.
    static func credentials(token: String, body: [UInt8], region: String?, interface: String) throws(AuthError)
        -> SwiftCredentials
    {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let tok = json["token"] as? [String: Any]
        else { throw .failed("the token reply is not the expected JSON") }
        let catalog = tok["catalog"] as? [[String: Any]] ?? []
        var candidates: [String] = []
        for service in catalog where (service["type"] as? String) == "object-store" {
            for e in service["endpoints"] as? [[String: Any]] ?? [] {
                guard (e["interface"] as? String) == interface, let url = e["url"] as? String else { continue }
                if let region, (e["region_id"] as? String ?? e["region"] as? String) != region { continue }
                candidates.append(url)
            }
        }
        guard let url = candidates.first else {
            throw .failed(
                "endpoint for object-store not found\(region.map { " in region \($0)" } ?? " - have you specified a region?")"
            )
        }
        let expires = (tok["expires_at"] as? String).flatMap {
            HTTPDate.parseISO8601($0.hasSuffix("Z") ? String($0.dropLast()) : $0)
        }
        return SwiftCredentials(storageURL: url, token: token, expires: expires)
    }
}
