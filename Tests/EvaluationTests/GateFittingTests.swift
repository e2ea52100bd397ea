import XCTest
import LearningBrain
import MainBrain
import Evaluation

/// The gate fit on evidence whose answer is known: the memory is right when its nearest entry
/// is close and wrong when it is far.
final class GateFittingTests: XCTestCase {
    func evidence(_ distance: Float, main: Double, memory: Double, count: Int) -> [KNNLanguageModel.Evidence] {
        Array(repeating: KNNLanguageModel.Evidence(relativeDistance: distance, mainProbability: main, memoryProbability: memory), count: count)
    }

    func testGateOpensWhereTheMemoryHelpsAndStaysShutWhereItHurts() {
        // Learned text re-read: the nearest entry is close and knows the next token.
        let learned = evidence(0.01, main: 0.1, memory: 0.95, count: 200)
        // Related text: far neighbours that are wrong, and a few close ones that are right;
        // unrelated text: only far, wrong neighbours.
        let unseen = evidence(0.6, main: 0.3, memory: 0.0, count: 500) + evidence(0.02, main: 0.2, memory: 0.9, count: 20)
        let unrelated = evidence(0.8, main: 0.3, memory: 0.0, count: 300)
        let gate = GateFitting.fit(related: unseen, learned: learned, unrelated: unrelated)
        XCTAssertGreaterThan(gate.lambda(relativeDistance: 0.01), 0.5)
        XCTAssertEqual(gate.lambda(relativeDistance: 0.6), 0, "exactly shut where the memory is only wrong")
        let closed = MemoryGate(lambdaMax: 0, inner: 0, radius: 0)
        XCTAssertLessThanOrEqual(GateFitting.nll(unseen, gate), GateFitting.nll(unseen, closed))
        XCTAssertLessThan(GateFitting.nll(learned, gate), GateFitting.nll(learned, closed))
        XCTAssertEqual(GateFitting.nll(unrelated, gate), GateFitting.nll(unrelated, closed))
    }

    func testAMemoryThatNeverHelpsStaysShut() {
        let learned = evidence(0.1, main: 0.5, memory: 0.0, count: 50)
        let unseen = evidence(0.5, main: 0.4, memory: 0.0, count: 50)
        let gate = GateFitting.fit(related: unseen, learned: learned, unrelated: unseen)
        XCTAssertEqual(gate.lambdaMax * (gate.radius > 0 ? 1 : 0), 0)
        XCTAssertEqual(gate.lambda(relativeDistance: 0.1), 0)
    }
}

/// The default model has a shipped keyspace (its shape matches the fitted one).
final class FittedGateTests: XCTestCase {
    func testTheDefaultModelHasAFittedKeyspace() throws {
        guard let path = DefaultModel.path() else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("model missing under CI") }
            throw XCTSkip("needs the default model: run `make model`")
        }
        let model = try Model(gguf: GGUFFile(path: path))
        let config = model.config
        let fitted = try XCTUnwrap(try FittedKeyspace.forModel(model))
        XCTAssertEqual(fitted.digest?.count, 64, "read from its file")
        XCTAssertGreaterThan(fitted.gate.lambdaMax, 0)
        XCTAssertEqual(fitted.gate.lambda(relativeDistance: fitted.gate.radius), 0, "shut at the radius: the main brain exactly")
        // The projection's rows are the principal directions: orthonormal up to f16 rounding.
        let p = fitted.projection
        XCTAssertEqual(p.inputDimension, config.dim)
        XCTAssertLessThan(p.outputDimension, config.dim)
        for i in [0, 1, p.outputDimension - 1] {
            for j in [0, 1, p.outputDimension - 1] {
                let dot = (0..<p.inputDimension).reduce(Float(0)) { $0 + p.matrix[i * p.inputDimension + $1] * p.matrix[j * p.inputDimension + $1] }
                XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 2e-3, "rows \(i), \(j)")
            }
        }
    }

    /// Generation through the memory: with the gate shut it is the main brain's, token for token;
    /// with the fitted gate, a learned document's opening brings back its next words.
    func testGenerationThroughTheMemory() throws {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf), tokenizer = try Tokenizer(gguf: gguf)
        let generator = Generator(model: model, tokenizer: tokenizer)
        let document = "The Zorblat coffee machine on floor two is descaled by Bogdan Ilic every second Tuesday at seven, using citric acid only."
        let fitted = try XCTUnwrap(try FittedKeyspace.forModel(model))
        let knn = KNNLanguageModel(model: model, fitted: fitted)
        XCTAssertEqual(knn.memory.dimension, fitted.projection.outputDimension)
        try knn.learn(document: 1, tokens: tokenizer.encode(document))
        let opening = tokenizer.encode("The Zorblat coffee machine on floor two is descaled by")
        var request = GenerationRequest(prompt: opening)
        request.maxTokens = 12
        request.sampling = .greedy
        let alone = try generator.generate(request)

        knn.gate = MemoryGate(lambdaMax: 0, inner: 0, radius: 0)
        var steps = 0
        knn.onGenerationStep = { neighbours, weight in steps += 1; XCTAssertFalse(neighbours.isEmpty); XCTAssertEqual(weight, 0) }
        XCTAssertEqual(try generator.generate(request, predictor: knn).ids, alone.ids, "a shut gate is the main brain exactly")
        XCTAssertEqual(steps, alone.ids.count)
        knn.onGenerationStep = nil

        knn.gate = fitted.gate
        let recalled = try generator.generate(request, predictor: knn)
        XCTAssertTrue(recalled.text.hasPrefix(" Bogdan Ilic every second Tuesday"), recalled.text)
        XCTAssertFalse(alone.text.hasPrefix(" Bogdan Ilic every second Tuesday"), alone.text)
    }
}
