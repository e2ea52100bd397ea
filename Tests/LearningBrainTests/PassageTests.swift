import XCTest
import LearningBrain

final class PassageTests: XCTestCase {
    /// 128 tokens every 64, the last passage reaching the end, nothing past it.
    func testChunkerCoversEveryTokenWithHalfOverlap() {
        let c = PassageChunker.standard
        XCTAssertEqual(c.ranges(count: 0), [])
        XCTAssertEqual(c.ranges(count: 5), [0..<5])
        XCTAssertEqual(c.ranges(count: 128), [0..<128])
        XCTAssertEqual(c.ranges(count: 129), [0..<128, 64..<129])
        XCTAssertEqual(c.ranges(count: 300), [0..<128, 64..<192, 128..<256, 192..<300])
        for n in [1, 63, 64, 65, 127, 200, 1000] {
            let r = c.ranges(count: n)
            XCTAssertEqual(r.last?.upperBound, n, "\(n)")
            XCTAssertEqual(Set(r.flatMap { Array($0) }).count, n, "every token in some passage (\(n))")
            XCTAssertTrue(r.allSatisfy { $0.count <= 128 })
        }
    }

    func testQueryWordsDropFunctionWordsAndRepeats() {
        XCTAssertEqual(QueryWords.content(of: "What is it?"), [])
        XCTAssertEqual(QueryWords.content(of: "Who approves flights to Vienna? Flights!"), ["approves", "flights", "vienna"])
        XCTAssertEqual(QueryWords.content(of: "max_wal_size in PostgreSQL 15.3"), ["max_wal_size", "postgresql", "15"])
        XCTAssertEqual(QueryWords.content(of: "差旅政策 火车"), ["差旅", "旅政", "政策", "火车"])
        XCTAssertEqual(QueryWords.content(of: String(repeating: "w", count: 3) + (1...100).map { " word\($0)" }.joined()).count, 64)
    }

    /// A passage holding a question's rare word matters more than one holding its common word;
    /// inflected forms count; words no passage holds weigh most.
    func testRelevanceWeighsRareWordsAndInflections() {
        let containing = ["train": 3, "vienna": 1]
        func share(_ query: [String], _ passage: Set<String>) -> Double {
            PassageRelevance.share(of: query, holding: PassageRelevance.stems(passage), containing: containing, passages: 4)
        }
        XCTAssertEqual(share([], ["train"]), 0)
        XCTAssertEqual(share(["train", "vienna"], ["train", "vienna", "hotel"]), 1)
        let rare = share(["train", "vienna"], ["vienna"]), common = share(["train", "vienna"], ["train"])
        XCTAssertGreaterThan(rare, 0.5)
        XCTAssertEqual(rare + common, 1, accuracy: 1e-12)
        XCTAssertLessThan(share(["vienna", "submarine"], ["vienna"]), share(["vienna", "train"], ["vienna"]))
        XCTAssertEqual(share(["approves", "flights", "policies", "serve"], ["approved", "flight", "policy", "serves"]), 1)
        XCTAssertEqual(share(["class", "process"], ["clas", "proces"]), 0)
        XCTAssertEqual(PassageRelevance.share(of: ["火车"], holding: ["火车"], containing: ["火车": 1], passages: 4, neighbours: [:]), 0,
                       "a two-character match counts only beside another")
        XCTAssertEqual(PassageRelevance.share(of: ["火车", "车票"], holding: ["火车", "车票"], containing: ["火车": 1, "车票": 1], passages: 4,
                                              neighbours: QueryWords.neighbours(in: "火车票")), 1)
        XCTAssertEqual(PassageRelevance.share(of: ["火车", "航班"], holding: ["火车", "航班"], containing: ["火车": 1, "航班": 1], passages: 4,
                                              neighbours: QueryWords.neighbours(in: "火车 航班")), 0)
        XCTAssertEqual(share(["vienna", "谁批"], ["vienna"]), 1, "a CJK bigram no passage holds counts for nothing")
    }

    func testKnowledgeGoesBeforeTheQuestion() {
        XCTAssertNil(KnowledgeContext.userText([], question: "q"))
        let text = KnowledgeContext.userText([.init(title: "travel.md", text: " Take the train.\n")], question: "When?")
        XCTAssertEqual(text, "\(KnowledgeContext.instruction)\n\n[1] travel.md:\nTake the train.\n\nQuestion: When?")
        XCTAssertEqual(KnowledgeContext.prefixText([.init(title: "a.txt", text: "x")]), "From a.txt:\nx\n\n")
    }
}
