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

/// `POST /v1/admin/repair`: what repairing the store did. A daemon whose store failed its check
/// at start waits in repair mode; after a repair it restarts (`restarting`) and serves again.
public struct RepairResponse: Codable, Sendable {
    public struct Table: Codable, Sendable {
        public var name: String
        public var recovered: Int
        /// Rowid ranges that could not be read ("120–183", "all"); rows in them are lost.
        public var unreadable: [String]
        public init(name: String, recovered: Int, unreadable: [String]) {
            self.name = name
            self.recovered = recovered
            self.unreadable = unreadable
        }
    }

    public struct LostDocument: Codable, Sendable {
        public var id: Int64
        public var source: String
        public var path: String
        public var state: String
        public init(id: Int64, source: String, path: String, state: String) {
            self.id = id
            self.source = source
            self.path = path
            self.state = state
        }
    }

    public var repaired: Bool
    public var message: String
    /// What the integrity check found.
    public var problem: String?
    /// Where the damaged file was kept.
    public var damagedCopy: String?
    public var tables: [Table]
    /// Learned versions whose passages are cut again from their texts after the restart.
    public var passagesToRebuild: Int
    /// Versions whose text was lost: read their drive or path again.
    public var documentsLost: [LostDocument]
    public var orphansDropped: Int
    public var restarting: Bool

    public init(repaired: Bool, message: String, problem: String? = nil, damagedCopy: String? = nil, tables: [Table] = [],
                passagesToRebuild: Int = 0, documentsLost: [LostDocument] = [], orphansDropped: Int = 0, restarting: Bool = false) {
        self.repaired = repaired
        self.message = message
        self.problem = problem
        self.damagedCopy = damagedCopy
        self.tables = tables
        self.passagesToRebuild = passagesToRebuild
        self.documentsLost = documentsLost
        self.orphansDropped = orphansDropped
        self.restarting = restarting
    }

    enum CodingKeys: String, CodingKey {
        case repaired, message, problem, damagedCopy = "damaged_copy", tables, passagesToRebuild = "passages_to_rebuild"
        case documentsLost = "documents_lost", orphansDropped = "orphans_dropped", restarting
    }
}
