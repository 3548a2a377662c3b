// AWS Signature Version 4 (PROTOCOLS.md §3.5; docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html).

import Crypto
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// AWS Signature Version 4, with S3's URI rule (the path encoded once).
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// Hex SHA-256 of the empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// Longest `X-Amz-Expires` S3 accepts (7 days).
    public static let maximumExpiry = 604_800

    /// Headers never signed: hop-by-hop ones a client or proxy may rewrite, and `Authorization`
    /// itself (the aws-sdk-js v3 list).
    static let unsignableHeaders: Set<String> = [
        "authorization", "connection", "expect", "from", "keep-alive", "max-forwards", "pragma",
        "referer", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    ]

    /// Hex SHA-256 of `data` (for `SignableRequest.payloadHash`).
    public static func payloadHash(_ data: some DataProtocol) -> String {
        hex(SHA256.hash(data: data))
    }

    /// Headers to add for header auth: `x-amz-date`, `x-amz-content-sha256` (unless
    /// `contentSHA256Header` is false, as for non-S3 services), `x-amz-security-token` (with a
    /// session token) and `Authorization`. Every header of `request` except the hop-by-hop ones
    /// is signed; it must contain `Host`. Any of the added headers already in `request` are replaced.
    public static func sign(
        _ request: SignableRequest, credentials: SigningCredentials, region: String,
        service: String = "s3", date: Date, contentSHA256Header: Bool = true
    ) -> [HTTPHeader] {
        headerAuth(
            request, credentials: credentials, region: region, service: service, date: date,
            contentSHA256Header: contentSHA256Header
        ).headers
    }

    /// `sign`, with the canonical request and string to sign.
    public static func headerAuth(
        _ request: SignableRequest, credentials: SigningCredentials, region: String,
        service: String = "s3", date: Date,
        contentSHA256Header: Bool = true
    ) -> SigningResult {
        let amzDate = SigningDate.amzDate(date)
        let payload = request.payloadHash ?? emptyPayloadHash
        var owned: Set<String> = ["authorization", "x-amz-date", "x-amz-security-token"]
        if contentSHA256Header { owned.insert("x-amz-content-sha256") }
        var added = [HTTPHeader("x-amz-date", amzDate)]
        if contentSHA256Header { added.append(HTTPHeader("x-amz-content-sha256", payload)) }
        if let token = credentials.sessionToken { added.append(HTTPHeader("x-amz-security-token", token)) }
        var signable = request
        signable.headers = request.headers.filter { !owned.contains($0.name.lowercased()) } + added
        let scope = credentialScope(date: date, region: region, service: service)
        let (creq, signedHeaders) = canonicalRequest(signable, payloadHash: payload)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate, scope: scope)
        let signature = self.signature(
            stringToSign: sts, secret: credentials.secretAccessKey, date: date,
            region: region, service: service)
        let authorization =
            "\(algorithm) Credential=\(credentials.accessKeyID)/\(scope), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return SigningResult(
            canonicalRequest: creq, stringToSign: sts, signature: signature,
            headers: added + [HTTPHeader("Authorization", authorization)], query: [])
    }

    /// Query items to add for a presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`,
    /// `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token` (with a session
    /// token) and `X-Amz-Signature`, decoded (encode them with `URIEncoding.query`). The headers
    /// of `request` (normally just `Host`) are signed; the payload is `UNSIGNED-PAYLOAD` unless
    /// `request.payloadHash` says otherwise. `expires` is in seconds (S3: 1...604800).
    public static func presign(
        _ request: SignableRequest, credentials: SigningCredentials, region: String,
        service: String = "s3", date: Date, expires: Int
    ) -> [QueryItem] {
        queryAuth(
            request, credentials: credentials, region: region, service: service, date: date,
            expires: expires
        ).query
    }

    /// `presign`, with the canonical request and string to sign.
    public static func queryAuth(
        _ request: SignableRequest, credentials: SigningCredentials, region: String,
        service: String = "s3", date: Date, expires: Int
    ) -> SigningResult {
        let amzDate = SigningDate.amzDate(date)
        let scope = credentialScope(date: date, region: region, service: service)
        var signable = request
        signable.headers = request.headers.filter { $0.name.lowercased() != "authorization" }
        let signedHeaders = canonicalHeaders(signable.headers).signedHeaders
        var added = [
            QueryItem("X-Amz-Algorithm", algorithm),
            QueryItem("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"),
            QueryItem("X-Amz-Date", amzDate),
            QueryItem("X-Amz-Expires", String(expires)),
            QueryItem("X-Amz-SignedHeaders", signedHeaders),
        ]
        if let token = credentials.sessionToken { added.append(QueryItem("X-Amz-Security-Token", token)) }
        signable.query = request.query + added
        let (creq, _) = canonicalRequest(signable, payloadHash: request.payloadHash ?? unsignedPayload)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate, scope: scope)
        let signature = self.signature(
            stringToSign: sts, secret: credentials.secretAccessKey, date: date,
            region: region, service: service)
        return SigningResult(
            canonicalRequest: creq, stringToSign: sts, signature: signature, headers: [],
            query: added + [QueryItem("X-Amz-Signature", signature)])
    }

    /// `<yyyymmdd>/<region>/<service>/aws4_request`.
    public static func credentialScope(date: Date, region: String, service: String) -> String {
        "\(SigningDate.shortDate(date))/\(region)/\(service)/aws4_request"
    }

    /// `METHOD\nCanonicalURI\nCanonicalQuery\nCanonicalHeaders\n\nSignedHeaders\nPayloadHash`, over
    /// every header of `request`, and the `SignedHeaders` list.
    public static func canonicalRequest(
        _ request: SignableRequest,
        payloadHash: String
    ) -> (canonicalRequest: String, signedHeaders: String) {
        let (headerBlock, signedHeaders) = canonicalHeaders(request.headers)
        let text = [
            request.method,
            URIEncoding.canonicalS3Path(request.path),
            canonicalQuery(request.query),
            headerBlock,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")
        return (text, signedHeaders)
    }

    /// Names and values RFC 3986 encoded, sorted by encoded name then value, `name=` for a bare name.
    public static func canonicalQuery(_ items: [QueryItem]) -> String {
        items.map { (URIEncoding.encode($0.name), URIEncoding.encode($0.value ?? "")) }
            .sorted { $0.0 != $1.0 ? byteOrder($0.0, $1.0) : byteOrder($0.1, $1.1) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Canonical header lines (each ending in `\n`) and the `;`-joined signed names: lower-case
    /// names, trimmed values with runs of spaces collapsed, repeats joined with `,` in order,
    /// sorted by name; hop-by-hop headers left out.
    public static func canonicalHeaders(_ headers: [HTTPHeader]) -> (block: String, signedHeaders: String) {
        var values: [String: [String]] = [:]
        for header in headers {
            let name = lowercasedName(header.name)
            guard !unsignableHeaders.contains(name) else { continue }
            values[name, default: []].append(normalizeValue(header.value))
        }
        let names = values.keys.sorted(by: byteOrder)
        let block = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    /// Trims spaces and tabs and collapses inner runs of spaces to one.
    /// A header name in lower case (names are ASCII tokens: no Unicode case mapping for them).
    static func lowercasedName(_ name: String) -> String {
        let isUpper = { (b: UInt8) in b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") }
        guard name.utf8.allSatisfy({ $0 < 0x80 }) else { return name.lowercased() }
        guard name.utf8.contains(where: isUpper) else { return name }
        return String(decoding: name.utf8.map { isUpper($0) ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// The value trimmed, with each run of spaces and tabs inside it made one space.
    static func normalizeValue(_ value: String) -> String {
        // Most values need nothing: no tab, no space at either end, no two spaces in a row.
        var previousSpace = true
        var unchanged = true
        for byte in value.utf8 {
            let space = byte == UInt8(ascii: " ")
            if byte == UInt8(ascii: "\t") || (space && previousSpace) {
                unchanged = false
                break
            }
            previousSpace = space
        }
        if unchanged && (value.isEmpty || !previousSpace) { return value }
        var out = ""
        var pendingSpace = false
        for character in value {
            if character == " " || character == "\t" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(character)
            }
        }
        return out
    }

    /// `AWS4-HMAC-SHA256\n<amzdate>\n<scope>\nhex(sha256(canonicalRequest))`.
    public static func stringToSign(canonicalRequest: String, amzDate: String, scope: String) -> String {
        "\(algorithm)\n\(amzDate)\n\(scope)\n\(hex(SHA256.hash(data: Array(canonicalRequest.utf8))))"
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
    public static func signingKey(secret: String, date: Date, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array(("AWS4" + secret).utf8))
        for part in [SigningDate.shortDate(date), region, service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key))
        }
        return key
    }

    /// The last signing key derived, with what it was derived from: it changes once a day, and
    /// deriving it is four of a request's five HMACs.
    private static let lastKey = Mutex<(scope: String, secret: String, key: [UInt8])?>(nil)

    static func signature(
        stringToSign: String, secret: String, date: Date, region: String,
        service: String
    ) -> String {
        let scope = credentialScope(date: date, region: region, service: service)
        var bytes = lastKey.withLock { last -> [UInt8]? in
            guard let last, last.scope == scope, last.secret == secret else { return nil }
            return last.key
        }
        if bytes == nil {
            let derived = signingKey(secret: secret, date: date, region: region, service: service)
                .withUnsafeBytes { Array($0) }
            lastKey.withLock { $0 = (scope, secret, derived) }
            bytes = derived
        }
        let key = SymmetricKey(data: bytes!)
        return hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }
}

/// Lower-case hex of a digest or MAC.
public func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
