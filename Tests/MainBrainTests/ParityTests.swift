import Foundation
import XCTest
import Kernels
import MainBrain

/// The engine against llama.cpp's reference outputs for the default model (f32 weights, f32 KV).
final class ParityTests: XCTestCase {
    static let names = ["L1-chat-capital", "L2-gpl-head", "L3-python-code", "L4-chat-sockets", "L5-zh", "L6-gpl-long"]

    func testLogitsMatchLlamaCpp() throws {
        let (model, tokenizer) = try Fixtures.model()
        for name in Self.names {
            let ref = try Fixtures.json("logits/\(name).json")
            let ids = tokenizer.encode(try Fixtures.bytes("logits/\(name).txt"), parseSpecial: ref["special"] as! Bool, addBOS: false)
            XCTAssertEqual(ids, [Int32](json: ref["ids"]), "\(name): token ids")
            let logits = try model.forward(ids, cache: model.makeCache(capacity: ids.count), logits: .all)
            let topk = ref["topk"] as! [[[NSNumber]]]
            XCTAssertEqual(topk.count, ids.count)
            var worst: Float = 0
            for (p, entries) in topk.enumerated() {
                let row = logits.row(p)
                let refTop = entries[0][0].intValue
                let gap = entries[0][1].floatValue - entries[1][1].floatValue
                if gap >= 0.01 {
                    XCTAssertEqual(Int(MainBrain.Sampler.argmax(row)), refTop, "\(name) position \(p): top-1")
                }
                for e in entries {
                    let d = abs(row[row.startIndex + e[0].intValue] - e[1].floatValue)
                    worst = max(worst, d)
                }
            }
            XCTAssertLessThanOrEqual(worst, 0.01, "\(name): max |Δlogit| on the listed ids")

            // The full last-position vector.
            let reference = try Fixtures.floats("logits/\(name).last.f32")
            XCTAssertEqual(reference.count, model.config.vocabSize)
            let row = logits.row(ids.count - 1)
            let maxDelta = zip(row, reference).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(maxDelta, 0.01, "\(name): max |Δ| over the last position")
        }
    }

    func testGreedyContinuationsMatchLlamaCpp() throws {
        let (model, tokenizer) = try Fixtures.model()
        let generator = Generator(model: model, tokenizer: tokenizer)
        for name in Self.names {
            let ref = try Fixtures.json("logits/\(name).json")
            XCTAssertEqual(try greedyContinuation(generator, prompt: [Int32](json: ref["ids"]), count: 24), [Int32](json: ref["greedy"]), name)
        }
    }

    /// `llama-perplexity -c 512` on GPL-3 gives 18.3001 on the f32 file.
    func testChunkedPerplexityOfGPL3() throws {
        let (model, tokenizer) = try Fixtures.model()
        let ids = tokenizer.encode(try Fixtures.bytes("tokenize/05-gpl3-full.txt"), addBOS: false)
        XCTAssertEqual(ids.count, 7639)
        let result = try Scorer(model: model).chunkedPerplexity(ids, chunk: 512)
        XCTAssertEqual(result.tokensScored, 3570)
        XCTAssertEqual(result.perplexity, 18.3001, accuracy: 0.01)
    }

    /// Quantized arithmetic against llama.cpp's own kernels on the Q4_1 file as stored (F16 KV;
    /// `scripts/make_quantized_reference.py`). With 8-bit activations a result depends on the
    /// order of summation: llama.cpp itself, fed the same text token by token instead of in
    /// batches, keeps the same top-1 at only 96.5% of the positions (max |Δlogit| 4.6). So this
    /// engine is held to that floor: its agreement with llama.cpp's batched run at least
    /// llama.cpp's own less one point, its largest logit difference no larger than llama.cpp's own.
    func testQuantizedArithmeticIsLlamaCppsOnTheFile() throws {
        let (model, tokenizer) = try Fixtures.model(.quantized)
        let generator = Generator(model: model, tokenizer: tokenizer)
        var agree = 0, compared = 0, worst: Float = 0, sameGreedy = 0
        var floorAgree = 0, floorCompared = 0, floorWorst: Float = 0
        for name in Self.names {
            let ref = try Fixtures.json("logits-quantized/\(name).json")
            let ids = [Int32](json: ref["ids"])
            let logits = try model.forward(ids, cache: model.makeCache(capacity: ids.count), logits: .all)
            for (p, entries) in (ref["topk"] as! [[[NSNumber]]]).enumerated() {
                let row = logits.row(p)
                if entries[0][1].floatValue - entries[1][1].floatValue >= 0.01 {
                    compared += 1
                    if Int(MainBrain.Sampler.argmax(row)) == entries[0][0].intValue { agree += 1 }
                }
                for e in entries { worst = max(worst, abs(row[row.startIndex + e[0].intValue] - e[1].floatValue)) }
            }
            let floor = ref["self"] as! [String: NSNumber]
            floorAgree += floor["same_top1"]!.intValue
            floorCompared += floor["compared"]!.intValue
            floorWorst = max(floorWorst, floor["max_abs_delta"]!.floatValue)
            if try greedyContinuation(generator, prompt: ids, count: 24) == [Int32](json: ref["greedy"]) { sameGreedy += 1 }
        }
        print("quantized arithmetic against llama.cpp on the file: top-1 \(agree)/\(compared), max |Δlogit| \(worst), "
              + "greedy continuations equal \(sameGreedy)/\(Self.names.count); llama.cpp against itself: top-1 \(floorAgree)/\(floorCompared), "
              + "max |Δlogit| \(floorWorst)")
        XCTAssertEqual(compared, floorCompared)
        XCTAssertGreaterThanOrEqual(agree, floorAgree - compared / 100, "top-1 agreement with llama.cpp, against its own")
        XCTAssertLessThanOrEqual(worst, floorWorst, "max |Δlogit| on llama.cpp's top 8, against its own")
    }

    /// With activations quantised as llama.cpp's CPU kernels quantise them, GPL-3's chunked
    /// perplexity is llama.cpp's own on the Q4_1 file (llama-cpp-python 0.3.36, F16 KV, batches of
    /// 512, as `scripts/make_quantized_reference.py` measured it), within the spread between
    /// llama.cpp's own batched and token-by-token runs.
    func testQuantizedArithmeticPerplexityIsLlamaCppsOnTheFile() throws {
        let (model, tokenizer) = try Fixtures.model(.quantized)
        let runs = try Fixtures.json("logits-quantized/perplexity.json")["runs"] as! [[String: NSNumber]]
        func reference(batch: Int) -> Double { runs.first { $0["batch"]!.intValue == batch }!["perplexity"]!.doubleValue }
        let batched = reference(batch: 512), single = reference(batch: 1)
        let ids = tokenizer.encode(try Fixtures.bytes("tokenize/05-gpl3-full.txt"), addBOS: false)
        let result = try Scorer(model: model).chunkedPerplexity(ids, chunk: 512)
        print("GPL-3 perplexity, quantized arithmetic: \(result.perplexity); llama.cpp \(batched) (token by token \(single))")
        XCTAssertEqual(result.perplexity, batched, accuracy: max(0.005, abs(batched - single)))
        XCTAssertGreaterThan(abs(result.perplexity - 18.3001), 0.03, "quantised arithmetic is not the f32 engine's")
    }
}
