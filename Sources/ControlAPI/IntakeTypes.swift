import Foundation

// Wire types of the intake API: sources (drives and ingested paths), documents, jobs, audit.
// Times are seconds since 1970 (UTC), so any client can read them.

public struct SourceBody: Codable, Sendable, Equatable {
    public var id: Int64
    public var kind: String          // "drive" | "path"
    public var label: String?
    public var uuid: String?
    public var fstype: String?
    public var device: String?
    public var mountPoint: String?
    public var state: String         // "present" | "absent" | "unsupported"
    public var firstSeen: Double
    public var lastSeen: Double
    public var documents: Int        // documents not forgotten or superseded

    public init(id: Int64, kind: String, label: String?, uuid: String?, fstype: String?, device: String?, mountPoint: String?,
                state: String, firstSeen: Double, lastSeen: Double, documents: Int) {
        self.id = id
        self.kind = kind
        self.label = label
        self.uuid = uuid
        self.fstype = fstype
        self.device = device
        self.mountPoint = mountPoint
        self.state = state
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.documents = documents
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, label, uuid, fstype, device, mountPoint = "mount_point", state, firstSeen = "first_seen", lastSeen = "last_seen", documents
    }
}

public struct SourceList: Codable, Sendable {
    public var sources: [SourceBody]
    public init(sources: [SourceBody]) { self.sources = sources }
}

public struct DocumentBody: Codable, Sendable, Equatable {
    public var id: Int64
    public var sourceId: Int64
    public var path: String
    public var size: Int64
    public var mtime: Double
    public var format: String
    public var sha256: String
    public var textSha256: String?
    public var version: Int
    public var state: String
    public var error: String?
    public var created: Double
    public var updated: Double
    /// Only with `?include=text`.
    public var text: String?

    public init(id: Int64, sourceId: Int64, path: String, size: Int64, mtime: Double, format: String, sha256: String,
                textSha256: String?, version: Int, state: String, error: String?, created: Double, updated: Double, text: String? = nil) {
        self.id = id
        self.sourceId = sourceId
        self.path = path
        self.size = size
        self.mtime = mtime
        self.format = format
        self.sha256 = sha256
        self.textSha256 = textSha256
        self.version = version
        self.state = state
        self.error = error
        self.created = created
        self.updated = updated
        self.text = text
    }

    enum CodingKeys: String, CodingKey {
        case id, sourceId = "source_id", path, size, mtime, format, sha256, textSha256 = "text_sha256", version, state, error,
             created, updated, text
    }
}

public struct DocumentList: Codable, Sendable {
    public var documents: [DocumentBody]
    public var total: Int
    public var limit: Int
    public var offset: Int
    public init(documents: [DocumentBody], total: Int, limit: Int, offset: Int) {
        self.documents = documents
        self.total = total
        self.limit = limit
        self.offset = offset
    }
}

public struct IngestRequest: Codable, Sendable {
    public var path: String
    public init(path: String) { self.path = path }
}

public struct SkipBody: Codable, Sendable, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

public struct JobBody: Codable, Sendable, Equatable {
    public var id: Int64
    public var kind: String
    public var target: String
    public var sourceId: Int64?
    public var state: String        // queued | running | done | failed | cancelled
    public var done: Int
    public var total: Int?
    public var current: String?
    public var error: String?
    public var created: Double
    public var updated: Double
    /// Files the job did not read and why (in GET /v1/jobs/{id}).
    public var skipped: [SkipBody]?

    public init(id: Int64, kind: String, target: String, sourceId: Int64?, state: String, done: Int, total: Int?, current: String?,
                error: String?, created: Double, updated: Double, skipped: [SkipBody]? = nil) {
        self.id = id
        self.kind = kind
        self.target = target
        self.sourceId = sourceId
        self.state = state
        self.done = done
        self.total = total
        self.current = current
        self.error = error
        self.created = created
        self.updated = updated
        self.skipped = skipped
    }

    public var isFinished: Bool { ["done", "failed", "cancelled"].contains(state) }

    enum CodingKeys: String, CodingKey {
        case id, kind, target, sourceId = "source_id", state, done, total, current, error, created, updated, skipped
    }
}

public struct JobList: Codable, Sendable {
    public var jobs: [JobBody]
    public init(jobs: [JobBody]) { self.jobs = jobs }
}

public struct ForgetResponse: Codable, Sendable {
    /// Every document version that was forgotten.
    public var forgotten: [Int64]
    public init(forgotten: [Int64]) { self.forgotten = forgotten }
}

public struct AuditEntryBody: Codable, Sendable {
    public var time: Double
    public var user: String?
    public var action: String
    public var detail: String?
    public init(time: Double, user: String?, action: String, detail: String?) {
        self.time = time
        self.user = user
        self.action = action
        self.detail = detail
    }
}

public struct AuditList: Codable, Sendable {
    public var entries: [AuditEntryBody]
    public init(entries: [AuditEntryBody]) { self.entries = entries }
}
