import Foundation
import XCTest
import LearningBrain
import MainBrain

/// Generations joined by the token memory and decoded together search the memory once per step
/// for all of them (`KNNLanguageModel.prepare`), and each gets the tokens, neighbours and
/// weights it gets alone. Needs the default model.
final class MemoryJoinTests: XCTestCase {
    func testSessionsDecodedTogetherFindWhatTheyFindAlone() throws {
        guard let path = DefaultModel.path() else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("the default model is missing under CI") }
            throw XCTSkip("needs the default model: run `make model`")
        }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf)
        let tokenizer = try Tokenizer(gguf: gguf)
        let fitted = try XCTUnwrap(try FittedKeyspace.forModel(model, modelSHA256: { DefaultModel.sha256 }))
        let knn = KNNLanguageModel(model: model, fitted: fitted)
        let handbook = """
            The canteen on the second floor serves lunch from 11:30 to 14:00 on weekdays. On Fridays it serves \
            fish soup and a vegetable curry. Flights are approved by the head of finance, Maria Keller, and hotel \
            nights in Vienna are reimbursed up to 140 euros. The coffee machine is maintained by Tomas Novak.
            """
        try knn.learn(document: 1, tokens: tokenizer.encode(handbook))
        let generator = Generator(model: model, tokenizer: tokenizer)
        let prompts = ["The canteen on the second floor serves lunch", "Flights are approved by", "The coffee machine is",
                       "Hotel nights in Vienna are reimbursed"]
        func request(_ text: String) -> GenerationRequest {
            var r = GenerationRequest(prompt: tokenizer.encode(text))
            r.maxTokens = 10
            r.sampling = .greedy
            r.stopAtEndOfGeneration = false
            return r
        }
        typealias Step = (entries: [Int], weight: Double)
        var alone: [(ids: [Int32], steps: [Step])] = []
        for text in prompts {
            var steps: [Step] = []
            let join = MemoryJoin(knn) { found, weight in steps.append((found.map(\.entry), weight)) }
            let ids = try generator.generate(request(text), predictor: join).ids
            alone.append((ids, steps))
        }
        var steps = [[Step]](repeating: [], count: prompts.count)
        let sessions = prompts.indices.map { i in
            generator.session(request(prompts[i]), predictor: MemoryJoin(knn) { found, weight in steps[i].append((found.map(\.entry), weight)) })
        }
        XCTAssertTrue(generator.prefill(sessions).allSatisfy { $0 == nil })
        while sessions.contains(where: { !$0.isFinished }) { try generator.step(sessions) }
        for i in prompts.indices {
            XCTAssertEqual(sessions[i].result.ids, alone[i].ids, prompts[i])
            XCTAssertEqual(steps[i].map(\.entries), alone[i].steps.map(\.entries), prompts[i])
            XCTAssertEqual(steps[i].map(\.weight), alone[i].steps.map(\.weight), prompts[i])
        }
        XCTAssertTrue(alone.contains { $0.steps.contains { $0.weight > 0 } }, "the memory spoke in some step")
    }
}
