// PosixMetadata: the POSIX attributes kept in object metadata (doc/SEMANTICS.md, "Metadata").

import ObjectStorage

/// POSIX attributes in object metadata, under the names other tools read: `mtime` as
/// `seconds.fraction` (python-swiftclient, rclone, s3fs), `mode` as the decimal `st_mode` of
/// a regular file (s3fs), and `uid` / `gid` in decimal (s3fs, rclone) when an owner was set.
public enum PosixMetadata {
    static let fileType: UInt32 = 0o170000
    static let regularType: UInt32 = 0o100000
    static let symlinkType: UInt32 = 0o120000
    static let directoryType: UInt32 = 0o040000
    /// The content type objmount gives symlink objects (shared-mime-info's type for symlinks):
    /// Swift listings carry content types, so a listing tells symlinks without a HEAD.
    public static let symlinkContentType = "inode/symlink"
    /// The longest symlink target (PATH_MAX without the NUL).
    public static let maximumTargetLength = 4095

    public static func encode(
        mtime: Timestamp, mode: UInt32, uid: UInt32? = nil, gid: UInt32? = nil, kind: FileKind = .file
    ) -> [String: String] {
        let type: UInt32 =
            switch kind {
            case .file: regularType
            case .directory: directoryType
            case .symlink: symlinkType
            }
        var m = ["mtime": mtime.metadataValue, "mode": String(type | (mode & 0o7777))]
        if let uid { m["uid"] = String(uid) }
        if let gid { m["gid"] = String(gid) }
        return m
    }

    /// Whether a stored object is a symlink: its `mode` metadata has S_IFLNK (s3fs, objmount),
    /// or its content type is `inode/symlink`. Nil when the listing carried neither (S3): only
    /// the object's own metadata can tell.
    public static func isSymlink(_ info: ObjectInfo) -> Bool? {
        if info.contentType?.lowercased() == symlinkContentType { return true }
        if let mode = info.metadata?["mode"].flatMap({ UInt32($0) }) { return mode & fileType == symlinkType }
        if info.metadata != nil || info.contentType != nil { return false }
        return nil
    }
}
