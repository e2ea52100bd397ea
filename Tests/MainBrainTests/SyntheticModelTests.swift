import Foundation
import XCTest
import Kernels
import MainBrain

/// Llama 3 and Qwen3 on small models with their real tokenizers (`scripts/synthetic_vocab_models.py`:
/// two layers, hashed weights, the llama-cpp-python sdist's vocabularies; `make test` writes them
/// under .cache/synthetic) against what llama.cpp computes on the same files: Llama 3's
/// tokenizer, RoPE frequency factors and untied head; Qwen3's tokenizer, Q/K norms and heads wider
/// than dim / heads.
final class SyntheticModelTests: XCTestCase {
    static func modelPath(_ name: String) throws -> String {
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["TWINBRAIN_SYNTHETIC_MODELS"] { candidates.append("\(dir)/\(name).gguf") }
        if let model = DefaultModel.path() {
            candidates.append(URL(fileURLWithPath: model).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("synthetic/\(name).gguf").path)
        }
        if let path = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return path }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("the synthetic \(name) model is missing under CI: `make test` should have written it (scripts/synthetic_vocab_models.py)")
        }
        throw XCTSkip("needs .cache/synthetic/\(name).gguf: run python3 scripts/synthetic_vocab_models.py")
    }

    func check(_ name: String, architecture: ModelArchitecture) throws {
        let gguf = try GGUFFile(path: try Self.modelPath(name))
        let model = try Model(gguf: gguf, contextTokens: 1024)
        let tokenizer = try Tokenizer(gguf: gguf)
        XCTAssertEqual(model.config.architecture, architecture)
        let ref = try Fixtures.json("synthetic/\(name).json")
        let tokenized = ref["tokenize"] as! [String: [String: Any]]
        XCTAssertEqual(tokenized.count, 10)
        for (text, entry) in tokenized.sorted(by: { $0.key < $1.key }) {
            let ids = tokenizer.encode(try Fixtures.bytes("tokenize/\(text)"), parseSpecial: entry["special"] as! Bool, addBOS: false)
            XCTAssertEqual(ids, [Int32](json: entry["ids"]), "\(name) tokenize/\(text)")
        }
        let generator = Generator(model: model, tokenizer: tokenizer)
        for (text, entry) in (ref["logits"] as! [String: [String: Any]]).sorted(by: { $0.key < $1.key }) {
            let ids = tokenizer.encode(try Fixtures.bytes(text))
            XCTAssertEqual(ids, [Int32](json: entry["ids"]), "\(name) \(text): ids (BOS as the vocabulary wants)")
            let logits = try model.forward(ids, cache: model.makeCache(capacity: ids.count), logits: .all)
            var worst: Float = 0
            for (p, entries) in (entry["topk"] as! [[[NSNumber]]]).enumerated() {
                let row = logits.row(p)
                if entries[0][1].floatValue - entries[1][1].floatValue >= 0.01 {
                    XCTAssertEqual(Int(MainBrain.Sampler.argmax(row)), entries[0][0].intValue, "\(name) \(text) position \(p): top-1")
                }
                for e in entries { worst = max(worst, abs(row[row.startIndex + e[0].intValue] - e[1].floatValue)) }
            }
            XCTAssertLessThanOrEqual(worst, 0.01, "\(name) \(text): max |Δlogit| on the listed ids")
            XCTAssertEqual(try greedyContinuation(generator, prompt: ids, count: 16), [Int32](json: entry["greedy"]), "\(name) \(text): greedy")
        }
    }

    func testLlama3MatchesLlamaCpp() throws {
        try check("llama3", architecture: .llama)
    }

    func testQwen3MatchesLlamaCpp() throws {
        try check("qwen3", architecture: .qwen3)
    }
}
