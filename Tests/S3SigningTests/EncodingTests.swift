// URI encoding and date formatting helpers.

import Foundation
import S3Signing
import Testing

@Suite struct EncodingTests {
    @Test func rfc3986() {
        #expect(URIEncoding.encode("-._~AZaz09") == "-._~AZaz09")
        #expect(URIEncoding.encode("a b+c*d/e=f&g%") == "a%20b%2Bc%2Ad%2Fe%3Df%26g%25")
        #expect(URIEncoding.encode("a/b c", keepSlash: true) == "a/b%20c")
        #expect(URIEncoding.encode("ሴ😀") == "%E1%88%B4%F0%9F%98%80")
        #expect(
            URIEncoding.query([QueryItem("uploads", nil), QueryItem("prefix", "a b/"), QueryItem("e", "")])
                == "uploads&prefix=a%20b%2F&e=")
    }

    @Test func decode() {
        #expect(URIEncoding.decode("a%20b+%C3%A9%2f") == "a b+é/")
        #expect(URIEncoding.decode("100%") == nil)
        #expect(URIEncoding.decode("%zz") == nil)
        #expect(URIEncoding.decode("%FF") == nil)
    }

    @Test(arguments: [
        (1_440_938_160.0, "20150830T123600Z", "Sun, 30 Aug 2015 12:36:00 GMT"),
        (1_751_371_200.0, "20250701T120000Z", "Tue, 01 Jul 2025 12:00:00 GMT"),
        (0.0, "19700101T000000Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
        (951_825_599.9, "20000229T115959Z", "Tue, 29 Feb 2000 11:59:59 GMT"),
        (-1.0, "19691231T235959Z", "Wed, 31 Dec 1969 23:59:59 GMT"),
    ])
    func dates(_ seconds: Double, _ amz: String, _ rfc1123: String) {
        let date = Date(timeIntervalSince1970: seconds)
        #expect(SigningDate.amzDate(date) == amz)
        #expect(SigningDate.shortDate(date) == String(amz.prefix(8)))
        #expect(SigningDate.rfc1123(date) == rfc1123)
    }
}
