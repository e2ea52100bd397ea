import Foundation
import XCTest
import MainBrain

/// Tiny random-weight models written by scripts/make-tiny-model-fixtures.py, with the logits
/// llama.cpp computed on them: proves the qwen2 path (q/k/v biases, NeoX RoPE, untied head).
final class TinyModelTests: XCTestCase {
    func testLogitsMatchLlamaCpp() throws {
        for name in ["qwen2", "llama-bpe"] {
            let model = try Model(path: Fixtures.url("tiny/\(name).gguf").path)
            XCTAssertEqual(model.config.architecture.rawValue, name == "qwen2" ? "qwen2" : "llama")
            let ref = try Fixtures.json("tiny/\(name).json")
            let ids = [Int32](json: ref["ids"])
            let expected = (ref["logits"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
            // Whole prompt at once, and split across batches and single-token steps.
            let cache = model.makeCache()
            let whole = try model.forward(ids, cache: cache, logits: .all)
            model.batchSize = 7
            let split = try model.forward(Array(ids[..<50]), cache: model.makeCache(), logits: .all)
            model.batchSize = 512
            var worst: Float = 0
            for p in 0..<ids.count {
                for (a, b) in zip(whole.row(p), expected[p]) { worst = max(worst, abs(a - b)) }
                if p < 50 { for (a, b) in zip(split.row(p), whole.row(p)) { XCTAssertEqual(a, b, accuracy: 1e-4) } }
            }
            XCTAssertLessThanOrEqual(worst, 1e-3, name)
        }
    }
}
