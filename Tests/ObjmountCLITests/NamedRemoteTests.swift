import ArgumentParser
import Testing

@testable import ObjmountCLI

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct NamedRemoteTests {
    let text = """
        # two remotes
        [photos]
        type = "s3"
        endpoint = "https://s3.example.com"
        region = "eu-west-1"
        access_key_id = "AKIAEXAMPLE"
        secret_access_key = "wJalrXUtnFEMI/K7MDENG"
        path_style = true
        storage_class = "STANDARD_IA"

        [office]
        type = "swift"
        auth_url = "https://auth.example.com/v3"
        user = "me"
        password = "env:OFFICE_PASSWORD"
        project = "p1"
        """

    @Test func remotesBecomeTheirDriversVariables() throws {
        let remotes = try NamedRemotes.parse(text, path: "objmount.conf")
        #expect(remotes.keys.sorted() == ["office", "photos"])
        let photos = try #require(remotes["photos"])
        #expect(photos.type == .s3 && photos.pathStyle == true && photos.storageClass == "STANDARD_IA")
        #expect(
            try photos.environment() == [
                "AWS_ENDPOINT_URL": "https://s3.example.com", "AWS_REGION": "eu-west-1",
                "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
            ])
        // Swift with a password is Keystone (OS_*); an env: reference needs its variable.
        let office = try #require(remotes["office"])
        #expect(throws: CLIError.self) { _ = try office.environment() }
        // `remote show` says a secret is set, never what it is; references are shown as written.
        let shown = photos.shown.map { "\($0.0) = \($0.1)" }
        #expect(shown.contains("secret_access_key = <set, 21 characters>"))
        #expect(!shown.joined().contains("wJalrXUtnFEMI"))
        #expect(office.shown.contains { $0 == ("password", "env:OFFICE_PASSWORD") })
    }

    @Test func aKeystoneRemoteReadsItsReferences() throws {
        setenv("OBJMOUNT_TEST_OFFICE_PASSWORD", "s3cret", 1)
        defer { unsetenv("OBJMOUNT_TEST_OFFICE_PASSWORD") }
        let remotes = try NamedRemotes.parse(
            "[o]\ntype = \"swift\"\nauth_url = \"https://a/v3\"\nuser = \"me\"\npassword = \"env:OBJMOUNT_TEST_OFFICE_PASSWORD\"\nproject = \"p\"\n",
            path: "c")
        #expect(
            try remotes["o"]?.environment() == [
                "OS_AUTH_URL": "https://a/v3", "OS_USERNAME": "me", "OS_PASSWORD": "s3cret", "OS_PROJECT_NAME": "p",
            ])
    }

    @Test(arguments: [
        ("[a]\ntype = \"s3\"\nregion = \n", "c line 3"),
        ("[a]\ntype = \"s4\"\n", "unknown type 's4'"),
        ("[a]\nregion = \"x\"\n", "needs type ="),
        ("[a]\ntype = \"s3\"\nsecret = \"x\"\n", "unknown setting 'secret'"),
        ("[a]\ntype = \"s3\"\nregion = 5\n", "must be a string"),
        ("[a]\ntype = \"swift\"\npath_style = true\n", "unknown setting 'path_style'"),
        ("region = \"x\"\n", "'region' is not a remote"),
        ("[a]\ntype = \"s3\"\ncache_size = \"lots\"\n", "[a] cache_size must be a size"),
        ("[a]\ntype = \"s3\"\nwrite_back = \"maybe\"\n", "[a] write_back must be true or false"),
        ("[a]\ntype = \"s3\"\nsegment_size = \"8\"\n", "[a] segment_size must be a whole number"),
        ("[a]\ntype = \"s3\"\nsegment = 8\n", "segment_size"),
    ])
    func badFilesSayWhatAndWhere(_ text: String, _ fragment: String) {
        do {
            _ = try NamedRemotes.parse(text, path: "c")
            Issue.record("parsed: \(text)")
        } catch {
            #expect(error.description.contains(fragment), "\(error.description)")
        }
    }

    /// Mount options kept with a remote apply where the command line gives none; values out of
    /// range are refused as the flag's would be, naming the remote.
    @Test func aRemotesMountOptionsApplyUnlessAFlagIsGiven() throws {
        let remotes = try NamedRemotes.parse(
            """
            [big]
            type = "s3"
            segment_size = 32
            cache_size = "20G"
            memory_limit = "128M"
            write_back = false
            metadata_ttl = 2.5
            listing_mtime = true
            max_inodes = 5000
            cache_dir = "/var/cache/big"
            """, path: "c")
        let big = try #require(remotes["big"]).mount
        #expect(big.segmentSize == 32 && big.cacheSize?.bytes == 20 << 30 && big.memoryLimit?.bytes == 128 << 20)
        #expect(big.writeBack == false && big.metadataTTL == 2.5 && big.listingMtime == true && big.maxInodes == 5000)
        #expect(remotes["big"]!.shown.contains { $0 == ("cache_size", "20G") })
        func command(_ flags: [String]) throws -> Mount {
            try #require(try Objmount.parseAsRoot(["mount", "big:b", "/mnt"] + flags) as? Mount)
        }
        func settings(_ flags: [String]) throws -> Mount.Settings { Mount.Settings(try command(flags), big) }
        var s = try settings([])
        #expect(s.segmentSize == 32 && s.cacheSize?.bytes == 20 << 30 && s.memoryLimit.bytes == 128 << 20)
        #expect(!s.writeBack && s.metadataTTL == 2.5 && s.listingMtime && s.maxInodes == 5000)
        #expect(s.cacheDir == "/var/cache/big")
        s = try settings(["--segment-size", "8", "--write-back", "on", "--metadata-ttl", "0", "--cache-dir", "/c"])
        #expect(s.segmentSize == 8 && s.writeBack && s.metadataTTL == 0 && s.cacheDir == "/c" && s.maxInodes == 5000)
        // Without a remote: the defaults.
        let plain = Mount.Settings(try command([]), MountDefaults())
        #expect(plain.writeBack && plain.metadataTTL == 10 && plain.maxInodes == 100_000)
        #expect(plain.memoryLimit.bytes == 64 << 20 && plain.segmentSize == nil && plain.cacheSize == nil)
        // A remote's value is checked as the flag's.
        let tiny = try #require(try NamedRemotes.parse("[t]\ntype = \"s3\"\nmemory_limit = \"1M\"\n", path: "c")["t"])
        #expect(throws: ValidationError.self) { try Mount.Settings(try command([]), tiny.mount).check() }
    }

    @Test func onlyNamesWithAColonAndNoSchemeAreNamedRemotes() {
        #expect(NamedRemotes.split("photos:bucket/a") ?? ("", "") == ("photos", "bucket/a"))
        #expect(NamedRemotes.split("photos:") ?? ("", "") == ("photos", ""))
        #expect(NamedRemotes.split("s3://bucket") == nil)
        #expect(NamedRemotes.split("/some/path") == nil)
        #expect(NamedRemotes.split(":bucket") == nil)
    }

    @Test func aFileOthersCanReadIsRefused() throws {
        let path = "/tmp/objmount-named-remote-test-\(getpid()).conf"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = "[a]\ntype = \"s3\"\n".withCString { write(fd, $0, strlen($0)) }
        close(fd)
        defer { unlink(path) }
        chmod(path, 0o644)
        #expect {
            _ = try NamedRemotes.load(path)
        } throws: { error in
            "\(error)".contains("chmod 600 \(path)")
        }
        chmod(path, 0o600)
        #expect(try NamedRemotes.load(path)["a"]?.type == .s3)
    }
}

@Suite struct RemoteEditTests {
    /// `remote add` appends a table and `remote remove` takes it out again; the rest of the
    /// file, comments included, is kept; the file stays 0600; secrets are not taken as arguments.
    @Test func addAndRemoveKeepTheRestOfTheFile() throws {
        let path = "/tmp/objmount-remote-edit-\(getpid())/objmount.conf"
        defer {
            unlink(path)
            rmdir(String(path.dropLast(14)))
        }
        var add = try RemoteCommand.Add.parse([
            "photos", "s3", "endpoint=https://s3.example.com", "secret_access_key=env:PHOTOS_SECRET", "--config", path,
        ])
        try add.run()
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        // A hand-written part in between.
        let fd = open(path, O_WRONLY | O_APPEND)
        writeAll(fd, "# the office's Swift\n[office]\ntype = \"swift\"\nauth_url = \"https://a/v1\"\n")
        close(fd)
        add = try RemoteCommand.Add.parse([
            "backup", "ks3", "endpoint=ks3-cn-beijing.ksyuncs.com", "segment_size=32", "write_back=off",
            "listing_mtime=true", "cache_size=20G", "--config", path,
        ])
        try add.run()
        #expect(try NamedRemotes.load(path).keys.sorted() == ["backup", "office", "photos"])
        #expect(throws: CLIError.self) {
            let again = try RemoteCommand.Add.parse(["photos", "s3", "--config", path])
            try again.run()
        }
        #expect(throws: CLIError.self) {
            let secret = try RemoteCommand.Add.parse(["x", "s3", "secret_access_key=plain", "--config", path])
            try secret.run()
        }
        let remove = try RemoteCommand.Remove.parse(["photos", "--config", path])
        try remove.run()
        let remotes = try NamedRemotes.load(path)
        #expect(remotes.keys.sorted() == ["backup", "office"])
        #expect(remotes["backup"]?.settings["endpoint"] == "ks3-cn-beijing.ksyuncs.com")
        let mount = remotes["backup"]?.mount
        #expect(mount?.segmentSize == 32 && mount?.writeBack == false && mount?.listingMtime == true)
        #expect(mount?.cacheSize?.bytes == 20 << 30)
        #expect(NamedRemote.readText(path)?.contains("# the office's Swift") == true)
        #expect(NamedRemote.readText(path)?.contains("PHOTOS_SECRET") == false)
    }
}
