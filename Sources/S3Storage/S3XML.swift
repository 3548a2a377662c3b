// S3XML: a small XML reader for S3 replies and writer for S3 request bodies.
//
// Standard library only (no Foundation, no FoundationXML). The parser works on bytes, in one
// linear pass, without recursion, and builds a plain tree (`XMLNode`). It is strict about
// structure (tags must nest and match, one root element, no stray text) and deliberately small:
//
// - Accepted around the root: an optional UTF-8 byte order mark, whitespace (S3 sends whitespace
//   keep-alives before a CompleteMultipartUpload reply), the XML declaration and other processing
//   instructions, comments. A DOCTYPE is rejected (S3 never sends one; this also rules out entity
//   expansion attacks).
// - Entities: the five predefined ones and numeric character references (decimal and hex) for any
//   Unicode scalar, decoded to UTF-8. Any other `&name;` is an error.
// - CDATA sections are added to the element's text verbatim.
// - No end-of-line normalization: a raw CR in the text is kept, so keys stay byte-exact.
// - Element names are reduced to their local name (`s3:Key` → `Key`); attribute names are kept as
//   written (`xsi:type`, `xmlns:xsi`), because dropping the prefix would make them collide.
// - Text is decoded as UTF-8; S3 always sends UTF-8, and an invalid sequence (which S3 never sends)
//   becomes U+FFFD rather than failing a whole listing.
// - Nesting is limited to `S3XML.maxDepth` elements.

/// One element of a parsed document.
struct XMLNode: Sendable, Equatable {
    /// Local name: a namespace prefix such as `s3:` is dropped.
    var name: String
    /// Attributes by their name as written (prefix kept), values with entities decoded.
    var attributes: [String: String]
    var children: [XMLNode]
    /// Concatenated character data of this element itself (entities decoded, CDATA included),
    /// not of its descendants. Whitespace between child elements is part of it.
    var text: String

    init(name: String, attributes: [String: String] = [:], children: [XMLNode] = [], text: String = "") {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    /// The first child element with that local name.
    func child(_ name: String) -> XMLNode? {
        children.first { $0.name == name }
    }

    /// Every child element with that local name, in document order.
    func children(named name: String) -> [XMLNode] {
        children.filter { $0.name == name }
    }

    /// Text of the first child with that name (untrimmed), nil when there is no such child.
    func value(_ name: String) -> String? {
        child(name)?.text
    }
}

struct XMLParseError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }

    init(description: String) {
        self.description = description
    }
}

enum S3XML {
    /// Deepest element nesting accepted (S3 replies nest about 5 deep).
    static let maxDepth = 256

    /// Parses a document and returns its root element.
    static func parse(_ bytes: [UInt8]) throws(XMLParseError) -> XMLNode {
        var parser = XMLByteParser(bytes)
        return try parser.document()
    }
}

// MARK: - Parser

private enum Byte {
    static let lt: UInt8 = 0x3C  // <
    static let gt: UInt8 = 0x3E  // >
    static let amp: UInt8 = 0x26  // &
    static let slash: UInt8 = 0x2F  // /
    static let question: UInt8 = 0x3F  // ?
    static let bang: UInt8 = 0x21  // !
    static let equals: UInt8 = 0x3D  // =
    static let quote: UInt8 = 0x22  // "
    static let apostrophe: UInt8 = 0x27  // '
    static let semicolon: UInt8 = 0x3B  // ;
    static let hash: UInt8 = 0x23  // #
    static let colon: UInt8 = 0x3A  // :

    static func isSpace(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
    }

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == colon || c >= 0x80
    }

    static func isName(_ c: UInt8) -> Bool {
        isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

/// An element whose end tag has not been seen yet.
private struct OpenElement {
    var qualifiedName: [UInt8]
    var attributes: [String: String]
    var children: [XMLNode] = []
    var text: [UInt8] = []

    func node() -> XMLNode {
        var start = qualifiedName.startIndex
        if let colon = qualifiedName.lastIndex(of: Byte.colon) {
            start = colon + 1
        }
        return XMLNode(
            name: String(decoding: qualifiedName[start...], as: UTF8.self),
            attributes: attributes,
            children: children,
            text: String(decoding: text, as: UTF8.self))
    }
}

private struct XMLByteParser {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    func failure(_ message: String, at position: Int? = nil) -> XMLParseError {
        XMLParseError("XML: \(message) at byte \(position ?? index)")
    }

    func hasPrefix(_ literal: StaticString, at position: Int) -> Bool {
        literal.withUTF8Buffer { buffer in
            guard position + buffer.count <= bytes.count else { return false }
            for k in 0..<buffer.count where bytes[position + k] != buffer[k] {
                return false
            }
            return true
        }
    }

    /// Position of the first occurrence of `literal` at or after `position`.
    func find(_ literal: StaticString, from position: Int) -> Int? {
        let count = literal.withUTF8Buffer { $0.count }
        guard count > 0, bytes.count >= count else { return nil }
        let first = literal.withUTF8Buffer { $0[0] }
        var k = position
        while k <= bytes.count - count {
            if bytes[k] == first && hasPrefix(literal, at: k) {
                return k
            }
            k += 1
        }
        return nil
    }

    @discardableResult
    mutating func skipSpace() -> Bool {
        let start = index
        while index < bytes.count && Byte.isSpace(bytes[index]) {
            index += 1
        }
        return index > start
    }

    mutating func name() throws(XMLParseError) -> [UInt8] {
        let start = index
        guard index < bytes.count, Byte.isNameStart(bytes[index]) else {
            throw failure(index < bytes.count ? "expected a name" : "unexpected end of input, expected a name")
        }
        index += 1
        while index < bytes.count && Byte.isName(bytes[index]) {
            index += 1
        }
        return Array(bytes[start..<index])
    }

    /// Decodes the entity starting at `index` (which points at '&') and appends its UTF-8.
    mutating func entity(into output: inout [UInt8]) throws(XMLParseError) {
        let start = index
        var end = index + 1
        while end < bytes.count && bytes[end] != Byte.semicolon && end - start <= 12 {
            end += 1
        }
        guard end < bytes.count, bytes[end] == Byte.semicolon else {
            throw failure("unterminated or overlong entity reference", at: start)
        }
        let body = bytes[(start + 1)..<end]
        index = end + 1
        switch String(decoding: body, as: UTF8.self) {
        case "amp": output.append(Byte.amp)
        case "lt": output.append(Byte.lt)
        case "gt": output.append(Byte.gt)
        case "quot": output.append(Byte.quote)
        case "apos": output.append(Byte.apostrophe)
        default:
            guard body.first == Byte.hash else {
                throw failure("unknown entity &\(String(decoding: body, as: UTF8.self));", at: start)
            }
            var digits = body.dropFirst()
            var radix: UInt32 = 10
            if digits.first == 0x78 {  // x
                radix = 16
                digits = digits.dropFirst()
            }
            guard !digits.isEmpty else { throw failure("empty character reference", at: start) }
            var value: UInt32 = 0
            for digit in digits {
                guard let d = Byte.hexValue(digit), UInt32(d) < radix else {
                    throw failure("bad character reference", at: start)
                }
                value = value * radix + UInt32(d)
                guard value <= 0x10FFFF else { throw failure("character reference out of range", at: start) }
            }
            guard let scalar = Unicode.Scalar(value) else {
                throw failure("character reference to a surrogate", at: start)
            }
            UTF8.encode(scalar) { output.append($0) }
        }
    }

    /// Character data up to the next '<' (or the end), appended to `output`.
    mutating func characterData(into output: inout [UInt8]) throws(XMLParseError) {
        var runStart = index
        while index < bytes.count {
            let c = bytes[index]
            if c == Byte.lt {
                break
            }
            if c == Byte.amp {
                output.append(contentsOf: bytes[runStart..<index])
                try entity(into: &output)
                runStart = index
            } else {
                index += 1
            }
        }
        output.append(contentsOf: bytes[runStart..<index])
    }

    /// A quoted attribute value; `index` points at the opening quote.
    mutating func attributeValue() throws(XMLParseError) -> String {
        guard index < bytes.count, bytes[index] == Byte.quote || bytes[index] == Byte.apostrophe else {
            throw failure("expected a quoted attribute value")
        }
        let quote = bytes[index]
        index += 1
        var output: [UInt8] = []
        var runStart = index
        while true {
            guard index < bytes.count else { throw failure("unterminated attribute value") }
            let c = bytes[index]
            if c == quote {
                break
            } else if c == Byte.lt {
                throw failure("'<' in an attribute value")
            } else if c == Byte.amp {
                output.append(contentsOf: bytes[runStart..<index])
                try entity(into: &output)
                runStart = index
            } else {
                index += 1
            }
        }
        output.append(contentsOf: bytes[runStart..<index])
        index += 1
        return String(decoding: output, as: UTF8.self)
    }

    mutating func skip(past terminator: StaticString, from start: Int, what: String) throws(XMLParseError) {
        guard let end = find(terminator, from: start) else {
            throw failure("unterminated \(what)", at: index)
        }
        index = end + terminator.withUTF8Buffer { $0.count }
    }

    mutating func document() throws(XMLParseError) -> XMLNode {
        if hasPrefix("\u{FEFF}", at: 0) {
            index = 3
        }
        var stack: [OpenElement] = []
        var root: XMLNode?

        func close(_ node: XMLNode, _ stack: inout [OpenElement], _ root: inout XMLNode?) {
            if stack.isEmpty {
                root = node
            } else {
                stack[stack.count - 1].children.append(node)
            }
        }

        while index < bytes.count {
            let c = bytes[index]
            if c != Byte.lt {
                if stack.isEmpty {
                    guard Byte.isSpace(c) else {
                        throw failure(root == nil ? "text before the root element" : "text after the root element")
                    }
                    index += 1
                } else {
                    try characterData(into: &stack[stack.count - 1].text)
                }
                continue
            }
            guard index + 1 < bytes.count else { throw failure("unexpected end of input after '<'") }
            let next = bytes[index + 1]
            if next == Byte.question {
                try skip(past: "?>", from: index + 2, what: "processing instruction")
            } else if next == Byte.bang {
                if hasPrefix("<!--", at: index) {
                    try skip(past: "-->", from: index + 4, what: "comment")
                } else if hasPrefix("<![CDATA[", at: index) {
                    guard !stack.isEmpty else { throw failure("CDATA section outside the root element") }
                    let start = index + 9
                    guard let end = find("]]>", from: start) else { throw failure("unterminated CDATA section") }
                    stack[stack.count - 1].text.append(contentsOf: bytes[start..<end])
                    index = end + 3
                } else if hasPrefix("<!DOCTYPE", at: index) {
                    throw failure("document type declarations are not supported")
                } else {
                    throw failure("unexpected markup declaration")
                }
            } else if next == Byte.slash {
                let tagStart = index
                index += 2
                let qualified = try name()
                skipSpace()
                guard index < bytes.count, bytes[index] == Byte.gt else { throw failure("expected '>' in end tag") }
                index += 1
                guard let open = stack.popLast() else {
                    throw failure(
                        "end tag </\(String(decoding: qualified, as: UTF8.self))> without a start tag", at: tagStart)
                }
                guard open.qualifiedName == qualified else {
                    throw failure(
                        "end tag </\(String(decoding: qualified, as: UTF8.self))> does not match "
                            + "<\(String(decoding: open.qualifiedName, as: UTF8.self))>", at: tagStart)
                }
                close(open.node(), &stack, &root)
            } else {
                let tagStart = index
                guard root == nil else { throw failure("a second element after the root element") }
                guard stack.count < S3XML.maxDepth else { throw failure("elements nested too deeply") }
                index += 1
                let qualified = try name()
                var attributes: [String: String] = [:]
                var selfClosing = false
                while true {
                    let hadSpace = skipSpace()
                    guard index < bytes.count else { throw failure("unterminated start tag", at: tagStart) }
                    if bytes[index] == Byte.gt {
                        index += 1
                        break
                    }
                    if bytes[index] == Byte.slash {
                        guard index + 1 < bytes.count, bytes[index + 1] == Byte.gt else {
                            throw failure("expected '/>'")
                        }
                        index += 2
                        selfClosing = true
                        break
                    }
                    guard hadSpace else { throw failure("expected whitespace before an attribute") }
                    let attributeName = String(decoding: try name(), as: UTF8.self)
                    skipSpace()
                    guard index < bytes.count, bytes[index] == Byte.equals else {
                        throw failure("expected '=' after attribute \(attributeName)")
                    }
                    index += 1
                    skipSpace()
                    let value = try attributeValue()
                    guard attributes.updateValue(value, forKey: attributeName) == nil else {
                        throw failure("duplicate attribute \(attributeName)", at: tagStart)
                    }
                }
                let open = OpenElement(qualifiedName: qualified, attributes: attributes)
                if selfClosing {
                    close(open.node(), &stack, &root)
                } else {
                    stack.append(open)
                }
            }
        }
        if let open = stack.last {
            throw failure("unclosed element <\(String(decoding: open.qualifiedName, as: UTF8.self))>")
        }
        guard let root else {
            throw XMLParseError(bytes.isEmpty ? "XML: empty document" : "XML: no root element")
        }
        return root
    }
}

// MARK: - Typed replies

/// An S3 `<Error>` document.
struct S3ErrorReply: Sendable, Equatable {
    var code: String
    var message: String
    var resource: String?
    var requestID: String?
    /// Every child element's text by name (first occurrence), e.g. StringToSign, HostId, BucketName.
    var fields: [String: String]
}

struct S3ListedObject: Sendable, Equatable {
    var key: String
    var size: Int64
    /// Quotes stripped.
    var etag: String?
    var lastModified: String
    var storageClass: String?
}

struct S3ListReply: Sendable, Equatable {
    var objects: [S3ListedObject]
    var commonPrefixes: [String]
    var isTruncated: Bool
    var nextContinuationToken: String?
    /// Only sent by ListObjects v1 when a delimiter was given; without it a truncated v1 listing
    /// continues after the last key (or common prefix) of the page.
    var nextMarker: String?
    /// The request's Prefix, Marker (v1) and StartAfter (v2) echoed back, decoded like the keys.
    var prefix: String? = nil
    var marker: String? = nil
    var startAfter: String? = nil
}

struct S3Bucket: Sendable, Equatable {
    var name: String
    var creationDate: String
}

struct S3Upload: Sendable, Equatable {
    var key: String
    var uploadID: String
    var initiated: String
}

struct S3UploadsReply: Sendable, Equatable {
    var uploads: [S3Upload]
    var isTruncated: Bool
    var nextKeyMarker: String?
    var nextUploadIDMarker: String?
}

struct S3DeleteReply: Sendable, Equatable {
    var deleted: [String]
    var errors: [(key: String, code: String, message: String)]

    static func == (lhs: S3DeleteReply, rhs: S3DeleteReply) -> Bool {
        lhs.deleted == rhs.deleted && lhs.errors.elementsEqual(rhs.errors, by: ==)
    }
}

struct S3Grant: Sendable, Equatable {
    /// The grantee's URI, ID or EmailAddress, whichever is present (in that order).
    var grantee: String
    var permission: String
}

struct S3ACL: Sendable, Equatable {
    /// The owner's canonical ID.
    var owner: String?
    var grants: [S3Grant]
    /// "private", "public-read", "public-read-write" or "authenticated-read" when the grants are
    /// exactly those of that canned ACL (in any order), else "custom".
    var cannedName: String
}

extension S3XML {
    /// The `<Error>` document in `bytes`, or nil when the body is something else (never throws).
    static func error(_ bytes: [UInt8]) -> S3ErrorReply? {
        guard let root = try? parse(bytes), root.name == "Error" else { return nil }
        var fields: [String: String] = [:]
        for child in root.children where fields[child.name] == nil {
            fields[child.name] = child.text
        }
        return S3ErrorReply(
            code: root.value("Code").map(trimmed) ?? "",
            message: root.value("Message") ?? "",
            resource: root.value("Resource"),
            requestID: root.value("RequestId"),
            fields: fields)
    }

    /// ListBucketResult, v1 or v2. With `<EncodingType>url</EncodingType>`, Key, Prefix (top level
    /// and in CommonPrefixes), Marker, NextMarker and StartAfter are percent-decoded with '+' as a
    /// space, as botocore's unquote_plus does.
    static func listObjects(_ bytes: [UInt8]) throws(XMLParseError) -> S3ListReply {
        let root = try document(bytes, expecting: "ListBucketResult")
        let decode = isURLEncoded(root)
        func decoded(_ text: String?) -> String? {
            guard let text else { return nil }
            return decode ? percentDecode(text) : text
        }
        var objects: [S3ListedObject] = []
        for entry in root.children(named: "Contents") {
            guard let key = entry.value("Key") else { throw XMLParseError("ListBucketResult: Contents without Key") }
            guard let sizeText = entry.value("Size"), let size = Int64(trimmed(sizeText)), size >= 0 else {
                throw XMLParseError("ListBucketResult: bad or missing Size for key \(key)")
            }
            objects.append(
                S3ListedObject(
                    key: decode ? percentDecode(key) : key,
                    size: size,
                    etag: entry.value("ETag").map(stripQuotes),
                    lastModified: trimmed(entry.value("LastModified") ?? ""),
                    storageClass: entry.value("StorageClass").map(trimmed)))
        }
        var prefixes: [String] = []
        for group in root.children(named: "CommonPrefixes") {
            for prefix in group.children(named: "Prefix") {
                prefixes.append(decode ? percentDecode(prefix.text) : prefix.text)
            }
        }
        return S3ListReply(
            objects: objects,
            commonPrefixes: prefixes,
            isTruncated: try flag(root, "IsTruncated"),
            nextContinuationToken: root.value("NextContinuationToken"),
            nextMarker: decoded(root.value("NextMarker")),
            prefix: decoded(root.value("Prefix")),
            marker: decoded(root.value("Marker")),
            startAfter: decoded(root.value("StartAfter")))
    }

    /// ListAllMyBucketsResult.
    static func buckets(_ bytes: [UInt8]) throws(XMLParseError) -> [S3Bucket] {
        let root = try document(bytes, expecting: "ListAllMyBucketsResult")
        var result: [S3Bucket] = []
        for bucket in root.child("Buckets")?.children(named: "Bucket") ?? [] {
            guard let name = bucket.value("Name") else {
                throw XMLParseError("ListAllMyBucketsResult: Bucket without Name")
            }
            result.append(S3Bucket(name: trimmed(name), creationDate: trimmed(bucket.value("CreationDate") ?? "")))
        }
        return result
    }

    /// InitiateMultipartUploadResult's UploadId.
    static func uploadID(_ bytes: [UInt8]) throws(XMLParseError) -> String {
        let root = try document(bytes, expecting: "InitiateMultipartUploadResult")
        guard let id = root.value("UploadId").map(trimmed), !id.isEmpty else {
            throw XMLParseError("InitiateMultipartUploadResult without UploadId")
        }
        return id
    }

    /// CompleteMultipartUploadResult's ETag, quotes stripped. A 200 reply whose body is an
    /// `<Error>` (S3 reports late failures that way) throws.
    static func completedETag(_ bytes: [UInt8]) throws(XMLParseError) -> String? {
        try document(bytes, expecting: "CompleteMultipartUploadResult").value("ETag").map(stripQuotes)
    }

    /// CopyObjectResult or CopyPartResult. A 200 reply whose body is an `<Error>` throws.
    static func copyResult(_ bytes: [UInt8]) throws(XMLParseError) -> (etag: String?, lastModified: String?) {
        let root = try document(bytes, expecting: "CopyObjectResult", "CopyPartResult")
        return (root.value("ETag").map(stripQuotes), root.value("LastModified").map(trimmed))
    }

    /// DeleteResult (multi-object delete). Keys are returned as sent back (S3 does not url-encode
    /// them here unless asked with EncodingType, which is then honoured).
    static func deleteResult(_ bytes: [UInt8]) throws(XMLParseError) -> S3DeleteReply {
        let root = try document(bytes, expecting: "DeleteResult")
        let decode = isURLEncoded(root)
        var reply = S3DeleteReply(deleted: [], errors: [])
        for entry in root.children {
            switch entry.name {
            case "Deleted":
                guard let key = entry.value("Key") else { throw XMLParseError("DeleteResult: Deleted without Key") }
                reply.deleted.append(decode ? percentDecode(key) : key)
            case "Error":
                guard let key = entry.value("Key") else { throw XMLParseError("DeleteResult: Error without Key") }
                reply.errors.append(
                    (
                        key: decode ? percentDecode(key) : key,
                        code: trimmed(entry.value("Code") ?? ""),
                        message: entry.value("Message") ?? ""
                    ))
            default:
                continue
            }
        }
        return reply
    }

    /// ListMultipartUploadsResult. Keys and NextKeyMarker are decoded when EncodingType is url.
    static func uploads(_ bytes: [UInt8]) throws(XMLParseError) -> S3UploadsReply {
        let root = try document(bytes, expecting: "ListMultipartUploadsResult")
        let decode = isURLEncoded(root)
        var uploads: [S3Upload] = []
        for upload in root.children(named: "Upload") {
            guard let key = upload.value("Key"), let id = upload.value("UploadId").map(trimmed), !id.isEmpty else {
                throw XMLParseError("ListMultipartUploadsResult: Upload without Key or UploadId")
            }
            uploads.append(
                S3Upload(
                    key: decode ? percentDecode(key) : key,
                    uploadID: id,
                    initiated: trimmed(upload.value("Initiated") ?? "")))
        }
        let nextKey = root.value("NextKeyMarker")
        return S3UploadsReply(
            uploads: uploads,
            isTruncated: try flag(root, "IsTruncated"),
            nextKeyMarker: decode ? nextKey.map(percentDecode) : nextKey,
            nextUploadIDMarker: root.value("NextUploadIdMarker"))
    }

    /// AccessControlPolicy (GET ?acl), from AWS or KS3.
    static func acl(_ bytes: [UInt8]) throws(XMLParseError) -> S3ACL {
        let root = try document(bytes, expecting: "AccessControlPolicy")
        let owner = root.child("Owner")?.value("ID").map(trimmed)
        var grants: [S3Grant] = []
        for grant in root.child("AccessControlList")?.children(named: "Grant") ?? [] {
            guard let grantee = grant.child("Grantee"), let permission = grant.value("Permission") else {
                throw XMLParseError("AccessControlPolicy: Grant without Grantee or Permission")
            }
            let who = grantee.value("URI") ?? grantee.value("ID") ?? grantee.value("EmailAddress") ?? ""
            grants.append(S3Grant(grantee: trimmed(who), permission: trimmed(permission)))
        }
        return S3ACL(owner: owner, grants: grants, cannedName: cannedACLName(owner: owner, grants: grants))
    }

    /// The canned ACL whose grants are exactly `grants` (order and duplicates ignored): the owner
    /// with FULL_CONTROL plus nothing (private), AllUsers READ (public-read), AllUsers READ and
    /// WRITE (public-read-write) or AuthenticatedUsers READ (authenticated-read). The groups are
    /// recognised by the URI suffix, so both acs.amazonaws.com and acs.ksyun.com work. Anything
    /// else, including no grants at all or an unknown owner, is "custom".
    static func cannedACLName(owner: String?, grants: [S3Grant]) -> String {
        var ownerPermissions: Set<String> = []
        var allUsers: Set<String> = []
        var authenticatedUsers: Set<String> = []
        for grant in grants {
            if grant.grantee.hasSuffix("/global/AllUsers") {
                allUsers.insert(grant.permission)
            } else if grant.grantee.hasSuffix("/global/AuthenticatedUsers") {
                authenticatedUsers.insert(grant.permission)
            } else if let owner, grant.grantee == owner {
                ownerPermissions.insert(grant.permission)
            } else {
                return "custom"
            }
        }
        guard ownerPermissions == ["FULL_CONTROL"] else { return "custom" }
        switch (allUsers, authenticatedUsers) {
        case ([], []): return "private"
        case (["READ"], []): return "public-read"
        case (["READ", "WRITE"], []): return "public-read-write"
        case ([], ["READ"]): return "authenticated-read"
        default: return "custom"
        }
    }

    // MARK: Helpers

    /// Parses and checks the root element's name. An `<Error>` root gets its code and message in
    /// the error's description.
    static func document(_ bytes: [UInt8], expecting names: String...) throws(XMLParseError) -> XMLNode {
        let root = try parse(bytes)
        guard names.contains(root.name) else {
            let wanted = names.map { "<\($0)>" }.joined(separator: " or ")
            if root.name == "Error" {
                let code = trimmed(root.value("Code") ?? "")
                let message = root.value("Message") ?? ""
                throw XMLParseError("expected \(wanted), got an S3 error: \(code): \(message)")
            }
            throw XMLParseError("expected \(wanted), got <\(root.name)>")
        }
        return root
    }

    static func isURLEncoded(_ root: XMLNode) -> Bool {
        root.value("EncodingType").map { trimmed($0).lowercased() } == "url"
    }

    /// A true/false element; a missing one is false.
    static func flag(_ node: XMLNode, _ name: String) throws(XMLParseError) -> Bool {
        guard let text = node.value(name) else { return false }
        switch trimmed(text).lowercased() {
        case "true": return true
        case "false": return false
        default: throw XMLParseError("\(node.name): \(name) is neither true nor false: \(text)")
        }
    }

    /// Removes one pair of surrounding double quotes (and surrounding whitespace).
    static func stripQuotes(_ text: String) -> String {
        var value = Substring(trimmed(text))
        if value.count >= 2, value.first == "\"", value.last == "\"" {
            value = value.dropFirst().dropLast()
        }
        return String(value)
    }

    static func trimmed(_ text: String) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = text.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = text.lastIndex(where: { !isSpace($0) })!
        return String(text[first...last])
    }

    /// Percent-decoding with '+' as a space (Python's unquote_plus): malformed escapes are kept
    /// as they are, invalid UTF-8 becomes U+FFFD.
    static func percentDecode(_ text: String) -> String {
        let input = Array(text.utf8)
        guard input.contains(where: { $0 == 0x25 || $0 == 0x2B }) else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let c = input[i]
            if c == 0x2B {  // +
                output.append(0x20)
                i += 1
            } else if c == 0x25, i + 2 < input.count, let high = Byte.hexValue(input[i + 1]),
                let low = Byte.hexValue(input[i + 2])
            {
                output.append(high << 4 | low)
                i += 3
            } else {
                output.append(c)
                i += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}

// MARK: - Request bodies

extension S3XML {
    static let declaration = #"<?xml version="1.0" encoding="UTF-8"?>"#
    static let namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

    /// Multi-object delete body: `<Delete xmlns=…><Quiet>true</Quiet><Object><Key>…</Key></Object>…</Delete>`
    /// (Quiet only when `quiet`). Keys go through `escape`; see there for control characters.
    static func deleteRequest(keys: [String], quiet: Bool) -> [UInt8] {
        var xml = declaration + #"<Delete xmlns="\#(namespace)">"#
        if quiet {
            xml += "<Quiet>true</Quiet>"
        }
        for key in keys {
            xml += "<Object><Key>" + escape(key) + "</Key></Object>"
        }
        xml += "</Delete>"
        return Array(xml.utf8)
    }

    /// CompleteMultipartUpload body. ETags are passed unquoted (quotes already there are not
    /// doubled) and written quoted.
    static func completeRequest(parts: [(number: Int, etag: String)]) -> [UInt8] {
        var xml = declaration + "<CompleteMultipartUpload>"
        for part in parts {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\""
            xml += escape(stripQuotes(part.etag)) + "\"</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        return Array(xml.utf8)
    }

    /// CreateBucket body: nil (send no body) for no location or us-east-1, else a
    /// CreateBucketConfiguration with the LocationConstraint.
    static func createBucketRequest(location: String?) -> [UInt8]? {
        guard let location, !location.isEmpty, location != "us-east-1" else { return nil }
        let xml =
            declaration + #"<CreateBucketConfiguration xmlns="\#(namespace)">"#
            + "<LocationConstraint>" + escape(location) + "</LocationConstraint></CreateBucketConfiguration>"
        return Array(xml.utf8)
    }

    /// Escapes text for element content or attribute values: & < > " ' become the predefined
    /// entities; TAB, LF and CR become &#9; &#10; &#13; (as AWS asks for keys in XML requests, so
    /// that no end-of-line or whitespace normalization can alter them). The other C0 controls
    /// (U+0000–U+001F) and U+FFFE/U+FFFF cannot appear in XML 1.0 at all, not even as character
    /// references; they are written as numeric references (&#x1; …) anyway, which this parser and
    /// XML 1.1 parsers accept but a strict XML 1.0 server rejects, so such keys fail loudly rather
    /// than naming a different object. Everything else is written as UTF-8.
    static func escape(_ text: String) -> String {
        let needsWork = text.utf8.contains { c in
            c < 0x20 || c == 0x26 || c == 0x3C || c == 0x3E || c == 0x22 || c == 0x27 || c == 0xEF
        }
        guard needsWork else { return text }
        var output = ""
        output.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x26: output += "&amp;"
            case 0x3C: output += "&lt;"
            case 0x3E: output += "&gt;"
            case 0x22: output += "&quot;"
            case 0x27: output += "&apos;"
            case 0x09: output += "&#9;"
            case 0x0A: output += "&#10;"
            case 0x0D: output += "&#13;"
            case 0x00..<0x20, 0xFFFE, 0xFFFF:
                output += "&#x" + String(scalar.value, radix: 16, uppercase: true) + ";"
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}
