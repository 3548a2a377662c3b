// Remotes are URLs: `<scheme>://<container or bucket>[/<prefix>]`. Each scheme names a driver
// and where its credentials come from; an empty container means an account-level mount
// (containers/buckets as top-level directories) for the schemes that have accounts.

public struct Remote: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable, CaseIterable {
        /// In-process store, empty at start (`--seed` preloads it).
        case memory
        /// OpenStack Swift: auth v1 (ST_AUTH/ST_USER/ST_KEY) or Keystone v3 (OS_*).
        case swift
        /// Hubic: OAuth2 (HUBIC_*) that yields a Swift token and endpoint.
        case hubic
        /// S3-compatible (SigV4), AWS_* variables.
        case s3
        /// Kingsoft KS3 (KSS signature), KS3_* variables.
        case ks3

        var hasAccountLevel: Bool { self != .memory }
    }

    public var scheme: Scheme
    /// The container or bucket; `nil` for an account-level mount.
    public var container: String?
    /// Key prefix inside the container: "" or "a/b/".
    public var prefix: String

    public var description: String {
        "\(scheme.rawValue)://\(container ?? "")" + (prefix.isEmpty ? "" : "/" + String(prefix.dropLast()))
    }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(scheme: Scheme, container: String?, prefix: String = "") {
        self.scheme = scheme
        self.container = container
        self.prefix = prefix
    }

    public init(parsing text: String) throws(ParseError) {
        let pieces = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard pieces.count == 2 else {
            throw ParseError(
                description: "remote '\(text)' is not a URL; expected e.g. memory://bucket or swift://container/prefix")
        }
        let schemeText = pieces[0].lowercased()
        guard let scheme = Scheme(rawValue: schemeText) else {
            let known = Scheme.allCases.map(\.rawValue).joined(separator: ", ")
            throw ParseError(description: "unknown remote scheme '\(schemeText)' (known: \(known))")
        }
        let rest = pieces[1]
        if rest.contains("?") || rest.contains("#") {
            throw ParseError(description: "remote '\(text)' must not contain '?' or '#'")
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: true)
        let container = parts.first.map(String.init)
        if container == nil && !scheme.hasAccountLevel {
            throw ParseError(description: "\(scheme.rawValue):// needs a bucket name, e.g. \(scheme.rawValue)://demo")
        }
        for segment in parts where segment == "." || segment == ".." {
            throw ParseError(description: "remote '\(text)' has a '\(segment)' segment")
        }
        let prefix = parts.dropFirst().joined(separator: "/")
        self.init(scheme: scheme, container: container, prefix: prefix.isEmpty ? "" : prefix + "/")
    }
}
