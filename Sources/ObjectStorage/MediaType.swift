// The Content-Type an object gets when the writer names none: what its key's extension
// implies, else `application/octet-stream`. The S3 and KS3 drivers send it on every upload
// (a PUT, a CreateMultipartUpload, a copy that replaces metadata): S3 would otherwise store
// `binary/octet-stream` whatever the name. Swift guesses from the name itself (Python's
// `mimetypes`) when no type is sent, and its driver leaves that to the server.
// The table is small and common on purpose; its types are those of Python's `mimetypes` (what
// Swift and s3cmd pick for the same names), except that compressed files (`.gz`, `.bz2`, `.xz`)
// get their compression's type where Python names an encoding and no type.

public enum MediaType {
    /// The type of objects whose name implies none.
    public static let fallback = "application/octet-stream"

    /// The type `key`'s extension implies (case-insensitive), or `nil`.
    public static func forKey(_ key: ObjectKey) -> String? {
        let name = key.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        return byExtension[name[name.index(after: dot)...].lowercased()]
    }

    /// The type to send for `key`: the one asked for, else the extension's, else the fallback.
    public static func of(_ key: ObjectKey, requested: String?) -> String {
        if let requested, !requested.isEmpty { return requested }
        return forKey(key) ?? fallback
    }

    public static let byExtension: [String: String] = [
        // text
        "txt": "text/plain", "text": "text/plain", "md": "text/markdown", "csv": "text/csv",
        "tsv": "text/tab-separated-values", "html": "text/html", "htm": "text/html", "css": "text/css",
        "js": "text/javascript", "mjs": "text/javascript", "xml": "application/xml", "json": "application/json",
        "ics": "text/calendar", "rtf": "application/rtf",
        // images
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml",
        "webp": "image/webp", "bmp": "image/bmp", "ico": "image/vnd.microsoft.icon", "tif": "image/tiff",
        "tiff": "image/tiff", "heic": "image/heic", "avif": "image/avif",
        // audio and video
        "mp3": "audio/mpeg", "wav": "audio/x-wav", "ogg": "audio/ogg", "oga": "audio/ogg", "flac": "audio/flac",
        "m4a": "audio/mp4", "aac": "audio/aac", "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm",
        "mkv": "video/x-matroska", "mov": "video/quicktime", "avi": "video/x-msvideo", "mpeg": "video/mpeg",
        "mpg": "video/mpeg",
        // documents
        "pdf": "application/pdf", "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt": "application/vnd.ms-powerpoint",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt": "application/vnd.oasis.opendocument.text", "epub": "application/epub+zip",
        // archives
        "zip": "application/zip", "gz": "application/gzip", "tgz": "application/gzip", "tar": "application/x-tar",
        "bz2": "application/x-bzip2", "xz": "application/x-xz", "zst": "application/zstd",
        "7z": "application/x-7z-compressed",
        "rar": "application/vnd.rar",
        // fonts, web and code
        "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf", "wasm": "application/wasm",
        "sh": "text/x-sh", "py": "text/x-python", "c": "text/x-csrc", "h": "text/x-chdr",
    ]
}
