// S3XML: the XML parser, the typed readers (on the AWS documentation's example replies) and the
// request builders.

import Testing

@testable import S3Storage

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func parseError(_ text: String) -> XMLParseError? {
    do {
        _ = try S3XML.parse(bytes(text))
        return nil
    } catch {
        return error
    }
}

/// SplitMix64, so the property test is reproducible without extra dependencies.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct S3XMLParserTests {
    @Test func elementsAttributesAndText() throws {
        let root = try S3XML.parse(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <!-- a comment -->
                <s3:Root xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" a='single' b="double &amp; &quot;q&quot;">
                  <s3:Key>one</s3:Key>
                  <Empty/>
                  <Empty />
                  <Key>two</Key>
                  <?pi inside?>
                </s3:Root>
                """))
        #expect(root.name == "Root")
        #expect(
            root.attributes == [
                "xmlns:s3": "http://s3.amazonaws.com/doc/2006-03-01/", "a": "single", "b": #"double & "q""#,
            ])
        #expect(root.children.map(\.name) == ["Key", "Empty", "Empty", "Key"])
        #expect(root.value("Key") == "one")
        #expect(root.children(named: "Key").map(\.text) == ["one", "two"])
        #expect(root.child("Empty") == XMLNode(name: "Empty"))
        #expect(root.child("Missing") == nil)
        #expect(root.value("Missing") == nil)
        #expect(root.value("Empty") == "")
        // The root's own text is the whitespace between its children, not the children's text.
        #expect(root.text.allSatisfy { $0.isWhitespace })
    }

    @Test func entities() throws {
        let root = try S3XML.parse(bytes("<a>&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#xe9;&#233;&#x1F600;&#10;&#13;</a>"))
        #expect(root.text == "&<>\"'ABéé😀\n\r")
        #expect(
            Array(root.text.utf8) == [
                0x26, 0x3C, 0x3E, 0x22, 0x27, 0x41, 0x42, 0xC3, 0xA9, 0xC3, 0xA9,
                0xF0, 0x9F, 0x98, 0x80, 0x0A, 0x0D,
            ])
        #expect(try S3XML.parse(bytes("<a b='&lt;&#x263A;&apos;'/>")).attributes["b"] == "<☺'")
    }

    @Test func cdataAndComments() throws {
        let root = try S3XML.parse(bytes("<a>x<![CDATA[<not> &amp; a tag]]>y<!-- <b>ignored</b> -->z<![CDATA[]]></a>"))
        #expect(root.text == "x<not> &amp; a tagyz")
        #expect(root.children.isEmpty)
    }

    @Test func nonASCIITextIsByteExact() throws {
        let text = "é/ü x+y%z.txt — 日本語 🎉 ç\u{301}"
        let root = try S3XML.parse(bytes("<Key>\(text)</Key>"))
        #expect(Array(root.text.utf8) == Array(text.utf8))
    }

    @Test func leadingWhitespaceAndBOM() throws {
        let padded = String(repeating: " ", count: 100) + "\n\n<?xml version=\"1.0\"?>\n<a>b</a>\n  "
        #expect(try S3XML.parse(bytes(padded)).text == "b")
        #expect(try S3XML.parse([0xEF, 0xBB, 0xBF] + bytes("<a>b</a>")).text == "b")
    }

    @Test func rawCarriageReturnIsKept() throws {
        #expect(try S3XML.parse(bytes("<a>x\r\ny\rz</a>")).text == "x\r\ny\rz")
    }

    @Test(arguments: [
        "", "   \n ", "<?xml version=\"1.0\"?>", "<!-- only a comment -->",
        "<a>", "<a><b></b>", "<a></b>", "<a><b></a></b>", "</a>", "<a/></a>", "<a/><b/>", "<a></a>x",
        "text<a/>", "<a>&unknown;</a>", "<a>&amp</a>", "<a>&#xZZ;</a>", "<a>&#xD800;</a>", "<a>&#x110000;</a>",
        "<a>&#;</a>", "<a b=\"1\" b=\"2\"/>", "<a b=1/>", "<a b=\"x/>", "<a b=\"<\"/>", "<a b/>", "<a b=\"1\"c=\"2\"/>",
        "<a><!-- unterminated</a>", "<a><![CDATA[ unterminated</a>", "<?xml version=\"1.0\"", "<!DOCTYPE a><a/>",
        "<a", "<a <b/></a>", "<1a/>", "<a></ a>", "<>", "<a><![CDATA[x]]></a><![CDATA[y]]>",
    ])
    func malformedDocumentsAreRejected(_ document: String) {
        #expect(parseError(document) != nil, "accepted: \(document)")
    }

    @Test func errorDescriptionsSayWhatAndWhere() {
        #expect(parseError("")?.description == "XML: empty document")
        #expect(parseError("<a><b></a>")?.description == "XML: end tag </a> does not match <b> at byte 6")
        #expect(parseError("<a><b>")?.description.contains("unclosed element <b>") == true)
    }

    @Test func nestingIsLimited() throws {
        let ok = String(repeating: "<a>", count: S3XML.maxDepth) + String(repeating: "</a>", count: S3XML.maxDepth)
        #expect(throws: Never.self) { try S3XML.parse(bytes(ok)) }
        let deep = String(repeating: "<a>", count: 100_000) + String(repeating: "</a>", count: 100_000)
        #expect(parseError(deep) != nil)
    }
}

@Suite struct S3XMLReplyTests {
    // ListObjectsV2 with a delimiter (AWS API reference example).
    @Test func listObjectsV2WithCommonPrefixes() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Name>example-bucket</Name>
                  <Prefix></Prefix>
                  <KeyCount>2</KeyCount>
                  <MaxKeys>1000</MaxKeys>
                  <Delimiter>/</Delimiter>
                  <IsTruncated>false</IsTruncated>
                  <Contents>
                    <Key>sample.jpg</Key>
                    <LastModified>2011-02-26T01:56:20.000Z</LastModified>
                    <ETag>&quot;bf1d737a4d46a19f3bced6905cc8b902&quot;</ETag>
                    <Size>142863</Size>
                    <StorageClass>STANDARD</StorageClass>
                  </Contents>
                  <CommonPrefixes>
                    <Prefix>photos/</Prefix>
                  </CommonPrefixes>
                </ListBucketResult>
                """))
        #expect(
            reply.objects == [
                S3ListedObject(
                    key: "sample.jpg", size: 142863, etag: "bf1d737a4d46a19f3bced6905cc8b902",
                    lastModified: "2011-02-26T01:56:20.000Z", storageClass: "STANDARD")
            ])
        #expect(reply.commonPrefixes == ["photos/"])
        #expect(reply.isTruncated == false)
        #expect(reply.nextContinuationToken == nil)
        #expect(reply.nextMarker == nil)
        #expect(reply.prefix == "")
    }

    // ListObjectsV2, truncated, with a continuation token (AWS API reference example).
    @Test func listObjectsV2Truncated() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Name>bucket</Name>
                  <Prefix></Prefix>
                  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
                  <KeyCount>1000</KeyCount>
                  <MaxKeys>1000</MaxKeys>
                  <IsTruncated>true</IsTruncated>
                  <Contents>
                    <Key>happyface.jpg</Key>
                    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
                    <ETag>"70ee1738b6b21e2c8a43f3a5ab0eee71"</ETag>
                    <Size>11</Size>
                    <StorageClass>STANDARD</StorageClass>
                  </Contents>
                  <Contents>
                    <Key>ExampleObject.txt</Key>
                    <LastModified>2013-09-17T18:07:53.000Z</LastModified>
                    <ETag>"599bab3ed2c697f1d26842727561fd94"</ETag>
                    <Size>857</Size>
                    <StorageClass>REDUCED_REDUNDANCY</StorageClass>
                  </Contents>
                </ListBucketResult>
                """))
        #expect(reply.isTruncated)
        #expect(reply.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(reply.objects.map(\.key) == ["happyface.jpg", "ExampleObject.txt"])
        #expect(reply.objects.map(\.size) == [11, 857])
        #expect(reply.objects[1].etag == "599bab3ed2c697f1d26842727561fd94")
        #expect(reply.objects[1].storageClass == "REDUCED_REDUNDANCY")
        #expect(reply.commonPrefixes.isEmpty)
    }

    // ListObjects (v1) with a delimiter: CommonPrefixes only, truncated, NextMarker.
    @Test func listObjectsV1WithNextMarker() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Name>example-bucket</Name>
                  <Prefix>photos/2006/</Prefix>
                  <Marker></Marker>
                  <NextMarker>photos/2006/February/</NextMarker>
                  <MaxKeys>2</MaxKeys>
                  <Delimiter>/</Delimiter>
                  <IsTruncated>true</IsTruncated>
                  <CommonPrefixes>
                    <Prefix>photos/2006/February/</Prefix>
                  </CommonPrefixes>
                  <CommonPrefixes>
                    <Prefix>photos/2006/January/</Prefix>
                  </CommonPrefixes>
                </ListBucketResult>
                """))
        #expect(reply.objects.isEmpty)
        #expect(reply.commonPrefixes == ["photos/2006/February/", "photos/2006/January/"])
        #expect(reply.isTruncated)
        #expect(reply.nextMarker == "photos/2006/February/")
        #expect(reply.prefix == "photos/2006/")
        #expect(reply.marker == "")
    }

    // ListObjects (v1) example with Owner inside Contents and self-closing Prefix/Marker.
    @Test func listObjectsV1WithOwner() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                    <Name>bucket</Name>
                    <Prefix/>
                    <Marker/>
                    <MaxKeys>1000</MaxKeys>
                    <IsTruncated>false</IsTruncated>
                    <Contents>
                        <Key>my-image.jpg</Key>
                        <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                        <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
                        <Size>434234</Size>
                        <StorageClass>STANDARD</StorageClass>
                        <Owner>
                            <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                            <DisplayName>mtd@amazon.com</DisplayName>
                        </Owner>
                    </Contents>
                </ListBucketResult>
                """))
        #expect(
            reply.objects == [
                S3ListedObject(
                    key: "my-image.jpg", size: 434234, etag: "fba9dede5f27731c9771645a39863328",
                    lastModified: "2009-10-12T17:50:30.000Z", storageClass: "STANDARD")
            ])
        #expect(reply.isTruncated == false)
        #expect(reply.nextMarker == nil)
    }

    // encoding-type=url: S3 percent-encodes with '+' for space; botocore decodes with unquote_plus.
    @Test func listObjectsURLEncoded() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Name>bucket</Name>
                  <Prefix>%C3%A9%2F</Prefix>
                  <StartAfter>%C3%A9%2Fa+b</StartAfter>
                  <Marker>m%2Bn</Marker>
                  <NextMarker>%C3%A9%2F%C3%BC+x%2By%25z.txt</NextMarker>
                  <KeyCount>3</KeyCount>
                  <MaxKeys>3</MaxKeys>
                  <Delimiter>%2F</Delimiter>
                  <EncodingType>url</EncodingType>
                  <IsTruncated>true</IsTruncated>
                  <Contents>
                    <Key>%C3%A9%2F%C3%BC+x%2By%25z.txt</Key>
                    <LastModified>2024-05-01T10:00:00.000Z</LastModified>
                    <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>
                    <Size>0</Size>
                    <StorageClass>STANDARD</StorageClass>
                  </Contents>
                  <Contents>
                    <Key>%C3%A9/100%25+sure%21</Key>
                    <LastModified>2024-05-01T10:00:01.000Z</LastModified>
                    <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>
                    <Size>5</Size>
                  </Contents>
                  <CommonPrefixes>
                    <Prefix>%C3%A9%2Fdir+with+spaces%2F</Prefix>
                  </CommonPrefixes>
                </ListBucketResult>
                """))
        #expect(reply.objects.map(\.key) == ["é/ü x+y%z.txt", "é/100% sure!"])
        #expect(reply.objects[1].storageClass == nil)
        #expect(reply.commonPrefixes == ["é/dir with spaces/"])
        #expect(reply.nextMarker == "é/ü x+y%z.txt")
        #expect(reply.startAfter == "é/a b")
        #expect(reply.marker == "m+n")
        #expect(reply.prefix == "é/")
    }

    @Test func withoutEncodingTypeKeysAreLiteral() throws {
        let reply = try S3XML.listObjects(
            bytes(
                """
                <ListBucketResult><IsTruncated>false</IsTruncated>
                <Contents><Key>a+b%20c</Key><LastModified>2024-05-01T10:00:00.000Z</LastModified><Size>1</Size></Contents>
                <CommonPrefixes><Prefix>x+y/</Prefix></CommonPrefixes></ListBucketResult>
                """))
        #expect(reply.objects.map(\.key) == ["a+b%20c"])
        #expect(reply.objects[0].etag == nil)
        #expect(reply.commonPrefixes == ["x+y/"])
    }

    @Test func percentDecoding() {
        #expect(S3XML.percentDecode("a+b%20c%2B%25") == "a b c+%")
        #expect(S3XML.percentDecode("100%") == "100%")
        #expect(S3XML.percentDecode("%zz%4") == "%zz%4")
        #expect(S3XML.percentDecode("%e6%97%a5") == "日")
        #expect(S3XML.percentDecode("plain") == "plain")
    }

    @Test(arguments: [
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>big</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        "<ListAllMyBucketsResult/>",
        "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
        "<ListBucketResult>",
    ])
    func listObjectsRejects(_ document: String) {
        #expect(throws: XMLParseError.self) { try S3XML.listObjects(bytes(document)) }
    }

    @Test func largeListingParses() throws {
        var xml = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        xml += #"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>"#
        xml += "<KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
        xml += "<NextContinuationToken>token</NextContinuationToken>"
        for i in 0..<1000 {
            xml += """
                <Contents><Key>photos/2024/séjour &amp; été/IMG_\(i).jpg</Key>\
                <LastModified>2024-07-01T12:00:00.000Z</LastModified>\
                <ETag>&quot;0123456789abcdef0123456789abcd\(String(i % 100, radix: 10))&quot;</ETag>\
                <Size>\(i * 1024)</Size><Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>\
                <DisplayName>owner</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>

                """
        }
        xml += "</ListBucketResult>"
        #expect(xml.utf8.count > 250_000)
        let reply = try S3XML.listObjects(bytes(xml))
        #expect(reply.objects.count == 1000)
        #expect(reply.isTruncated)
        #expect(reply.nextContinuationToken == "token")
        for (i, object) in reply.objects.enumerated() {
            #expect(object.key == "photos/2024/séjour & été/IMG_\(i).jpg")
            #expect(object.size == Int64(i * 1024))
        }
    }

    @Test func listAllMyBuckets() throws {
        let buckets = try S3XML.buckets(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01">
                  <Owner>
                    <ID>bcaf1ffd86f461ca5fb16fd081034f</ID>
                    <DisplayName>webfile</DisplayName>
                  </Owner>
                  <Buckets>
                    <Bucket>
                      <Name>quotes</Name>
                      <CreationDate>2006-02-03T16:45:09.000Z</CreationDate>
                    </Bucket>
                    <Bucket>
                      <Name>samples</Name>
                      <CreationDate>2006-02-03T16:41:58.000Z</CreationDate>
                    </Bucket>
                  </Buckets>
                </ListAllMyBucketsResult>
                """))
        #expect(
            buckets == [
                S3Bucket(name: "quotes", creationDate: "2006-02-03T16:45:09.000Z"),
                S3Bucket(name: "samples", creationDate: "2006-02-03T16:41:58.000Z"),
            ])
        #expect(try S3XML.buckets(bytes("<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>")) == [])
    }

    @Test func initiateMultipartUpload() throws {
        let id = try S3XML.uploadID(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Bucket>example-bucket</Bucket>
                  <Key>example-object</Key>
                  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
                </InitiateMultipartUploadResult>
                """))
        #expect(id == "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        #expect(throws: XMLParseError.self) {
            try S3XML.uploadID(bytes("<InitiateMultipartUploadResult><Key>k</Key></InitiateMultipartUploadResult>"))
        }
    }

    // S3 may send whitespace while it assembles the parts, before the actual document.
    @Test func completeMultipartUploadAfterKeepAliveWhitespace() throws {
        let body =
            String(repeating: " ", count: 40) + "\n" + String(repeating: " ", count: 40) + """
                <?xml version="1.0" encoding="UTF-8"?>
                <CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Location>http://Example-Bucket.s3.us-east-1.amazonaws.com/Example-Object</Location>
                  <Bucket>Example-Bucket</Bucket>
                  <Key>Example-Object</Key>
                  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
                </CompleteMultipartUploadResult>
                """
        #expect(try S3XML.completedETag(bytes(body)) == "3858f62230ac3c915f300c664312c11f-9")
        #expect(S3XML.error(bytes(body)) == nil)
    }

    // A 200 reply to CompleteMultipartUpload that is an error after keep-alive whitespace.
    @Test func completeMultipartUploadFailingLate() throws {
        let body =
            "          \n          " + """
                <?xml version="1.0" encoding="UTF-8"?>

                <Error>
                  <Code>InternalError</Code>
                  <Message>We encountered an internal error. Please try again.</Message>
                  <RequestId>656c76696e6727732072657175657374</RequestId>
                  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>
                </Error>
                """
        let error = try #require(S3XML.error(bytes(body)))
        #expect(error.code == "InternalError")
        #expect(error.requestID == "656c76696e6727732072657175657374")
        let thrown = #expect(throws: XMLParseError.self) { try S3XML.completedETag(bytes(body)) }
        #expect(thrown?.description.contains("InternalError") == true)
    }

    @Test func copyObjectAndCopyPartResults() throws {
        let object = try S3XML.copyResult(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <CopyObjectResult>
                   <LastModified>2009-10-28T22:32:00</LastModified>
                   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
                </CopyObjectResult>
                """))
        #expect(object.etag == "9b2cf535f27731c974343645a3985328")
        #expect(object.lastModified == "2009-10-28T22:32:00")
        let part = try S3XML.copyResult(
            bytes(
                """
                <CopyPartResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                   <LastModified>2011-04-11T20:34:56.000Z</LastModified>
                   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
                </CopyPartResult>
                """))
        #expect(part.etag == "9b2cf535f27731c974343645a3985328")
        #expect(part.lastModified == "2011-04-11T20:34:56.000Z")
    }

    // CopyObject can fail after answering 200: the body is then an <Error>.
    @Test func copyObjectErrorIn200Body() throws {
        let body = bytes(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error>
              <Code>SlowDown</Code>
              <Message>Please reduce your request rate.</Message>
              <Resource>/mybucket/target.txt</Resource>
              <RequestId>4442587FB7D0A2F9</RequestId>
              <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>
            </Error>
            """)
        let error = try #require(S3XML.error(body))
        #expect(
            error
                == S3ErrorReply(
                    code: "SlowDown", message: "Please reduce your request rate.", resource: "/mybucket/target.txt",
                    requestID: "4442587FB7D0A2F9",
                    fields: [
                        "Code": "SlowDown", "Message": "Please reduce your request rate.",
                        "Resource": "/mybucket/target.txt", "RequestId": "4442587FB7D0A2F9",
                        "HostId": "Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==",
                    ]))
        let thrown = #expect(throws: XMLParseError.self) { try S3XML.copyResult(body) }
        #expect(thrown?.description.contains("SlowDown") == true)
    }

    @Test func errorWithStringToSign() throws {
        let error = try #require(
            S3XML.error(
                bytes(
                    """
                    <?xml version="1.0" encoding="UTF-8"?>
                    <Error>
                      <Code>SignatureDoesNotMatch</Code>
                      <Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message>
                      <AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId>
                      <StringToSign>AWS4-HMAC-SHA256
                    20130524T000000Z
                    20130524/us-east-1/s3/aws4_request
                    7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972</StringToSign>
                      <SignatureProvided>f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41</SignatureProvided>
                      <StringToSignBytes>41 57 53 34 2d 48 4d 41 43</StringToSignBytes>
                      <CanonicalRequest>GET
                    /test.txt

                    host:examplebucket.s3.amazonaws.com
                    range:bytes=0-9</CanonicalRequest>
                      <RequestId>8C9BD4D2C9A2A7E1</RequestId>
                      <HostId>aGVsbG8=</HostId>
                    </Error>
                    """)))
        #expect(error.code == "SignatureDoesNotMatch")
        #expect(error.message.hasPrefix("The request signature we calculated"))
        #expect(error.resource == nil)
        #expect(error.requestID == "8C9BD4D2C9A2A7E1")
        #expect(
            error.fields["StringToSign"] == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """)
        #expect(error.fields["CanonicalRequest"]?.contains("\n\nhost:examplebucket") == true)
        #expect(error.fields["AWSAccessKeyId"] == "AKIAIOSFODNN7EXAMPLE")
        #expect(error.fields.count == 9)
    }

    @Test func errorIsNilForOtherBodies() {
        #expect(S3XML.error([]) == nil)
        #expect(S3XML.error(bytes("not xml at all")) == nil)
        #expect(S3XML.error(bytes("<Error><Code>x</Code>")) == nil)
        #expect(S3XML.error(bytes("<ListBucketResult/>")) == nil)
        #expect(
            S3XML.error(bytes("<Error/>"))
                == S3ErrorReply(code: "", message: "", resource: nil, requestID: nil, fields: [:]))
    }

    @Test func deleteResultWithDeletedAndErrors() throws {
        let reply = try S3XML.deleteResult(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Deleted>
                    <Key>sample1.txt</Key>
                  </Deleted>
                  <Error>
                    <Key>sample2.txt</Key>
                    <Code>AccessDenied</Code>
                    <Message>Access Denied</Message>
                  </Error>
                  <Deleted>
                    <Key>a &amp; b.txt</Key>
                    <DeleteMarker>true</DeleteMarker>
                    <DeleteMarkerVersionId>NeQt5xeFTfgPJD8B4CGWnkSLtluMr11s</DeleteMarkerVersionId>
                  </Deleted>
                </DeleteResult>
                """))
        #expect(reply.deleted == ["sample1.txt", "a & b.txt"])
        #expect(reply.errors.count == 1)
        #expect(reply.errors.first?.key == "sample2.txt")
        #expect(reply.errors.first?.code == "AccessDenied")
        #expect(reply.errors.first?.message == "Access Denied")
        #expect(
            reply
                == S3DeleteReply(
                    deleted: ["sample1.txt", "a & b.txt"],
                    errors: [(key: "sample2.txt", code: "AccessDenied", message: "Access Denied")]))
        #expect(
            reply
                != S3DeleteReply(
                    deleted: ["sample1.txt", "a & b.txt"],
                    errors: [(key: "sample2.txt", code: "InternalError", message: "Access Denied")]))
        #expect(try S3XML.deleteResult(bytes("<DeleteResult/>")) == S3DeleteReply(deleted: [], errors: []))
    }

    @Test func listMultipartUploads() throws {
        let reply = try S3XML.uploads(
            bytes(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                  <Bucket>bucket</Bucket>
                  <KeyMarker></KeyMarker>
                  <UploadIdMarker></UploadIdMarker>
                  <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
                  <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
                  <MaxUploads>3</MaxUploads>
                  <IsTruncated>true</IsTruncated>
                  <Upload>
                    <Key>my-divisor</Key>
                    <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
                    <Initiator>
                      <ID>arn:aws:iam::111122223333:user/user1-11111a31-17b5-4fb7-9df5-b111111f13de</ID>
                      <DisplayName>user1-11111a31-17b5-4fb7-9df5-b111111f13de</DisplayName>
                    </Initiator>
                    <Owner>
                      <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
                      <DisplayName>OwnerDisplayName</DisplayName>
                    </Owner>
                    <StorageClass>REDUCED_REDUNDANCY</StorageClass>
                    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
                  </Upload>
                  <Upload>
                    <Key>my-movie.m2ts</Key>
                    <UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
                    <Initiator>
                      <ID>b1d16700c70b0b05597d7acd6a3f92be</ID>
                      <DisplayName>InitiatorDisplayName</DisplayName>
                    </Initiator>
                    <Owner>
                      <ID>b1d16700c70b0b05597d7acd6a3f92be</ID>
                      <DisplayName>OwnerDisplayName</DisplayName>
                    </Owner>
                    <StorageClass>STANDARD</StorageClass>
                    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
                  </Upload>
                  <Upload>
                    <Key>my-movie.m2ts</Key>
                    <UploadId>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</UploadId>
                    <Initiator>
                      <ID>arn:aws:iam::444455556666:user/user1-22222a31-17b5-4fb7-9df5-b222222f13de</ID>
                      <DisplayName>user1-22222a31-17b5-4fb7-9df5-b222222f13de</DisplayName>
                    </Initiator>
                    <Owner>
                      <ID>b1d16700c70b0b05597d7acd6a3f92be</ID>
                      <DisplayName>OwnerDisplayName</DisplayName>
                    </Owner>
                    <StorageClass>STANDARD</StorageClass>
                    <Initiated>2010-11-10T20:49:33.000Z</Initiated>
                  </Upload>
                </ListMultipartUploadsResult>
                """))
        #expect(
            reply.uploads == [
                S3Upload(
                    key: "my-divisor", uploadID: "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw",
                    initiated: "2010-11-10T20:48:33.000Z"),
                S3Upload(
                    key: "my-movie.m2ts", uploadID: "VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA",
                    initiated: "2010-11-10T20:48:33.000Z"),
                S3Upload(
                    key: "my-movie.m2ts", uploadID: "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ",
                    initiated: "2010-11-10T20:49:33.000Z"),
            ])
        #expect(reply.isTruncated)
        #expect(reply.nextKeyMarker == "my-movie.m2ts")
        #expect(reply.nextUploadIDMarker == "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
    }

    @Test func listMultipartUploadsURLEncoded() throws {
        let reply = try S3XML.uploads(
            bytes(
                """
                <ListMultipartUploadsResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>
                <NextKeyMarker>%C3%A9+x%2By</NextKeyMarker>
                <Upload><Key>%C3%A9+x%2By</Key><UploadId>id1</UploadId><Initiated>2024-01-01T00:00:00.000Z</Initiated></Upload>
                </ListMultipartUploadsResult>
                """))
        #expect(reply.uploads.map(\.key) == ["é x+y"])
        #expect(reply.nextKeyMarker == "é x+y")
        #expect(reply.isTruncated == false)
        #expect(reply.nextUploadIDMarker == nil)
    }

    private static let owner = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"

    private static func policy(_ grants: [(type: String, grantee: String, permission: String)]) -> [UInt8] {
        var xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Owner>
                <ID>\(owner)</ID>
                <DisplayName>CustomersName@amazon.com</DisplayName>
              </Owner>
              <AccessControlList>

            """
        for grant in grants {
            let inner =
                switch grant.type {
                case "Group": "<URI>\(grant.grantee)</URI>"
                case "AmazonCustomerByEmail": "<EmailAddress>\(grant.grantee)</EmailAddress>"
                default: "<ID>\(grant.grantee)</ID><DisplayName>CustomersName@amazon.com</DisplayName>"
                }
            xml += """
                    <Grant>
                      <Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                               xsi:type="\(grant.type)">\(inner)</Grantee>
                      <Permission>\(grant.permission)</Permission>
                    </Grant>

                """
        }
        xml += "  </AccessControlList>\n</AccessControlPolicy>"
        return bytes(xml)
    }

    @Test func privateACL() throws {
        let acl = try S3XML.acl(Self.policy([("CanonicalUser", Self.owner, "FULL_CONTROL")]))
        #expect(
            acl
                == S3ACL(
                    owner: Self.owner, grants: [S3Grant(grantee: Self.owner, permission: "FULL_CONTROL")],
                    cannedName: "private"))
        // The Grantee element keeps its xsi:type attribute.
        let grantee = try S3XML.parse(Self.policy([("CanonicalUser", Self.owner, "FULL_CONTROL")]))
            .child("AccessControlList")?.child("Grant")?.child("Grantee")
        #expect(grantee?.attributes["xsi:type"] == "CanonicalUser")
    }

    @Test(arguments: ["http://acs.amazonaws.com/groups/global/", "http://acs.ksyun.com/groups/global/"])
    func cannedACLs(_ groups: String) throws {
        let ownerGrant = (type: "CanonicalUser", grantee: Self.owner, permission: "FULL_CONTROL")
        let allUsers = groups + "AllUsers"
        let authenticated = groups + "AuthenticatedUsers"
        let publicRead = try S3XML.acl(Self.policy([ownerGrant, ("Group", allUsers, "READ")]))
        #expect(publicRead.cannedName == "public-read")
        #expect(
            publicRead.grants == [
                S3Grant(grantee: Self.owner, permission: "FULL_CONTROL"),
                S3Grant(grantee: allUsers, permission: "READ"),
            ])
        #expect(try S3XML.acl(Self.policy([("Group", allUsers, "READ"), ownerGrant])).cannedName == "public-read")
        #expect(
            try S3XML.acl(Self.policy([ownerGrant, ("Group", allUsers, "READ"), ("Group", allUsers, "WRITE")]))
                .cannedName == "public-read-write")
        #expect(
            try S3XML.acl(Self.policy([ownerGrant, ("Group", authenticated, "READ")])).cannedName
                == "authenticated-read")
        // Anything else is custom.
        #expect(try S3XML.acl(Self.policy([ownerGrant, ("Group", allUsers, "WRITE")])).cannedName == "custom")
        #expect(try S3XML.acl(Self.policy([ownerGrant, ("Group", allUsers, "FULL_CONTROL")])).cannedName == "custom")
        #expect(
            try S3XML.acl(Self.policy([ownerGrant, ("Group", allUsers, "READ"), ("Group", authenticated, "READ")]))
                .cannedName == "custom")
        #expect(try S3XML.acl(Self.policy([("Group", allUsers, "READ")])).cannedName == "custom")
        #expect(try S3XML.acl(Self.policy([])).cannedName == "custom")
    }

    @Test func customACLWithOtherGrantees() throws {
        let acl = try S3XML.acl(
            Self.policy([
                ("CanonicalUser", Self.owner, "FULL_CONTROL"),
                ("AmazonCustomerByEmail", "xyz@amazon.com", "READ"),
                ("CanonicalUser", "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be", "WRITE_ACP"),
                ("Group", "http://acs.amazonaws.com/groups/s3/LogDelivery", "WRITE"),
            ]))
        #expect(acl.cannedName == "custom")
        #expect(
            acl.grants.map(\.grantee) == [
                Self.owner, "xyz@amazon.com", "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
                "http://acs.amazonaws.com/groups/s3/LogDelivery",
            ])
        #expect(acl.grants.map(\.permission) == ["FULL_CONTROL", "READ", "WRITE_ACP", "WRITE"])
    }

    @Test func readersRejectOtherDocuments() {
        let other = bytes("<Something/>")
        #expect(throws: XMLParseError.self) { try S3XML.buckets(other) }
        #expect(throws: XMLParseError.self) { try S3XML.uploadID(other) }
        #expect(throws: XMLParseError.self) { try S3XML.completedETag(other) }
        #expect(throws: XMLParseError.self) { try S3XML.copyResult(other) }
        #expect(throws: XMLParseError.self) { try S3XML.deleteResult(other) }
        #expect(throws: XMLParseError.self) { try S3XML.uploads(other) }
        #expect(throws: XMLParseError.self) { try S3XML.acl(other) }
        #expect(throws: XMLParseError.self) { try S3XML.listObjects([]) }
    }
}

@Suite struct S3XMLBuilderTests {
    @Test func escape() {
        #expect(S3XML.escape("plain é/日本") == "plain é/日本")
        #expect(S3XML.escape(#"a&b<c>d"e'f"#) == "a&amp;b&lt;c&gt;d&quot;e&apos;f")
        #expect(S3XML.escape("tab\tlf\ncr\r") == "tab&#9;lf&#10;cr&#13;")
        #expect(S3XML.escape("\u{1}\u{1F}\u{FFFE}\u{FFFF}") == "&#x1;&#x1F;&#xFFFE;&#xFFFF;")
        #expect(S3XML.escape("\u{FFFD}\u{EFFF}") == "\u{FFFD}\u{EFFF}")
    }

    @Test func deleteRequest() throws {
        let body = S3XML.deleteRequest(keys: ["sample1.txt", "a & <b>.txt"], quiet: true)
        #expect(
            String(decoding: body, as: UTF8.self) == """
                <?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\
                <Quiet>true</Quiet><Object><Key>sample1.txt</Key></Object><Object><Key>a &amp; &lt;b&gt;.txt</Key></Object>\
                </Delete>
                """)
        let loud = try S3XML.parse(S3XML.deleteRequest(keys: ["k"], quiet: false))
        #expect(loud.child("Quiet") == nil)
        #expect(loud.children(named: "Object").compactMap { $0.value("Key") } == ["k"])
    }

    @Test func completeRequest() throws {
        let body = S3XML.completeRequest(parts: [
            (number: 1, etag: "a54357aff0632cce46d942af68356b38"),
            (number: 2, etag: "\"0c78aef83f66abc1fa1e8477f296d394\""),
        ])
        #expect(
            String(decoding: body, as: UTF8.self) == """
                <?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>\
                <Part><PartNumber>1</PartNumber><ETag>"a54357aff0632cce46d942af68356b38"</ETag></Part>\
                <Part><PartNumber>2</PartNumber><ETag>"0c78aef83f66abc1fa1e8477f296d394"</ETag></Part>\
                </CompleteMultipartUpload>
                """)
        let parsed = try S3XML.parse(body)
        #expect(
            parsed.children(named: "Part").compactMap { $0.value("ETag") }
                == ["\"a54357aff0632cce46d942af68356b38\"", "\"0c78aef83f66abc1fa1e8477f296d394\""])
    }

    @Test func createBucketRequest() throws {
        #expect(S3XML.createBucketRequest(location: nil) == nil)
        #expect(S3XML.createBucketRequest(location: "us-east-1") == nil)
        let body = try #require(S3XML.createBucketRequest(location: "eu-west-1"))
        #expect(
            String(decoding: body, as: UTF8.self) == """
                <?xml version="1.0" encoding="UTF-8"?><CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\
                <LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>
                """)
        #expect(try S3XML.parse(body).value("LocationConstraint") == "eu-west-1")
    }

    /// Keys written by deleteRequest parse back to the same keys, for random printable Unicode
    /// (heavy on the characters XML and URLs treat specially) and for the control characters
    /// that can be written as references.
    @Test func deleteRequestRoundTrip() throws {
        var random = SeededGenerator(state: 0x5EED_0BAD_F00D)
        let special: [Unicode.Scalar] = [
            "&", "<", ">", "\"", "'", ";", "#", "%", "+", " ", "/", "]", "\u{A0}", "\t", "\n", "\r",
        ]
        let ranges: [ClosedRange<UInt32>] = [
            0x20...0x7E, 0xA0...0x24F, 0x370...0x3FF, 0x300...0x36F, 0x4E00...0x9FFF, 0xAC00...0xD7A3,
            0xE000...0xF8FF, 0xFE00...0xFFFD, 0x1F300...0x1FAFF, 0x10000...0x10FFFD,
        ]
        for round in 0..<300 {
            var keys: [String] = []
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                var key = ""
                for _ in 0..<Int.random(in: 1...40, using: &random) {
                    if Bool.random(using: &random) {
                        key.unicodeScalars.append(special.randomElement(using: &random)!)
                    } else {
                        let range = ranges.randomElement(using: &random)!
                        if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &random)) {
                            key.unicodeScalars.append(scalar)
                        }
                    }
                }
                keys.append(key)
            }
            let quiet = round.isMultiple(of: 2)
            let parsed = try S3XML.parse(S3XML.deleteRequest(keys: keys, quiet: quiet))
            let back = parsed.children(named: "Object").compactMap { $0.value("Key") }
            #expect(back.map { Array($0.utf8) } == keys.map { Array($0.utf8) }, "round \(round): \(keys)")
            #expect((parsed.value("Quiet") == "true") == quiet)
        }
    }

    @Test func controlCharactersRoundTripThroughThisParser() throws {
        let key = "a\u{1}b\u{1F}c\u{FFFF}d\r\n"
        let parsed = try S3XML.parse(S3XML.deleteRequest(keys: [key], quiet: false))
        #expect(parsed.child("Object")?.value("Key") == key)
    }
}
