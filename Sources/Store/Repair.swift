import Foundation
import GRDB

/// Rebuilds a damaged store from what can still be read of it. Run while nothing has the file
/// open (twinbraind runs it in its repair mode, before the store is opened).
///
/// Every readable row of the recorded tables (sources, texts, documents, jobs, skipped files,
/// audit) is copied, by rowid, into a new database with the current schema; unreadable pages are
/// stepped over. Passages are not copied: they are derived from the stored texts, so every
/// learned version is marked to be cut again at start (its token memory is kept: segments are
/// checked by their own checksums). A version whose text is lost cannot be rebuilt: it is
/// removed, so the next reading of its drive or path learns it again, and the report names it.
/// The damaged file is kept beside the new one, renamed.
public enum StoreRepair {
    public struct Report: Codable, Sendable {
        public struct Table: Codable, Sendable {
            public var name: String
            /// Rows copied into the new store.
            public var recovered: Int
            /// Rowid ranges that could not be read ("120–183"); rows in them, if any, are lost.
            public var unreadable: [String]
        }

        public struct LostDocument: Codable, Sendable {
            public var id: Int64
            public var source: String
            public var path: String
            public var state: String
        }

        /// What the integrity check said of the damaged file.
        public var problem: String
        /// Where the damaged file was moved.
        public var damagedCopy: String
        public var tables: [Table]
        /// Learned versions whose passages will be cut again from their texts at start.
        public var passagesToRebuild: Int
        /// Versions whose text could not be read: read their drive or path again.
        public var documentsLost: [LostDocument]
        /// Rows dropped because what they belong to was lost (a document's source, a skip's job).
        public var orphansDropped: Int
    }

    /// The tables copied, parents first; passages (and their index) are rebuilt instead.
    static let tables = ["sources", "texts", "documents", "jobs", "job_skips", "audit", "settings"]

    /// The integrity check's findings for the file at `path`, or nil when it opens and checks ok.
    public static func problem(path: String) -> String? {
        do {
            let queue = try DatabaseQueue(path: path, configuration: readingConfiguration())
            let check = try queue.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
            return check == ["ok"] ? nil : check.prefix(3).joined(separator: "; ")
        } catch {
            return "\(error)"
        }
    }

    /// Salvages the store at `path` into a new file, swaps it in and returns what was done.
    public static func repair(path: String, now: Date = Date()) throws -> Report {
        let problem = problem(path: path) ?? "none: the file checked ok"
        let fm = FileManager.default
        let rebuilt = path + ".repairing"
        for suffix in ["", "-wal", "-shm"] { try? fm.removeItem(atPath: rebuilt + suffix) }
        var tables: [Report.Table] = []
        var lost: [Report.LostDocument] = []
        var orphans = 0, rebuild = 0
        do {
            var config = Configuration()
            config.foreignKeysEnabled = false // parents may be lost; orphans are dropped below, and counted
            let target = try DatabaseQueue(path: rebuilt, configuration: config)
            try Schema.migrator.migrate(target)
            let source = try? DatabaseQueue(path: path, configuration: readingConfiguration())
            try target.write { out in
                for table in Self.tables { tables.append(try copy(table, from: source, into: out)) }
                (orphans, lost) = try dropOrphansAndLostTexts(out)
                try out.execute(sql: "UPDATE documents SET passage_format = 0 WHERE state = 'learned'")
                rebuild = out.changesCount
            }
            try target.close()
            try source?.close()
        } catch {
            for suffix in ["", "-wal", "-shm", "-journal"] { try? fm.removeItem(atPath: rebuilt + suffix) }
            throw error
        }
        // Swap, so that a kill at any point leaves a store to start from: the damaged file's
        // journal aside (it must not be applied to the new file), the damaged file linked under
        // its new name, then the rebuilt one renamed over it.
        let format = DateFormatter()
        format.dateFormat = "yyyyMMdd-HHmmss"
        format.locale = Locale(identifier: "en_US_POSIX")
        let aside = "\(path).damaged-\(format.string(from: now))"
        for suffix in ["-wal", "-shm"] where fm.fileExists(atPath: path + suffix) {
            try fm.moveItem(atPath: path + suffix, toPath: aside + suffix)
        }
        if fm.fileExists(atPath: path) {
            guard link(path, aside) == 0 else { throw StoreError("cannot keep the damaged file as \(aside): \(String(cString: strerror(errno)))") }
        }
        guard rename(rebuilt, path) == 0 else { throw StoreError("cannot put the rebuilt store in place: \(String(cString: strerror(errno)))") }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if directory >= 0 { fsync(directory); close(directory) }
        return Report(problem: problem, damagedCopy: aside, tables: tables, passagesToRebuild: rebuild, documentsLost: lost,
                      orphansDropped: orphans)
    }

    private static func readingConfiguration() -> Configuration {
        var config = Configuration()
        config.foreignKeysEnabled = false
        config.busyMode = .timeout(10)
        return config
    }

    /// Copies the readable rows of `table` (columns both schemas have), stepping over
    /// unreadable rowid ranges.
    private static func copy(_ table: String, from source: DatabaseQueue?, into out: Database) throws -> Report.Table {
        var report = Report.Table(name: table, recovered: 0, unreadable: [])
        guard let source else {
            report.unreadable = ["all"]
            return report
        }
        let wanted = try out.columns(in: table).map(\.name)
        let present: [String]
        do {
            // A table newer than the damaged file's schema has nothing to recover.
            guard try source.read({ db in try db.tableExists(table) }) else { return report }
            present = try source.read { db in try db.columns(in: table).map(\.name) }
        } catch {
            report.unreadable = ["all"]
            return report
        }
        let columns = wanted.filter(present.contains)
        guard !columns.isEmpty else { return report }
        let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
        let insert = try out.makeStatement(sql: "INSERT OR IGNORE INTO \(table) (\(list)) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))")
        let select = "SELECT rowid, \(list) FROM \(table) WHERE rowid > ? ORDER BY rowid"
        struct WriteFailure: Error { let underlying: Error }
        var after = Int64.min
        while true {
            do {
                try source.read { db in
                    let rows = try Row.fetchCursor(db, sql: select, arguments: [after])
                    while let row = try rows.next() {
                        after = row[0]
                        do {
                            try insert.execute(arguments: StatementArguments(columns.indices.map { row[$0 + 1] as DatabaseValue }))
                        } catch { throw WriteFailure(underlying: error) }
                        report.recovered += 1
                    }
                }
                return report
            } catch let failure as WriteFailure {
                throw failure.underlying
            } catch {
                // An unreadable page: find the first rowid past it that reads.
                guard let next = firstReadable(after: after, select: select, in: source) else {
                    report.unreadable.append(after == .min ? "all" : "\(after + 1)–end")
                    return report
                }
                report.unreadable.append(after == .min ? "…–\(next - 1)" : "\(after + 1)–\(next - 1)")
                after = next - 1
            }
        }
    }

    /// The smallest rowid beyond `after` from which a read succeeds (by doubling, then
    /// bisection), or nil when nothing beyond it reads.
    private static func firstReadable(after: Int64, select: String, in source: DatabaseQueue) -> Int64? {
        func reads(from start: Int64) -> Int64?? {
            do {
                return .some(try source.read { db in try Int64.fetchOne(db, sql: "SELECT rowid FROM (\(select)) LIMIT 1", arguments: [start]) })
            } catch {
                return nil
            }
        }
        let origin = after == .min ? Int64(-1) : after
        var bad: Int64 = 0, step: Int64 = 1
        var good: (offset: Int64, row: Int64?)?
        while step < (1 << 48) {
            if let result = reads(from: origin + step) { good = (step, result); break }
            bad = step
            step *= 2
        }
        guard var found = good else { return nil }
        while found.offset - bad > 1 {
            let mid = bad + (found.offset - bad) / 2
            if let result = reads(from: origin + mid) { found = (mid, result) } else { bad = mid }
        }
        return found.row
    }

    /// Drops versions whose text or source was lost (they cannot be learned again from the box)
    /// and rows whose parent was lost; returns how many orphans, and the versions lost.
    private static func dropOrphansAndLostTexts(_ db: Database) throws -> (Int, [Report.LostDocument]) {
        let lost = try Row.fetchAll(db, sql: """
            SELECT d.id, COALESCE(s.key, 'source ' || d.source_id) AS source, d.path, d.state FROM documents d
            LEFT JOIN sources s ON s.id = d.source_id
            WHERE d.state IN ('extracted', 'learned')
              AND (s.id IS NULL OR NOT EXISTS (SELECT 1 FROM texts t WHERE t.sha256 = d.text_sha256))
            ORDER BY d.id
            """).map { Report.LostDocument(id: $0["id"], source: $0["source"], path: $0["path"], state: $0["state"]) }
        try db.execute(sql: "DELETE FROM documents WHERE id IN (\(lost.map { String($0.id) }.joined(separator: ",")))")
        var orphans = 0
        for sql in ["DELETE FROM documents WHERE source_id NOT IN (SELECT id FROM sources)",
                    "DELETE FROM job_skips WHERE job_id NOT IN (SELECT id FROM jobs)"] {
            try db.execute(sql: sql)
            orphans += db.changesCount
        }
        try db.execute(sql: "UPDATE jobs SET source_id = NULL WHERE source_id IS NOT NULL AND source_id NOT IN (SELECT id FROM sources)")
        return (orphans, lost)
    }
}
