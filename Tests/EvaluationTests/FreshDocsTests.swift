import Foundation
import XCTest
import Evaluation
import MainBrain

final class FreshDocsTests: XCTestCase {
    let corpusPath = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("tiny-corpus").path

    func testCorpusLoadsAndValidates() throws {
        let c = try FreshDocsCorpus.load(corpusPath)
        XCTAssertEqual(c.documents.map(\.id), (1...4).map { "docs/notes/release-\($0).txt" })
        XCTAssertEqual(c.heldout, ["docs/notes/release-4.txt"])
        XCTAssertEqual(c.learned.count, 3)
        XCTAssertEqual(c.general.map(\.id), ["general/gpl-head.txt"])
        XCTAssertEqual(c.items.map(\.kind), ["verbatim", "verbatim", "paraphrase"])

        // A broken copy: an item naming a missing document.
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("broken-corpus-\(getpid())")
        try? FileManager.default.removeItem(at: broken)
        try FileManager.default.copyItem(atPath: corpusPath, toPath: broken.path)
        defer { try? FileManager.default.removeItem(at: broken) }
        try #"{"id": "x", "kind": "verbatim", "doc": "docs/none.txt", "prompt": "p", "chat": false, "candidates": ["a", "b"], "answer": 0}"#
            .write(to: broken.appendingPathComponent("items.jsonl"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try FreshDocsCorpus.load(broken.path)) { e in XCTAssertTrue("\(e)".contains("docs/none.txt")) }
    }

    /// The whole pipeline on the base system: every task answered or reported unsupported.
    func testBaseRunProducesEveryTask() throws {
        guard let path = DefaultModel.path() else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("model missing under CI") }
            throw XCTSkip("needs the default model: run `make model`")
        }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf), tokenizer = try Tokenizer(gguf: gguf)
        var options = FreshDocsRun.Options()
        options.window = 64
        options.stride = 32
        options.sanityPrompts = 2
        options.sanityTokens = 8
        let run = FreshDocsRun(corpus: try FreshDocsCorpus.load(corpusPath), model: model, modelPath: path, tokenizer: tokenizer, options: options)
        let earlier = try run.run(systems: ["base"])
        let result = earlier.json
        XCTAssertEqual(result["schema"] as? String, "twinbrain.freshdocs/1")
        let base = try XCTUnwrap((result["systems"] as? [[String: Any]])?.first)
        let t1 = try XCTUnwrap(base["t1"] as? [String: Any])
        let ppl = try XCTUnwrap(t1["ppl"] as? Double)
        XCTAssertTrue(ppl > 1 && ppl < 10_000, "\(ppl)")
        let ci = try XCTUnwrap(t1["ppl_ci"] as? [Double])
        XCTAssertLessThanOrEqual(ci[0], ci[1])
        let t3 = try XCTUnwrap(base["t3"] as? [String: Any])
        XCTAssertEqual(t3["n"] as? Int, 2)
        XCTAssertEqual(t3["chance"] as? Double, 0.25)
        let t4 = try XCTUnwrap(base["t4"] as? [String: Any])
        XCTAssertEqual(t4["n"] as? Int, 1)
        // The base against itself: no change at all.
        let t5 = try XCTUnwrap(base["t5"] as? [String: Any])
        XCTAssertEqual(t5["dppl_pct"] as? Double ?? 1, 0, accuracy: 1e-9)
        XCTAssertEqual(t5["kl"] as? Double ?? 1, 0, accuracy: 1e-9)
        XCTAssertEqual(t5["top1_agree"] as? Double, 1)
        XCTAssertEqual((base["t6"] as? [String: Any])?["supported"] as? Bool, false)
        XCTAssertEqual((base["t8"] as? [String: Any])?["prompts"] as? Int, 2)
        XCTAssertNotNil((base["t7"] as? [String: Any])?["scoring_tok_s"] as? Double)
        let table = FreshDocsReport.markdown(result)
        XCTAssertTrue(table.contains("| base |"), table)
        XCTAssertThrowsError(try run.run(systems: ["base", "no-such-system"])) { e in XCTAssertTrue("\(e)".contains("available: base")) }

        // A stopped run goes on from its checkpoint: the done systems are taken as they are.
        var resumed = run
        try resumed.reusing(earlier)
        let again = try resumed.run(systems: ["base"]).json
        XCTAssertEqual(again["systems_reused"] as? [String], ["base"])
        XCTAssertEqual((again["systems"] as? [[String: Any]]).map { NSArray(array: $0) }, NSArray(array: [base]))
        // Unless the system is named to run again (its code changed).
        var rerun = run
        try rerun.reusing(earlier, except: ["base"])
        XCTAssertEqual(try rerun.run(systems: ["base"]).json["systems_reused"] as? [String], [])
        // Not from other options, nor when the base answers the items differently.
        var otherOptions = FreshDocsRun(corpus: run.corpus, model: model, modelPath: path, tokenizer: tokenizer, options: FreshDocsRun.Options())
        XCTAssertThrowsError(try otherOptions.reusing(earlier)) { e in XCTAssertTrue("\(e)".contains("other options"), "\(e)") }
        var flipped = earlier
        flipped.itemOutcomes[0].accNorm.toggle()
        var stale = run
        try stale.reusing(flipped)
        XCTAssertThrowsError(try stale.run(systems: ["base"])) { e in XCTAssertTrue("\(e)".contains("answers the items differently"), "\(e)") }
    }

    /// The RAG baselines retrieve the right chunk and run every task they support.
    func testRAGBaselines() throws {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf), tokenizer = try Tokenizer(gguf: gguf)
        let corpus = try FreshDocsCorpus.load(corpusPath)
        for id in ["bm25-rag", "vector-rag"] {
            let system = try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
            try system.learn(corpus.learned)
            // Window logits: one row per scored position, the same shape as the base's.
            let tokens = tokenizer.encode(corpus.heldoutDocuments[0].text)
            let l = try system.windowLogits(tokens, from: 3)
            XCTAssertEqual(l.rows, tokens.count - 4)
            let scores = try system.candidateScores(prompt: tokenizer.encode("Who fixed the crash with empty pallet labels? It was"),
                                                    candidates: [" Maren Holt", " Pavel Ostrand"].map { tokenizer.encode($0) })
            XCTAssertEqual(scores.count, 2)
            XCTAssertTrue(scores.allSatisfy { $0.isFinite && $0 < 0 })
        }
        // BM25 finds the document that shares the rare words.
        let bm25 = BM25Probe()
        XCTAssertEqual(try bm25.best(for: "authentication bypass label printer bridge", in: corpus.learned.map(\.text)), 1)

        var options = FreshDocsRun.Options()
        options.window = 64
        options.stride = 32
        options.sanityPrompts = 1
        options.sanityTokens = 4
        let result = try FreshDocsRun(corpus: corpus, model: model, modelPath: path, tokenizer: tokenizer, options: options)
            .run(systems: ["bm25-rag"])
        let rag = try XCTUnwrap((result.json["systems"] as? [[String: Any]])?.first)
        XCTAssertEqual((rag["t1"] as? [String: Any])?["supported"] as? Bool, true)
        XCTAssertEqual((rag["t3"] as? [String: Any])?["n"] as? Int, 2)
        XCTAssertNotNil((rag["t7"] as? [String: Any])?["ingest_tok_s"] as? Double)
        // Every item has an outcome for the base and for the system.
        XCTAssertEqual(result.itemOutcomes.filter { $0.system == "base" }.count, 3)
        XCTAssertEqual(result.itemOutcomes.filter { $0.system == "bm25-rag" }.count, 3)
        // T6: forgetting leaves exactly the state of never having learned.
        let t6 = try XCTUnwrap(rag["t6"] as? [String: Any])
        XCTAssertEqual(t6["equivalent"] as? Bool, true, "\(t6)")
        XCTAssertEqual(t6["forgotten_documents"] as? Int, 1)
        XCTAssertGreaterThan(t6["windows_compared"] as? Int ?? 0, 0)
    }

    /// A block that reuses the previous block's KV cache (same retrieved chunk) gives the logits
    /// a fresh pass gives; and a vector-rag that forgets equals one that never learned.
    func testRAGCacheReuseAndForgetting() throws {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf), tokenizer = try Tokenizer(gguf: gguf)
        let corpus = try FreshDocsCorpus.load(corpusPath)
        let tokens = Array(tokenizer.encode(corpus.learned.map(\.text).joined(separator: "\n")).prefix(200))
        for id in ["bm25-rag", "vector-rag"] {
            let system = try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
            try system.learn(corpus.learned)
            let whole = try system.windowLogits(tokens, from: 10)       // blocks start at 10, 42, 74, …
            let fresh = try system.windowLogits(tokens, from: 42)       // the second block computed anew
            var delta: Float = 0
            for row in 0..<32 { for (a, b) in zip(whole.row(row + 32), fresh.row(row)) { delta = max(delta, abs(a - b)) } }
            XCTAssertLessThan(delta, 2e-3, id)

            let forgetting = try XCTUnwrap(system.forgetting)
            try forgetting([corpus.learned[1].id])
            let never = try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
            try never.learn([corpus.learned[0], corpus.learned[2]])
            system.retrievalTrace?.isRecording = true
            never.retrievalTrace?.isRecording = true
            XCTAssertEqual(try system.windowLogits(tokens, from: 10).values, try never.windowLogits(tokens, from: 10).values, id)
            let trace = try XCTUnwrap(system.retrievalTrace?.take())
            XCTAssertEqual(trace, never.retrievalTrace?.take(), id)
            XCTAssertFalse(trace.isEmpty)
            XCTAssertFalse(trace.contains { $0.hasPrefix(corpus.learned[1].id + "@") }, id)
        }
    }

    /// knn-fixed (the token memory, λ = 0.25): learned text becomes far more predictable, general
    /// text barely moves, and forgetting equals never learning.
    func testKNNFixedLearnsAndForgetsExactly() throws {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf), tokenizer = try Tokenizer(gguf: gguf)
        var options = FreshDocsRun.Options()
        options.window = 64
        options.stride = 32
        options.sanityPrompts = 1
        options.sanityTokens = 4
        options.deletionWindows = 4
        let result = try FreshDocsRun(corpus: try FreshDocsCorpus.load(corpusPath), model: model, modelPath: path, tokenizer: tokenizer,
                                      options: options).run(systems: ["base", "knn-fixed"])
        let systems = try XCTUnwrap(result.json["systems"] as? [[String: Any]])
        func value(_ s: Int, _ task: String, _ key: String) -> Double? { (systems[s][task] as? [String: Any])?[key] as? Double }
        let baseT2 = try XCTUnwrap(value(0, "t2", "ppl")), knnT2 = try XCTUnwrap(value(1, "t2", "ppl"))
        XCTAssertLessThan(knnT2, baseT2 * 0.7, "memorised text should be much easier (\(knnT2) vs \(baseT2))")
        let t6 = try XCTUnwrap(systems[1]["t6"] as? [String: Any])
        XCTAssertEqual(t6["equivalent"] as? Bool, true, "\(t6)")
        XCTAssertNotNil((systems[1]["t8"] as? [String: Any])?["distinct_2"] as? Double)
    }
}
