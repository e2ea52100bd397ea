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
}
