import Foundation
import XCTest
import MainBrain

final class GenerationTests: XCTestCase {
    func generator() throws -> Generator {
        let (model, tokenizer) = try Fixtures.model()
        return Generator(model: model, tokenizer: tokenizer)
    }

    func chatPrompt(_ g: Generator, _ question: String) throws -> [Int32] {
        let template = try ChatTemplate(source: g.model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: g.tokenizer)
        return g.tokenizer.encode(template.render([ChatMessage(role: "user", content: question)]), parseSpecial: true)
    }

    func testChatTemplateRendersSmolLM2Exactly() throws {
        let g = try generator()
        let template = try ChatTemplate(source: g.model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: g.tokenizer)
        // What the GGUF's Jinja template renders (checked with jinja2).
        XCTAssertEqual(template.render([ChatMessage(role: "user", content: "Hi")]),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                       + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(template.render([ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi")],
                                       addGenerationPrompt: false),
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
        let conversation = template.render([ChatMessage(role: "user", content: "First?"), ChatMessage(role: "assistant", content: "A."),
                                            ChatMessage(role: "user", content: "Who approves\nflights?")])
        XCTAssertEqual(template.lastUserMessage(inRendered: conversation).map { conversation[$0] }, "Who approves\nflights?")
        let decoded = g.tokenizer.decode(g.tokenizer.encode(conversation, parseSpecial: true), renderSpecial: true)
        XCTAssertEqual(template.lastUserMessage(inRendered: decoded).map { decoded[$0] }, "Who approves\nflights?")
        XCTAssertNil(template.lastUserMessage(inRendered: "plain text"))
        let bare = try ChatTemplate(source: nil, tokenizer: g.tokenizer)
        XCTAssertEqual(try Fixtures.bytes("logits/L1-chat-capital.txt"),
                       Array(bare.render([ChatMessage(role: "user", content: "What is the capital of France?")]).utf8))
        XCTAssertThrowsError(try ChatTemplate(source: "{{ bos_token }}[INST] {{ message }} [/INST]", tokenizer: g.tokenizer)) { e in
            XCTAssertTrue("\(e)".contains("none of them") && "\(e)".contains("'chatml', 'llama3', 'gemma'") && "\(e)".contains("chat_template"), "\(e)")
        }
        // Llama 3's template, recognised from its source and rendered as llama.cpp's built-in one
        // (BOS comes from the tokenizer).
        let llama3 = try ChatTemplate(source: "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                                      + " + message['content'] | trim + '<|eot_id|>' %}", tokenizer: g.tokenizer)
        XCTAssertEqual(llama3.format, .llama3)
        let rendered = llama3.render([ChatMessage(role: "system", content: "Be brief. "), ChatMessage(role: "user", content: "Hi")])
        XCTAssertEqual(rendered, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                       + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        XCTAssertEqual(llama3.lastUserMessage(inRendered: rendered).map { rendered[$0] }, "Hi")
        // An override must name a family whose turn tokens the vocabulary has.
        XCTAssertEqual(try ChatTemplate(source: "anything", tokenizer: g.tokenizer, override: .chatML).format, .chatML)
        XCTAssertThrowsError(try ChatTemplate(source: nil, tokenizer: g.tokenizer, override: .gemma)) { e in
            XCTAssertTrue("\(e)".contains("<start_of_turn>"), "\(e)")
        }
    }

    func testChatAnswersAndStopsAtEndOfTurn() throws {
        let g = try generator()
        var request = GenerationRequest(prompt: try chatPrompt(g, "What is the capital of France?"))
        request.sampling = .greedy
        request.maxTokens = 40
        let result = try g.generate(request)
        XCTAssertTrue(result.text.contains("Paris"), result.text)
        XCTAssertEqual(result.stopReason, .endOfGeneration)
        XCTAssertFalse(result.text.contains("<|im_end|>"))
    }

    func testSameSeedSameTextAndMaxTokens() throws {
        let g = try generator()
        var request = GenerationRequest(prompt: g.tokenizer.encode("Once upon a time"))
        request.maxTokens = 20
        request.stopAtEndOfGeneration = false
        request.sampling.temperature = 1.0
        request.sampling.topK = 0
        request.sampling.topP = 1
        request.sampling.minP = 0
        var texts: [String] = []
        for seed: UInt64 in [1, 1, 2, 3] {
            request.sampling.seed = seed
            let r = try g.generate(request)
            XCTAssertEqual(r.ids.count, 20)
            XCTAssertEqual(r.stopReason, .maxTokens)
            texts.append(r.text)
        }
        XCTAssertEqual(texts[0], texts[1])
        XCTAssertTrue(texts[0] != texts[2] || texts[0] != texts[3], "different seeds, same text three times")
    }

    func testSamplingFilters() {
        var logits = [Float](repeating: -10, count: 100)
        logits[7] = 5; logits[8] = 4.9; logits[9] = 1
        var p = SamplingParameters()
        p.temperature = 1; p.topK = 1; p.seed = 1
        var s = Sampler(p)
        for _ in 0..<20 { XCTAssertEqual(s.sample(logits[...], history: []), 7) }
        p.topK = 0; p.topP = 1; p.minP = 0.5
        s = Sampler(p)
        let seen = Set((0..<200).map { _ in s.sample(logits[...], history: []) })
        XCTAssertEqual(seen, [7, 8], "min-p keeps only tokens near the best")
        p.minP = 0; p.topP = 0.5
        s = Sampler(p)
        XCTAssertEqual(Set((0..<50).map { _ in s.sample(logits[...], history: []) }), [7])
        // Repetition penalty pushes a repeated token below its rival.
        p = .greedy; p.repetitionPenalty = 2
        s = Sampler(p)
        XCTAssertEqual(s.sample(logits[...], history: [7]), 8)

        // Top-k in one pass equals sorting the whole vocabulary (ties: the lower id first).
        var rng = SeededGenerator(seed: 3)
        let many = (0..<5000).map { _ in Float(rng.next() % 3000) / 7 }
        let sorted = many.indices.sorted { many[$0] > many[$1] || (many[$0] == many[$1] && $0 < $1) }
        XCTAssertEqual(Sampler.top(40, of: many).map(\.id), sorted.prefix(40).map { Int32($0) })
        XCTAssertEqual(Sampler.top(40, of: many).map(\.logit), sorted.prefix(40).map { many[$0] })
    }

    func testStopStringsAreCutAndNeverStreamed() throws {
        let g = try generator()
        var request = GenerationRequest(prompt: g.tokenizer.encode("one, two, three, four, five,"))
        request.sampling = .greedy
        request.maxTokens = 30
        let full = try g.generate(request)
        guard let range = full.text.range(of: "eight") else { return XCTFail("unexpected answer: \(full.text)") }
        request.stopStrings = ["eight", "never appears in the text"]
        var streamed = ""
        let cut = try g.generate(request, onText: { streamed += $0 })
        XCTAssertEqual(cut.text, String(full.text[..<range.lowerBound]))
        XCTAssertEqual(streamed, cut.text, "the stop string never reaches the stream")
        XCTAssertEqual(cut.stopReason, .endOfGeneration)
    }

    func testStreamingAndCancellation() async throws {
        let g = try generator()
        var request = GenerationRequest(prompt: g.tokenizer.encode("The history of the printing press"))
        request.sampling = .greedy
        request.maxTokens = 32
        request.stopAtEndOfGeneration = false
        let whole = try g.generate(request)
        var pieces: [String] = []
        for try await piece in g.stream(request) { pieces.append(piece) }
        XCTAssertEqual(pieces.joined(), whole.text)
        XCTAssertGreaterThan(pieces.count, 5)

        // Leaving the loop early stops generation.
        request.maxTokens = 100_000
        request.sampling.seed = 1
        var count = 0
        for try await _ in g.stream(request) {
            count += 1
            if count == 3 { break }
        }
        XCTAssertEqual(count, 3)
        // A cancelled generate returns promptly with the reason.
        let r = try g.generate(request, isCancelled: { true })
        XCTAssertEqual(r.stopReason, .cancelled)
        XCTAssertTrue(r.ids.isEmpty)
    }
}

final class ScoringTests: XCTestCase {
    /// Log-likelihoods with a shared prompt equal those of one full pass per candidate.
    func testLogLikelihoodSharesThePromptCorrectly() throws {
        let (model, tokenizer) = try Fixtures.model()
        let scorer = Scorer(model: model)
        let context = tokenizer.encode("Question: What is the capital of France?\nAnswer:")
        let candidates = [" Paris", " Berlin", " a city in Europe"].map { tokenizer.encode($0) }
        let scores = try scorer.logLikelihood(context: context, continuations: candidates)
        XCTAssertGreaterThan(scores[0].logProbability, scores[1].logProbability)
        for (candidate, score) in zip(candidates, scores) {
            let all = context + candidate
            let l = try model.forward(all, cache: model.makeCache(capacity: all.count), logits: .all)
            var expected = 0.0
            for i in context.count..<all.count { expected += Scorer.logProbability(l.row(i - 1), of: all[i]) }
            XCTAssertEqual(score.logProbability, expected, accuracy: 1e-3)
            XCTAssertEqual(score.tokenCount, candidate.count)
        }
    }

    func testSlidingWindowPerplexity() throws {
        let (model, tokenizer) = try Fixtures.model()
        let scorer = Scorer(model: model)
        let ids = Array(tokenizer.encode(String(decoding: try Fixtures.bytes("tokenize/05-gpl3-full.txt"), as: UTF8.self)).prefix(700))
        let r = try scorer.slidingPerplexity(ids, window: 256, stride: 128)
        XCTAssertEqual(r.tokensScored, ids.count - 1, "every token but the first is scored once")
        // A window over the whole text is one plain pass.
        let one = try scorer.slidingPerplexity(ids, window: 700, stride: 700)
        let l = try model.forward(ids, cache: model.makeCache(capacity: 700), logits: .all)
        let nll = (1..<ids.count).map { -Scorer.logProbability(l.row($0 - 1), of: ids[$0]) }
        XCTAssertEqual(one.meanNLL, nll.reduce(0, +) / Double(nll.count), accuracy: 1e-6)
        // Shorter context can only be as good or worse on average.
        XCTAssertGreaterThanOrEqual(r.perplexity, one.perplexity * 0.98)
        XCTAssertLessThan(r.perplexity, 100)
    }
}
