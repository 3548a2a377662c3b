// Abilities some drivers have beyond `ObjectStorage`, as protocols of their own, so that the
// command line asks for an ability (a shareable URL, the uploads a crash left behind) and never
// for a driver's concrete type.

/// A driver that can hand out a URL anyone can download an object with for a limited time: S3's
/// SigV4 and KS3's KSS presigned URLs (signed locally, no request), Swift's TempURLs.
public protocol PresigningStorage: Sendable {
    /// A URL that GETs `key` until `seconds` from now (at least 1).
    func presignedURL(for key: ObjectKey, expiresIn seconds: Int) async throws -> String
}

/// A multipart upload that was neither completed nor aborted, and when it started.
public struct IncompleteUpload: Hashable, Sendable {
    public var upload: MultipartUpload
    public var initiated: Timestamp
    public init(upload: MultipartUpload, initiated: Timestamp) {
        self.upload = upload
        self.initiated = initiated
    }
}

/// A driver whose multipart uploads live on the server until completed or aborted (S3, KS3:
/// their parts are billed meanwhile), so that those a crash left behind can be found and aborted.
/// Swift keeps no pending uploads: its segments are ordinary objects.
public protocol IncompleteUploadListing: Sendable {
    /// Every incomplete upload whose key starts with `prefix`.
    func incompleteUploads(prefix: String) async throws -> [IncompleteUpload]
    /// Aborts an upload and frees its parts; one that is gone already is not an error.
    func abortMultipartUpload(_ upload: MultipartUpload) async throws
}
