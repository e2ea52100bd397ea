import Foundation
import XCTest
import LearningBrain
import Store

/// Structure-aware passages, CJK terms, recall over the real SQLite FTS5 store, and evidence lines.
final class RecallTests: XCTestCase {
    func testCJKTextBecomesOverlappingBigrams() {
        XCTAssertEqual(SearchTerms.terms(in: "国际航班"), ["国际", "际航", "航班"])
        XCTAssertEqual(SearchTerms.terms(in: "root账户 Tom_Lane 15.17"), ["root", "账户", "tom_lane", "15", "17"])
        XCTAssertEqual(SearchTerms.terms(in: "谁？"), ["谁"])
        XCTAssertEqual(SearchTerms.terms(in: "use ____ or pg_dump"), ["use", "or", "pg_dump"])
        XCTAssertEqual(SearchTerms.terms(in: "カタカナ한국어"), ["カタ", "タカ", "カナ", "ナ한", "한국", "국어"])
        XCTAssertEqual(SearchTerms.indexText("Debian 软件包"), "debian 软件 件包")
        // Question characters drop the bigrams that hold them; content bigrams stay.
        XCTAssertEqual(QueryWords.content(of: "国际航班乘坐商务舱需要谁批准？"),
                       ["国际", "际航", "航班", "班乘", "乘坐", "坐商", "商务", "务舱", "批准"])
        XCTAssertEqual(QueryWords.content(of: "What is it?"), [])
    }

    func testStructureFindsHeadingsItemsRowsAndPages() {
        let text = """
            E.4. Release 15.17
            Release date: 2026-02-26
            E.4.2. Changes
            - Fix failure after replaying (Heikki Linnakangas)
              Erroneous logic for coping with wraparound.
            - Avoid incorrect complaint (Noah Misch)

            name,role,phone
            Alice,approver,100
            Bob,clerk,200
            \u{0C}# Travel
            Trains below six hours.
            """
        let blocks = DocumentStructure.blocks(of: text)
        XCTAssertEqual(blocks.map(\.kind), [.heading, .paragraph, .heading, .item, .item, .row, .row, .row, .heading, .paragraph])
        XCTAssertEqual(blocks[3].lines, 4...5)
        XCTAssertEqual(blocks[3].headings, ["E.4. Release 15.17", "E.4.2. Changes"])
        XCTAssertEqual(blocks[6].text, "Alice,approver,100")
        XCTAssertEqual(blocks[6].tableHeader, "name,role,phone")
        XCTAssertEqual(blocks[9].headings, ["Travel"])
        XCTAssertEqual(blocks[9].page, 2)
        XCTAssertEqual(blocks[1].page, 1)
        // A list item numbered "1." is no heading; "1.1.3. root 账户" is, with a no-break space too.
        XCTAssertNil(DocumentStructure.heading("1. Install the package", next: nil))
        XCTAssertEqual(DocumentStructure.heading("1.1.3.\u{A0}root 账户", next: nil)?.0, 3)
        XCTAssertNil(DocumentStructure.heading("15.3. The fix was applied.", next: nil))
    }

    /// A Debian changelog: each entry's version line travels with its bullets, the trailer ends it.
    func testChangelogBulletsTravelWithTheirVersionLine() {
        let text = """
            redis (5:7.0.15-1~deb12u2) bookworm-security; urgency=medium

              * Non-maintainer upload by the Security Team.
              * CVE-2024-51741: Fix denial of service via malformed ACL selectors.

             -- Jane Doe <jane@example.org>  Mon, 06 Jan 2025 10:00:00 +0100

            redis (5:7.0.15-1~deb12u1) bookworm; urgency=medium

              * Fix a crash in the cluster bus.
            """
        let passages = DocumentPassageBuilder.standard.passages(of: text, countTokens: { $0.split(separator: " ").count })
        let cve = passages.first { $0.text.contains("CVE-2024-51741") }
        XCTAssertEqual(cve?.header, "redis (5:7.0.15-1~deb12u2) bookworm-security; urgency=medium")
        XCTAssertEqual(cve?.lines.lowerBound, 3)
        XCTAssertEqual(passages.last?.header, "redis (5:7.0.15-1~deb12u1) bookworm; urgency=medium")
        XCTAssertFalse(passages.contains { $0.text.contains("Fix a crash") && $0.header.contains("deb12u2") })
    }

    /// Passages stay within their token budget: long blocks are cut at lines, sentences, words.
    func testLongBlocksAreCutWithinTheBudget() {
        let sentence = "The quick brown fox jumps over the lazy dog again and again. "
        let text = "# Long\n" + String(repeating: sentence, count: 40) + "\n" + String(repeating: "word ", count: 300)
        let builder = DocumentPassageBuilder(maxTokens: 50)
        let passages = builder.passages(of: text, countTokens: { $0.split(separator: " ").count })
        XCTAssertTrue(passages.allSatisfy { $0.tokens <= 50 }, "\(passages.map(\.tokens))")
        XCTAssertTrue(passages.allSatisfy { $0.header == "Long" })
        XCTAssertEqual(passages.map(\.text).joined().filter { $0 == "." }.count, 40)
        XCTAssertEqual(passages.first?.lines, 2...2)
        XCTAssertEqual(passages.last?.lines, 3...3)
    }

    func makeStore(_ documents: [(String, String)]) throws -> (Store, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("recall-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try Store(path: directory.appendingPathComponent("state.sqlite").path)
        let source = try store.sourceSeen(.path("/docs")).id
        for (path, text) in documents {
            let reading = Store.FileReading(source: source, path: path, size: Int64(text.utf8.count), mtime: 0, format: "text",
                                            rawSHA256: SHA256.hex(Data(text.utf8)), outcome: .success(text))
            guard case let .added(d) = try store.register(reading) else { XCTFail("not added"); continue }
            let records = DocumentPassageBuilder.standard.passages(of: text, countTokens: { $0.count / 4 + 1 }).enumerated().map { i, p in
                PassageRecord(tokenOffset: i, tokens: p.tokens, text: p.text, header: p.header, lines: p.lines, page: p.page,
                              terms: SearchTerms.indexText(p.searchText))
            }
            XCTAssertTrue(try store.learn(document: d.id, passages: records))
        }
        return (store, directory)
    }

    /// Recall over the real FTS5 index: the heading's words find the bullets under it, CJK
    /// questions find CJK passages, unrelated questions find nothing; evidence names the line.
    func testRecallAndEvidenceOverTheStore() throws {
        let (store, directory) = try makeStore([
            ("pg/release-15-17.txt", """
                E.4. Release 15.17
                E.4.2. Changes
                - Fix failure after replaying a multixid truncation record from WAL (Heikki Linnakangas)
                  Erroneous logic for coping with multixid wraparound led to replay failure.
                - Avoid incorrect complaint of invalid encoding when substring() is applied to toasted data (Noah Misch)
                """),
            ("policy/差旅.txt", """
                # 差旅政策
                国际航班乘坐商务舱须经总经理批准。
                国内出差优先乘坐高铁二等座。
                """),
            ("canteen.txt", "The canteen serves fish soup on Fridays.\n"),
            ("guide.pdf", "Shop guide\n\nOpening hours are nine to five.\n\u{0C}Returns are accepted within 30 days of purchase.\n\u{0C}"),
            ("manual.txt", "Operating the cluster\n\nStart it with the green button.\n\nStop it with the red button.\n\n"
                + "Press F5 to reload the cluster configuration.\n"),
        ])
        defer { try? FileManager.default.removeItem(at: directory) }

        let english = try Recall(question: "Who is credited with the fix for replaying a multixid truncation record?", index: store, limit: 3)
        XCTAssertEqual(english.passages.first?.path, "pg/release-15-17.txt")
        XCTAssertEqual(english.passages.first?.header, "E.4. Release 15.17 › E.4.2. Changes")
        let evidence = english.evidence(answer: "Heikki Linnakangas is credited.")
        XCTAssertEqual(evidence.first?.path, "pg/release-15-17.txt")
        XCTAssertEqual(evidence.first?.lines, 3...3)
        XCTAssertEqual(evidence.first?.citation, "pg/release-15-17.txt:3")
        XCTAssertTrue(evidence.first?.text.contains("Heikki Linnakangas") ?? false)
        // Lines are the document's own, across blank lines and headings inside a passage.
        let manual = try Recall(question: "Which key reloads the cluster configuration?", index: store, limit: 3)
        XCTAssertEqual(manual.evidence(answer: "").first?.citation, "manual.txt:7")
        // A PDF's pages (form feeds, as pdftotext writes them) are cited with the line.
        let returns = try Recall(question: "Within how many days are purchases returned?", index: store, limit: 3)
        XCTAssertEqual(returns.evidence(answer: "30 days").first?.citation, "guide.pdf p. 2:4")
        XCTAssertFalse(evidence.contains { $0.text.contains("Noah Misch") }, "the other bullet supports nothing")

        let chinese = try Recall(question: "国际航班乘坐商务舱需要谁批准？", index: store, limit: 3)
        XCTAssertEqual(chinese.passages.map(\.path), ["policy/差旅.txt"])
        let zhEvidence = chinese.evidence(answer: "需要总经理批准。")
        XCTAssertEqual(zhEvidence.first?.text, "国际航班乘坐商务舱须经总经理批准。")
        XCTAssertEqual(zhEvidence.first?.lines, 2...2)
        XCTAssertEqual(zhEvidence.first?.header, "差旅政策")

        XCTAssertTrue(try Recall(question: "How long does the train from Paris to Rome take?", index: store, limit: 3).passages.isEmpty)
        // Chinese text sharing only two-character words with a passage recalls nothing.
        XCTAssertTrue(try Recall(question: "国内新闻和高铁时刻表在哪里看？", index: store, limit: 3).passages.isEmpty)
        XCTAssertTrue(try Recall(question: "What is it?", index: store, limit: 3).evidence(answer: "anything").isEmpty)
    }

    /// A plain prompt to continue: recall for the whole prompt finds where most of it is, but
    /// what comes next sits in the passage holding the prompt's last line, or the one after.
    func testAContinuationRecallsWhatFollowsThePromptsEnd() throws {
        let notes = """
            E.10. Release 15.11
            E.10.2. Changes
            - Prevent possible catalog corruption when a system catalog is vacuumed concurrently with an update (Noah Misch)
              Without this, a concurrent update could be lost, leaving the catalog entry in an inconsistent state on disk, \
            which later queries would read as a missing or duplicated row until the table was rebuilt by hand.
            - Fix data corruption when relation truncation fails (Thomas Munro)
              The filesystem calls needed to perform relation truncation could fail, leaving inconsistent state on disk, \
            for example effectively reviving deleted data; such failures now cause a panic and a replay from the log.
            - Prevent checkpoints from starting during relation truncation (Robert Haas)
              This avoids a race condition wherein the modified file might not get fsync'd before completing the checkpoint, \
            creating a risk of data corruption if the operating system crashes soon after the checkpoint has finished.
            - Use rename() not link()/unlink() to rename files (Nathan Bossart)
              The previous coding was intended to assure that the operation could not accidentally overwrite an existing file, \
            but a failure could leave two links to the same file in existence, confusing the operations that follow it.
            """
        let (store, directory) = try makeStore([("pg/release-15-11.txt", notes), ("canteen.txt", "The canteen serves fish soup on Fridays.\n")])
        defer { try? FileManager.default.removeItem(at: directory) }
        let prompt = """
            such failures are rare enough that it seems an acceptable solution, leaving inconsistent state on disk.
            - Prevent checkpoints from starting during relation truncation (Robert Haas)
              This avoids a race condition wherein the modified file might not get fsync'd before completing the checkpoint.
            - Use rename() not link()/unlink() to rename files (
            """
        let asQuestion = try Recall(question: prompt, index: store, limit: 1)
        XCTAssertFalse(asQuestion.passages.contains { $0.text.contains("Nathan Bossart") }, "the test needs the bulk elsewhere")
        let continuing = try Recall(continuing: prompt, index: store, limit: 3)
        XCTAssertTrue(continuing.passages.first?.text.contains("Nathan Bossart") ?? false, "\(continuing.passages.map(\.text))")
        XCTAssertEqual(Set(continuing.passages.map(\.path)), ["pg/release-15-11.txt"])
        XCTAssertLessThanOrEqual(continuing.passages.count, 3)
        // The passage after the one holding the prompt's end joins: a prompt ending a passage continues in the next.
        let ending = "- Fix data corruption when relation truncation fails (Thomas Munro)\n"
            + "  The filesystem calls needed to perform relation truncation could fail, leaving inconsistent state on disk.\n"
        let next = try Recall(continuing: ending, index: store, limit: 2)
        XCTAssertEqual(next.passages.count, 2)
        XCTAssertEqual(next.passages.map(\.passageId), next.passages.map(\.passageId).sorted())
        // A prompt sharing nothing with the documents recalls nothing, continuing or not.
        XCTAssertTrue(try Recall(continuing: "Write a poem about\nthe autumn sea and the wind over the dunes.\n", index: store, limit: 3).passages.isEmpty)
    }
}
