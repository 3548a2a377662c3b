// What differs between S3-compatible services is data, not code paths: which signature, which
// header namespace, how listings page, how small a part may be. A provider is one value of
// `S3Provider`; the driver reads its fields and never asks which service it talks to.

import ObjectStorage

public struct S3Provider: Sendable, Hashable {
    public enum Signature: Sendable, Hashable {
        /// AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …`).
        case sigV4
        /// Kingsoft KS3 V2 (`Authorization: KSS <AK>:<sig>`), as ks3sdk signs.
        case kssV2
    }

    /// `s3` or `ks3`, for messages.
    public var name: String
    public var signature: Signature
    /// `x-amz-` or `x-kss-`: the namespace of metadata, storage class, copy and ACL headers.
    public var headerPrefix: String
    /// 2 (ListObjectsV2, continuation tokens) or 1 (ListObjects, markers).
    public var listVersion: Int
    /// Smallest part except the last.
    public var minimumPartSize: Int64
    public var maximumPartCount: Int
    /// Largest object CopyObject copies in one request; above it, UploadPartCopy.
    public var maximumCopySize: Int64
    /// Keys per DeleteObjects request.
    public var maximumDeleteBatch: Int
    /// Accepted values of `--storage-class`.
    public var storageClasses: [String]
    /// The storage class objects have when the server does not name one.
    public var defaultStorageClass: String
    /// Virtual-hosted addressing (`bucket.host`) unless path style is asked for or the host
    /// cannot carry a bucket name (an IP address, `localhost`, a dotted bucket over TLS).
    public var virtualHostedByDefault: Bool

    public static let aws = S3Provider(
        name: "s3", signature: .sigV4, headerPrefix: "x-amz-", listVersion: 2, minimumPartSize: 5 << 20,
        maximumPartCount: 10_000, maximumCopySize: 5 << 30, maximumDeleteBatch: 1000,
        storageClasses: [
            "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
            "GLACIER_IR", "DEEP_ARCHIVE", "EXPRESS_ONEZONE",
        ],
        defaultStorageClass: "STANDARD", virtualHostedByDefault: true)

    /// Kingsoft KS3 (PROTOCOLS.md §4): KSS V2 over `x-kss-*`, parts down to 100 KB.
    public static let ks3 = S3Provider(
        name: "ks3", signature: .kssV2, headerPrefix: "x-kss-", listVersion: 2, minimumPartSize: 100 * 1024,
        maximumPartCount: 10_000, maximumCopySize: 5 << 30, maximumDeleteBatch: 1000,
        storageClasses: ["STANDARD", "STANDARD_IA", "DEEP_IA", "ARCHIVE", "COLD_ARCHIVE", "DEEP_COLD_ARCHIVE"],
        defaultStorageClass: "STANDARD", virtualHostedByDefault: true)

    var metadataPrefix: String { headerPrefix + "meta-" }
}

/// Where a bucket lives and how to address it.
public struct S3Endpoint: Sendable, Hashable {
    /// `http` or `https`.
    public var scheme: String
    /// Host name or address, without the port.
    public var host: String
    public var port: Int?
    public var region: String
    public var pathStyle: Bool

    /// `url` is `https://host[:port]`, `http://…`, or a bare host (HTTPS). Path style when asked,
    /// or when the host cannot carry a bucket name (an IP address or `localhost`).
    public init(url: String, region: String, forcePathStyle: Bool, provider: S3Provider) throws(StorageError) {
        var rest = Substring(url)
        if let r = rest.firstRange(of: "://") {
            scheme = rest[..<r.lowerBound].lowercased()
            rest = rest[r.upperBound...]
        } else {
            scheme = "https"
        }
        guard scheme == "http" || scheme == "https" else {
            throw .invalidArgument("endpoint '\(url)': only http:// and https:// are supported")
        }
        let authority = rest.prefix { $0 != "/" }
        guard !authority.isEmpty else { throw .invalidArgument("endpoint '\(url)' has no host") }
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw .invalidArgument("endpoint '\(url)' has a bad port")
            }
            host = String(authority[..<colon])
            port = p
        } else {
            host = String(authority)
            port = nil
        }
        self.region = region
        let isAddress =
            host == "localhost" || host.hasPrefix("[") || host.split(separator: ".").allSatisfy { Int($0) != nil }
        pathStyle = forcePathStyle || isAddress || !provider.virtualHostedByDefault
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    func authority(bucket: String?) -> String {
        var h = host
        if !pathStyle, let bucket, !bucket.isEmpty { h = bucket + "." + host }
        if let port, !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) { h += ":\(port)" }
        return h
    }

    /// Path style for a bucket whose name cannot be a TLS host label (it has dots).
    func addressing(bucket: String?) -> S3Endpoint {
        guard let bucket, !pathStyle, scheme == "https", bucket.contains(".") else { return self }
        var e = self
        e.pathStyle = true
        return e
    }
}
