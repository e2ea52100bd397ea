import Foundation
import GRDB

// Jobs keep their progress in the database, so `twinbrain jobs` shows them after a restart and
// work that a kill interrupted is found and resumed.

extension Store {
    public func createJob(kind: String, target: String, source: Int64? = nil) throws -> Job {
        try pool.write { db in
            let now = Date()
            try db.execute(sql: "INSERT INTO jobs (kind, target, source_id, state, created, updated) VALUES (?, ?, ?, 'queued', ?, ?)",
                           arguments: [kind, target, source, now, now])
            return try Job.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [db.lastInsertedRowID])!
        }
    }

    public func updateJob(_ id: Int64, state: Job.State? = nil, done: Int? = nil, total: Int? = nil, current: String? = nil,
                          source: Int64? = nil, error: String? = nil) throws {
        try pool.write { db in
            try db.execute(sql: """
                UPDATE jobs SET state = COALESCE(?, state), done = COALESCE(?, done), total = COALESCE(?, total),
                    current = COALESCE(?, current), source_id = COALESCE(?, source_id), error = COALESCE(?, error), updated = ?
                WHERE id = ?
                """, arguments: [state?.rawValue, done, total, current, source, error, Date(), id])
        }
    }

    public func job(id: Int64) throws -> Job? {
        try pool.read { db in try Job.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]) }
    }

    /// Newest first.
    public func jobs(limit: Int = 50) throws -> [Job] {
        try pool.read { db in try Job.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id DESC LIMIT ?", arguments: [limit]) }
    }

    /// Jobs a previous process left queued or running (it was killed): they are to be resumed.
    public func unfinishedJobs() throws -> [Job] {
        try pool.read { db in try Job.fetchAll(db, sql: "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id") }
    }

    public func addSkip(job: Int64, path: String, reason: String) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO job_skips (job_id, path, reason) VALUES (?, ?, ?)", arguments: [job, path, reason])
        }
    }

    /// A resumed job lists its skips anew.
    public func clearSkips(job: Int64) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM job_skips WHERE job_id = ?", arguments: [job]) }
    }

    public func skips(job: Int64) throws -> [Skip] {
        try pool.read { db in try Skip.fetchAll(db, sql: "SELECT path, reason FROM job_skips WHERE job_id = ? ORDER BY rowid", arguments: [job]) }
    }

    // MARK: Audit

    public func audit(action: String, detail: String?, uid: UInt32?, user: String?) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO audit (time, uid, user, action, detail) VALUES (?, ?, ?, ?, ?)",
                           arguments: [Date(), uid.map { Int64($0) }, user, action, detail])
        }
    }

    /// A setting chosen at run time (nil: never set, or cleared).
    public func setting(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]) }
    }

    /// Sets (or with nil clears) a setting.
    public func setSetting(_ key: String, _ value: String?) throws {
        try pool.write { db in
            if let value {
                try db.execute(sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               arguments: [key, value])
            } else {
                try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [key])
            }
        }
    }

    public func auditEntries(limit: Int = 100) throws -> [(time: Date, user: String?, action: String, detail: String?)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [limit]).map {
                (time: $0["time"], user: $0["user"], action: $0["action"], detail: $0["detail"])
            }
        }
    }
}
