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
    ])
    func badFilesSayWhatAndWhere(_ text: String, _ fragment: String) {
        do {
            _ = try NamedRemotes.parse(text, path: "c")
            Issue.record("parsed: \(text)")
        } catch {
            #expect(error.description.contains(fragment), "\(error.description)")
        }
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
        add = try RemoteCommand.Add.parse(["backup", "ks3", "endpoint=ks3-cn-beijing.ksyuncs.com", "--config", path])
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
        #expect(NamedRemote.readText(path)?.contains("# the office's Swift") == true)
        #expect(NamedRemote.readText(path)?.contains("PHOTOS_SECRET") == false)
    }
}
