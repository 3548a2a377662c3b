// `objmount status`: what each mount is doing, from its daemon. The daemon listens on a unix
// socket in its runtime directory (mode 0700, the socket 0600; never on the network), named
// by its pid; a client connects, sends one line (`json` or `text`) and reads the answer until
// the daemon closes the connection.

import ArgumentParser
import Dispatch
import FuseKit
import ObjectFS

#if canImport(Glibc)
    import Glibc
#endif

extension Paths {
    static func statusSocket(pid: pid_t) -> String { runtimeDirectory + "/status-\(pid).sock" }
}

/// What one daemon says of itself.
struct DaemonStatus: Sendable {
    var remote: String
    var mountpoint: String
    var pid: pid_t
    var uptime: Duration
    var fs: FilesystemStatus
    var requestsInFlight: Int
    /// Files that could not be stored (their data kept in the unsaved directory).
    var uploadErrors: Int
    var cacheDirectory: String
    /// HTTP requests, retries and body bytes of this daemon (none for memory://).
    var requests: Int64 = 0
    var retries: Int64 = 0
    var bytesUp: Int64 = 0
    var bytesDown: Int64 = 0
    /// The settings the mount runs with (its flags, else its named remote's, else defaults).
    var options = Options()

    struct Options: Sendable {
        var writeBack = true
        var metadataTTL: Double = 10
        var listingMtime = false
        var memoryLimit: Int64 = 0
        var maxInodes = 0
        var partSize: Int64 = 0
        var multipartThreshold: Int64 = 0

        var json: String {
            "{\"write_back\":\(writeBack),\"metadata_ttl_s\":\(Mount.number(metadataTTL)),"
                + "\"listing_mtime\":\(listingMtime),\"memory_limit\":\(memoryLimit),\"max_inodes\":\(maxInodes),"
                + "\"part_size\":\(partSize),\"multipart_threshold\":\(multipartThreshold)}"
        }
    }

    var json: String {
        func q(_ s: String) -> String { JSONText.quoted(s) }
        let oldest = fs.oldestPending.map { String(format2($0)) } ?? "null"
        return "{"
            + [
                "\"mountpoint\":\(q(mountpoint))", "\"remote\":\(q(remote))", "\"pid\":\(pid)",
                "\"version\":\(q(Objmount.release))", "\"commit\":\(q(buildCommit))",
                "\"uptime_s\":\(format2(uptime))",
                "\"pending\":{\"files\":\(fs.pendingFiles),\"bytes\":\(fs.pendingBytes),\"oldest_s\":\(oldest)}",
                "\"uploads_running\":\(fs.uploadsRunning)", "\"upload_errors\":\(uploadErrors)",
                "\"inodes\":\(fs.inodes)", "\"open_handles\":\(fs.openHandles)",
                "\"requests_in_flight\":\(requestsInFlight)",
                "\"memory\":{\"used\":\(fs.memoryUsed),\"limit\":\(fs.memoryLimit)}",
                "\"cache\":{\"directory\":\(q(cacheDirectory)),\"limit\":\(fs.cacheCapacity),\"used\":\(fs.cacheUsed),"
                    + "\"hit_bytes\":\(fs.cacheHitBytes),\"miss_bytes\":\(fs.cacheMissBytes),"
                    + "\"hit_rate\":\(hitRate.map { String($0) } ?? "null")}",
                "\"requests\":\(requests)", "\"retries\":\(retries)", "\"bytes_up\":\(bytesUp)",
                "\"bytes_down\":\(bytesDown)", "\"options\":\(options.json)",
            ].joined(separator: ",") + "}"
    }

    /// The share of read bytes answered from the cache, in thousandths (nil before any read).
    var hitRate: Double? {
        let total = fs.cacheHitBytes + fs.cacheMissBytes
        return total == 0 ? nil : Double(fs.cacheHitBytes * 1000 / total) / 1000
    }

    var text: String {
        var pending = "nothing pending"
        if fs.pendingFiles > 0 {
            pending =
                "\(fs.pendingFiles) file(s) pending, \(ByteSize(bytes: fs.pendingBytes).approximate)"
                + (fs.oldestPending.map { " (oldest \(Self.duration($0)) ago)" } ?? "")
        }
        return "\(mountpoint): \(remote), pid \(pid), up \(Self.duration(uptime)); \(pending); "
            + "\(fs.uploadsRunning) upload(s) running, \(uploadErrors) error(s); \(fs.inodes) inodes, "
            + "\(fs.openHandles) open; memory \(ByteSize(bytes: fs.memoryUsed).approximate) of \(ByteSize(bytes: fs.memoryLimit).approximate); "
            + "cache \(ByteSize(bytes: fs.cacheUsed).approximate) of \(ByteSize(bytes: fs.cacheCapacity).approximate)"
            + (hitRate.map { ", \(Int(($0 * 100).rounded())) % of reads hit; " } ?? "; ")
            + "\(requests) requests, \(retries) retries, \(ByteSize(bytes: bytesUp).approximate) up, "
            + "\(ByteSize(bytes: bytesDown).approximate) down"
    }

    static func duration(_ d: Duration) -> String {
        let s = d.components.seconds
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \(s % 3600 / 60) min"
    }
}

/// Seconds with two decimals.
private func format2(_ d: Duration) -> String {
    let centis = d.components.seconds * 100 + d.components.attoseconds / 10_000_000_000_000_000
    return "\(centis / 100).\(String(format2Digits(centis % 100)))"
}

private func format2Digits(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }

enum JSONText {
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// The daemon's side: answers on the socket until stopped.
final class StatusServer: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let source: any DispatchSourceRead

    /// Listens at `path` (replacing a stale socket); nil if it cannot (the mount works without).
    init?(path: String, status: @escaping @Sendable () async -> DaemonStatus) {
        unlink(path)
        let old = umask(0o177)  // the socket is created 0600
        let bound = Self.socket(at: path, bind)
        umask(old)
        guard let (fd, result) = bound else { return nil }
        guard result == 0, listen(fd, 8) == 0 else {
            close(fd)
            return nil
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.path = path
        self.fd = fd
        source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: .global(qos: .utility))
        source.setEventHandler {
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }
                _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                Task {
                    let request = StatusServer.readLine(connection)
                    let answer = await status()
                    let reply =
                        switch request {
                        case "text": answer.text
                        case "pending": "\(answer.fs.pendingFiles) \(answer.fs.pendingBytes)"
                        default: answer.json
                        }
                    writeAll(connection, reply + "\n")
                    close(connection)
                }
            }
        }
        source.resume()
    }

    /// The request line (at most 64 bytes; a client that sends nothing in 2 s gets JSON).
    static func readLine(_ fd: Int32) -> String {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return "" }
        return String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    func stop() {
        source.cancel()
        close(fd)
        unlink(path)
    }

    /// A new unix stream socket and what `call` (bind or connect) returned for `path`; nil if
    /// the path does not fit a socket address or no socket could be made.
    private static func socket(
        at path: String, _ call: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32
    ) -> (fd: Int32, result: Int32)? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                call(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return (fd, result)
    }

    /// The client's side: asks the daemon `pid` for `request` (`json` or `text`).
    static func ask(pid: pid_t, _ request: String) throws(CLIError) -> String {
        let path = Paths.statusSocket(pid: pid)
        guard let (fd, connected) = Self.socket(at: path, connect) else {
            throw CLIError("cannot open a socket for \(path): \(errnoText(errno))")
        }
        defer { close(fd) }
        guard connected == 0 else { throw CLIError("the daemon (pid \(pid)) does not answer at \(path)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        writeAll(fd, request + "\n")
        let answer = Spawn.readAll(fd)
        guard answer.hasSuffix("\n") else { throw CLIError("the daemon (pid \(pid)) gave no answer") }
        return String(answer.dropLast())
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What each objmount mount of yours is doing: pending uploads, errors, cache, traffic.",
        discussion: """
            Asks each daemon over a unix socket in its runtime directory (0700). With a mount \
            point, that mount only. --json prints a JSON array, one object per mount: \
            mountpoint, remote, pid, version, commit, uptime_s, pending {files, bytes, oldest_s}, \
            uploads_running, upload_errors, inodes, open_handles, requests_in_flight, \
            memory {used, limit}, cache {directory, limit, used, hit_bytes, miss_bytes, \
            hit_rate}, requests, retries, bytes_up, bytes_down, options {write_back, \
            metadata_ttl_s, listing_mtime, memory_limit, max_inodes, part_size, \
            multipart_threshold}. The cache's hit rate counts \
            the bytes of reads that reach the daemon (the kernel's page cache answers repeated \
            reads of an open file itself).

            Examples:
              objmount status
              objmount status ./mnt --json
            """)

    @Argument(help: "A mount point (default: every objmount mount).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "With a mount point: wait until nothing is pending, showing what is left each second.")
    var wait = false

    func validate() throws {
        if wait && (mountpoint == nil || json) { throw ValidationError("--wait needs a mount point and no --json") }
    }

    func run() throws {
        if wait, let mountpoint {
            try waitUntilStored(Paths.absolute(mountpoint))
            return
        }
        var mounts = MountTable.current().filter { $0.fsType == "fuse.objmount" }.map(\.mountpoint)
        if let mountpoint {
            let path = Paths.absolute(mountpoint)
            guard mounts.contains(path) else { throw CLIError("\(mountpoint) is not an objmount mount") }
            mounts = [path]
        }
        var answers: [String] = []
        for mp in mounts {
            let answer: String
            do throws(CLIError) {
                guard let pid = Daemon.readPid(mountpoint: mp) else {
                    throw CLIError("no daemon of yours serves it (another user's mount, or its daemon is gone)")
                }
                answer = try StatusServer.ask(pid: pid, json ? "json" : "text")
            } catch {
                answer =
                    json
                    ? "{\"mountpoint\":\(JSONText.quoted(mp)),\"error\":\(JSONText.quoted(error.description))}"
                    : "\(mp): \(error.description)"
            }
            answers.append(answer)
        }
        if json {
            writeAll(1, "[" + answers.joined(separator: ",\n") + "]\n")
        } else if answers.isEmpty {
            writeAll(1, "no objmount mounts\n")
        } else {
            writeAll(1, answers.joined(separator: "\n") + "\n")
        }
    }

    /// Asks the daemon each second for what is left, until nothing is.
    func waitUntilStored(_ path: String) throws {
        guard MountTable.current().contains(where: { $0.mountpoint == path && $0.fsType == "fuse.objmount" }),
            let pid = Daemon.readPid(mountpoint: path)
        else { throw CLIError("\(path) is not an objmount mount of yours") }
        var meter = ProgressMeter(terminal: isatty(2) == 1)
        let start = ContinuousClock.now
        while true {
            let fields = try StatusServer.ask(pid: pid, "pending").split(separator: " ")
            guard fields.count == 2, let files = Int(fields[0]), let bytes = Int64(fields[1]) else {
                throw CLIError("the daemon (pid \(pid)) gave an answer this objmount does not read")
            }
            if files == 0 { break }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            writeStderr(meter.line(for: path, (files, bytes), at: seconds))
            usleep(1_000_000)
        }
        writeStderr(meter.end())
        writeAll(1, "\(path): nothing pending\n")
    }
}
