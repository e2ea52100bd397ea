import Foundation
import GRDB

/// The box's state in one SQLite file (GRDB over Debian's libsqlite3, WAL): drives and paths
/// documents came from, every version of every document, the extracted text (kept on the box,
/// stored once per distinct content), jobs with their progress and the files they skipped, and the
/// audit log. Schema and migrations: `Schema.swift`; the tables are described in docs/store.md.
public final class Store: Sendable {
    let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) and migrates the database, after an integrity check: a damaged
    /// file is refused with an error that says what to do, never silently rebuilt.
    public convenience init(path: String) throws {
        try self.init(path: path, migratingUpTo: nil)
    }

    /// Opens the database migrated only up to the named migration (nil: all): tests of later
    /// migrations start from a store as an earlier release left it.
    public init(path: String, migratingUpTo target: String?) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Forgotten text and passages are overwritten on disk, not just unlinked from the b-tree.
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        let repair = "Run `twinbrain repair` as an admin (twinbraind waits for it, keeps the damaged file aside and rebuilds what "
            + "it can), or restore the latest backup of the state directory."
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            // Anything but a permission problem is the file's: repair reads what it still can.
            let damaged = ![.SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY, .SQLITE_AUTH].contains((error as? DatabaseError)?.resultCode)
            throw StoreError("cannot open the database \(path): \(error). " + (damaged ? repair : "Check that twinbraind may read and write it."),
                             damaged: damaged)
        }
        let check: [String]
        do { check = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") } } catch { check = ["\(error)"] }
        guard check == ["ok"] else {
            throw StoreError("the database \(path) failed its integrity check (\(check.prefix(3).joined(separator: "; "))). " + repair,
                             damaged: true)
        }
        if let target { try Schema.migrator.migrate(pool, upTo: target) } else { try Schema.migrator.migrate(pool) }
    }

    /// Schema migrations applied, in order (for status and tests).
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Schema.migrator.appliedMigrations(db) }
    }
}

public struct StoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The file is damaged (not merely unreadable): `StoreRepair` can rebuild it.
    public let damaged: Bool
    public init(_ description: String, damaged: Bool = false) {
        self.description = description
        self.damaged = damaged
    }
}

extension Store {
    /// What SQLite's quick check finds wrong with the open store, or nil when it checks ok.
    public func integrityProblem() throws -> String? {
        let check = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
        return check == ["ok"] ? nil : check.prefix(3).joined(separator: "; ")
    }
}

extension Store {
    /// Whether `error` is SQLite's "database or disk is full": the write can succeed once space is freed.
    public static func isDiskFull(_ error: Error) -> Bool {
        (error as? DatabaseError)?.resultCode == .SQLITE_FULL
    }
}
