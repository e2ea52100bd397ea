import Foundation
import GRDB

// The learning brain's passages: written when a document version is learned, searched with
// FTS5's BM25 when a question comes, deleted with the document when it is forgotten or
// superseded.

/// A passage to store for a document: its text, the heading path it sits under, where it is
/// (lines from 1, page), and the search terms the index reads (the learning brain's split).
public struct PassageRecord: Sendable, Equatable {
    public var tokenOffset: Int
    public var tokens: Int
    public var text: String
    public var header: String
    public var lines: ClosedRange<Int>?
    public var page: Int?
    public var terms: String
    public init(tokenOffset: Int, tokens: Int, text: String, header: String = "", lines: ClosedRange<Int>? = nil, page: Int? = nil,
                terms: String) {
        self.tokenOffset = tokenOffset
        self.tokens = tokens
        self.text = text
        self.header = header
        self.lines = lines
        self.page = page
        self.terms = terms
    }
}

/// The passage format the learning brain writes now (`documents.passage_format`); documents
/// learned in an earlier one are cut again.
public let currentPassageFormat = 2

/// A passage found for a query, with the document and source it came from.
public struct PassageHit: Sendable, Equatable {
    public var passageId: Int64
    public var documentId: Int64
    public var sourceId: Int64
    public var path: String
    public var version: Int
    /// The drive's label, or nil (a path source, or a drive without one).
    public var sourceLabel: String?
    public var sourceKey: String
    public var tokenOffset: Int
    public var text: String
    public var header: String
    public var lines: ClosedRange<Int>?
    public var page: Int?
    /// BM25 relevance (higher is better; SQLite's bm25() negated).
    public var score: Double

    public init(passageId: Int64, documentId: Int64, sourceId: Int64, path: String, version: Int, sourceLabel: String?,
                sourceKey: String, tokenOffset: Int, text: String, header: String, lines: ClosedRange<Int>?, page: Int?, score: Double) {
        self.passageId = passageId
        self.documentId = documentId
        self.sourceId = sourceId
        self.path = path
        self.version = version
        self.sourceLabel = sourceLabel
        self.sourceKey = sourceKey
        self.tokenOffset = tokenOffset
        self.text = text
        self.header = header
        self.lines = lines
        self.page = page
        self.score = score
    }
}

func lineRange(_ start: Int?, _ end: Int?) -> ClosedRange<Int>? {
    guard let start, let end, start <= end else { return nil }
    return start...end
}

extension Store {
    /// Documents extracted but not learned yet, oldest first.
    public func documentsToLearn(limit: Int) throws -> [Document] {
        try pool.read { db in
            try Document.fetchAll(db, sql: "SELECT * FROM documents WHERE state = 'extracted' ORDER BY id LIMIT ?", arguments: [limit])
        }
    }

    /// Stores a document version's passages and marks it learned, in one transaction; the
    /// passages of the versions it superseded go in the same step. Returns false (and changes
    /// nothing) when the document is no longer waiting to be learned: forgotten, or superseded
    /// in the meantime.
    public func learn(document id: Int64, passages: [PassageRecord]) throws -> Bool {
        try pool.write { db in
            guard let d = try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [id]),
                  d.state == .extracted else { return false }
            try Self.insert(db, passages, document: id)
            try db.execute(sql: "UPDATE documents SET state = 'learned', passage_format = ?, updated = ? WHERE id = ?",
                           arguments: [currentPassageFormat, Date(), id])
            try db.execute(sql: """
                DELETE FROM passages WHERE document_id IN
                    (SELECT id FROM documents WHERE source_id = ? AND path = ? AND state = 'superseded')
                """, arguments: [d.sourceId, d.path])
            return true
        }
    }

    static func insert(_ db: Database, _ passages: [PassageRecord], document id: Int64) throws {
        for p in passages {
            try db.execute(sql: """
                INSERT INTO passages (document_id, token_offset, tokens, text, header, line_start, line_end, page, terms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, p.tokenOffset, p.tokens, p.text, p.header, p.lines?.lowerBound, p.lines?.upperBound, p.page, p.terms])
        }
    }

    /// Learned documents whose passages are of an earlier format, oldest first.
    public func documentsWithOldPassages() throws -> [Document] {
        try pool.read { db in
            try Document.fetchAll(db, sql: "SELECT * FROM documents WHERE state = 'learned' AND passage_format < ? ORDER BY id",
                                  arguments: [currentPassageFormat])
        }
    }

    /// Replaces a learned document's passages with ones of the current format (its token memory
    /// is untouched); false when it is no longer learned.
    public func recutPassages(document id: Int64, passages: [PassageRecord]) throws -> Bool {
        try pool.write { db in
            guard try Document.fetchOne(db, sql: "SELECT * FROM documents WHERE id = ?", arguments: [id])?.state == .learned else { return false }
            try db.execute(sql: "DELETE FROM passages WHERE document_id = ?", arguments: [id])
            try Self.insert(db, passages, document: id)
            try db.execute(sql: "UPDATE documents SET passage_format = ? WHERE id = ?", arguments: [currentPassageFormat, id])
            return true
        }
    }

    /// The passages that best match any of these search terms (BM25), best first; no terms, no passages.
    public func searchPassages(terms: [String], limit: Int) throws -> [PassageHit] {
        guard !terms.isEmpty, limit > 0 else { return [] }
        // Each term is one quoted FTS5 string: nothing in it is read as query syntax.
        let match = terms.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: " OR ")
        return try pool.read { db in
            try Self.hits(db, score: "-bm25(passages_fts)", from: "passages_fts JOIN passages p ON p.id = passages_fts.rowid", where: """
                passages_fts MATCH ?
                ORDER BY bm25(passages_fts), p.id
                LIMIT ?
                """, arguments: [match, limit])
        }
    }

    /// The passage after this one in its document (passages are stored in document order), with
    /// the given passage's score; nil at the document's end.
    public func passage(after hit: PassageHit) throws -> PassageHit? {
        try pool.read { db in
            try Self.hits(db, score: "?", from: "passages p", where: "p.document_id = ? AND p.id > ? ORDER BY p.id LIMIT 1",
                          arguments: [hit.score, hit.documentId, hit.passageId]).first
        }
    }

    private static func hits(_ db: Database, score: String, from: String, where condition: String,
                             arguments: StatementArguments) throws -> [PassageHit] {
        try Row.fetchAll(db, sql: """
            SELECT p.id, p.document_id, d.source_id, d.path, d.version, s.label, s.key, p.token_offset, p.text,
                   \(score) AS score, p.header, p.line_start, p.line_end, p.page
            FROM \(from)
            JOIN documents d ON d.id = p.document_id
            JOIN sources s ON s.id = d.source_id
            WHERE \(condition)
            """, arguments: arguments).map { r in
            PassageHit(passageId: r[0], documentId: r[1], sourceId: r[2], path: r[3], version: r[4], sourceLabel: r[5],
                       sourceKey: r[6], tokenOffset: r[7], text: r[8], header: r[10], lines: lineRange(r[11], r[12]), page: r[13],
                       score: r[9])
        }
    }

    /// How many passages there are, and how many of them hold each of these terms (terms no
    /// passage holds are left out).
    public func passageFrequencies(terms words: [String]) throws -> (passages: Int, containing: [String: Int]) {
        try pool.read { db in
            let passages = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM passages")!
            guard !words.isEmpty else { return (passages, [:]) }
            let marks = Array(repeating: "?", count: words.count).joined(separator: ", ")
            var containing: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT term, doc FROM passages_vocab WHERE term IN (\(marks))",
                                        arguments: StatementArguments(words)) {
                containing[row[0]] = row[1]
            }
            return (passages, containing)
        }
    }

    /// Ids of the document versions in state `learned`, ascending (the token memory must hold
    /// exactly these).
    public func learnedDocumentIDs() throws -> [Int64] {
        try pool.read { db in try Int64.fetchAll(db, sql: "SELECT id FROM documents WHERE state = 'learned' ORDER BY id") }
    }

    /// Passages stored, and how many documents they belong to (status, metrics).
    public func passageCounts() throws -> (passages: Int, documents: Int) {
        try pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COUNT(DISTINCT document_id) FROM passages")!
            return (row[0], row[1])
        }
    }

    /// The passages of one document version, in order (tests, inspection).
    public func passages(document id: Int64) throws -> [PassageRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT token_offset, tokens, text, header, line_start, line_end, page, terms FROM passages
                WHERE document_id = ? ORDER BY token_offset, id
                """, arguments: [id]).map {
                PassageRecord(tokenOffset: $0[0], tokens: $0[1], text: $0[2], header: $0[3], lines: lineRange($0[4], $0[5]), page: $0[6],
                              terms: $0[7])
            }
        }
    }

    /// Deletes the passages of these documents and merges the index, so nothing of them stays
    /// in its segments either.
    static func deletePassages(_ db: Database, documents ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        for id in ids { try db.execute(sql: "DELETE FROM passages WHERE document_id = ?", arguments: [id]) }
        try db.execute(sql: "INSERT INTO passages_fts (passages_fts) VALUES ('optimize')")
    }
}
