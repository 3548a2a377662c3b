// Commands that talk to a remote without mounting it: `url` (a presigned or temporary URL of a
// file) and `cleanup` (abort multipart uploads a crash left behind).

import ArgumentParser
import ClientEncryption
import FuseKit
import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

/// Where an s3:// or ks3:// bucket is and how it is addressed (not secret: flags are fine).
struct S3AddressOptions: ParsableArguments {
    @Option(help: "s3:// / ks3:// endpoint URL or host (default: $AWS_ENDPOINT_URL, $KS3_ENDPOINT, or AWS's).")
    var endpoint: String?

    @Option(help: "s3:// region (default: $AWS_REGION, ~/.aws/config, us-east-1).")
    var region: String?

    @Flag(help: "s3:// / ks3://: address buckets as host/bucket/key (automatic for IP addresses and localhost).")
    var pathStyle = false
}

/// Where named remotes are read from.
struct ConfigOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: "The config file of named remotes (default: ~/.config/objmount/objmount.conf).",
        completion: .file())
    var path: String?
}

/// `90s`, `15m`, `1h`, `2d` or a number of seconds.
struct DurationText: ExpressibleByArgument, Sendable {
    var seconds: Int

    init?(argument: String) {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = Substring(argument)
        var unit = 1
        if let last = text.last, let u = units[last] {
            unit = u
            text = text.dropLast()
        }
        guard let n = Int(text), n >= 0, n <= Int(Int32.max) / unit else { return nil }
        seconds = n * unit
    }
}

/// A file named by a remote URL (`s3://bucket/key`) or by a path inside an objmount mount.
struct RemoteObject {
    var remote: Remote
    var key: ObjectKey

    static func resolve(_ text: String) throws(CLIError) -> RemoteObject {
        if text.contains("://") {
            let remote: Remote
            do { remote = try Remote(parsing: text) } catch { throw CLIError(error.description) }
            guard remote.container != nil, !remote.prefix.isEmpty else {
                throw CLIError("'\(text)' names no object; expected e.g. s3://bucket/path/to/file")
            }
            return RemoteObject(remote: remote, key: String(remote.prefix.dropLast()))
        }
        let path = Paths.absolute(text)
        var st = stat()
        guard stat(path, &st) == 0 else { throw CLIError("\(text): \(errnoText(errno))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw CLIError("\(text) is not a file") }
        // A file closed moments ago may still be on its way (write-back): the URL must find it.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw CLIError("\(text) is not stored yet: \(errnoText(errno))") }
        }
        let mounts = MountTable.current().filter { $0.fsType == "fuse.objmount" }
        guard
            let mount = mounts.filter({ path.hasPrefix($0.mountpoint == "/" ? "/" : $0.mountpoint + "/") })
                .max(by: { $0.mountpoint.count < $1.mountpoint.count })
        else { throw CLIError("\(text) is not inside an objmount mount; give a remote URL such as s3://bucket/key") }
        let source = mount.source.hasPrefix("objmount:") ? String(mount.source.dropFirst(9)) : mount.source
        let remote: Remote
        do { remote = try Remote(parsing: source) } catch {
            throw CLIError("mount \(mount.mountpoint): \(error.description)")
        }
        let relative = String(path.dropFirst(mount.mountpoint == "/" ? 1 : mount.mountpoint.count + 1))
        var parent = remote
        if remote.container == nil {
            // Account-level mount: the first segment is the bucket or container.
            let parts = relative.split(separator: "/", maxSplits: 1)
            guard parts.count == 2 else { throw CLIError("\(text) is not inside a bucket") }
            parent = Remote(scheme: remote.scheme, container: String(parts[0]))
            return RemoteObject(remote: parent, key: String(parts[1]))
        }
        return RemoteObject(remote: parent, key: remote.prefix + relative)
    }
}

struct URLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "url",
        abstract: "Print a URL anyone can download a file with, for a limited time.",
        discussion: """
            s3:// gets a SigV4 presigned URL (at most 7 days), ks3:// a KSS presigned URL, swift:// \
            a TempURL (the account needs a Temp-URL key: swift post -m Temp-URL-Key:<secret>). \
            Credentials come from the same variables as for mount. Nothing is sent for s3:// and \
            ks3://: the URL is signed locally.

            Examples:
              objmount url ./mnt/photos/cat.jpg
              objmount url s3://bucket/photos/cat.jpg --expires 15m
            """)

    @Argument(help: "A file inside an objmount mount, or a remote URL such as s3://bucket/key.")
    var path: String

    @Option(help: "How long the URL works: 90s, 15m, 1h, 2d.")
    var expires: DurationText = DurationText(argument: "1h")!

    @OptionGroup var address: S3AddressOptions

    func run() throws {
        guard expires.seconds > 0 else { throw CLIError("--expires must be more than 0 seconds") }
        let object = try RemoteObject.resolve(path)
        let settings = try DriverSettings.resolve(object.remote, address: address)
        let seconds = expires.seconds
        let url: String
        switch settings {
        case .memory:
            throw CLIError("memory:// objects live inside one process and have no URL")
        case .s3, .swift:
            let remote = object.remote
            let key = object.key
            do {
                url = try blockingAwait {
                    try await Drivers.withPresigner(remote, settings) { storage in
                        try await storage.presignedURL(for: key, expiresIn: seconds)
                    }
                }
            } catch {
                // s3:// and ks3:// sign locally: their only failure is the argument, said as is.
                if case .s3 = settings { throw CLIError("\(error)") }
                throw CLIError(Drivers.failure(of: remote, error))
            }
        }
        writeAll(1, url + "\n")
    }
}

struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Abort multipart uploads and remove segments a crash left behind.",
        discussion: """
            Lists the incomplete multipart uploads (s3://, ks3://: their parts are billed until \
            aborted) or the segment sets no object uses (swift://, hubic://: in \
            <container>_segments) under the remote's prefix that started more than --older-than \
            ago, and removes them. A mount that is uploading right now has uploads younger than \
            that; keep the default unless no mount of this bucket is running. A mount that \
            recovers a crashed mount's files removes what their cut uploads left by itself.

            Examples:
              objmount cleanup s3://bucket
              objmount cleanup ks3://bucket/photos --older-than 0s --dry-run
            """)

    @Argument(help: "The remote, e.g. s3://bucket, ks3://bucket/prefix, swift://container or NAME:bucket.")
    var remote: String

    @OptionGroup var config: ConfigOption

    @Option(help: "Only uploads started longer ago than this: 90s, 15m, 1h, 2d.")
    var olderThan: DurationText = DurationText(argument: "24h")!

    @Flag(help: "Only list what would be aborted.")
    var dryRun = false

    @OptionGroup var address: S3AddressOptions

    func run() throws {
        let (url, named) = try NamedRemotes.resolve(self.remote, config: config.path)
        var address = self.address
        if named?.pathStyle == true { address.pathStyle = true }
        let remote: Remote
        do { remote = try Remote(parsing: url) } catch { throw CLIError(error.description) }
        guard remote.scheme != .memory, remote.container != nil else {
            throw CLIError(
                "cleanup works on a bucket or container: s3://bucket, ks3://bucket, swift://container, hubic://container"
            )
        }
        let settings = try DriverSettings.resolve(remote, address: address)
        let cutoff = Timestamp.now().seconds - Int64(olderThan.seconds)
        let dryRun = self.dryRun
        let lines: [String]
        do {
            lines = try blockingAwait {
                try await Drivers.withUploadListing(remote, settings) { storage in
                    var out: [String] = []
                    for pending in try await storage.incompleteUploads(prefix: remote.prefix)
                    where pending.initiated.seconds <= cutoff {
                        let upload = pending.upload
                        if !dryRun { try await storage.abortMultipartUpload(upload) }
                        out.append("\(dryRun ? "would abort" : "aborted") \(upload.key) \(upload.uploadID)")
                    }
                    return out
                }
            }
        } catch {
            throw CLIError(Drivers.failure(of: remote, error))
        }
        for line in lines { writeAll(1, line + "\n") }
        if lines.isEmpty {
            writeStderr("objmount: no incomplete uploads older than \(olderThan.seconds) s under \(remote)\n")
        }
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new random encryption key for --encryption-key-file.",
        discussion: """
            16 random bytes, mode 0600, in the format of ks3sdk's Crypts.generate_key (a key file \
            either can use). Keep a copy somewhere safe: without it the data cannot be decrypted.

            Example:
              objmount keygen ~/.config/objmount/photos.key
            """)

    @Argument(help: "Where to write the key (must not exist yet).")
    var path: String

    func run() throws {
        do { try KeyFile.generate(Paths.absolute(path)) } catch { throw CLIError("\(error)") }
        print("wrote a new key to \(path); keep a copy somewhere safe: without it the data cannot be decrypted")
    }
}
