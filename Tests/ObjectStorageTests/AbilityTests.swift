// The optional abilities of drivers (ObjectStorage/StorageAbilities.swift) and the shared
// extension → Content-Type table: which driver has which ability, so that the command line can
// ask for the protocol and never for a driver's type.

import MemoryStorage
import ObjectStorage
import OpenStackStorage
import S3Signing
import S3Storage
import StorageHTTP
import Testing

/// Compiles only if `T` has the ability.
func presigns<T: PresigningStorage>(_: T.Type) -> Bool { true }
func listsIncompleteUploads<T: IncompleteUploadListing>(_: T.Type) -> Bool { true }

@Suite struct AbilityTests {
    @Test func driversAdoptTheirAbilities() throws {
        #expect(presigns(S3Storage.self) && listsIncompleteUploads(S3Storage.self))
        // Swift's "incomplete uploads" are segment sets no object uses.
        #expect(presigns(OpenStackStorage.self) && listsIncompleteUploads(OpenStackStorage.self))
        // The in-process store has no URL and keeps no pending uploads.
        #expect(!(MemoryStorage.self is any PresigningStorage.Type))
        #expect(!(MemoryStorage.self is any IncompleteUploadListing.Type))
        // Seen as `any ObjectStorage`, as the command line holds them.
        let endpoint = try S3Endpoint(
            url: "http://127.0.0.1:9000", region: "us-east-1", forcePathStyle: false, provider: .aws)
        let transport = ScriptedTransport { _, _ in HTTPResponse(status: 500) }
        let s3: any ObjectStorage = S3Storage(
            bucket: "b", provider: .aws, endpoint: endpoint,
            credentials: SigningCredentials(accessKeyID: "AK", secretAccessKey: "SK"),
            transport: transport)
        #expect(s3 is any PresigningStorage && s3 is any IncompleteUploadListing)
    }

    @Test func s3PresignsThroughTheProtocolWithoutARequest() async throws {
        let endpoint = try S3Endpoint(
            url: "http://127.0.0.1:9000", region: "us-east-1", forcePathStyle: false, provider: .aws)
        let transport = ScriptedTransport { _, _ in HTTPResponse(status: 500) }
        let credentials = SigningCredentials(accessKeyID: "AK", secretAccessKey: "SK")
        let presigner: any PresigningStorage = S3Storage(
            bucket: "b", provider: .aws, endpoint: endpoint, credentials: credentials, transport: transport)
        let url = try await presigner.presignedURL(for: "dir/a b.txt", expiresIn: 900)
        #expect(url.hasPrefix("http://127.0.0.1:9000/b/dir/a%20b.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"))
        #expect(url.contains("X-Amz-Expires=900&"))
        #expect(transport.requests.isEmpty)
        await #expect(throws: StorageError.self) { try await presigner.presignedURL(for: "k", expiresIn: 8 * 86_400) }
    }

    @Test func incompleteUploadsComeThroughTheProtocol() async throws {
        let endpoint = try S3Endpoint(
            url: "http://127.0.0.1:9000", region: "us-east-1", forcePathStyle: false, provider: .aws)
        let transport = ScriptedTransport { r, _ in
            if r.method == "DELETE" { return HTTPResponse(status: 204) }
            return HTTPResponse(
                status: 200,
                body: Array(
                    """
                    <ListMultipartUploadsResult><IsTruncated>false</IsTruncated>
                    <Upload><Key>x/big</Key><UploadId>U1</UploadId><Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>
                    </ListMultipartUploadsResult>
                    """.utf8))
        }
        let listing: any IncompleteUploadListing = S3Storage(
            bucket: "b", provider: .aws, endpoint: endpoint,
            credentials: SigningCredentials(accessKeyID: "AK", secretAccessKey: "SK"),
            transport: transport)
        let pending = try await listing.incompleteUploads(prefix: "x/")
        #expect(
            pending == [
                IncompleteUpload(
                    upload: MultipartUpload(key: "x/big", uploadID: "U1"), initiated: Timestamp(seconds: 1_704_164_645))
            ])
        try await listing.abortMultipartUpload(pending[0].upload)
        #expect(
            transport.requests.last?.method == "DELETE"
                && transport.requests.last?.url.hasSuffix("?uploadId=U1") == true)
        #expect(transport.requests.first?.url.contains("prefix=x%2F") == true)
    }
}

@Suite struct MediaTypeTests {
    @Test(arguments: [
        ("notes.txt", "text/plain"), ("a/b/page.HTML", "text/html"), ("x/style.css", "text/css"),
        ("app.js", "text/javascript"),
        ("d.json", "application/json"), ("feed.xml", "application/xml"), ("p.png", "image/png"),
        ("p.JPG", "image/jpeg"),
        ("p.jpeg", "image/jpeg"), ("a.gif", "image/gif"), ("logo.svg", "image/svg+xml"), ("doc.pdf", "application/pdf"),
        ("a.zip", "application/zip"), ("a.tar.gz", "application/gzip"), ("a.tar", "application/x-tar"),
        ("v.mp4", "video/mp4"), ("s.mp3", "audio/mpeg"),
    ])
    func extensionsGiveTheirType(_ key: String, _ type: String) {
        #expect(MediaType.forKey(key) == type)
        #expect(MediaType.of(key, requested: nil) == type)
    }

    @Test func noKnownExtensionGivesTheFallbackAndAskedTypesWin() {
        for key in ["README", ".bashrc", "dir.d/file", "trailing.", "a.unknownext", "dir/"] {
            #expect(MediaType.forKey(key) == nil, "\(key)")
            #expect(MediaType.of(key, requested: nil) == "application/octet-stream")
        }
        #expect(MediaType.of("a.txt", requested: "application/x-directory") == "application/x-directory")
        #expect(MediaType.of("a.txt", requested: "") == "text/plain")
    }
}
