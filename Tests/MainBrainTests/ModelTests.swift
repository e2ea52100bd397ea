import Foundation
import XCTest
import Kernels
import MainBrain

final class ModelTests: XCTestCase {
    /// A minimal llama in F32 written with GGUFBuilder (d=8, 2 heads, 1 layer, vocab 16).
    func tinyLlama(skip: String? = nil, reshape: String? = nil, architecture: String = "llama") -> GGUFBuilder {
        var b = GGUFBuilder()
        b.metadata = [
            ("general.architecture", .string(architecture)),
            ("\(architecture).block_count", .u32(1)), ("\(architecture).embedding_length", .u32(8)),
            ("\(architecture).feed_forward_length", .u32(16)), ("\(architecture).attention.head_count", .u32(2)),
            ("\(architecture).context_length", .u32(32)), ("\(architecture).vocab_size", .u32(16)),
        ]
        var rng = SeededGenerator(seed: 3)
        func add(_ name: String, _ dims: [Int]) {
            guard name != skip else { return }
            let shape = name == reshape ? dims.reversed() + [1] : dims
            let values = (0..<dims.reduce(1, *)).map { _ in Float(Int(rng.next() % 200) - 100) / 400 }
            b.add(f32: name, dims: shape, values: values)
        }
        add("token_embd.weight", [8, 16]); add("output_norm.weight", [8])
        for n in ["attn_q", "attn_k", "attn_v", "attn_output"] { add("blk.0.\(n).weight", [8, 8]) }
        add("blk.0.attn_norm.weight", [8]); add("blk.0.ffn_norm.weight", [8])
        add("blk.0.ffn_gate.weight", [8, 16]); add("blk.0.ffn_up.weight", [8, 16]); add("blk.0.ffn_down.weight", [16, 8])
        return b
    }

    func load(_ b: GGUFBuilder) throws -> Model {
        let url = temporaryFile("tiny-llama.gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try b.write(to: url)
        return try Model(path: url.path)
    }

    func testMissingMisShapedAndUnsupported() throws {
        XCTAssertNoThrow(try load(tinyLlama()))
        XCTAssertThrowsError(try load(tinyLlama(skip: "blk.0.ffn_up.weight"))) { e in
            XCTAssertEqual(e as? ModelError, .missingTensor("blk.0.ffn_up.weight"))
            XCTAssertTrue("\(e)".contains("blk.0.ffn_up.weight"))
        }
        XCTAssertThrowsError(try load(tinyLlama(reshape: "blk.0.attn_k.weight"))) { e in
            guard case .tensorShape(name: "blk.0.attn_k.weight", _, _) = e as? ModelError else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try load(tinyLlama(architecture: "gpt2"))) { e in
            XCTAssertEqual(e as? ModelError, .unsupportedArchitecture("gpt2"))
        }
        var b = tinyLlama()
        b.metadata.removeAll { $0.0 == "llama.block_count" }
        XCTAssertThrowsError(try load(b)) { e in XCTAssertEqual(e as? ModelError, .missingKey("llama.block_count")) }
        // Rows of 8 stored as Q8_0 (blocks of 32): the matrices are read in place by whole-block
        // rows, and the reader refuses such a file before the model looks at it.
        b = tinyLlama()
        let embedding = b.tensors.firstIndex { $0.name == "token_embd.weight" }!
        b.tensors[embedding].type = 8
        b.tensors[embedding].data = [UInt8](repeating: 0, count: 8 * 16 / 32 * 34)
        XCTAssertThrowsError(try load(b)) { e in
            XCTAssertTrue("\(e)".contains("token_embd.weight") && "\(e)".contains("impossible dimensions"), "\(e)")
        }
        b = tinyLlama()
        b.metadata.append(("llama.attention.head_count_kv", .u32(3)))  // 2 heads cannot share 3 kv heads
        XCTAssertThrowsError(try load(b)) { e in
            guard case .badValue = e as? ModelError else { return XCTFail("\(e)") }
        }
    }

    /// What the engine would not compute is refused at load, never dropped: a tensor it does
    /// not read, a RoPE scaling type, softcapping, a mixture of experts.
    func testWhatTheEngineDoesNotComputeIsRefused() throws {
        var b = tinyLlama()
        b.add(f32: "blk.0.attn_output.bias", dims: [8], values: Array(repeating: 1, count: 8))
        XCTAssertThrowsError(try load(b)) { e in
            XCTAssertEqual(e as? ModelError, .unexpectedTensor("blk.0.attn_output.bias"))
            XCTAssertTrue("\(e)".contains("blk.0.attn_output.bias") && "\(e)".contains("different"), "\(e)")
        }
        // Llama 3's RoPE frequency factors are computed (they change the logits), and checked.
        let ids: [Int32] = [1, 5, 9, 2, 7]
        func logits(_ model: Model) throws -> [Float] { try model.forward(ids, cache: model.makeCache(), logits: .last).values }
        b = tinyLlama()
        b.add(f32: "rope_freqs.weight", dims: [2], values: [1, 1])
        XCTAssertEqual(try logits(load(b)), try logits(load(tinyLlama())), "factors of 1 change nothing")
        b = tinyLlama()
        b.add(f32: "rope_freqs.weight", dims: [2], values: [1, 8])
        XCTAssertNotEqual(try logits(load(b)), try logits(load(tinyLlama())))
        b = tinyLlama()
        b.add(f32: "rope_freqs.weight", dims: [2], values: [1, 0])
        XCTAssertThrowsError(try load(b)) { e in
            guard case .badValue(key: "rope_freqs.weight", _) = e as? ModelError else { return XCTFail("\(e)") }
        }
        for (key, value, shown) in [("llama.rope.scaling.type", GGUFBuilder.Value.string("yarn"), "yarn"),
                                    ("llama.attn_logit_softcapping", .f32(50), "50"),
                                    ("llama.expert_count", .u32(8), "8")] {
            b = tinyLlama()
            b.metadata.append((key, value))
            XCTAssertThrowsError(try load(b), key) { e in
                guard case .unsupportedFeature(key: key, _) = e as? ModelError else { return XCTFail("\(key): \(e)") }
                XCTAssertTrue("\(e)".contains(shown) && "\(e)".contains("does not implement"), "\(e)")
            }
        }
        // Keys that do not change the math load as before; linear RoPE scaling is computed.
        b = tinyLlama()
        b.metadata += [("llama.expert_count", .u32(0)), ("llama.rope.scaling.type", .string("linear")),
                       ("llama.rope.scaling.factor", .f32(4))]
        XCTAssertEqual(try load(b).config.ropeScale, 0.25)
    }

    func testContextLimitAndBadTokensAreClearErrors() throws {
        let model = try load(tinyLlama())
        let cache = model.makeCache()
        XCTAssertEqual(cache.capacity, 32)
        _ = try model.forward(Array(repeating: 1, count: 30), cache: cache)
        XCTAssertThrowsError(try model.forward([1, 2, 3], cache: cache)) { e in
            XCTAssertEqual(e as? ModelError, .contextFull(limit: 32, requested: 33))
        }
        XCTAssertEqual(cache.count, 30, "a refused call changes nothing")
        XCTAssertThrowsError(try model.forward([16], cache: cache)) { e in
            XCTAssertEqual(e as? ModelError, .tokenOutOfRange(id: 16, vocab: 16))
        }
        XCTAssertThrowsError(try model.forward([], cache: cache)) { e in XCTAssertEqual(e as? ModelError, .emptyInput) }
    }

    /// A model the machine cannot hold is refused before loading, with what it needs and what
    /// there is; the real model's requirement is its file, its cache and a bounded rest.
    func testAModelTooLargeForTheMachineIsRefusedWithTheNumbers() throws {
        let url = temporaryFile("tiny-llama.gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try tinyLlama().write(to: url)
        let gguf = try GGUFFile(path: url.path)
        XCTAssertThrowsError(try Model(gguf: gguf, availableMemory: 100 << 20)) { e in
            guard case let .insufficientMemory(needed, available) = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(available, 100 << 20)
            XCTAssertGreaterThan(needed.total, available)
            let text = "\(e)"
            XCTAssertTrue(text.contains("100 MiB available") && text.contains("KV cache for 32 tokens") && text.contains("smaller"), text)
        }
        XCTAssertNoThrow(try Model(gguf: gguf, availableMemory: 1 << 30))

        let real = try GGUFFile(path: try Fixtures.modelPath())
        let config = try ModelConfig(gguf: real)
        let needed = MemoryRequirement(gguf: real, config: config, contextTokens: 4096, kvPrecision: .f16, batch: Model.defaultBatchSize)
        XCTAssertEqual(needed.weights, real.file.bytes.count)
        XCTAssertEqual(needed.kvCache, 2 * 30 * 4096 * 192 * 2, "30 layers of f16 keys and values, 192 wide")
        XCTAssertLessThan(needed.working, 200 << 20)
        XCTAssertEqual(MemoryRequirement(gguf: real, config: config, contextTokens: 1 << 20, kvPrecision: .f32, batch: 512).contextTokens,
                       config.contextLength, "a cache is never longer than the model's context")

        // Sequences served at once each hold a cache: a count the memory cannot hold is refused with both figures.
        let eight = MemoryRequirement(gguf: real, config: config, contextTokens: 4096, kvPrecision: .f16, batch: 512, sequences: 8)
        XCTAssertEqual(eight.kvCache, 8 * needed.kvCache)
        XCTAssertThrowsError(try Model(gguf: real, contextTokens: 4096, sequences: 8, availableMemory: needed.total + needed.kvCache)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("KV cache for 8 sequences of 4096 tokens") && text.contains("slots"), text)
        }
    }

    /// Prefill in one batch, in several batches, and token by token give the same logits.
    func testIncrementalDecodingMatchesPrefill() throws {
        for arithmetic in [ProductArithmetic.exact, .quantized] {
        let (model, tokenizer) = try Fixtures.model(arithmetic)
        let ids = tokenizer.encode("The quick brown fox jumps over the lazy dog because it wants to.")
        let all = try model.forward(ids, cache: model.makeCache(capacity: 64), logits: .all)
        let cache = model.makeCache(capacity: 64)
        _ = try model.forward(Array(ids[..<5]), cache: cache, logits: .none)
        for (i, id) in ids.enumerated().dropFirst(5) {
            let step = try model.forward([id], cache: cache, logits: .last)
            let maxDelta = zip(step.row(0), all.row(i)).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(maxDelta, 2e-3, "\(arithmetic) position \(i)")
        }
        XCTAssertEqual(cache.count, ids.count)
        }
    }

    /// Taps see every position in the same pass; the last residual, normed and projected by the
    /// output head, reproduces the logits (so the tap holds the real hidden state).
    func testHiddenStateTaps() throws {
        let (model, tokenizer) = try Fixtures.model()
        let c = model.config
        let ids = tokenizer.encode("Hidden states are shared with the learning brain.")
        let recorder = HiddenStateRecorder(points: [.residual(layer: c.layers - 1), .ffnInput(layer: c.layers - 1), .residual(layer: 3)])
        let cache = model.makeCache(capacity: 64)
        let logits = try model.forward(Array(ids[..<4]), cache: cache, logits: .all, tap: recorder)
        let more = try model.forward(Array(ids[4...]), cache: cache, logits: .all, tap: recorder)
        for point in recorder.points { XCTAssertEqual(recorder.states[point]?.count, ids.count * c.dim, "\(point)") }
        XCTAssertNil(recorder.states[.ffnInput(layer: 0)], "only requested points are reported")

        // Recompute the logits of the last position from the tapped residual.
        let gguf = model.gguf
        func tensor(_ name: String) -> [Float] {
            let info = gguf.tensor(named: name)!
            var out = [Float](repeating: 0, count: info.elementCount)
            out.withUnsafeMutableBufferPointer { info.type.dequantize(gguf.data(of: info), into: $0.baseAddress!, count: $0.count) }
            return out
        }
        let norm = tensor("output_norm.weight"), head = tensor("token_embd.weight")
        let h = Array(recorder.row(.residual(layer: c.layers - 1), ids.count - 1))
        let rms = (h.map { Double($0 * $0) }.reduce(0, +) / Double(c.dim) + Double(c.rmsEps)).squareRoot()
        let normed = (0..<c.dim).map { Float(Double(h[$0]) / rms) * norm[$0] }
        let lastRow = more.row(more.rows - 1)
        for token in [0, 1, 100, 4000, 49151] {
            var dot = 0.0
            for k in 0..<c.dim { dot += Double(normed[k]) * Double(head[token * c.dim + k]) }
            XCTAssertEqual(Float(dot), lastRow[lastRow.startIndex + token], accuracy: 1e-3)
        }
        XCTAssertEqual(logits.rows, 4)

        // The FFN input is RMS-normed: its rows differ from the residual's.
        XCTAssertNotEqual(Array(recorder.row(.ffnInput(layer: c.layers - 1), 0)), Array(recorder.row(.residual(layer: c.layers - 1), 0)))
    }

    /// A pass through layer 3 only taps what the full pass taps there, and its cache refuses to
    /// serve a deeper pass (it holds no keys and values beyond layer 3).
    func testAPartialPassTapsTheSameAndItsCacheRefusesDeeperOnes() throws {
        let (model, tokenizer) = try Fixtures.model()
        let ids = tokenizer.encode("Hidden states are shared with the learning brain.")
        let full = HiddenStateRecorder(points: [.residual(layer: 3)]), partial = HiddenStateRecorder(points: [.residual(layer: 3)])
        _ = try model.forward(ids, cache: model.makeCache(capacity: 64), logits: .none, tap: full)
        let shallow = model.makeCache(capacity: 64)
        _ = try model.forward(Array(ids[..<5]), cache: shallow, logits: .none, tap: partial, throughLayer: 3)
        _ = try model.forward(Array(ids[5...]), cache: shallow, logits: .none, tap: partial, throughLayer: 3)
        XCTAssertEqual(partial.states[.residual(layer: 3)], full.states[.residual(layer: 3)])
        XCTAssertEqual(shallow.depth, 4)
        XCTAssertThrowsError(try model.forward(ids[..<1].map { $0 }, cache: shallow, logits: .last)) { error in
            XCTAssertEqual(error as? ModelError, .shallowCache(layers: 4))
        }
        XCTAssertThrowsError(try model.forwardBranches([[ids[0]]], cache: shallow))
        shallow.clear()
        XCTAssertNoThrow(try model.forward(ids, cache: shallow, logits: .last), "a cleared cache is whole again")
    }

    /// Branches evaluated together equal each branch evaluated alone after the prefix, also when
    /// they are split into several batches.
    func testBranchesSeeOnlyThePrefixAndThemselves() throws {
        for arithmetic in [ProductArithmetic.exact, .quantized] {
        let (model, tokenizer) = try Fixtures.model(arithmetic)
        let prefix = tokenizer.encode("Question: which animal barks?\nAnswer:")
        let branches = [" the dog", " a cat that meows loudly", " cows"].map { tokenizer.encode($0) }
        for batch in [512, 8] {
            model.batchSize = batch
            defer { model.batchSize = 512 }
            let cache = model.makeCache(capacity: 128)
            _ = try model.forward(prefix, cache: cache, logits: .none)
            let together = try model.forwardBranches(branches, cache: cache)
            XCTAssertEqual(cache.count, prefix.count, "the cache keeps only the prefix")
            for (b, logits) in zip(branches, together) {
                let alone = try model.forward(prefix + b, cache: model.makeCache(capacity: 128), logits: .from(prefix.count))
                XCTAssertEqual(logits.rows, b.count)
                let worst = zip(logits.values, alone.values).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 2e-3, "\(arithmetic) batch \(batch)")
            }
        }
        }
    }
}
