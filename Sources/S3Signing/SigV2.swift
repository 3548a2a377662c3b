// AWS Signature Version 2 for S3 (legacy; the base KS3's V2 copied). PROTOCOLS.md §3.5;
// docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html.

import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// AWS S3 Signature Version 2: `Authorization: AWS <AK>:base64(HMAC-SHA1(secret, StringToSign))`.
///
/// StringToSign = `VERB\nContent-MD5\nContent-Type\nDate\nCanonicalizedAmzHeaders` +
/// `CanonicalizedResource`; the Date line is empty when `x-amz-date` is sent and is the expiry
/// epoch when presigning.
public enum SigV2 {
    /// Query names that are part of the resource (AWS's list); others (`prefix`, `marker`, …) are not signed.
    public static let signedSubresources: Set<String> = [
        "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
        "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
        "versions", "website", "response-cache-control", "response-content-disposition",
        "response-content-encoding", "response-content-language", "response-content-type", "response-expires",
    ]

    /// Headers to add: `Date` (RFC 1123 of `date`, unless `Date` or `x-amz-date` is already
    /// there), `x-amz-security-token` (with a session token) and `Authorization`.
    /// `virtualHostBucket` is the bucket when it is in the host name (its `/bucket` prefixes the
    /// resource); `nil` for path-style, where `request.path` already starts with `/bucket`.
    public static func sign(
        _ request: SignableRequest, virtualHostBucket: String?, credentials: SigningCredentials,
        date: Date
    ) -> [HTTPHeader] {
        headerAuth(request, virtualHostBucket: virtualHostBucket, credentials: credentials, date: date).headers
    }

    /// `sign`, with the string to sign.
    public static func headerAuth(
        _ request: SignableRequest, virtualHostBucket: String?,
        credentials: SigningCredentials, date: Date
    ) -> SigningResult {
        var signable = request
        signable.headers.removeAll {
            ["authorization", "x-amz-security-token"].contains($0.name.lowercased())
        }
        var added: [HTTPHeader] = []
        if request.header("date") == nil && request.header("x-amz-date") == nil {
            added.append(HTTPHeader("Date", SigningDate.rfc1123(date)))
        }
        if let token = credentials.sessionToken { added.append(HTTPHeader("x-amz-security-token", token)) }
        signable.headers += added
        let sts = stringToSign(signable, virtualHostBucket: virtualHostBucket, expires: nil)
        let signature = hmacSHA1Base64(secret: credentials.secretAccessKey, sts)
        return SigningResult(
            canonicalRequest: "", stringToSign: sts, signature: signature,
            headers: added + [HTTPHeader("Authorization", "AWS \(credentials.accessKeyID):\(signature)")],
            query: [])
    }

    /// Query items for a presigned URL, decoded: `AWSAccessKeyId`, `Expires` (epoch seconds) and
    /// `Signature`. Session tokens are not supported here (use SigV4).
    public static func presign(
        _ request: SignableRequest, virtualHostBucket: String?, credentials: SigningCredentials,
        expires: Int
    ) -> [QueryItem] {
        queryAuth(request, virtualHostBucket: virtualHostBucket, credentials: credentials, expires: expires).query
    }

    /// `presign`, with the string to sign.
    public static func queryAuth(
        _ request: SignableRequest, virtualHostBucket: String?,
        credentials: SigningCredentials, expires: Int
    ) -> SigningResult {
        let sts = stringToSign(request, virtualHostBucket: virtualHostBucket, expires: expires)
        let signature = hmacSHA1Base64(secret: credentials.secretAccessKey, sts)
        return SigningResult(
            canonicalRequest: "", stringToSign: sts, signature: signature, headers: [],
            query: [
                QueryItem("AWSAccessKeyId", credentials.accessKeyID),
                QueryItem("Expires", String(expires)), QueryItem("Signature", signature),
            ])
    }

    /// The string to sign; `expires` (presigning) replaces the Date line.
    public static func stringToSign(_ request: SignableRequest, virtualHostBucket: String?, expires: Int?) -> String {
        var amz: [String: [String]] = [:]
        for header in request.headers where header.name.lowercased().hasPrefix("x-amz-") {
            amz[header.name.lowercased(), default: []].append(SigV4.normalizeValue(header.value))
        }
        let dateLine: String
        if let expires {
            dateLine = String(expires)
        } else if amz["x-amz-date"] != nil {
            dateLine = ""
        } else {
            dateLine = request.header("date") ?? ""
        }
        let amzLines = amz.keys.sorted(by: byteOrder).map { "\($0):\(amz[$0]!.joined(separator: ","))\n" }.joined()
        return [request.method, request.header("content-md5") ?? "", request.header("content-type") ?? "", dateLine]
            .joined(separator: "\n") + "\n" + amzLines
            + canonicalResource(path: request.path, virtualHostBucket: virtualHostBucket, query: request.query)
    }

    /// `[/bucket]` + the path as sent + `?` + the signed sub-resources sorted by name, with raw
    /// values (`name=value`, or `name` when the value is absent or empty).
    public static func canonicalResource(path: String, virtualHostBucket: String?, query: [QueryItem]) -> String {
        var resource = ""
        if let bucket = virtualHostBucket, !bucket.isEmpty { resource += "/" + bucket }
        resource += path.isEmpty ? "/" : path
        let subresources = query.filter { signedSubresources.contains($0.name) }
            .sorted { byteOrder($0.name, $1.name) }
            .map { item in (item.value ?? "").isEmpty ? item.name : "\(item.name)=\(item.value!)" }
        if !subresources.isEmpty { resource += "?" + subresources.joined(separator: "&") }
        return resource
    }
}

/// base64(HMAC-SHA1(secret, UTF-8(text))), the V2 signature.
func hmacSHA1Base64(secret: String, _ text: String) -> String {
    let mac = HMAC<Insecure.SHA1>.authenticationCode(
        for: Array(text.utf8),
        using: SymmetricKey(data: Array(secret.utf8)))
    return Data(mac).base64EncodedString()
}
