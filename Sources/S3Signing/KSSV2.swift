// Kingsoft KS3 "KSS" V2 signature, as ks3sdk (ks3py) 1.18.0 builds it in `ks3/auth.py`
// (PROTOCOLS.md §4.2). Every rule below mirrors a line of that file; the tests compare against
// vectors produced by its own functions (Tests/S3SigningTests/generate_kss_vectors.py).

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// KS3 V2: `Authorization: KSS <AK>:base64(HMAC-SHA1(secret, StringToSign))`.
///
/// StringToSign = `VERB\nContent-MD5\nContent-Type\nDate\n[CanonicalKssHeaders\n]CanonicalResource`:
/// - Content-MD5, Content-Type, Date: the last non-empty header value of that name, else `""`;
///   when presigning the Date line is the expiry epoch;
/// - CanonicalKssHeaders: `x-kss-*` headers, lower-cased names, values as they are (no trim),
///   the last of repeated names, sorted, `name:value` joined by `\n`; absent (with its newline)
///   when there is none;
/// - CanonicalResource: `/` + `bucket/` (always, even virtual-hosted) + `encodeKey(key)`, every
///   `//` rewritten to `/%2F`, then `?` + the signed sub-resources (`signedSubresources`) sorted
///   by name with raw values, `name` alone when the value is absent or empty.
public enum KSSV2 {
    /// ks3sdk's `qsa_of_interest`: query names that are signed; all others are not.
    public static let signedSubresources: Set<String> = [
        "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy", "requestPayment",
        "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging",
        "restore", "notification", "thumbnail", "queryadp", "adp", "asyntask", "querytask", "domain",
        "storageClass", "websiteConfig", "compose", "quota", "crr", "fetch", "append", "position", "mirror",
        "retention", "recycle", "recover", "clear", "inventory", "id", "x-kss-process", "encryption",
        "accessmonitor", "decompresspolicy", "migration", "bucketqos", "requesterqos", "transferAcceleration",
        "dataAccelerator", "dataRedundancySwitch", "VpcAccessBlock", "PublicNetworkBlock",
        "BucketPublicNetworkBlock", "dataRedundancyTransition", "jobs", "jobId", "action", "priority", "worm",
        "wormId", "wormExtend", "archiveDirectRead", "http2",
    ]

    /// Headers to add: `Date` (RFC 1123 of `date`, unless a `Date` header is there, as ks3sdk
    /// does), `x-kss-security-token` (with a session token; signed like any `x-kss-*` header) and
    /// `Authorization: KSS <AK>:<sig>`. `request.path` is not used: the resource is built from
    /// `resource` (send `KSSV2.path(resource, …)`); `request.query` is decoded.
    public static func sign(
        _ request: SignableRequest, resource: S3Resource, credentials: SigningCredentials,
        date: Date
    ) -> [HTTPHeader] {
        headerAuth(request, resource: resource, credentials: credentials, date: date).headers
    }

    /// `sign`, with the string to sign.
    public static func headerAuth(
        _ request: SignableRequest, resource: S3Resource, credentials: SigningCredentials,
        date: Date
    ) -> SigningResult {
        var signable = request
        signable.headers.removeAll { ["authorization", "x-kss-security-token"].contains($0.name.lowercased()) }
        var added: [HTTPHeader] = []
        if request.header("date") == nil { added.append(HTTPHeader("Date", SigningDate.rfc1123(date))) }
        if let token = credentials.sessionToken { added.append(HTTPHeader("x-kss-security-token", token)) }
        signable.headers += added
        let sts = stringToSign(signable, resource: resource, expires: nil)
        let signature = hmacSHA1Base64(secret: credentials.secretAccessKey, sts)
        return SigningResult(
            canonicalRequest: "", stringToSign: sts, signature: signature,
            headers: added + [HTTPHeader("Authorization", "KSS \(credentials.accessKeyID):\(signature)")],
            query: [])
    }

    /// Query items for a presigned URL, decoded, in ks3sdk's order: `Signature`, `Expires`
    /// (epoch seconds), `KSSAccessKeyId` (`Connection.generate_url`). Sub-resources in
    /// `request.query` (e.g. `response-content-type`) are signed and must be sent too.
    public static func presign(
        _ request: SignableRequest, resource: S3Resource, credentials: SigningCredentials,
        expires: Int
    ) -> [QueryItem] {
        queryAuth(request, resource: resource, credentials: credentials, expires: expires).query
    }

    /// `presign`, with the string to sign.
    public static func queryAuth(
        _ request: SignableRequest, resource: S3Resource, credentials: SigningCredentials,
        expires: Int
    ) -> SigningResult {
        let sts = stringToSign(request, resource: resource, expires: expires)
        let signature = hmacSHA1Base64(secret: credentials.secretAccessKey, sts)
        return SigningResult(
            canonicalRequest: "", stringToSign: sts, signature: signature, headers: [],
            query: [
                QueryItem("Signature", signature), QueryItem("Expires", String(expires)),
                QueryItem("KSSAccessKeyId", credentials.accessKeyID),
            ])
    }

    /// ks3sdk's `canonical_string(method, bucket, key, query_args, headers, expires)`.
    public static func stringToSign(_ request: SignableRequest, resource: S3Resource, expires: Int?) -> String {
        var contentMD5 = "", contentType = "", date = ""
        var kss: [String: String] = [:]
        for header in request.headers {
            let name = header.name.lowercased()
            if name.hasPrefix("x-kss-") { kss[name] = header.value }
            guard !header.value.isEmpty else { continue }
            switch name {
            case "content-md5": contentMD5 = header.value
            case "content-type": contentType = header.value
            case "date": date = header.value
            default: break
            }
        }
        if let expires { date = String(expires) }
        var lines = [request.method, contentMD5, contentType, date]
        if !kss.isEmpty {
            lines.append(kss.keys.sorted(by: byteOrder).map { "\($0):\(kss[$0]!)" }.joined(separator: "\n"))
        }
        lines.append(canonicalResource(resource, query: request.query))
        return lines.joined(separator: "\n")
    }

    /// ks3sdk's `canonical_resource(bucket, key, query_args)`.
    public static func canonicalResource(_ resource: S3Resource, query: [QueryItem]) -> String {
        var buffer = "/"
        if let bucket = resource.bucket, !bucket.isEmpty { buffer += bucket + "/" }
        buffer = escapeDoubleSlashes(buffer + encodeKey(resource.key))
        var values: [String: String?] = [:]
        for item in query where signedSubresources.contains(item.name) { values[item.name] = item.value }
        let params = values.keys.sorted(by: byteOrder).map { name -> String in
            guard let value = values[name] ?? nil, !value.isEmpty else { return name }
            return "\(name)=\(value)"
        }
        if !params.isEmpty { buffer += "?" + params.joined(separator: "&") }
        return buffer
    }

    /// ks3sdk's `url_encode(key)`: Python `quote(utf8, safe='/')` (unreserved and `/` kept).
    public static func encodeKey(_ key: String) -> String {
        URIEncoding.encode(key, keepSlash: true)
    }

    /// The URL path ks3sdk sends (`build_path_base` of its calling formats): `/bucket/key`
    /// path-style, `/key` virtual-hosted, with `//` rewritten to `/%2F` as in the resource.
    public static func path(_ resource: S3Resource, pathStyle: Bool) -> String {
        var buffer = "/"
        if pathStyle, let bucket = resource.bucket, !bucket.isEmpty { buffer += bucket + "/" }
        return escapeDoubleSlashes(buffer + encodeKey(resource.key))
    }

    /// Python's `s.replace('//', '/%2F')`: left to right, non-overlapping.
    static func escapeDoubleSlashes(_ text: String) -> String {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "/"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") {
                out += Array("/%2F".utf8)
                index += 2
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
