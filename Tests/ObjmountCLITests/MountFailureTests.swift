// What `objmount mount` says when its arguments or its server are wrong: one line, at once.

import ArgumentParser
import ObjectStorage
import S3Signing
import Testing

@testable import ObjmountCLI

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct NumberOptionTests {
    /// The message `objmount mount` prints for these arguments (after `objmount: `).
    func failure(_ arguments: [String]) -> String? {
        do {
            _ = try Objmount.parseAsRoot(["mount", "memory://b", "/nonexistent-mountpoint"] + arguments)
            return nil
        } catch {
            return Objmount.message(for: error)
        }
    }

    @Test(arguments: [
        (["--segment-size", "-3"], "--segment-size must be a positive number of MiB (got -3)"),
        (["--segment-size=-3"], "--segment-size must be a positive number of MiB (got -3)"),
        (["--segment-size", "0"], "--segment-size must be a positive number of MiB (got 0)"),
        (["--segment-size", "6000"], "--segment-size must be at most 5120 MiB (got 6000)"),
        (["--metadata-ttl", "-5"], "--metadata-ttl must be a non-negative number of seconds (got -5)"),
        (["--metadata-ttl=-0.5"], "--metadata-ttl must be a non-negative number of seconds (got -0.5)"),
        (["--metadata-ttl", "90000"], "--metadata-ttl must be at most 86400 seconds (got 90000)"),
        (["--max-inodes", "50"], "--max-inodes must be 0 (no limit) or at least 100 (got 50)"),
        (["--max-inodes", "-1"], "--max-inodes must be 0 (no limit) or at least 100 (got -1)"),
        (
            ["--encryption-key-file", "/k", "--listing-mtime"],
            "--listing-mtime cannot be used with --encryption-key-file"
        ),
    ])
    func outOfRangeNumbersSayWhatIsExpected(_ arguments: [String], _ expected: String) throws {
        let message = try #require(failure(arguments))
        #expect(message.contains(expected), "\(message)")
        #expect(!message.contains("Missing value"))
        #expect(!message.contains("\n"))
    }

    @Test func validNumbersParse() throws {
        #expect(failure(["--segment-size", "8", "--metadata-ttl", "0"]) == nil)
        #expect(failure(["--segment-size=5120", "--metadata-ttl=1.5"]) == nil)
        // A value that is not a number is still said to be invalid.
        #expect(failure(["--segment-size", "lots"])?.contains("lots") == true)
    }
}

@Suite struct UnreachableServerTests {
    /// `Drivers.open` of `settings` against a closed port: the message, and how long it took.
    func open(_ remote: String, _ settings: DriverSettings) async throws -> (String, Duration) {
        let r = try Remote(parsing: remote)
        let start = ContinuousClock.now
        do {
            let (_, transport) = try await Drivers.open(r, settings)
            await transport.shutdown()
            Issue.record("\(remote) opened")
            return ("", ContinuousClock.now - start)
        } catch {
            return (Drivers.failure(of: r, error, doing: "cannot open"), ContinuousClock.now - start)
        }
    }

    @Test func s3Ks3AndSwiftFailAtOnceWithOneLine() async throws {
        let port = try closedPort()
        let url = "http://127.0.0.1:\(port)"
        let credentials = SigningCredentials(accessKeyID: "AK", secretAccessKey: "SK")
        let s3 = try S3Settings.endpointValue(url, region: "us-east-1", pathStyle: false, provider: .aws)
        let ks3 = try S3Settings.endpointValue(url, region: "", pathStyle: false, provider: .ks3)
        let cases: [(String, DriverSettings)] = [
            ("s3://b", .s3(S3Settings(provider: .aws, endpoint: s3, credentials: credentials))),
            ("s3://", .s3(S3Settings(provider: .aws, endpoint: s3, credentials: credentials))),
            ("ks3://b", .s3(S3Settings(provider: .ks3, endpoint: ks3, credentials: credentials))),
            ("swift://c", .swift(.v1(authURL: url + "/auth/v1.0", user: "test:tester", key: "testing"))),
            ("swift://", .swift(.v1(authURL: url + "/auth/v1.0", user: "test:tester", key: "testing"))),
        ]
        for (remote, settings) in cases {
            let (message, took) = try await open(remote, settings)
            #expect(message == "cannot connect to \(url): connection refused", "\(remote)")
            // That a refused first contact is not tried again is counted by the drivers' own tests
            // (theFirstContactIsNotRetriedAndSaysWhy, anUnreachableAuthServiceFailsTheFirstContactAtOnce);
            // here a loose bound: the hermetic run stalls its tasks for ~3.4 s at its start.
            #expect(took < .seconds(10), "\(remote) took \(took)")
        }
    }

    @Test func otherFailuresNameTheRemote() throws {
        let r = try Remote(parsing: "s3://b")
        #expect(
            Drivers.failure(of: r, StorageError.notFound("bucket b"), doing: "cannot open")
                == "cannot open s3://b: no such object: bucket b")
        #expect(
            Drivers.failure(of: r, StorageError.unavailable("GET bucket b: HTTP 503\nmore"))
                == "s3://b: storage unavailable: GET bucket b: HTTP 503")
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on.
func closedPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CLIError("socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw CLIError("bind: \(errno)") }
    return UInt16(bigEndian: address.sin_port)
}

@Suite struct MountRefusalTests {
    /// What `objmount mount ARGS` fails with, before it touches a mount point or a server.
    func refusal(_ arguments: [String]) throws -> String {
        let command = try #require(try Objmount.parseAsRoot(["mount"] + arguments) as? Mount)
        do {
            try command.run()
            Issue.record("mounted: \(arguments)")
            return ""
        } catch {
            return Objmount.message(for: error)
        }
    }

    @Test func aMissingRemoteNameOrKeyFileIsOneLineThatNamesIt() throws {
        let directory = "/tmp/objmount-refusal-\(getpid())"
        let path = directory + "/objmount.conf"
        mkdir(directory, 0o700)
        defer {
            unlink(path)
            rmdir(directory)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        writeAll(fd, "[photos]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:1\"\n")
        close(fd)
        var message = try refusal(["nosuch:bucket", "/mnt", "--config", path])
        #expect(message == "no remote 'nosuch' in \(path) (it has: photos)", "\(message)")
        message = try refusal(["memory://b", "/mnt", "--encryption-key-file", directory + "/no.key"])
        #expect(message.contains(directory + "/no.key") && !message.contains("\n"), "\(message)")
        // A config file others may read is refused with the fix.
        chmod(path, 0o644)
        message = try refusal(["photos:bucket", "/mnt", "--config", path])
        #expect(message.contains("chmod 600 \(path)"), "\(message)")
    }
}
