// Building the storage of a remote: which driver, and where its credentials come from (the
// places their users already keep them: python-swiftclient's ST_* variables, or flags).

import MemoryStorage
import ObjectStorage
import OpenStackStorage

/// Auth v1 settings for swift:// (`ST_AUTH`, `ST_USER`, `ST_KEY` as python-swiftclient reads them).
struct SwiftAuthSettings: Sendable {
    var authURL: String
    var user: String
    var key: String

    /// Flags win over the environment. A missing piece is one clear error naming both places.
    static func resolve(authURL: String?, user: String?, key: String?) throws(CLIError) -> SwiftAuthSettings {
        let url = authURL ?? Paths.environment("ST_AUTH")
        let u = user ?? Paths.environment("ST_USER")
        let k = key ?? Paths.environment("ST_KEY")
        var missing: [String] = []
        if url == nil { missing.append("ST_AUTH (--auth-url)") }
        if u == nil { missing.append("ST_USER (--user)") }
        if k == nil { missing.append("ST_KEY (--key)") }
        guard missing.isEmpty else {
            throw CLIError("swift:// needs credentials: set \(missing.joined(separator: ", "))")
        }
        return SwiftAuthSettings(authURL: url!, user: u!, key: k!)
    }
}

enum Drivers {
    static func openStack(container: String, auth: SwiftAuthSettings) async throws -> (OpenStackStorage, AHCTransport) {
        let transport = AHCTransport()
        do {
            let storage = try await OpenStackStorage.connect(
                container: container, authenticator: TempAuth(authURL: auth.authURL, user: auth.user, key: auth.key),
                transport: transport)
            return (storage, transport)
        } catch {
            await transport.shutdown()
            throw error
        }
    }
}
