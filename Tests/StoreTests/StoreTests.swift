import Foundation
import GRDB
import XCTest
@preconcurrency import Store

final class StoreTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-tests-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func makeStore() throws -> Store { try Store(path: directory.appendingPathComponent("state.sqlite").path) }

    func reading(_ source: Int64, _ path: String, _ content: String, mtime: Double = 1) -> Store.FileReading {
        Store.FileReading(source: source, path: path, size: Int64(content.utf8.count), mtime: mtime, format: "text",
                          rawSHA256: SHA256.hex(Data(content.utf8)), outcome: .success(content))
    }

    func testMigratesAndReopens() throws {
        let store = try makeStore()
        XCTAssertEqual(try store.appliedMigrations(), ["v1: sources, documents, texts, jobs, audit", "v2: passages and their full-text index",
                                                             "v3: passage word counts", "v4: structured passages, indexed by their search terms",
                                                             "v5: settings"])
        let s = try store.sourceSeen(.path("/srv/docs"))
        XCTAssertEqual(s.state, .present)
        try store.setSetting("model", "/var/lib/twinbrain/models/a.gguf")
        try store.setSetting("model", "/var/lib/twinbrain/models/b.gguf")
        // Reopening keeps everything and applies nothing twice.
        let again = try makeStore()
        XCTAssertEqual(try again.sources().map(\.key), ["path:/srv/docs"])
        XCTAssertEqual(try again.setting("model"), "/var/lib/twinbrain/models/b.gguf")
        try again.setSetting("model", nil)
        XCTAssertNil(try again.setting("model"))
    }

    func testDamagedDatabaseIsRefusedWithAnExplanation() throws {
        let store = try makeStore()
        let source = try store.sourceSeen(.path("/srv/docs"))
        for i in 0..<200 { _ = try store.register(reading(source.id, "f\(i).txt", String(repeating: "text \(i) ", count: 50))) }
        let path = store.path
        // Overwrite pages in the middle of the file (the header stays, so SQLite opens it).
        try? FileManager.default.removeItem(atPath: path + "-wal")
        try? FileManager.default.removeItem(atPath: path + "-shm")
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 8192)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 16384))
        try handle.close()
        XCTAssertThrowsError(try Store(path: path)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("restore the latest backup"), message)
        }
        // A file that is not a database at all.
        let junk = directory.appendingPathComponent("junk.sqlite").path
        try Data(repeating: 0x42, count: 4096).write(to: URL(fileURLWithPath: junk))
        XCTAssertThrowsError(try Store(path: junk)) { error in XCTAssertTrue("\(error)".contains(junk), "\(error)") }
    }

    /// Repair copies every row that still reads into a new store, names the versions whose text
    /// was lost (they must be read again), marks the rest to have their passages cut again from
    /// their texts, and keeps the damaged file aside.
    func testRepairSalvagesWhatReadsAndNamesWhatIsLost() throws {
        let path = directory.appendingPathComponent("state.sqlite").path
        var ids: [Int64] = []
        var leaves: [String: [Int64]] = [:]
        do {
            let store = try makeStore()
            let source = try store.sourceSeen(.path("/srv/docs"))
            for i in 0..<300 {
                let text = "document \(i): " + String(repeating: "the canteen serves soup number \(i) ", count: 20)
                guard case .added(let d) = try store.register(reading(source.id, "f\(i).txt", text)) else { return XCTFail() }
                XCTAssertTrue(try store.learn(document: d.id, passages: passages("soup \(i)")))
                ids.append(d.id)
            }
            // Which pages hold the texts' and the documents' rows (SQLite's dbstat).
            let queue = try DatabaseQueue(path: path)
            for table in ["texts", "documents"] {
                leaves[table] = try queue.read { db in
                    try Int64.fetchAll(db, sql: "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", arguments: [table])
                }
            }
            try queue.close()
        }
        let pageSize = 4096
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        for (table, pages) in leaves {
            XCTAssertGreaterThan(pages.count, 4, table)
            // Apart: the documents lost with their page are not those whose text is lost.
            let page = pages[table == "texts" ? pages.count / 4 : pages.count * 3 / 4]
            try handle.seek(toOffset: UInt64(page - 1) * UInt64(pageSize))
            try handle.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
        }
        try handle.close()
        XCTAssertThrowsError(try Store(path: path))
        XCTAssertNotNil(StoreRepair.problem(path: path))

        let report = try StoreRepair.repair(path: path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: report.damagedCopy), report.damagedCopy)
        XCTAssertNil(StoreRepair.problem(path: path), "the rebuilt store checks ok")
        let table = Dictionary(uniqueKeysWithValues: report.tables.map { ($0.name, $0) })
        XCTAssertEqual(table["sources"]?.recovered, 1)
        XCTAssertFalse(table["texts"]!.unreadable.isEmpty, "a page of texts was unreadable")
        XCTAssertFalse(table["documents"]!.unreadable.isEmpty, "a page of documents was unreadable")
        XCTAssertLessThan(table["texts"]!.recovered, 300)
        XCTAssertGreaterThan(table["texts"]!.recovered, 250)

        let store = try Store(path: path)
        let kept = try store.learnedDocumentIDs()
        let lost = report.documentsLost.map(\.id)
        XCTAssertFalse(lost.isEmpty, "versions whose text was lost are named")
        XCTAssertTrue(Set(kept).isDisjoint(with: lost))
        XCTAssertEqual(kept.count + lost.count, table["documents"]!.recovered, "every recovered version is kept or named")
        XCTAssertLessThan(kept.count, 300)
        XCTAssertTrue(report.documentsLost.allSatisfy { $0.source == "path:/srv/docs" && $0.path.hasPrefix("f") })
        for id in kept {
            let document = try XCTUnwrap(try store.document(id: id))
            XCTAssertNotNil(try store.text(sha256: document.textSha256!), "document \(id) keeps its text")
        }
        // Passages are cut again from the texts at start; nothing else is waiting.
        XCTAssertEqual(try store.passageCounts().passages, 0)
        XCTAssertEqual(report.passagesToRebuild, kept.count)
        XCTAssertEqual(try store.documentsWithOldPassages().map(\.id), kept)
        XCTAssertEqual(try store.documentsToLearn(limit: 1000).count, 0)

        // A file that is not a database at all: a fresh store, and the report says nothing read.
        let junk = directory.appendingPathComponent("junk.sqlite").path
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: junk))
        let empty = try StoreRepair.repair(path: junk)
        XCTAssertTrue(empty.tables.allSatisfy { $0.recovered == 0 && $0.unreadable == ["all"] }, "\(empty.tables)")
        XCTAssertNoThrow(try Store(path: junk))
    }

    func testVersionsDedupAndForgetting() throws {
        let store = try makeStore()
        let drive = try store.sourceSeen(SourceInfo(key: "fs:1234-ABCD", kind: "drive", uuid: "1234-ABCD", label: "SALES"))

        guard case .added(let a1) = try store.register(reading(drive.id, "a.txt", "first")) else { return XCTFail() }
        XCTAssertEqual(a1.version, 1)
        XCTAssertEqual(a1.state, .extracted)
        XCTAssertTrue(try store.isUnchanged(source: drive.id, path: "a.txt", size: 5, mtime: 1))
        XCTAssertFalse(try store.isUnchanged(source: drive.id, path: "a.txt", size: 5, mtime: 2))

        // Same bytes again (touched): unchanged, no new version.
        guard case .unchanged(let same) = try store.register(reading(drive.id, "a.txt", "first", mtime: 2)) else { return XCTFail() }
        XCTAssertEqual(same.id, a1.id)
        XCTAssertEqual(same.mtime, 2)

        // Changed: version 2, version 1 superseded and its text gone.
        guard case .updated(let a2, let old) = try store.register(reading(drive.id, "a.txt", "second", mtime: 3)) else { return XCTFail() }
        XCTAssertEqual(a2.version, 2)
        XCTAssertEqual(old.id, a1.id)
        XCTAssertEqual(old.state, .superseded)
        XCTAssertNil(try store.text(sha256: a1.textSha256!))
        XCTAssertEqual(try store.text(sha256: a2.textSha256!), "second")

        // The same content elsewhere is stored once.
        guard case .added(let b) = try store.register(reading(drive.id, "copy/b.txt", "second")) else { return XCTFail() }
        XCTAssertEqual(b.textSha256, a2.textSha256)

        // A failed extraction is registered with its reason and no text.
        let broken = Store.FileReading(source: drive.id, path: "bad.docx", size: 10, mtime: 1, format: "docx", rawSHA256: "00",
                                       outcome: .failure(.init("malformed: not a ZIP archive")))
        guard case .added(let bad) = try store.register(broken) else { return XCTFail() }
        XCTAssertEqual(bad.state, .failed)
        XCTAssertEqual(bad.error, "malformed: not a ZIP archive")
        XCTAssertFalse(try store.isUnchanged(source: drive.id, path: "bad.docx", size: 10, mtime: 1), "failed files are retried")

        // Filters and paging.
        let page = try store.documents(.init(source: drive.id, states: [.extracted]), limit: 1, offset: 0)
        XCTAssertEqual(page.total, 2)
        XCTAssertEqual(page.page.map(\.path), ["a.txt"])
        XCTAssertEqual(try store.documents(.init(pathContains: "copy/")).page.map(\.id), [b.id])

        // Forgetting a.txt keeps the shared text (b.txt still uses it); forgetting b drops it.
        let forgotten = try store.forget(documents: [a2.id])
        XCTAssertEqual(Set(forgotten.map(\.id)), [a1.id, a2.id])
        XCTAssertEqual(try store.text(sha256: b.textSha256!), "second")
        XCTAssertEqual(try store.document(id: a2.id)?.state, .forgotten)
        _ = try store.forget(source: drive.id)
        XCTAssertNil(try store.text(sha256: b.textSha256!))
        XCTAssertEqual(try store.documentCounts(), [.forgotten: 4])
        // A forgotten path comes back as a new version when it is seen again.
        guard case .added(let back) = try store.register(reading(drive.id, "a.txt", "second", mtime: 4)) else { return XCTFail() }
        XCTAssertEqual(back.version, 3)
    }

    func testSourcesGoAbsentAndReturn() throws {
        let store = try makeStore()
        let info = SourceInfo(key: "fs:UUID-1", kind: "drive", uuid: "UUID-1", label: "A", mountPoint: "/run/twinbrain/media/A")
        let s = try store.sourceSeen(info)
        try store.markSourceAbsent(id: s.id)
        XCTAssertEqual(try store.source(id: s.id)?.state, .absent)
        var moved = info
        moved.mountPoint = "/media/A"
        let back = try store.sourceSeen(moved)
        XCTAssertEqual(back.id, s.id)
        XCTAssertEqual(back.state, .present)
        XCTAssertEqual(back.mountPoint, "/media/A")
        XCTAssertEqual(back.firstSeen, s.firstSeen)
    }

    func testJobsKeepProgressAndSkips() throws {
        let store = try makeStore()
        let job = try store.createJob(kind: "ingest", target: "/srv/docs")
        XCTAssertEqual(job.state, .queued)
        try store.updateJob(job.id, state: .running, done: 3, total: 10, current: "b.txt")
        try store.addSkip(job: job.id, path: "fifo", reason: "FIFO (not a regular file)")
        let reopened = try makeStore()
        let j = try XCTUnwrap(try reopened.job(id: job.id))
        XCTAssertEqual([j.done, j.total], [3, 10])
        XCTAssertEqual(j.current, "b.txt")
        XCTAssertEqual(try reopened.unfinishedJobs().map(\.id), [job.id])
        XCTAssertEqual(try reopened.skips(job: job.id), [Skip(path: "fifo", reason: "FIFO (not a regular file)")])
        try reopened.updateJob(job.id, state: .done)
        XCTAssertTrue(try reopened.unfinishedJobs().isEmpty)
        try reopened.audit(action: "ingest", detail: "/srv/docs", uid: 0, user: "root")
        XCTAssertEqual(try reopened.auditEntries().first?.action, "ingest")
    }

    /// Against coreutils' sha256sum, at block-boundary lengths and fed in odd pieces.
    func testSHA256MatchesSha256sum() throws {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 1000, 1 << 20] {
            let data = Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let file = directory.appendingPathComponent("sha-\(length)")
            try data.write(to: file)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            p.arguments = [file.path]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let expected = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
            p.waitUntilExit()
            XCTAssertEqual(SHA256.hex(data), String(expected), "length \(length)")
            var pieces = SHA256()
            var offset = 0, step = 1
            while offset < data.count {
                let end = min(data.count, offset + step)
                data[offset..<end].withUnsafeBytes { pieces.update($0) }
                offset = end
                step = step * 3 + 1
            }
            XCTAssertEqual(SHA256.hex(digest: pieces.finalize()), String(expected), "length \(length) in pieces")
        }
    }

    // MARK: Passages

    func passages(_ words: String) -> [PassageRecord] {
        [PassageRecord(tokenOffset: 0, tokens: 10, text: words, header: "Policy", lines: 1...2, terms: words),
         PassageRecord(tokenOffset: 5, tokens: 10, text: words + " again", lines: 3...3, terms: words + " again")]
    }

    /// Learn, search, supersede, forget: and after forgetting, the index answers exactly as one
    /// that never held the forgotten document (same passages, same BM25 scores).
    func testPassagesAreLearnedSearchedSupersededAndForgottenExactly() throws {
        let store = try makeStore()
        let source = try store.sourceSeen(.path("/srv/docs"))
        var ids: [String: Int64] = [:]
        let texts = ["trains.txt": "employees take the train below six hours", "lunch.txt": "the canteen serves fish soup on fridays",
                     "hotel.txt": "hotel costs up to 140 euros in vienna; the train station is near"]
        for name in texts.keys.sorted() {
            guard case .added(let d) = try store.register(reading(source.id, name, texts[name]!)) else { return XCTFail() }
            ids[name] = d.id
        }
        XCTAssertEqual(try store.documentsToLearn(limit: 10).count, 3)
        for name in texts.keys.sorted() { XCTAssertTrue(try store.learn(document: ids[name]!, passages: passages(texts[name]!))) }
        XCTAssertFalse(try store.learn(document: ids["lunch.txt"]!, passages: passages("twice")), "learned once only")
        XCTAssertEqual(try store.documentsToLearn(limit: 10).count, 0)
        XCTAssertEqual(try store.passageCounts().passages, 6)
        // Passages holding each word (two per document here: the same text cut twice), for recall's weights.
        let counts = try store.passageFrequencies(terms: ["train", "vienna", "submarine"])
        XCTAssertEqual(counts.passages, 6)
        XCTAssertEqual(counts.containing, ["train": 4, "vienna": 2])

        let hits = try store.searchPassages(terms: ["train", "vienna"], limit: 10)
        XCTAssertEqual(hits.first?.path, "hotel.txt", "both words beat one")
        XCTAssertEqual(hits.first.map { [$0.header, "\($0.lines!)"] }, ["Policy", "1...2"], "headings and lines come back for citation")
        XCTAssertEqual(Set(hits.map(\.path)), ["hotel.txt", "trains.txt"])
        XCTAssertTrue(hits.allSatisfy { $0.score > 0 })
        XCTAssertEqual(try store.searchPassages(terms: ["submarine"], limit: 10), [])
        XCTAssertEqual(try store.searchPassages(terms: [], limit: 10), [])
        // Query syntax in a word is only text.
        XCTAssertEqual(try store.searchPassages(terms: ["fish\" OR \"soup", "NEAR(a b)", "*"], limit: 10), [])

        // A new version is learned; the superseded one's passages go with it.
        guard case .updated(let v2, _) = try store.register(reading(source.id, "lunch.txt", "the canteen serves pasta")) else { return XCTFail() }
        XCTAssertEqual(try store.searchPassages(terms: ["fish"], limit: 10).count, 2, "old knowledge serves until the new is learned")
        XCTAssertTrue(try store.learn(document: v2.id, passages: passages("the canteen serves pasta")))
        XCTAssertEqual(try store.searchPassages(terms: ["fish"], limit: 10), [])
        XCTAssertEqual(try store.searchPassages(terms: ["pasta"], limit: 10).map(\.version), [2, 2])

        // Forget the hotel; compare with a store that only ever learned the others.
        _ = try store.forget(documents: [ids["hotel.txt"]!])
        XCTAssertEqual(try store.passages(document: ids["hotel.txt"]!), [])
        let fresh = try Store(path: directory.appendingPathComponent("fresh.sqlite").path)
        let freshSource = try fresh.sourceSeen(.path("/srv/docs"))
        for (name, text) in [("lunch.txt", "the canteen serves pasta"), ("trains.txt", texts["trains.txt"]!)] {
            guard case .added(let d) = try fresh.register(reading(freshSource.id, name, text)) else { return XCTFail() }
            XCTAssertTrue(try fresh.learn(document: d.id, passages: passages(text)))
        }
        for words in [["train", "vienna"], ["the"], ["canteen", "employees", "hotel"]] {
            let a = try store.searchPassages(terms: words, limit: 10), b = try fresh.searchPassages(terms: words, limit: 10)
            XCTAssertEqual(a.map { "\($0.path)@\($0.tokenOffset)" }, b.map { "\($0.path)@\($0.tokenOffset)" }, "\(words)")
            XCTAssertEqual(a.map(\.score), b.map(\.score), "\(words)")
            XCTAssertEqual(try store.passageFrequencies(terms: words).containing, try fresh.passageFrequencies(terms: words).containing)
        }
        // A forgotten document cannot be learned afterwards.
        XCTAssertFalse(try store.learn(document: ids["hotel.txt"]!, passages: passages("back")))
    }

    /// A store made before structured passages (migration v3) opens with its passages kept but
    /// unindexed, and lists their documents to be cut again; cutting them again indexes them.
    func testPassagesOfTheEarlierFormatAreCutAgain() throws {
        let path = directory.appendingPathComponent("v3.sqlite").path
        do {
            let store = try Store(path: path, migratingUpTo: "v3: passage word counts")
            let source = try store.sourceSeen(.path("/srv/docs"))
            guard case .added(let d) = try store.register(reading(source.id, "trains.txt", "take the train")) else { return XCTFail() }
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(sql: "INSERT INTO passages (document_id, token_offset, tokens, text) VALUES (?, 0, 3, 'take the train')",
                               arguments: [d.id])
                try db.execute(sql: "UPDATE documents SET state = 'learned' WHERE id = ?", arguments: [d.id])
            }
            try queue.close()
        }
        let store = try Store(path: path)
        XCTAssertEqual(try store.appliedMigrations().last, "v5: settings")
        let old = try store.documentsWithOldPassages()
        XCTAssertEqual(old.map(\.path), ["trains.txt"])
        XCTAssertEqual(try store.passages(document: old[0].id).map(\.text), ["take the train"], "kept until cut again")
        XCTAssertEqual(try store.searchPassages(terms: ["train"], limit: 5), [])
        XCTAssertTrue(try store.recutPassages(document: old[0].id, passages: passages("take the train")))
        XCTAssertEqual(try store.documentsWithOldPassages(), [])
        XCTAssertEqual(try store.searchPassages(terms: ["train"], limit: 5).count, 2)
        XCTAssertEqual(try store.document(id: old[0].id)?.state, .learned)
    }
}
