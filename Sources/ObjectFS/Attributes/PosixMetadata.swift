// PosixMetadata: the POSIX attributes kept in object metadata (doc/SEMANTICS.md, "Metadata").

import ObjectStorage

/// POSIX attributes in object metadata, under the names other tools read: `mtime` as
/// `seconds.fraction` (python-swiftclient, rclone, s3fs), `mode` as the decimal `st_mode` of
/// a regular file (s3fs), and `uid` / `gid` in decimal (s3fs, rclone) when an owner was set.
public enum PosixMetadata {
    public static func encode(mtime: Timestamp, mode: UInt32, uid: UInt32? = nil, gid: UInt32? = nil) -> [String: String] {
        var m = ["mtime": mtime.metadataValue, "mode": String(0o100000 | (mode & 0o7777))]
        if let uid { m["uid"] = String(uid) }
        if let gid { m["gid"] = String(gid) }
        return m
    }
}
