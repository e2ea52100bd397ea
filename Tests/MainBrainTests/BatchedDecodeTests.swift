import Foundation
import Kernels
import MainBrain
import XCTest

/// Continuous batching: a sequence decoded together with others gets, bit for bit, the logits
/// and tokens it gets alone, whoever joins or leaves (the kernels keep every output's order of
/// summation whatever the batch). Needs the default model and Gemma 3 270M.
final class BatchedDecodeTests: XCTestCase {
    static let prompts = [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "def fibonacci(n):\n    ",
        "Water boils at",
        "Le chat est",
    ]

    /// Each prompt's greedy rows alone (prompt, then `steps` decoded tokens), against all of them
    /// decoded together: sequence i joins at step i, and sequence 1 leaves half way.
    func checkAloneEqualsTogether(_ model: Model, _ tokenizer: Tokenizer, prompts: [[Int32]], steps: Int,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        func argmax(_ row: [Float]) -> Int32 { Int32(row.indices.max { row[$0] < row[$1] }!) }
        var alone: [[[Float]]] = []
        for prompt in prompts {
            let cache = model.makeCache(capacity: prompt.count + steps + 1)
            var rows = [Array(try model.forward(prompt, cache: cache).row(0))]
            for _ in 0..<steps { rows.append(Array(try model.forward([argmax(rows.last!)], cache: cache).row(0))) }
            alone.append(rows)
        }
        let length = prompts.indices.map { $0 == 1 ? steps / 2 : steps }
        var together: [[[Float]]] = Array(repeating: [], count: prompts.count)
        let caches = prompts.map { model.makeCache(capacity: $0.count + steps + 1) }
        for step in 0..<(steps + prompts.count) {
            if step < prompts.count { together[step].append(Array(try model.forward(prompts[step], cache: caches[step]).row(0))) }
            let batch = prompts.indices.filter { !together[$0].isEmpty && together[$0].count <= length[$0] }
            guard !batch.isEmpty else { continue }
            let logits = try model.decode(batch.map { (argmax(together[$0].last!), caches[$0]) })
            for (row, i) in batch.enumerated() { together[i].append(Array(logits.row(row))) }
        }
        for i in prompts.indices {
            XCTAssertEqual(together[i].count, length[i] + 1, file: file, line: line)
            for (s, row) in together[i].enumerated() where row != alone[i][s] {
                let delta = zip(row, alone[i][s]).map { abs($0 - $1) }.max()!
                return XCTFail("sequence \(i), step \(s): batched logits differ from alone by up to \(delta)", file: file, line: line)
            }
        }
    }

    func testDefaultModelExact() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        try checkAloneEqualsTogether(model, tokenizer, prompts: Self.prompts.map { tokenizer.encode($0) }, steps: 12)
    }

    /// Mixed arithmetic quantises decoded rows: a batch of decoded rows must be quantised too,
    /// not computed as a prompt.
    func testDefaultModelMixed() throws {
        let (model, tokenizer) = try Fixtures.model(.mixed)
        try checkAloneEqualsTogether(model, tokenizer, prompts: Self.prompts.map { tokenizer.encode($0) }, steps: 12)
    }

    /// Gemma 3: sliding-window layers per sequence; one prompt decodes past the 512-position window.
    func testGemmaSlidingWindow() throws {
        let (model, tokenizer) = try Fixtures.gemma()
        let long = tokenizer.encode(String(repeating: "The river runs past the mill and under the old stone bridge. ", count: 40))
        XCTAssertGreaterThan(long.count, 512)
        let prompts = [tokenizer.encode(Self.prompts[0]), Array(long.prefix(505)), tokenizer.encode(Self.prompts[2])]
        try checkAloneEqualsTogether(model, tokenizer, prompts: prompts, steps: 10)
    }

    /// Qwen3 (Q/K norms, heads wider than dim / heads) with its real tokenizer, exact and mixed.
    func testSyntheticQwen3() throws {
        let gguf = try GGUFFile(path: try SyntheticModelTests.modelPath("qwen3"))
        let tokenizer = try Tokenizer(gguf: gguf)
        for arithmetic in [ProductArithmetic.exact, .mixed] {
            let model = try Model(gguf: gguf, arithmetic: arithmetic, contextTokens: 1024)
            try checkAloneEqualsTogether(model, tokenizer, prompts: Self.prompts.map { tokenizer.encode($0) }, steps: 8)
        }
    }

    /// Qwen2.5-1.5B's width (two of its layers, Q8_0 and Q4_1 blocks, q/k/v biases, 12 heads
    /// sharing 2 KV heads) with its real tokenizer, exact and mixed: rows of 1,536 and 8,960.
    func testSyntheticQwen25At15BWidth() throws {
        let gguf = try GGUFFile(path: try SyntheticModelTests.modelPath("qwen2.5-1.5b"))
        let tokenizer = try Tokenizer(gguf: gguf)
        for arithmetic in [ProductArithmetic.exact, .mixed] {
            let model = try Model(gguf: gguf, arithmetic: arithmetic, contextTokens: 1024)
            XCTAssertEqual(model.config.dim, 1536)
            try checkAloneEqualsTogether(model, tokenizer, prompts: Self.prompts.map { tokenizer.encode($0) }, steps: 8)
        }
    }

    /// Sessions stepped together (`Generator.step`) give each request the reply it gets alone,
    /// with stop strings and a request that ends first.
    func testSessionsTogetherMatchAlone() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        let generator = Generator(model: model, tokenizer: tokenizer)
        let requests = Self.prompts.enumerated().map { i, text in
            var r = GenerationRequest(prompt: tokenizer.encode(text))
            r.maxTokens = i == 3 ? 4 : 16
            r.sampling = .greedy
            if i == 1 { r.stopStrings = [","] }
            return r
        }
        let alone = try requests.map { try generator.generate($0) }
        var pieces = Array(repeating: "", count: requests.count)
        let sessions = requests.indices.map { i in generator.session(requests[i]) { pieces[i] += $0 } }
        for (i, session) in sessions.enumerated() {
            try session.prefill(model: model)
            if i % 2 == 1 { try generator.step(sessions) }   // later ones join while others decode
        }
        while sessions.contains(where: { !$0.isFinished }) { try generator.step(sessions) }
        for i in requests.indices {
            XCTAssertEqual(sessions[i].result.ids, alone[i].ids, "request \(i)")
            XCTAssertEqual(sessions[i].result.text, alone[i].text, "request \(i)")
            XCTAssertEqual(pieces[i], alone[i].text, "request \(i): streamed pieces")
            XCTAssertEqual(sessions[i].result.stopReason, alone[i].stopReason, "request \(i)")
        }
    }

    /// A prompt evaluated in chunks (so others' decode steps can run between them) gives the
    /// logits it gives in one batch, bit for bit.
    func testChunkedPrefillEqualsWhole() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        let prompt = tokenizer.encode(String(repeating: "The river runs past the mill and under the old stone bridge. ", count: 30))
        XCTAssertGreaterThan(prompt.count, 300)
        let whole = try model.forward(prompt, cache: model.makeCache(capacity: prompt.count), logits: .all)
        var chunks = 0
        model.chunking = .init(rows: { 100 }, between: { chunks += 1 })
        defer { model.chunking = nil }
        let chunked = try model.forward(prompt, cache: model.makeCache(capacity: prompt.count), logits: .all)
        XCTAssertEqual(chunks, (prompt.count - 1) / 100)
        XCTAssertTrue(chunked.values == whole.values, "chunked prefill differs")
    }

    func testDecodeRefusesWhatForwardRefuses() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        let full = model.makeCache(capacity: 3)
        _ = try model.forward(tokenizer.encode("one two three").prefix(3).map { $0 }, cache: full)
        XCTAssertThrowsError(try model.decode([(1, full)])) { error in
            guard case ModelError.contextFull = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try model.decode([(Int32(model.config.vocabSize), model.makeCache(capacity: 4))]))
        XCTAssertThrowsError(try model.decode([]))
    }
}
