// S3Signing: request signers for S3-style object stores, as pure functions.
//
// Nothing here does I/O or reads a clock: every signer takes the date (or the expiry epoch) as a
// parameter, so the same inputs always give the same bytes and every rule is tested with vectors
// (Tests/S3SigningTests; ../shared/PROTOCOLS.md §3.5, §4.2, §5).
//
// Signers:
// - `SigV4`: AWS Signature Version 4, header (`Authorization: AWS4-HMAC-SHA256 …`) and presigned
//   query (`X-Amz-*`) forms.
// - `SigV2`: the legacy AWS S3 signature (`Authorization: AWS <AK>:<sig>`; presign
//   `AWSAccessKeyId`, `Expires`, `Signature`).
// - `KSSV2`: Kingsoft KS3's V2 (`Authorization: KSS <AK>:<sig>`; presign `KSSAccessKeyId`,
//   `Expires`, `Signature`), byte for byte as ks3sdk's `ks3.auth` builds it.
//
// On canonicalisation
// -------------------
// A signature is an HMAC over a *canonical* text that both sides rebuild independently from the
// request: the client from what it is about to send, the server from what it received. Every
// byte the two texts can disagree on is a `SignatureDoesNotMatch`, so each scheme is really its
// canonicalisation rules, and each has its own:
//
// * Percent-encoding. SigV4 encodes every byte outside RFC 3986's unreserved set
//   `A-Z a-z 0-9 - . _ ~` as `%XX` (upper-case hex, UTF-8 bytes): space is `%20`, never `+`.
//   For S3 the canonical URI is the path encoded **once**, segment by segment, keeping `/`, and
//   never dot-normalised (`a/../b` is a key). We take the path as sent, decode it and re-encode it,
//   which is the identity for a path our `URIEncoding.path` produced and what the server does for
//   any other. Query names and values are encoded the same way (with `/` encoded too), then sorted
//   by encoded name and value; a bare `?acl` becomes `acl=`.
// * Headers. SigV4 lowercases names, trims values and collapses runs of spaces, joins repeated
//   headers with `,`, sorts by name and lists the names in `SignedHeaders`. SigV2 does the same
//   only for `x-amz-*`. KSS V2 takes `x-kss-*` headers with their values **as they are** (no
//   trim) and, like ks3sdk's dict, keeps the last of repeated names.
// * Resource. V2 schemes sign a resource, not the URL: `/bucket/key` even when the bucket is in the
//   host name (virtual-hosted style), followed by only the *signed sub-resources* (`acl`,
//   `uploads`, `partNumber`, `uploadId`, `response-*`, …) sorted by name, with raw (decoded)
//   values; listing parameters such as `prefix` or `max-keys` are not signed. KSS V2 encodes the
//   key like Python's `quote(key, safe='/')` and then rewrites every `//` to `/%2F` — a quirk the
//   URL path must share (`KSSV2.path`).
// * Time. SigV4 signs `x-amz-date` (`YYYYMMDD'T'HHMMSS'Z'`) and a scope with the day; V2 schemes
//   sign the `Date` header (RFC 1123) or, when presigning, the expiry epoch in its place.
//
// The input is the same `SignableRequest` for all signers; the output is what to add to it
// (headers or query items). Query items are carried **decoded**; build the wire query with
// `URIEncoding.query` so the URL and the signature agree.

/// A query item, decoded. `value == nil` is a bare name (`?acl`).
public struct QueryItem: Sendable, Hashable {
    public var name: String
    public var value: String?
    public init(_ name: String, _ value: String?) {
        self.name = name
        self.value = value
    }
}

/// A request header, in the order it is sent. Names compare case-insensitively in the signers.
public struct HTTPHeader: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The parts of a request a signer looks at.
public struct SignableRequest: Sendable, Hashable {
    /// `GET`, `PUT`, …
    public var method: String
    /// The URL path as sent, already percent-encoded (`/bucket/my%20key` or `/my%20key`).
    public var path: String
    /// Query items, decoded, in the order they are sent.
    public var query: [QueryItem]
    /// Headers as sent. SigV4 needs `Host`.
    public var headers: [HTTPHeader]
    /// Hex SHA-256 of the body for SigV4, or `UNSIGNED-PAYLOAD` / a streaming marker; `nil` means
    /// the empty body's hash for header auth and `UNSIGNED-PAYLOAD` for presigning. Unused by V2.
    public var payloadHash: String?

    public init(
        method: String, path: String, query: [QueryItem] = [], headers: [HTTPHeader] = [],
        payloadHash: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadHash = payloadHash
    }

    /// The value of the first header called `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }
}

/// An access key pair, with the session token of temporary credentials.
public struct SigningCredentials: Sendable, Hashable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// A signature with the texts it was computed from (for tests and for debugging a mismatch:
/// S3 returns its own `StringToSign` / `CanonicalRequest` in the `SignatureDoesNotMatch` body).
public struct SigningResult: Sendable, Hashable {
    /// SigV4's canonical request; empty for V2 schemes.
    public var canonicalRequest: String
    public var stringToSign: String
    /// Hex (SigV4) or base64 (V2) signature.
    public var signature: String
    /// Headers to add to the request (header auth).
    public var headers: [HTTPHeader]
    /// Query items to add to the request, decoded (presigned URLs).
    public var query: [QueryItem]
}

/// Bucket and key of a request, for the V2 signers whose resource always names the bucket.
public struct S3Resource: Sendable, Hashable {
    /// `nil` or empty for service-level requests (ListBuckets).
    public var bucket: String?
    /// The object key, not encoded; empty for bucket-level requests.
    public var key: String
    public init(bucket: String?, key: String = "") {
        self.bucket = bucket
        self.key = key
    }
}

/// Lexicographic comparison of UTF-8 bytes (Python's and AWS's sort order, unlike `String.<`).
func byteOrder(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}
