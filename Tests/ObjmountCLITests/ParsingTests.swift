import Testing

@testable import ObjmountCLI

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct RemoteParsingTests {
    @Test(arguments: [
        ("memory://b", Remote(scheme: .memory, container: "b", prefix: "")),
        ("memory://b/", Remote(scheme: .memory, container: "b", prefix: "")),
        ("memory://b/photos", Remote(scheme: .memory, container: "b", prefix: "photos/")),
        ("memory://b/a/b/", Remote(scheme: .memory, container: "b", prefix: "a/b/")),
        ("swift://default", Remote(scheme: .swift, container: "default", prefix: "")),
        ("swift://", Remote(scheme: .swift, container: nil, prefix: "")),
        ("hubic://default/docs", Remote(scheme: .hubic, container: "default", prefix: "docs/")),
        ("S3://bucket", Remote(scheme: .s3, container: "bucket", prefix: "")),
        ("ks3://bkt/x", Remote(scheme: .ks3, container: "bkt", prefix: "x/")),
    ])
    func parses(_ text: String, _ expected: Remote) throws {
        #expect(try Remote(parsing: text) == expected)
    }

    @Test(arguments: [
        ("foo://x", "unknown remote scheme 'foo'"),
        ("/some/path", "is not a URL"),
        ("memory://", "needs a bucket name"),
        ("memory://b/../x", "'..'"),
        ("memory://b?x=1", "must not contain"),
    ])
    func rejectsWithAClearMessage(_ text: String, _ fragment: String) {
        do {
            _ = try Remote(parsing: text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description.contains(fragment), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func describesItselfAsTheURL() throws {
        #expect(try Remote(parsing: "memory://b/a/b").description == "memory://b/a/b")
        #expect(try Remote(parsing: "swift://").description == "swift://")
    }
}

@Suite struct MountOptionTests {
    @Test func parsesTheKnownOptions() throws {
        let o = try MountOptions(parsing: ["allow_other,ro", "uid=1000,gid=100,umask=027"])
        #expect(o.allowOther && o.readOnly)
        #expect(o.uid == 1000 && o.gid == 100 && o.umask == 0o027)
        #expect(try MountOptions(parsing: ["ro,rw"]).readOnly == false)
        #expect(try MountOptions(parsing: []) == MountOptions())
    }

    /// What mount.fuse3, an fstab line or a systemd unit hands over: kernel flags go to the
    /// kernel (once each, in order), fstab's and systemd's own options are ignored.
    @Test func kernelFlagsPassAndFstabsOwnOptionsAreIgnored() throws {
        let o = try MountOptions(parsing: [
            "rw,noexec,nosuid,nodev,allow_other", "defaults,noauto,nofail,_netdev,users,relatime",
            "x-systemd.automount,x-systemd.requires=network-online.target,comment=home,nosuid,noatime",
        ])
        #expect(o.kernelFlags == ["noexec", "nodev", "nosuid", "noatime"])
        #expect(o.allowOther && !o.readOnly && o.uid == nil)
        #expect(try MountOptions(parsing: ["_netdev,x-gvfs-show"]) == MountOptions())
    }

    @Test(arguments: [
        ("bogus", "unknown mount option 'bogus'"),
        ("uid=abc", "not a valid number"),
        ("umask=999", "not a valid octal number"),
        ("umask=1777", "at most 777"),
        ("uid", "needs a value"),
        ("ro=1", "takes no value"),
        ("nosuid=1", "unknown mount option 'nosuid=1'"),
    ])
    func rejectsWithAClearMessage(_ text: String, _ fragment: String) {
        do {
            _ = try MountOptions(parsing: [text])
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description.contains(fragment), "\(error.description)")
        }
    }

    @Test func absolutePathsAreNormalizedWithoutTouchingTheDisk() {
        #expect(Paths.absolute("/a/./b/../c/") == "/a/c")
        #expect(Paths.absolute("/") == "/")
        #expect(Paths.absolute("x").hasSuffix("/x"))
    }

    @Test func pidFileNamesAreFlat() {
        let p = Paths.pidFile(for: "/tmp/my mnt")
        #expect(p.hasSuffix("%2Ftmp%2Fmy%20mnt.pid"))
    }
}

@Suite struct ByteSizeTests {
    @Test(
        arguments: [
            (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (2_000_000, "1.9 MiB"),
            (3 << 30, "3.0 GiB"), (1_536 << 40, "1536.0 TiB"),
        ] as [(Int64, String)])
    func approximateSizesAreForPeople(bytes: Int64, text: String) {
        #expect(ByteSize(bytes: bytes).approximate == text)
    }

    @Test func unmountReadsTheDaemonsProgress() throws {
        let path = "/tmp/objmount-progress-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        #expect(Unmount.pending(in: path) == nil)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        writeAll(fd, "3 5242880\n")
        close(fd)
        #expect(Unmount.pending(in: path) == "3 file(s), 5.0 MiB")
    }
}

@Suite struct VersionTests {
    /// `--version` (on the root and on every subcommand) prints the release, the commit it
    /// was built from, and the libfuse and OpenSSL it runs with, and exits 0.
    @Test(arguments: [["--version"], ["mount", "--version"]])
    func versionNamesTheReleaseAndItsLibraries(_ arguments: [String]) {
        do {
            _ = try Objmount.parseAsRoot(arguments)
            Issue.record("--version did not exit")
        } catch {
            #expect(Objmount.exitCode(for: error) == .success)
            let text = Objmount.fullMessage(for: error)
            #expect(text.hasPrefix("objmount \(Objmount.release) (commit \(buildCommit); libfuse 3."), "\(text)")
            #expect(buildCommit == "unknown" || buildCommit.count >= 12, "\(buildCommit)")
            #expect(text.contains("OpenSSL 3."), "\(text)")
        }
    }
}

@Suite struct ProgressMeterTests {
    /// One line a second off a terminal; the rate and the time left once two counts differ;
    /// rewritten in place on a terminal, ended with a newline.
    @Test func linesSayWhatIsLeftTheRateAndTheTimeToGo() {
        var meter = ProgressMeter(terminal: false)
        #expect(meter.line(for: "/m", nil, at: 1) == "objmount: /m: waiting for pending uploads to finish\n")
        #expect(meter.line(for: "/m", (3, 30 << 20), at: 2) == "objmount: /m: storing 3 file(s), 30.0 MiB left\n")
        #expect(
            meter.line(for: "/m", (2, 10 << 20), at: 4)
                == "objmount: /m: storing 2 file(s), 10.0 MiB left, 10.0 MiB/s, about 1 s to go\n")
        #expect(meter.end() == "")
        var tty = ProgressMeter(terminal: true)
        #expect(tty.line(for: "/m", (1, 1 << 20), at: 1).hasPrefix("\r\u{1B}[Kobjmount: /m: storing 1 file(s)"))
        #expect(tty.end() == "\n")
    }
}
