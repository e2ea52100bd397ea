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

    /// Prompts admitted together share passes (`Model.prefill`): each one's last row, and the
    /// decode step after it, equal what it gets alone, bit for bit, in every arithmetic, whole
    /// or cut into chunks, with prompts of 16 rows or fewer (row dots in the exact arithmetic)
    /// among them and one continuing a cache that already holds a prefix.
    func checkPromptsTogetherEqualAlone(_ model: Model, _ tokenizer: Tokenizer, _ arithmetic: ProductArithmetic,
                                        file: StaticString = #filePath, line: UInt = #line) throws {
        let text = tokenizer.encode(String(repeating: "The river runs past the mill and under the old stone bridge. ", count: 30))
        let prefixed = 40
        let prompts = [5, 17, 18, 45, 130, 290, 16, 60].enumerated().map { i, n in Array(text[(i * 7)..<(i * 7 + n)]) }
        func argmax(_ row: ArraySlice<Float>) -> Int32 { Int32(row.indices.max { row[$0] < row[$1] }! - row.startIndex) }
        func fresh(_ i: Int) throws -> KVCache {
            let cache = model.makeCache(capacity: prefixed + prompts[i].count + 2)
            if i == 3 { _ = try model.forward(Array(text[200..<(200 + prefixed)]), cache: cache, logits: .none) }
            return cache
        }
        var alone: [[Float]] = [], next: [[Float]] = []
        for i in prompts.indices {
            let cache = try fresh(i)
            let row = try model.forward(prompts[i], cache: cache).row(0)
            alone.append(Array(row))
            next.append(Array(try model.forward([argmax(row)], cache: cache).row(0)))
        }
        for chunkRows in [nil, 100] {
            var passes = 0
            model.chunking = chunkRows.map { rows in .init(rows: { rows }, between: { passes += 1 }) }
            defer { model.chunking = nil }
            let caches = try prompts.indices.map(fresh)
            let together = try model.prefill(prompts.indices.map { (prompts[$0], caches[$0]) })
            XCTAssertEqual(together.rows, prompts.count, file: file, line: line)
            let steps = try model.decode(prompts.indices.map { (argmax(together.row($0)), caches[$0]) })
            for i in prompts.indices {
                XCTAssertTrue(Array(together.row(i)) == alone[i], "\(arithmetic) chunks \(chunkRows ?? 0): prompt \(i) (\(prompts[i].count) tokens) differs from alone", file: file, line: line)
                XCTAssertTrue(Array(steps.row(i)) == next[i], "\(arithmetic) chunks \(chunkRows ?? 0): the step after prompt \(i) differs", file: file, line: line)
            }
            // 560 rows shared in passes of at most 100 rows: 6 passes (alone, the 130 and 290 rows would take 3).
            if chunkRows != nil { XCTAssertEqual(passes, 5, file: file, line: line) }
        }
    }

    func testPromptsTogetherEqualAlone() throws {
        for arithmetic in [ProductArithmetic.exact, .mixed, .quantized] {
            let (model, tokenizer) = try Fixtures.model(arithmetic)
            try checkPromptsTogetherEqualAlone(model, tokenizer, arithmetic)
        }
    }

    func testPromptsTogetherEqualAloneAtQwen25Width() throws {
        let gguf = try GGUFFile(path: try SyntheticModelTests.modelPath("qwen2.5-1.5b"))
        try checkPromptsTogetherEqualAlone(try Model(gguf: gguf, arithmetic: .exact, contextTokens: 1024), try Tokenizer(gguf: gguf), .exact)
    }

    /// Sessions started together (`Generator.prefill`) reply as they do alone; one whose prompt
    /// does not fit its cache fails alone.
    func testSessionsStartedTogetherMatchAlone() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        let generator = Generator(model: model, tokenizer: tokenizer)
        let requests = (Self.prompts + [String(repeating: "Tell me about the old stone bridge over the river. ", count: 3)]).map { text in
            var r = GenerationRequest(prompt: tokenizer.encode(text))
            r.maxTokens = 12
            r.sampling = .greedy
            return r
        }
        let alone = try requests.map { try generator.generate($0) }
        let sessions = requests.map { generator.session($0) }
        let tooLong = generator.session(requests[0], cache: model.makeCache(capacity: 2))
        let errors = generator.prefill(sessions + [tooLong])
        XCTAssertTrue(errors.dropLast().allSatisfy { $0 == nil })
        guard case ModelError.contextFull? = errors.last! else { return XCTFail("\(String(describing: errors.last!))") }
        while sessions.contains(where: { !$0.isFinished }) { try generator.step(sessions) }
        for i in requests.indices { XCTAssertEqual(sessions[i].result.ids, alone[i].ids, "request \(i)") }
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

/// Prefix reuse: a conversation's turns, each with the keys and values of the turns before kept
/// (`PrefixCache`), get the replies they get evaluated whole, bit for bit, in every arithmetic.
final class PrefixCacheTests: XCTestCase {
    func testConversationTurnsReusingEarlierTurnsAnswerAsEvaluatedWhole() throws {
        for arithmetic in [ProductArithmetic.exact, .quantized, .mixed] {
            let (model, tokenizer) = try Fixtures.model(arithmetic)
            let generator = Generator(model: model, tokenizer: tokenizer)
            let template = try ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
            let prefixes = PrefixCache(model: model, byteLimit: 256 << 20)
            func answer(_ messages: [ChatMessage], reusing: PrefixCache?) throws -> GenerationResult {
                var request = GenerationRequest(prompt: tokenizer.encode(template.render(messages), parseSpecial: true))
                request.maxTokens = 20
                request.sampling.temperature = 0
                let session = generator.session(request)
                try session.prefill(model: model, prefixes: reusing)
                while !session.isFinished { try generator.step([session]) }
                reusing?.keep(session)
                return session.result
            }
            var messages = [ChatMessage(role: "system", content: "You answer questions about the office in one sentence."),
                            ChatMessage(role: "user", content: "Where is the canteen, and when does it serve lunch on weekdays?")]
            var reusedBefore = 0
            for (turn, next) in ["And what does it serve on Fridays?", "Who maintains the coffee machine?", "Thanks!"].enumerated() {
                // The prompt's last row after a reused prefix is the row evaluated whole, to the bit.
                let prompt = tokenizer.encode(template.render(messages), parseSpecial: true)
                let cache = model.makeCache(capacity: prompt.count)
                let kept = prefixes.restore(prompt, into: cache)
                XCTAssertEqual(Array(try model.forward(Array(prompt[kept...]), cache: cache).row(0)),
                               Array(try model.forward(prompt, cache: model.makeCache(capacity: prompt.count)).row(0)), "\(arithmetic) turn \(turn)")
                let whole = try answer(messages, reusing: nil)
                let reused = try answer(messages, reusing: prefixes)
                XCTAssertEqual(reused.reusedPromptTokens, kept)
                XCTAssertEqual(reused.ids, whole.ids, "\(arithmetic) turn \(turn)")
                XCTAssertEqual(reused.text, whole.text, "\(arithmetic) turn \(turn)")
                if turn > 0 {
                    XCTAssertGreaterThan(reused.reusedPromptTokens, reusedBefore, "\(arithmetic) turn \(turn): the earlier turns are reused")
                    XCTAssertGreaterThan(reused.promptTokens - reused.reusedPromptTokens, QuantizedProducts.exactRowsPerDot - (arithmetic == .quantized ? 16 : 0))
                }
                reusedBefore = reused.reusedPromptTokens
                messages += [ChatMessage(role: "assistant", content: reused.text), ChatMessage(role: "user", content: next)]
            }
            XCTAssertGreaterThan(prefixes.count, 0)
            XCTAssertLessThanOrEqual(prefixes.bytes, prefixes.byteLimit)
        }
    }

    /// Kept prompts stay within their memory, the least recently used going first; a prompt
    /// that only repeats an earlier one's first tokens still evaluates more than 16 rows in the
    /// exact arithmetic (the row-dot path would give other bits).
    func testKeptPromptsStayWithinTheirMemory() throws {
        let (model, tokenizer) = try Fixtures.model(.exact)
        let generator = Generator(model: model, tokenizer: tokenizer)
        let text = String(repeating: "The river runs past the mill and under the old stone bridge. ", count: 8)
        let prompt = tokenizer.encode(text)
        let oneEntry = KVCache.bytes(config: model.config, positions: prompt.count + 4, precision: model.kvPrecision)
        let prefixes = PrefixCache(model: model, byteLimit: oneEntry * 2 + oneEntry / 2)
        func run(_ prompt: [Int32]) throws -> GenerationResult {
            var request = GenerationRequest(prompt: prompt)
            request.maxTokens = 4
            request.sampling.temperature = 0
            request.stopAtEndOfGeneration = false
            let session = generator.session(request)
            try session.prefill(model: model, prefixes: prefixes)
            while !session.isFinished { try generator.step([session]) }
            prefixes.keep(session)
            return session.result
        }
        let names = ["Alpha", "Bravo", "Charlie", "Delta"]
        for name in names { _ = try run(tokenizer.encode(name + ": " + text)) }
        XCTAssertEqual(prefixes.count, 2, "two entries fit")
        XCTAssertLessThanOrEqual(prefixes.bytes, prefixes.byteLimit)
        // The oldest two went: Alpha's is evaluated whole, Delta's reuses all it may.
        XCTAssertEqual(try run(tokenizer.encode("Alpha: " + text)).reusedPromptTokens, 0)
        let again = try run(tokenizer.encode("Delta: " + text) + tokenizer.encode(" Then"))
        XCTAssertEqual(again.reusedPromptTokens, again.promptTokens - QuantizedProducts.exactRowsPerDot - 1)
    }
}
