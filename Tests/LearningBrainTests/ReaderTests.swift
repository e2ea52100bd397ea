import Foundation
import LearningBrain
import MainBrain
import XCTest

/// The reader: where it looks (layout), what it may say (whole words), how it ships (its record),
/// and joint decoding that copies its span into the reply. Needs the default model (`make model`).
final class ReaderTests: XCTestCase {
    static let recalled = [
        KnowledgeContext.Recalled(title: "handbook.txt (Kitchen › Coffee machine)",
                                  text: "The coffee machine is descaled every second Tuesday (Bogdan Ilic).\nThe fridge is cleared on Fridays (Ana Horvat)."),
        KnowledgeContext.Recalled(title: "notes/release-15-11.txt (Release 15.11 › Changes)",
                                  text: "- Fix handling of pending inserts (Etsuro Fujita)"),
    ]
    static let question = "Who descales the coffee machine?"

    func load() throws -> (Model, Tokenizer, ChatTemplate) {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: gguf)
        let template = try ChatTemplate(source: gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        return (try Model(gguf: gguf), tokenizer, template)
    }

    func prompt(_ tokenizer: Tokenizer, _ template: ChatTemplate, question: String = question) -> [Int32] {
        let text = KnowledgeContext.userText(Self.recalled, question: question)!
        return tokenizer.encode(template.render([ChatMessage(role: "user", content: text)]), parseSpecial: true)
    }

    func testLayoutFindsEveryPassageLineAndTheQuestion() throws {
        let (_, tokenizer, template) = try load()
        let ids = prompt(tokenizer, template)
        let layout = try XCTUnwrap(ReaderLayout(prompt: ids, tokenizer: tokenizer, recalled: Self.recalled, question: Self.question))
        XCTAssertEqual(layout.lines.map { layout.text($0.bytes) }, [
            "Kitchen › Coffee machine",
            "The coffee machine is descaled every second Tuesday (Bogdan Ilic).",
            "The fridge is cleared on Fridays (Ana Horvat).",
            "Release 15.11 › Changes",
            "- Fix handling of pending inserts (Etsuro Fujita)",
        ], "titles are read without the document's path")
        XCTAssertEqual(layout.lines.map(\.isTitle), [true, false, false, true, false])
        XCTAssertEqual(layout.lines.map(\.passage), [0, 0, 0, 1, 1])
        XCTAssertEqual(tokenizer.decode(Array(ids[layout.question])).trimmingCharacters(in: .whitespaces), Self.question)
        // Every candidate lies inside its line, in prompt order.
        for c in layout.candidates { XCTAssertTrue(layout.lines[c.line].bytes.contains(c.bytes.lowerBound)) }
        XCTAssertEqual(layout.candidates.map(\.token), layout.candidates.map(\.token).sorted())
        // A prompt without the passages has no layout (the reader stays out).
        XCTAssertNil(ReaderLayout(prompt: tokenizer.encode("Who descales the coffee machine?"), tokenizer: tokenizer,
                                  recalled: Self.recalled, question: Self.question))
    }

    func testSpansWidenToWholeWords() throws {
        let (_, tokenizer, template) = try load()
        let layout = try XCTUnwrap(ReaderLayout(prompt: prompt(tokenizer, template), tokenizer: tokenizer, recalled: Self.recalled,
                                                question: Self.question))
        func snap(_ needle: String, in line: Int, keep: Int) -> String {
            let bytes = layout.lines[line].bytes
            let at = ReaderLayout.find(Array(needle.utf8), in: layout.rendered, from: bytes.lowerBound)!
            return layout.text(layout.snapped(at..<at + keep, line: line))
        }
        XCTAssertEqual(snap("15.11", in: 3, keep: 4), "15.11", "a version is never cut to 15.1")
        XCTAssertEqual(snap("Tuesday", in: 1, keep: 2), "Tuesday")
        XCTAssertEqual(snap("Bogdan", in: 1, keep: 3), "Bogdan")
        XCTAssertEqual(snap("pending", in: 4, keep: 3), "pending")
        XCTAssertEqual(ReaderLayout.trimmed("Bogdan Ilic)."), "Bogdan Ilic")
        XCTAssertEqual(ReaderLayout.trimmed("f(x)"), "f(x)")
        XCTAssertEqual(ReaderLayout.trimmed("（张三）。"), "张三")
        XCTAssertEqual(snap("(Bogdan", in: 1, keep: 1), "(", "punctuation alone stays as it is")
    }

    /// Hand-made weights: only lexical features count. The start prefers the first word inside
    /// parentheses on the line that best matches the question, the end the last; the null scores `nullBias`.
    func handMade(_ model: Model, nullBias: Float, sure: Float = 0.01) -> ReaderWeights {
        let dim = model.config.dim, features = dim + ReaderFeatures.lexicalCount, rank = 1
        func head(start: Bool) -> ReaderHead {
            var w = [Float](repeating: 0, count: features)
            w[dim + 2] = 6       // the best line
            w[dim + 8] = 6       // inside parentheses
            w[dim + (start ? 11 : 12)] = 3   // a word's first / last token
            w[dim + 13] = start ? -2 : 2     // earlier / later in the line
            var null = [Float](repeating: 0, count: dim + ReaderFeatures.nullLexicalCount)
            null[dim + 1] = nullBias
            return ReaderHead(w: w, a: .init(repeating: 0, count: rank * features), b: .init(repeating: 0, count: rank * (dim + 1)),
                              nullWeights: null)
        }
        return ReaderWeights(modelSHA256: String(repeating: "0", count: 64), shape: FittedKeyspace.shape(model.config), layer: 10, dim: dim,
                             rank: rank, maxSpanTokens: 12, mean: .init(repeating: 0, count: dim), std: .init(repeating: 1, count: dim),
                             start: head(start: true), end: head(start: false), sure: sure, silent: 0.5, fit: [:])
    }

    /// `make reader` ships a reader for the default model's file, found by its shape and digest;
    /// another file of the same shape gets none.
    func testTheDefaultModelShipsAReader() throws {
        let (model, _, _) = try load()
        let shape = FittedKeyspace.shape(model.config)
        let shipped = try XCTUnwrap(ReaderWeights.shipped(forShape: shape) { DefaultModel.sha256 })
        XCTAssertEqual(shipped.dim, model.config.dim)
        XCTAssertGreaterThan(shipped.sure, 0)
        XCTAssertNil(ReaderWeights.shipped(forShape: shape) { String(repeating: "f", count: 64) })
        XCTAssertNil(ReaderWeights.shipped(forShape: "llama layers=1 dim=8 ffn=8 vocab=8") { XCTFail("no file is hashed"); return nil })
    }

    func testWeightsRoundTripThroughTheirRecord() throws {
        let (model, _, _) = try load()
        let weights = handMade(model, nullBias: 1.5)
        XCTAssertEqual(try ReaderWeights(json: weights.json()), weights)
        var foreign = try XCTUnwrap(JSONSerialization.jsonObject(with: weights.json()) as? [String: Any])
        foreign["format"] = "twinbrain.reader/0"
        XCTAssertThrowsError(try ReaderWeights(json: JSONSerialization.data(withJSONObject: foreign)))
        foreign["format"] = ReaderWeights.format
        foreign["mean"] = "AAAA"
        XCTAssertThrowsError(try ReaderWeights(json: JSONSerialization.data(withJSONObject: foreign)), "a truncated array is refused")
    }

    func generate(_ model: Model, _ tokenizer: Tokenizer, _ template: ChatTemplate, reader: ReaderWeights, question: String = question,
                  after: ReadingPredictor.AfterSpan = .none) throws -> (String, ReadingPredictor) {
        let predictor = ReadingPredictor(model: model, tokenizer: tokenizer, reader: Reader(weights: reader), inner: nil,
                                         recalled: Self.recalled, question: question)
        predictor.afterSpan = after
        var request = GenerationRequest(prompt: prompt(tokenizer, template, question: question))
        request.maxTokens = 24
        request.sampling = .greedy
        request.stopAtEndOfGeneration = true
        let result = try Generator(model: model, tokenizer: tokenizer).generate(request, predictor: predictor)
        return (result.text, predictor)
    }

    func testASureSpanIsStatedVerbatim() throws {
        let (model, tokenizer, template) = try load()
        let (text, predictor) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: -20))
        guard case let .stated(span) = predictor.decision else { return XCTFail("not stated: \(predictor.decision)") }
        XCTAssertEqual(span.text, "Bogdan Ilic")
        XCTAssertEqual(span.passage, 0)
        XCTAssertEqual(span.line, "The coffee machine is descaled every second Tuesday (Bogdan Ilic).")
        XCTAssertEqual(text, "Bogdan Ilic", "the span, then the end of the turn")
    }

    func testAfterTheSpanTheMainBrainMayGoOnToTheEndOfItsLine() throws {
        let (model, tokenizer, template) = try load()
        let (text, _) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: -20), after: .line)
        XCTAssertTrue(text.hasPrefix("Bogdan Ilic"), text)
        XCTAssertGreaterThan(text.count, "Bogdan Ilic".count, "the main brain's own words follow the span")
        XCTAssertFalse(text.contains("\n"), "to the end of the line: \(text)")
    }

    func testWhenTheNullWinsTheReplySaysTheDocumentsDoNotSay() throws {
        let (model, tokenizer, template) = try load()
        let (text, predictor) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: 40, sure: 0.99),
                                             question: "Who waters the office plants?")
        guard case .silent = predictor.decision else { return XCTFail("not silent: \(predictor.decision)") }
        XCTAssertEqual(text, "The documents do not say.")
        // A line holding the question's words keeps the reply from saying so, whatever the null head says.
        let (_, matched) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: 40, sure: 0.99))
        guard case let .unsure(span) = matched.decision else { return XCTFail("not unsure: \(matched.decision)") }
        XCTAssertGreaterThanOrEqual(span?.bestLineShare ?? 0, Reader.silenceLineShare)
        let (zh, _) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: 40, sure: 0.99), question: "谁负责给咖啡机除垢？")
        XCTAssertEqual(zh, ReadingPredictor.silence(for: "谁负责给咖啡机除垢？"))
    }

    func testUnsureLeavesTheReplyToTheMainBrain() throws {
        let (model, tokenizer, template) = try load()
        let (text, predictor) = try generate(model, tokenizer, template, reader: handMade(model, nullBias: -20, sure: 1.01))
        guard case .unsure = predictor.decision else { return XCTFail("not unsure: \(predictor.decision)") }
        var request = GenerationRequest(prompt: prompt(tokenizer, template))
        request.maxTokens = 24
        request.sampling = .greedy
        request.stopAtEndOfGeneration = true
        XCTAssertEqual(text, try Generator(model: model, tokenizer: tokenizer).generate(request).text, "exactly the main brain's reply")
    }
}
