// The pieces of s3:// / ks3:// settings that do not need the environment.

import Testing

@testable import ObjmountCLI

@Suite struct S3SettingsTests {
    @Test func awsFilesParseLikeTheAWSCLIReadsThem() {
        let text = """
            # comment
            [default]
            aws_access_key_id = AKIDEFAULT
            aws_secret_access_key=secret/with=equals
            [profile work]
            region = eu-west-3\r
            ; another comment
            endpoint_url = https://s3.gra.io.cloud.ovh.net
            """
        let ini = INIFile.parse(text)
        #expect(ini["default"]?["aws_access_key_id"] == "AKIDEFAULT")
        #expect(ini["default"]?["aws_secret_access_key"] == "secret/with=equals")
        #expect(ini["profile work"]?["region"] == "eu-west-3")
        #expect(ini["profile work"]?["endpoint_url"] == "https://s3.gra.io.cloud.ovh.net")
    }

    @Test(arguments: [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172_800), ("30", 30), ("0s", 0)])
    func durations(_ text: String, _ seconds: Int) {
        #expect(DurationText(argument: text)?.seconds == seconds)
    }

    @Test(arguments: ["", "h", "1x", "-5m", "1.5h", "99999999999d"])
    func badDurations(_ text: String) {
        #expect(DurationText(argument: text) == nil)
    }

    @Test func objectsAreNamedByRemoteURLs() throws {
        let o = try RemoteObject.resolve("s3://bucket/photos/cat.jpg")
        #expect(o.remote.container == "bucket")
        #expect(o.key == "photos/cat.jpg")
        #expect(throws: CLIError.self) { try RemoteObject.resolve("s3://bucket") }
    }

    @Test func storageClassesAreCheckedPerProvider() throws {
        #expect(try S3Settings.validated("standard_ia", .ks3) == "STANDARD_IA")
        #expect(throws: CLIError.self) { try S3Settings.validated("GLACIER", .ks3) }
        #expect(try S3Settings.validated("GLACIER", .aws) == "GLACIER")
    }
}
