import Foundation
import GRDB

/// A drive (by filesystem UUID) or a path an admin ingested.
public struct Source: Codable, Sendable, Equatable, FetchableRecord {
    public enum State: String, Codable, Sendable { case present, absent, unsupported }
    public var id: Int64
    public var key: String
    public var kind: String
    public var uuid: String?
    public var label: String?
    public var fstype: String?
    public var device: String?
    public var mountPoint: String?
    public var state: State
    public var firstSeen: Date
    public var lastSeen: Date
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
}

/// What identifies and describes a source when it is seen.
public struct SourceInfo: Sendable {
    public var key: String
    public var kind: String
    public var uuid: String?
    public var label: String?
    public var fstype: String?
    public var device: String?
    public var mountPoint: String?

    public init(key: String, kind: String, uuid: String? = nil, label: String? = nil, fstype: String? = nil,
                device: String? = nil, mountPoint: String? = nil) {
        self.key = key
        self.kind = kind
        self.uuid = uuid
        self.label = label
        self.fstype = fstype
        self.device = device
        self.mountPoint = mountPoint
    }

    /// How a known source was described when last seen.
    public init(_ s: Source) {
        self.init(key: s.key, kind: s.kind, uuid: s.uuid, label: s.label, fstype: s.fstype, device: s.device, mountPoint: s.mountPoint)
    }

    /// A local file or directory an admin ingests: its absolute path is its identity.
    public static func path(_ path: String) -> SourceInfo {
        SourceInfo(key: "path:" + path, kind: "path", mountPoint: path)
    }
}

/// One version of one file of a source.
public struct Document: Codable, Sendable, Equatable, FetchableRecord {
    public enum State: String, Codable, Sendable, CaseIterable {
        case discovered, extracted, learned, failed, superseded, forgotten
    }
    public var id: Int64
    public var sourceId: Int64
    public var path: String
    public var size: Int64
    public var mtime: Double
    public var format: String
    public var rawSha256: String
    public var textSha256: String?
    public var version: Int
    public var state: State
    public var error: String?
    public var created: Date
    public var updated: Date
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
}

/// Long work (an ingest), with progress that survives a restart.
public struct Job: Codable, Sendable, Equatable, FetchableRecord {
    public enum State: String, Codable, Sendable { case queued, running, done, failed, cancelled }
    public var id: Int64
    public var kind: String
    public var target: String
    public var sourceId: Int64?
    public var state: State
    public var done: Int
    public var total: Int?
    public var current: String?
    public var error: String?
    public var created: Date
    public var updated: Date
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
}

/// A file a job did not read, and why.
public struct Skip: Codable, Sendable, Equatable, FetchableRecord {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}
