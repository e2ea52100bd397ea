import Foundation
import XCTest
import MainBrain

final class TokenizerTests: XCTestCase {
    /// Every reference tokenization of llama.cpp for the default model, id for id.
    func testMatchesLlamaCppOnEveryReferenceFile() throws {
        let (_, tokenizer) = try Fixtures.model()
        let dir = Fixtures.url("tokenize")
        let inputs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".ids.json") }.sorted()
        XCTAssertEqual(inputs.count, 10)
        for name in inputs {
            let text = try Fixtures.bytes("tokenize/\(name)")
            let ref = try Fixtures.json("tokenize/\(name).ids.json")
            let ids = tokenizer.encode(text, parseSpecial: ref["special"] as! Bool, addBOS: false)
            XCTAssertEqual(ids, [Int32](json: ref["ids"]), name)
            // Decoding gives back the bytes (control tokens rendered as text when parsed).
            if !(ref["special"] as! Bool) {
                XCTAssertEqual(tokenizer.decode(ids), String(decoding: text, as: UTF8.self), name)
            }
        }
    }

    /// The qwen2 and llama-bpe pre-tokenizers against llama.cpp on tiny vocabularies.
    func testOtherPreTokenizersMatchLlamaCpp() throws {
        for name in ["qwen2", "llama-bpe"] {
            let tokenizer = try Tokenizer(gguf: GGUFFile(path: Fixtures.url("tiny/\(name).gguf").path))
            let ref = try Fixtures.json("tiny/\(name).json")
            for entry in ref["texts"] as! [[String: Any]] {
                let text = entry["text"] as! String
                XCTAssertEqual(tokenizer.encode(text, parseSpecial: entry["special"] as! Bool),
                               [Int32](json: entry["ids"]), "\(name): \(text.debugDescription)")
            }
        }
    }

    func testControlTokensOnlyWhenAsked() throws {
        let (_, tokenizer) = try Fixtures.model()
        let chat = "<|im_start|>user\nhi<|im_end|>"
        let parsed = tokenizer.encode(chat, parseSpecial: true)
        XCTAssertEqual(parsed.first, 1)
        XCTAssertEqual(parsed.last, 2)
        let plain = tokenizer.encode(chat, parseSpecial: false)
        XCTAssertFalse(plain.contains(1))
        XCTAssertFalse(plain.contains(2))
        XCTAssertEqual(tokenizer.decode(plain), chat)
        XCTAssertEqual(tokenizer.decode(parsed), "user\nhi", "control tokens are not rendered by default")
        XCTAssertEqual(tokenizer.decode(parsed, renderSpecial: true), chat)
        XCTAssertTrue(tokenizer.endOfGeneration.contains(2))
    }

    func testStreamingDetokenizerNeverSplitsACharacter() throws {
        let (_, tokenizer) = try Fixtures.model()
        let text = try String(decoding: Fixtures.bytes("tokenize/03-zh-gnupg-help.txt"), as: UTF8.self) + " 🙂👍🏽 naïve"
        let ids = tokenizer.encode(text)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var pieces: [String] = []
        var split = 0
        for id in ids {
            let piece = detokenizer.append(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"), "a piece holds a broken character")
            if tokenizer.bytes(of: id).count > 0 && piece.isEmpty { split += 1 }
            pieces.append(piece)
        }
        pieces.append(detokenizer.flush())
        XCTAssertEqual(pieces.joined(), text)
        XCTAssertGreaterThan(split, 0, "the text has characters spanning tokens; the test would prove nothing")
    }

    func testInvalidUTF8InputIsReplacedNotDropped() throws {
        let (_, tokenizer) = try Fixtures.model()
        let ids = tokenizer.encode([0x61, 0xFF, 0x62])
        XCTAssertEqual(tokenizer.decode(ids), "a\u{FFFD}b")
    }

    func testUnsupportedTokenizerIsAClearError() throws {
        var b = GGUFBuilder()
        b.metadata = [("tokenizer.ggml.model", .string("bert"))]
        let url = temporaryFile("wpm.gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try b.write(to: url)
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: url.path))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupportedModel("bert"))
            XCTAssertTrue("\(e)".contains("SentencePiece"), "\(e)")
        }
        // SentencePiece needs its scores.
        b.metadata = [("tokenizer.ggml.model", .string("llama")),
                      ("tokenizer.ggml.tokens", .array(type: 8, [.string("<unk>"), .string("a")]))]
        try b.write(to: url)
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: url.path))) { e in
            XCTAssertEqual(e as? TokenizerError, .missing("tokenizer.ggml.scores"))
        }
        b.metadata = [("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("mystery"))]
        try b.write(to: url)
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: url.path))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupportedPreTokenizer("mystery"))
        }
    }
}
