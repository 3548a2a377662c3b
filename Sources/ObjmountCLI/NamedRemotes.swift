// Named remotes: `~/.config/objmount/objmount.conf` (or `$XDG_CONFIG_HOME/objmount/`, or
// `--config`), a TOML file with one table per remote:
//
//   [photos]
//   type = "s3"
//   endpoint = "https://s3.example.com"
//   access_key_id = "AKIA..."
//   secret_access_key = "env:PHOTOS_SECRET"    # or the value, or "file:/path/to/secret"
//
// `objmount mount photos:bucket/prefix MNT` (and an fstab line with `photos:bucket`) then needs
// no environment variable. A remote's settings become the variables its driver reads (the
// driver's other credential variables are cleared, so the remote is exactly what the file
// says). The file holds secrets: it must be the user's and not readable by others.

import ArgumentParser
import TOMLKit

#if canImport(Glibc)
    import Glibc
#endif

struct NamedRemote: Equatable {
    var name: String
    var type: Remote.Scheme
    /// Settings as written (`env:`/`file:` references unresolved), by name.
    var settings: [String: String]
    var pathStyle: Bool?
    /// Mount options kept with the remote (`segment_size = 32`, `write_back = false`…): used
    /// where the command line gives none.
    var mount = MountDefaults()

    /// Setting → the environment variable its driver reads, per type. Swift with a `password`
    /// is Keystone v3 (the OS_* variables), else auth v1 (ST_*).
    static let variables: [Remote.Scheme: [String: String]] = [
        .s3: [
            "endpoint": "AWS_ENDPOINT_URL", "region": "AWS_REGION", "access_key_id": "AWS_ACCESS_KEY_ID",
            "secret_access_key": "AWS_SECRET_ACCESS_KEY", "session_token": "AWS_SESSION_TOKEN",
            "profile": "AWS_PROFILE",
        ],
        .ks3: [
            "endpoint": "KS3_ENDPOINT", "access_key_id": "KS3_ACCESS_KEY_ID",
            "secret_access_key": "KS3_SECRET_ACCESS_KEY", "security_token": "KS3_SECURITY_TOKEN",
        ],
        .swift: ["auth_url": "ST_AUTH", "user": "ST_USER", "key": "ST_KEY"],
        .hubic: [
            "client_id": "HUBIC_CLIENT_ID", "client_secret": "HUBIC_CLIENT_SECRET",
            "refresh_token": "HUBIC_REFRESH_TOKEN", "user": "HUBIC_USERNAME", "password": "HUBIC_PASSWORD",
            "api_url": "HUBIC_API_URL",
        ],
    ]
    static let keystoneVariables = [
        "auth_url": "OS_AUTH_URL", "user": "OS_USERNAME", "password": "OS_PASSWORD", "project": "OS_PROJECT_NAME",
        "project_id": "OS_PROJECT_ID", "user_domain": "OS_USER_DOMAIN_NAME",
        "project_domain": "OS_PROJECT_DOMAIN_NAME", "region": "OS_REGION_NAME",
    ]
    /// Settings that are not variables (`path_style` is a boolean, `storage_class` a flag's).
    static let flagSettings: [Remote.Scheme: Set<String>] = [.s3: ["storage_class"], .ks3: ["storage_class"]]
    static let secretSettings: Set<String> = [
        "secret_access_key", "session_token", "security_token", "key", "password", "client_secret", "refresh_token",
    ]

    var storageClass: String? { settings["storage_class"] }

    /// The environment variables this remote's settings become, `env:`/`file:` resolved.
    func environment() throws(CLIError) -> [String: String] {
        let table = type == .swift && settings["password"] != nil ? Self.keystoneVariables : Self.variables[type] ?? [:]
        var out: [String: String] = [:]
        for (setting, value) in settings {
            guard let variable = table[setting] else { continue }
            out[variable] = try Self.resolve(value, setting: setting, remote: name)
        }
        return out
    }

    /// Every variable the driver of `type` reads for credentials and places: cleared before a
    /// named remote's are set.
    static func driverVariables(_ type: Remote.Scheme) -> [String] {
        var all = Array((variables[type] ?? [:]).values)
        if type == .swift { all += keystoneVariables.values + ["OS_TENANT_NAME", "OS_INTERFACE"] }
        if type == .s3 {
            all += [
                "AWS_DEFAULT_REGION", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SHARED_CREDENTIALS_FILE",
                "AWS_CONFIG_FILE",
            ]
        }
        return all
    }

    /// `env:NAME` (that variable), `file:PATH` (the file's first line), or the value itself.
    static func resolve(_ value: String, setting: String, remote: String) throws(CLIError) -> String {
        if value.hasPrefix("env:") {
            let name = String(value.dropFirst(4))
            guard let v = Paths.environment(name) else {
                throw CLIError("remote '\(remote)': \(setting) comes from $\(name), which is not set")
            }
            return v
        }
        if value.hasPrefix("file:") {
            let path = String(value.dropFirst(5))
            guard let text = readText(path) else {
                throw CLIError("remote '\(remote)': \(setting) comes from \(path), which cannot be read")
            }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
            return String(
                line.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }
                    .reversed())
        }
        return value
    }

    /// The whole file at `path` (UTF-8), nil if it cannot be opened.
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return Spawn.readAll(fd)
    }

    /// The settings for `objmount remote show`: secrets replaced by what they are, never shown.
    var shown: [(String, String)] {
        var rows = [("type", type.rawValue)]
        if let pathStyle { rows.append(("path_style", String(pathStyle))) }
        rows += mount.shown
        for (setting, value) in settings.sorted(by: { $0.key < $1.key }) {
            let plain = !Self.secretSettings.contains(setting) || value.hasPrefix("env:") || value.hasPrefix("file:")
            rows.append((setting, plain ? value : "<set, \(value.count) characters>"))
        }
        return rows
    }
}

enum NamedRemotes {
    /// `$XDG_CONFIG_HOME/objmount/objmount.conf`, else `~/.config/objmount/objmount.conf`.
    static var defaultPath: String {
        (Paths.environment("XDG_CONFIG_HOME") ?? Paths.home + "/.config") + "/objmount/objmount.conf"
    }

    /// `NAME:container/prefix` (a name of letters, digits, `.`, `_`, `-`; not a URL): the name
    /// and the rest; nil for anything else.
    static func split(_ text: String) -> (name: String, rest: String)? {
        guard !text.contains("://"), let colon = text.firstIndex(of: ":") else { return nil }
        let name = text[..<colon]
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.allSatisfy({ allowed.contains($0) }) else { return nil }
        return (String(name), String(text[text.index(after: colon)...]))
    }

    /// Reads the remotes of the file at `path`, which must be a regular file of this user that
    /// nobody else can read.
    static func load(_ path: String) throws(CLIError) -> [String: NamedRemote] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CLIError(
                "no config file \(path) (\(String(cString: strerror(errno)))): named remotes are read from it")
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw CLIError("config file \(path) is not a regular file") }
        guard st.st_uid == getuid() else {
            throw CLIError(
                "config file \(path) belongs to uid \(st.st_uid), not you (uid \(getuid())): it holds secrets")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw CLIError(
                "config file \(path) can be read by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 \(path)"
            )
        }
        guard let text = NamedRemote.readText(path) else { throw CLIError("config file \(path) cannot be read") }
        return try parse(text, path: path)
    }

    /// The remotes in `text` (the file at `path`, named in errors with the line).
    static func parse(_ text: String, path: String) throws(CLIError) -> [String: NamedRemote] {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw CLIError("\(path) line \(e.source.begin.line): \(e.description)")
        } catch {
            throw CLIError("\(path): \(error)")
        }
        var remotes: [String: NamedRemote] = [:]
        for (name, value) in table {
            guard let entries = value.table, split(name + ":") != nil else {
                throw CLIError(
                    "\(path): '\(name)' is not a remote: write [\(name)] with type = \"s3\" and its settings")
            }
            guard let typeName = entries["type"]?.string else {
                throw CLIError("\(path): [\(name)] needs type = \"swift\", \"hubic\", \"s3\" or \"ks3\"")
            }
            guard let type = Remote.Scheme(rawValue: typeName), type != .memory else {
                throw CLIError("\(path): [\(name)] has an unknown type '\(typeName)' (swift, hubic, s3, ks3)")
            }
            var remote = NamedRemote(name: name, type: type, settings: [:])
            let known = Set((NamedRemote.variables[type] ?? [:]).keys)
                .union(type == .swift ? Set(NamedRemote.keystoneVariables.keys) : [])
                .union(NamedRemote.flagSettings[type] ?? [])
            for (setting, v) in entries where setting != "type" {
                if setting == "path_style", type == .s3 || type == .ks3 {
                    guard let b = v.bool else { throw CLIError("\(path): [\(name)] path_style must be true or false") }
                    remote.pathStyle = b
                    continue
                }
                if MountDefaults.settings.contains(setting) {
                    do throws(MountDefaults.Problem) { try remote.mount.set(setting, v) } catch {
                        throw CLIError("\(path): [\(name)] \(setting) \(error.text)")
                    }
                    continue
                }
                guard known.contains(setting) else {
                    let list =
                        (known.sorted() + (type == .s3 || type == .ks3 ? ["path_style"] : [])
                        + MountDefaults.settings.sorted()).joined(separator: ", ")
                    throw CLIError("\(path): [\(name)] has an unknown setting '\(setting)' (\(type.rawValue): \(list))")
                }
                guard let s = v.string else {
                    throw CLIError("\(path): [\(name)] \(setting) must be a string in quotes")
                }
                remote.settings[setting] = s
            }
            remotes[name] = remote
        }
        return remotes
    }

    /// A remote as given on the command line: a URL as it is, or `NAME:container/prefix` from
    /// the config file, whose settings are put in this process's environment for the drivers
    /// (and the daemon it starts). Returns the URL and the named remote, if any.
    static func resolve(_ text: String, config: String?) throws(CLIError) -> (url: String, named: NamedRemote?) {
        guard let (name, rest) = split(text) else { return (text, nil) }
        let path = config ?? defaultPath
        let remotes = try load(path)
        guard let remote = remotes[name] else {
            let known = remotes.keys.sorted().joined(separator: ", ")
            throw CLIError("no remote '\(name)' in \(path) (\(known.isEmpty ? "it has none" : "it has: \(known)"))")
        }
        let environment = try remote.environment()
        for variable in NamedRemote.driverVariables(remote.type) { unsetenv(variable) }
        for (variable, value) in environment { setenv(variable, value, 1) }
        return ("\(remote.type.rawValue)://\(rest)", remote)
    }
}

/// `objmount remote list|show`: what the config file names (secrets never shown).
struct RemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote",
        abstract: "List and show the named remotes of the config file.",
        discussion: """
            The file (default ~/.config/objmount/objmount.conf, mode 0600) has one TOML table per \
            remote; mount one with `objmount mount NAME:bucket/prefix MNT`. Example:

              [photos]
              type = "s3"                       # swift, hubic, s3, ks3
              endpoint = "https://s3.example.com"
              region = "eu-west-1"
              access_key_id = "AKIA..."
              secret_access_key = "env:PHOTOS_SECRET"   # a value, env:VARIABLE or file:PATH
            """,
        subcommands: [List.self, Show.self, Add.self, Remove.self])

    /// Adds `[NAME]` at the end of the file (made 0600 if new), or removes it: the rest of the
    /// file, comments included, stays as it was, and the result must parse with the same other
    /// remotes before it replaces the file.
    static func edit(_ path: String, _ change: (String) throws(CLIError) -> String, expect: [String: NamedRemote?])
        throws(CLIError)
    {
        var before = ""
        var others: [String: NamedRemote] = [:]
        if access(path, F_OK) == 0 {
            others = try NamedRemotes.load(path)
            before = NamedRemote.readText(path) ?? ""
        }
        let after = try change(before)
        var wanted = others
        for (name, remote) in expect { wanted[name] = remote }
        guard let parsed = try? NamedRemotes.parse(after, path: path), parsed == wanted else {
            throw CLIError("\(path) could not be changed safely (edit it by hand)")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        guard directory.isEmpty || Paths.makeDirectories(directory) else {
            throw CLIError("cannot create \(directory)")
        }
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot write \(tmp): \(errnoText(errno))") }
        fchmod(fd, 0o600)
        writeAll(fd, after)
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw CLIError("cannot write \(path): \(errnoText(errno))")
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a named remote: objmount remote add NAME TYPE SETTING=VALUE...",
            discussion: """
                Secrets are never taken as arguments (the process list is public): give them as \
                env:VARIABLE or file:PATH, or leave them out and type them at the prompt (not \
                echoed) when on a terminal.

                Example:
                  objmount remote add photos s3 endpoint=https://s3.example.com \\
                      region=eu-west-1 access_key_id=AKIA... \\
                      secret_access_key=file:/home/me/.secrets/photos
                """)
        @Argument(help: "The remote's name (letters, digits, '.', '_', '-').")
        var name: String
        @Argument(help: "swift, hubic, s3 or ks3.")
        var type: String
        @Argument(help: "Settings, e.g. endpoint=https://s3.example.com.")
        var settings: [String] = []
        @OptionGroup var config: ConfigOption

        func run() throws {
            let path = config.path ?? NamedRemotes.defaultPath
            guard NamedRemotes.split(name + ":") != nil else {
                throw CLIError("'\(name)' is not a remote name: letters, digits, '.', '_' and '-' only")
            }
            var lines = ["", "[\(name)]", "type = \(JSONText.quoted(type))"]
            var given: [String: String] = [:]
            for setting in settings {
                guard let eq = setting.firstIndex(of: "=") else {
                    throw CLIError("'\(setting)' is not SETTING=VALUE")
                }
                let key = String(setting[..<eq])
                let value = String(setting[setting.index(after: eq)...])
                if NamedRemote.secretSettings.contains(key) && !value.hasPrefix("env:") && !value.hasPrefix("file:") {
                    throw CLIError(
                        "\(key) is a secret: give env:VARIABLE or file:PATH, or leave it out to be asked for it")
                }
                given[key] = value
            }
            if let scheme = Remote.Scheme(rawValue: type), isatty(0) == 1 {
                let table = NamedRemote.variables[scheme] ?? [:]
                for key in table.keys.sorted() where NamedRemote.secretSettings.contains(key) && given[key] == nil {
                    if let typed = Prompt.secret("\(key) (empty: none): "), !typed.isEmpty { given[key] = typed }
                }
            }
            for (key, value) in given.sorted(by: { $0.key < $1.key }) {
                // Booleans and numbers as such where the setting takes one (write_back=off stays a word).
                let literal = ["true", "false"].contains(value) || Double(value) != nil
                let typed: Set = [
                    "path_style", "segment_size", "write_back", "metadata_ttl", "listing_mtime", "max_inodes",
                ]
                lines.append(
                    typed.contains(key) && literal ? "\(key) = \(value)" : "\(key) = \(JSONText.quoted(value))")
            }
            let text = lines.joined(separator: "\n") + "\n"
            // The new table parsed alone: its errors name its own lines.
            guard let remote = try NamedRemotes.parse(text, path: "the new remote")[name] else {
                throw CLIError("the new remote did not parse")
            }
            try RemoteCommand.edit(
                path,
                { (before: String) throws(CLIError) -> String in
                    if (try? NamedRemotes.parse(before, path: path))?[name] != nil {
                        throw CLIError("\(path) already has a remote '\(name)' (objmount remote remove \(name) first)")
                    }
                    return before + (before.isEmpty || before.hasSuffix("\n") ? "" : "\n") + text
                }, expect: [name: remote])
            writeAll(1, "added \(name) (\(type)) to \(path)\n")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a named remote from the config file.")
        @Argument(help: "The remote's name.")
        var name: String
        @OptionGroup var config: ConfigOption

        func run() throws {
            let path = config.path ?? NamedRemotes.defaultPath
            guard try NamedRemotes.load(path)[name] != nil else { throw CLIError("no remote '\(name)' in \(path)") }
            try RemoteCommand.edit(
                path,
                { (before: String) throws(CLIError) -> String in
                    // The table's lines go, up to the next table; comments and blank lines
                    // just before that table are its own and stay.
                    var out: [Substring] = []
                    var removed: [Substring] = []
                    var inside = false
                    for line in before.split(separator: "\n", omittingEmptySubsequences: false) {
                        let trimmed = line.drop { $0 == " " || $0 == "\t" }
                        if trimmed.hasPrefix("[") {
                            let header = trimmed.dropFirst().prefix { $0 != "]" }
                            let starts = String(header.filter { !" \t\"'".contains($0) }) == name
                            if inside && !starts {
                                let kept = removed.reversed().prefix {
                                    let t = $0.drop { $0 == " " || $0 == "\t" }
                                    return t.isEmpty || t.hasPrefix("#")
                                }
                                out += kept.reversed()
                                removed = []
                            }
                            inside = starts
                        }
                        if inside { removed.append(line) } else { out.append(line) }
                    }
                    return out.joined(separator: "\n")
                }, expect: [name: nil])
            writeAll(1, "removed \(name) from \(path)\n")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per remote: its name and type.")
        @OptionGroup var config: ConfigOption

        func run() throws {
            let remotes = try NamedRemotes.load(config.path ?? NamedRemotes.defaultPath)
            for remote in remotes.values.sorted(by: { $0.name < $1.name }) {
                writeAll(1, "\(remote.name)\t\(remote.type.rawValue)\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A remote's settings; secrets show as <set, N characters>.")
        @Argument(help: "The remote's name.")
        var name: String
        @OptionGroup var config: ConfigOption

        func run() throws {
            let path = config.path ?? NamedRemotes.defaultPath
            guard let remote = try NamedRemotes.load(path)[name] else {
                throw CLIError("no remote '\(name)' in \(path)")
            }
            writeAll(1, "[\(remote.name)]\n")
            for (setting, value) in remote.shown { writeAll(1, "\(setting) = \(value)\n") }
        }
    }
}

enum Prompt {
    /// Reads a line from the terminal without echoing it; nil without a terminal.
    static func secret(_ question: String) -> String? {
        guard isatty(0) == 1 else { return nil }
        writeAll(2, question)
        var saved = termios()
        tcgetattr(0, &saved)
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(0, TCSANOW, &quiet)
        defer {
            tcsetattr(0, TCSANOW, &saved)
            writeAll(2, "\n")
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(0, &byte, 1) == 1, byte != 10 { line.append(byte) }
        return String(decoding: line, as: UTF8.self)
    }
}

/// Mount options a named remote may hold, each the value of the `objmount mount` flag of the
/// same name (`segment_size` is `--segment-size`); a flag given on the command line wins.
struct MountDefaults: Equatable {
    var segmentSize: Int?
    var cacheSize: ByteSize?
    var memoryLimit: ByteSize?
    var writeBack: Bool?
    var metadataTTL: Double?
    var listingMtime: Bool?
    var maxInodes: Int?
    var cacheDir: String?

    static let settings: Set<String> = [
        "segment_size", "cache_size", "memory_limit", "write_back", "metadata_ttl", "listing_mtime", "max_inodes",
        "cache_dir",
    ]

    struct Problem: Error {
        let text: String
    }

    mutating func set(_ setting: String, _ v: any TOMLValueConvertible) throws(Problem) {
        func size() throws(Problem) -> ByteSize {
            if let n = v.int, n >= 0 { return ByteSize(bytes: Int64(n)) }
            guard let text = v.string, let size = ByteSize(argument: text) else {
                throw Problem(text: "must be a size such as \"512M\" or \"10G\"")
            }
            return size
        }
        func bool() throws(Problem) -> Bool {
            guard let b = v.bool else { throw Problem(text: "must be true or false") }
            return b
        }
        func integer() throws(Problem) -> Int {
            guard let n = v.int else { throw Problem(text: "must be a whole number") }
            return n
        }
        switch setting {
        case "segment_size": segmentSize = try integer()
        case "cache_size": cacheSize = try size()
        case "memory_limit": memoryLimit = try size()
        case "write_back":
            if let text = v.string, let mode = WriteBackMode(rawValue: text) {
                writeBack = mode == .on
            } else {
                do { writeBack = try bool() } catch {
                    throw Problem(text: "must be true or false (or \"on\", \"off\")")
                }
            }
        case "metadata_ttl":
            guard let x = v.double ?? v.int.map(Double.init) else { throw Problem(text: "must be a number of seconds") }
            metadataTTL = x
        case "listing_mtime": listingMtime = try bool()
        case "max_inodes": maxInodes = try integer()
        case "cache_dir":
            guard let text = v.string, !text.isEmpty else { throw Problem(text: "must be a path in quotes") }
            cacheDir = text
        default: throw Problem(text: "is not a mount option")
        }
    }

    var shown: [(String, String)] {
        var rows: [(String, String)] = []
        if let segmentSize { rows.append(("segment_size", String(segmentSize))) }
        if let cacheSize { rows.append(("cache_size", cacheSize.description)) }
        if let memoryLimit { rows.append(("memory_limit", memoryLimit.description)) }
        if let writeBack { rows.append(("write_back", String(writeBack))) }
        if let metadataTTL { rows.append(("metadata_ttl", Mount.number(metadataTTL))) }
        if let listingMtime { rows.append(("listing_mtime", String(listingMtime))) }
        if let maxInodes { rows.append(("max_inodes", String(maxInodes))) }
        if let cacheDir { rows.append(("cache_dir", cacheDir)) }
        return rows
    }
}
