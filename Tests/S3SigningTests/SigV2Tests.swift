// SigV2 vectors: PROTOCOLS.md §5.2 (AWS RESTAuthentication examples, bucket johnsmith).

import Foundation
import S3Signing
import Testing

struct SigV2Case: Sendable, CustomTestStringConvertible {
    var name: String
    var request: SignableRequest
    var stringToSign: String
    var signature: String
    var testDescription: String { name }
}

let johnsmith: [SigV2Case] = [
    SigV2Case(
        name: "GET object",
        request: SignableRequest(
            method: "GET", path: "/photos/puppy.jpg",
            headers: [
                HTTPHeader("Host", "johnsmith.s3.amazonaws.com"),
                HTTPHeader("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ]),
        stringToSign: "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg",
        signature: "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
    SigV2Case(
        name: "PUT object",
        request: SignableRequest(
            method: "PUT", path: "/photos/puppy.jpg",
            headers: [
                HTTPHeader("Content-Type", "image/jpeg"),
                HTTPHeader("Content-Length", "94328"),
                HTTPHeader("Host", "johnsmith.s3.amazonaws.com"),
                HTTPHeader("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
            ]),
        stringToSign: "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
        signature: "MyyxeRY7whkBe+bq8fHCL/2kKUg="),
]

@Suite struct SigV2Tests {
    @Test(arguments: johnsmith)
    func restAuthenticationExample(_ c: SigV2Case) {
        let result = SigV2.headerAuth(
            c.request, virtualHostBucket: "johnsmith", credentials: s3ExampleCredentials,
            date: Date(timeIntervalSince1970: 0))
        #expect(result.stringToSign == c.stringToSign)
        #expect(result.signature == c.signature)
        #expect(result.headers == [HTTPHeader("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:\(c.signature)")])
        // Path-style: the same resource from the path.
        var pathStyle = c.request
        pathStyle.path = "/johnsmith" + c.request.path
        #expect(
            SigV2.sign(
                pathStyle, virtualHostBucket: nil, credentials: s3ExampleCredentials,
                date: Date(timeIntervalSince1970: 0)) == result.headers)
    }

    @Test func presignedGet() {
        let request = SignableRequest(method: "GET", path: "/photos/puppy.jpg")
        let result = SigV2.queryAuth(
            request, virtualHostBucket: "johnsmith", credentials: s3ExampleCredentials,
            expires: 1_175_139_620)
        #expect(result.stringToSign == "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg")
        #expect(result.signature == "NpgCjnDzrM+WFzoENXmpNDUsSn8=")
        #expect(
            URIEncoding.query(result.query)
                == "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D")
    }

    @Test func amzHeadersSubresourcesAndDate() {
        let request = SignableRequest(
            method: "PUT", path: "/db-backup.dat.gz",
            query: [
                QueryItem("uploadId", "a b"), QueryItem("prefix", "x"), QueryItem("partNumber", "2"),
                QueryItem("acl", nil),
            ],
            headers: [
                HTTPHeader("X-Amz-Meta-ReviewedBy", "joe@johnsmith.net"),
                HTTPHeader("X-Amz-Meta-ReviewedBy", " jane@johnsmith.net "),
                HTTPHeader("x-amz-date", "Tue, 27 Mar 2007 21:06:08 +0000"),
                HTTPHeader("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="),
                HTTPHeader("Content-Type", "application/x-download"),
            ])
        let result = SigV2.headerAuth(
            request, virtualHostBucket: "static.johnsmith.net",
            credentials: s3ExampleCredentials, date: Date(timeIntervalSince1970: 0))
        #expect(
            result.stringToSign == """
                PUT
                4gJE4saaMU4BqNR0kLY+lw==
                application/x-download

                x-amz-date:Tue, 27 Mar 2007 21:06:08 +0000
                x-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net
                /static.johnsmith.net/db-backup.dat.gz?acl&partNumber=2&uploadId=a b
                """)
        // No Date and no x-amz-date: the signer adds Date from the parameter.
        let dated = SigV2.sign(
            SignableRequest(method: "GET", path: "/"), virtualHostBucket: nil,
            credentials: s3ExampleCredentials, date: Date(timeIntervalSince1970: 1_175_024_202))
        #expect(dated.first == HTTPHeader("Date", "Tue, 27 Mar 2007 19:36:42 GMT"))
    }
}
