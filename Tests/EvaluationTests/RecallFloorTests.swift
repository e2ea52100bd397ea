import Foundation
import XCTest
import Evaluation
import LearningBrain

final class RecallFloorTests: XCTestCase {
    /// The floor the daemon and the hybrid use is the one `make recall-floor` fitted.
    func testTheShippedFloorIsTheFittedOne() throws {
        let results = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/results/recall-floor.json")
        let fit = try JSONDecoder().decode(RecallFloorFitting.Result.self, from: Data(contentsOf: results))
        XCTAssertEqual(PassageRelevance.floor, fit.floor)
        XCTAssertLessThanOrEqual(fit.general.recalled[String(format: "%.2f", fit.floor)] ?? 1, RecallFloorFitting.allowedRecall,
                                 "hardly any general window recalls a passage")
        XCTAssertGreaterThan(fit.learned.p50, fit.floor, "learned text finds its passages")
        XCTAssertGreaterThan(fit.verbatim.p50, fit.floor, "questions quoting a document find it")
    }

    /// BM25 finds a text for any shared word; with the floor, a question that only shares
    /// common words with the texts finds none, and a question about one still finds it.
    func testTheFloorKeepsPassagesThatShareOnlyCommonWordsOut() throws {
        let texts = ["employees take the train below six hours", "the canteen serves fish soup on fridays",
                     "hotel costs up to 140 euros in vienna"]
        let unrelated = "How long does the train from Paris to Rome take?"
        XCTAssertEqual(try BM25Probe().best(for: unrelated, in: texts), 0)
        XCTAssertNil(try BM25Probe(relevanceFloor: PassageRelevance.floor).best(for: unrelated, in: texts))
        XCTAssertEqual(try BM25Probe(relevanceFloor: PassageRelevance.floor).best(for: "What does the canteen serve on Fridays?", in: texts), 1)
    }
}
