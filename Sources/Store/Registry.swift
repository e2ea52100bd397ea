import Foundation
import GRDB

// Sources and documents. Every change a file causes happens in one transaction, so a kill at any
// point leaves either the old state or the new one: never a half-registered document.

extension Store {
    // MARK: Sources

    /// Records that a source is present now (creating it on first sight) and returns it.
    @discardableResult
    public func sourceSeen(_ info: SourceInfo, state: Source.State = .present) throws -> Source {
        try pool.write { db in
            let now = Date()
            try db.execute(sql: """
                INSERT INTO sources (key, kind, uuid, label, fstype, device, mount_point, state, first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET label = excluded.label, fstype = excluded.fstype, device = excluded.device,
                    mount_point = excluded.mount_point, state = excluded.state, last_seen = excluded.last_seen
                """, arguments: [info.key, info.kind, info.uuid, info.label, info.fstype, info.device, info.mountPoint,
                                 state.rawValue, now, now])
            return try Source.fetchOne(db, sql: "SELECT * FROM sources WHERE key = ?", arguments: [info.key])!
        }
    }

    /// A drive was removed: its documents and knowledge stay (absent is not deleted).
    public func markSourceAbsent(id: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE sources SET state = 'absent', last_seen = ? WHERE id = ?", arguments: [Date(), id])
        }
    }

    public func sources() throws -> [Source] {
        try pool.read { db in try Source.fetchAll(db, sql: "SELECT * FROM sources ORDER BY id") }
    }

    public func source(id: Int64) throws -> Source? {
        try pool.read { db in try Source.fetchOne(db, sql: "SELECT * FROM sources WHERE id = ?", arguments: [id]) }
    }

    public func source(key: String) throws -> Source? {
        try pool.read { db in try Source.fetchOne(db, sql: "SELECT * FROM sources WHERE key = ?", arguments: [key]) }
    }

    // MARK: Documents

    /// The newest version of a path that is not forgotten, if any.
    public func currentVersion(source: Int64, path: String) throws -> Document? {
        try pool.read { db in try Self.current(db, source: source, path: path) }
    }

    static func current(_ db: Database, source: Int64, path: String) throws -> Document? {
        try Document.fetchOne(db, sql: """
            SELECT * FROM documents WHERE source_id = ? AND path = ? AND state NOT IN ('superseded', 'forgotten')
            ORDER BY version DESC LIMIT 1
            """, arguments: [source, path])
    }

    /// A file as read from its source: what it was, and what came out of it.
    public struct FileReading: Sendable {
        public var source: Int64
        public var path: String
        public var size: Int64
        public var mtime: Double
        public var format: String
        public var rawSHA256: String
        /// The extracted text, or the reason extraction failed.
        public var outcome: Result<String, ExtractionFailure>

        public init(source: Int64, path: String, size: Int64, mtime: Double, format: String, rawSHA256: String,
                    outcome: Result<String, ExtractionFailure>) {
            self.source = source
            self.path = path
            self.size = size
            self.mtime = mtime
            self.format = format
            self.rawSHA256 = rawSHA256
            self.outcome = outcome
        }
    }

    public struct ExtractionFailure: Error, Sendable, Equatable {
        public let message: String
        public init(_ message: String) { self.message = message }
    }

    public enum Registration: Sendable, Equatable {
        /// First sight of this path.
        case added(Document)
        /// The file changed: a new version; the previous one is now superseded (to be forgotten).
        case updated(Document, superseded: Document)
        /// Same content as the current version (only its size/mtime record is refreshed).
        case unchanged(Document)
    }

    /// Registers what reading a file produced, in one transaction: the text is stored once per
    /// content, a changed file becomes a new version and supersedes the old one.
    public func register(_ r: FileReading) throws -> Registration {
        try pool.write { db in
            let now = Date()
            let previous = try Self.current(db, source: r.source, path: r.path)
            if let previous, previous.rawSha256 == r.rawSHA256 {
                try db.execute(sql: "UPDATE documents SET size = ?, mtime = ?, updated = ? WHERE id = ?",
                               arguments: [r.size, r.mtime, now, previous.id])
                return .unchanged(try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [previous.id])!)
            }
            var textHash: String?, state = Document.State.extracted, error: String?
            switch r.outcome {
            case .success(let text):
                let hash = SHA256.hex(Data(text.utf8))
                try db.execute(sql: "INSERT OR IGNORE INTO texts (sha256, content, bytes) VALUES (?, ?, ?)",
                               arguments: [hash, text, text.utf8.count])
                textHash = hash
            case .failure(let failure):
                state = .failed
                error = failure.message
            }
            let latest = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM documents WHERE source_id = ? AND path = ?",
                                          arguments: [r.source, r.path]) ?? 0
            try db.execute(sql: """
                INSERT INTO documents (source_id, path, size, mtime, format, raw_sha256, text_sha256, version, state, error, created, updated)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.source, r.path, r.size, r.mtime, r.format, r.rawSHA256, textHash, latest + 1,
                                 state.rawValue, error, now, now])
            let added = try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [db.lastInsertedRowID])!
            guard let previous else { return .added(added) }
            try db.execute(sql: "UPDATE documents SET state = 'superseded', updated = ? WHERE id = ?", arguments: [now, previous.id])
            try Self.dropUnreferencedTexts(db)
            return .updated(added, superseded: try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [previous.id])!)
        }
    }

    /// Unchanged by size and mtime: the scan can skip reading the file.
    public func isUnchanged(source: Int64, path: String, size: Int64, mtime: Double) throws -> Bool {
        guard let d = try currentVersion(source: source, path: path) else { return false }
        return d.size == size && d.mtime == mtime && d.state != .failed
    }

    public struct DocumentFilter: Sendable {
        public var source: Int64?
        public var states: [Document.State]?
        public var pathContains: String?
        public init(source: Int64? = nil, states: [Document.State]? = nil, pathContains: String? = nil) {
            self.source = source
            self.states = states
            self.pathContains = pathContains
        }
    }

    /// Documents by id, filtered, one page at a time; and the total matching.
    public func documents(_ filter: DocumentFilter = .init(), limit: Int = 100, offset: Int = 0) throws -> (page: [Document], total: Int) {
        var clauses: [String] = [], arguments: StatementArguments = []
        if let s = filter.source { clauses.append("source_id = ?"); arguments += [s] }
        if let states = filter.states, !states.isEmpty {
            clauses.append("state IN (\(states.map { _ in "?" }.joined(separator: ",")))")
            for state in states { arguments += [state.rawValue] }
        }
        if let p = filter.pathContains { clauses.append("instr(path, ?) > 0"); arguments += [p] }
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        return try pool.read { db in
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM documents \(whereSQL)", arguments: arguments) ?? 0
            let page = try Document.fetchAll(db, sql: "SELECT * FROM documents \(whereSQL) ORDER BY id LIMIT ? OFFSET ?",
                                             arguments: arguments + [limit, offset])
            return (page, total)
        }
    }

    public func document(id: Int64) throws -> Document? {
        try pool.read { db in try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [id]) }
    }

    public func text(sha256: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT content FROM texts WHERE sha256 = ?", arguments: [sha256]) }
    }

    /// Forgets documents (every version of each path given by one of its ids, or all of a
    /// source's): they become `forgotten`, their passages are deleted and text no live document
    /// uses is deleted. Returns the
    /// documents that changed state, so the learning brain can drop their knowledge.
    public func forget(documents ids: [Int64]) throws -> [Document] {
        try pool.write { db in
            var changed: [Document] = []
            for id in ids {
                guard let d = try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [id]) else { continue }
                changed += try Self.forgetPath(db, source: d.sourceId, path: d.path)
            }
            try Self.deletePassages(db, documents: changed.map(\.id))
            try Self.dropUnreferencedTexts(db)
            return changed
        }
    }

    public func forget(source id: Int64) throws -> [Document] {
        try pool.write { db in
            let paths = try String.fetchAll(db, sql: "SELECT DISTINCT path FROM documents WHERE source_id = ?", arguments: [id])
            var changed: [Document] = []
            for path in paths { changed += try Self.forgetPath(db, source: id, path: path) }
            try Self.deletePassages(db, documents: changed.map(\.id))
            try Self.dropUnreferencedTexts(db)
            return changed
        }
    }

    static func forgetPath(_ db: Database, source: Int64, path: String) throws -> [Document] {
        let live = try Document.fetchAll(db, sql: "SELECT * FROM documents WHERE source_id = ? AND path = ? AND state != 'forgotten'",
                                         arguments: [source, path])
        try db.execute(sql: "UPDATE documents SET state = 'forgotten', updated = ? WHERE source_id = ? AND path = ? AND state != 'forgotten'",
                       arguments: [Date(), source, path])
        return live
    }

    /// Text is kept while a document that is not superseded or forgotten refers to it.
    static func dropUnreferencedTexts(_ db: Database) throws {
        try db.execute(sql: """
            DELETE FROM texts WHERE sha256 NOT IN
                (SELECT text_sha256 FROM documents WHERE text_sha256 IS NOT NULL AND state NOT IN ('superseded', 'forgotten'))
            """)
    }

    /// Documents per state (status, metrics).
    public func documentCounts() throws -> [Document.State: Int] {
        try pool.read { db in
            var out: [Document.State: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM documents GROUP BY state") {
                if let s = Document.State(rawValue: row["state"]) { out[s] = row["n"] }
            }
            return out
        }
    }
}
