// `objmount login hubic`: the OAuth2 dance once, with HUBIC_USERNAME/HUBIC_PASSWORD, and the
// refresh token stored in the config directory (0600), so the password need not be kept.

import ArgumentParser
import OpenStackStorage
import StorageHTTP

#if canImport(Glibc)
    import Glibc
#endif

enum HubicLogin {
    static var configDirectory: String {
        if let x = Paths.environment("XDG_CONFIG_HOME") { return x + "/objmount" }
        return Paths.home + "/.config/objmount"
    }

    static var tokenFile: String { configDirectory + "/hubic-refresh-token" }

    /// The stored refresh token; a file readable by others is refused (and ignored).
    static func storedRefreshToken() -> String? {
        var st = stat()
        guard stat(tokenFile, &st) == 0, st.st_mode & 0o077 == 0 else { return nil }
        let fd = open(tokenFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let token = Spawn.readAll(fd).split(separator: "\n").first.map(String.init)
        return token?.isEmpty == false ? token : nil
    }

    static func store(_ token: String) throws(CLIError) {
        guard Paths.makeDirectories(configDirectory) else { throw CLIError("cannot create \(configDirectory)") }
        let tmp = tokenFile + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot write \(tmp): \(errnoText(errno))") }
        fchmod(fd, 0o600)
        writeAll(fd, token + "\n")
        close(fd)
        guard rename(tmp, tokenFile) == 0 else { throw CLIError("cannot write \(tokenFile): \(errnoText(errno))") }
    }
}

struct Login: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log in to a service once and keep its refresh token (hubic).",
        discussion: """
            Example:
              HUBIC_CLIENT_ID=... HUBIC_CLIENT_SECRET=... HUBIC_USERNAME=me@example.com HUBIC_PASSWORD=... \\
                objmount login hubic
              objmount mount hubic://default ./hubic      # needs only HUBIC_CLIENT_ID/SECRET now
            """)

    @Argument(help: "The service: hubic.")
    var service: String

    func run() throws {
        guard service == "hubic" else { throw CLIError("unknown service '\(service)' (known: hubic)") }
        let e = Paths.environment
        guard let id = e("HUBIC_CLIENT_ID"), let secret = e("HUBIC_CLIENT_SECRET"), let user = e("HUBIC_USERNAME"),
            let password = e("HUBIC_PASSWORD")
        else {
            throw CLIError(
                "objmount login hubic needs HUBIC_CLIENT_ID, HUBIC_CLIENT_SECRET, HUBIC_USERNAME and HUBIC_PASSWORD")
        }
        let auth = HubicAuth(
            apiURL: e("HUBIC_API_URL") ?? "https://api.hubic.com", clientID: id, clientSecret: secret,
            refreshToken: nil,
            username: user, password: password, redirectURI: e("HUBIC_REDIRECT_URI") ?? "http://localhost/")
        let token: String?
        do {
            token = try blockingAwait {
                let transport = AHCTransport()
                do {
                    _ = try await auth.authenticate(using: transport)
                } catch {
                    await transport.shutdown()
                    throw error
                }
                await transport.shutdown()
                return auth.refreshToken
            }
        } catch {
            throw CLIError("Hubic login failed: \(error)")
        }
        guard let token else { throw CLIError("Hubic gave no refresh token") }
        try HubicLogin.store(token)
        writeStderr("objmount: Hubic refresh token stored in \(HubicLogin.tokenFile)\n")
    }
}
