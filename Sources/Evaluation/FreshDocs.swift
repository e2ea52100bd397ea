import Foundation
import MainBrain

/// Runs the FreshDocs protocol on a corpus for a list of systems and builds the versioned
/// JSON result (`schema: twinbrain.freshdocs/1`, keys documented in docs/evaluation.md).
public struct FreshDocsRun {
    public struct Options: Sendable {
        public var window = 512
        public var stride = 256
        /// Limits for a quick run (eval-smoke); nil = everything.
        public var maxDocuments: Int?
        public var maxItems: Int?
        public var sanityPrompts = 50
        public var sanityTokens = 64
        /// Tasks to run ("t1"…"t8"); nil = all. The others are reported as not run.
        public var tasks: Set<String>?
        public init() {}
    }

    public let corpus: FreshDocsCorpus
    public let model: Model
    public let modelPath: String
    public let tokenizer: Tokenizer
    public let options: Options
    public var progress: (String, Int, Int) -> Void = { _, _, _ in }

    public init(corpus: FreshDocsCorpus, model: Model, modelPath: String, tokenizer: Tokenizer, options: Options) {
        self.corpus = corpus
        self.model = model
        self.modelPath = modelPath
        self.tokenizer = tokenizer
        self.options = options
    }

    static func unsupported(_ reason: String) -> [String: Any] { ["supported": false, "reason": reason] }
    static let notRun: [String: Any] = ["run": false, "reason": "not asked for (--tasks)"]

    static func encode<T: Encodable>(_ value: T?) throws -> Any {
        guard let value else { return unsupported("the corpus has no data for this task") }
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as! [String: Any]
        object["supported"] = true
        return object
    }

    public func run(systems ids: [String]) throws -> [String: Any] {
        let template = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        let tasks = Tasks(tokenizer: tokenizer, chatTemplate: template, window: options.window, stride: options.stride, progress: progress)
        func limit<T>(_ list: [T], _ n: Int?) -> [T] { n.map { Array(list.prefix($0)) } ?? list }
        let learned = limit(corpus.learned, options.maxDocuments)
        let heldout = limit(corpus.heldoutDocuments, options.maxDocuments)
        let general = limit(corpus.general, options.maxDocuments)
        let verbatim = limit(corpus.items.filter { $0.kind == "verbatim" }, options.maxItems)
        let paraphrase = limit(corpus.items.filter { $0.kind == "paraphrase" }, options.maxItems)

        func wants(_ task: String) -> Bool { options.tasks?.contains(task) ?? true }

        // The base's answers define the "unknown" subset for every system.
        let base = BaseSystem(model: model, tokenizer: tokenizer)
        let baseVerbatim = wants("t3") ? try tasks.recall(verbatim, base, label: "base T3") : []
        let baseParaphrase = wants("t4") ? try tasks.recall(paraphrase, base, label: "base T4") : []

        var results: [[String: Any]] = []
        for id in ids {
            let system: EvalSystem = id == "base" ? base : try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
            var r: [String: Any] = ["id": id]
            let learnStart = Date()
            try system.learn(learned)
            let learnSeconds = Date().timeIntervalSince(learnStart)

            let scoreStart = Date()
            r["t1"] = wants("t1") ? try Self.encode(tasks.perplexity(heldout, system, label: "\(id) T1")) : Self.notRun
            r["t2"] = wants("t2") ? try Self.encode(tasks.perplexity(learned, system, label: "\(id) T2")) : Self.notRun
            let scored = ((r["t1"] as? [String: Any])?["tokens"] as? Int ?? 0) + ((r["t2"] as? [String: Any])?["tokens"] as? Int ?? 0)
            let scoreSeconds = Date().timeIntervalSince(scoreStart)

            if wants("t3") {
                let v = system === base ? baseVerbatim : try tasks.recall(verbatim, system, label: "\(id) T3")
                r["t3"] = try Self.encode(Tasks.summarize(verbatim, v, baseNorm: baseVerbatim.map(\.1)))
            } else { r["t3"] = Self.notRun }
            if wants("t4") {
                let p = system === base ? baseParaphrase : try tasks.recall(paraphrase, system, label: "\(id) T4")
                r["t4"] = try Self.encode(Tasks.summarize(paraphrase, p, baseNorm: baseParaphrase.map(\.1)))
            } else { r["t4"] = Self.notRun }
            r["t5"] = wants("t5") ? try Self.encode(tasks.retention(general, system, base: base)) : Self.notRun
            r["t6"] = system.forgetting == nil ? Self.unsupported("\(id) cannot forget documents") : Self.unsupported("T6 runner not built yet")
            let sanity = wants("t8") ? try generationSanity(system, heldout: heldout, learned: learned, tasks: tasks)
                                     : (result: Self.notRun, latencies: [])
            r["t8"] = sanity.result
            r["t7"] = [
                "supported": true,
                "learn_s": learnSeconds,
                "ingest_tok_s": id == "base" ? NSNull() : Double(TokenStream(learned, tokenizer: tokenizer).tokens.count) / max(learnSeconds, 1e-9),
                "scoring_tok_s": scored == 0 ? NSNull() : Double(scored) / max(scoreSeconds, 1e-9),
                "decode_ms_mean": sanity.latencies.isEmpty ? NSNull() : 1000 * sanity.latencies.reduce(0, +) / Double(sanity.latencies.count),
                // Nearest-rank 95th percentile.
                "decode_ms_p95": sanity.latencies.isEmpty ? NSNull()
                    : 1000 * sanity.latencies.sorted()[Int((0.95 * Double(sanity.latencies.count)).rounded(.up)) - 1],
            ] as [String: Any]
            results.append(r)
        }
        return [
            "schema": "twinbrain.freshdocs/1",
            "date": ISO8601DateFormatter().string(from: Date()),
            "corpus": ["name": corpus.name, "path": corpus.root.path, "documents": corpus.documents.count,
                       "learned": corpus.learned.count, "heldout": corpus.heldout.count, "general": corpus.general.count,
                       "items": corpus.items.count, "sha256": Hashing.corpusDigest(corpus)] as [String: Any],
            "model": ["path": modelPath, "sha256": Hashing.fileSHA256(modelPath) ?? NSNull()] as [String: Any],
            "machine": ["cores": ProcessInfo.processInfo.activeProcessorCount, "cpu": Hashing.cpuModel()],
            "options": ["window": options.window, "stride": options.stride, "max_documents": options.maxDocuments ?? NSNull(),
                        "max_items": options.maxItems ?? NSNull()] as [String: Any],
            "systems": results,
        ]
    }

    /// T8: greedy continuations of held-out first sentences: repetition, diversity, copying.
    func generationSanity(_ system: EvalSystem, heldout: [FreshDocsCorpus.Document], learned: [FreshDocsCorpus.Document],
                          tasks: Tasks) throws -> (result: [String: Any], latencies: [Double]) {
        let sentences = heldout.flatMap { d in
            d.text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.count > 20 }
                .map { line in line.split(separator: ".", maxSplits: 1).first.map(String.init) ?? line }
        }.prefix(options.sanityPrompts)
        guard !sentences.isEmpty else { return (Self.unsupported("no held-out documents to take sentences from"), []) }
        var learnedTrigrams = Set<[Int32]>()
        for d in learned {
            let t = tokenizer.encode(d.text)
            if t.count >= 3 { for i in 0...(t.count - 3) { learnedTrigrams.insert(Array(t[i..<i + 3])) } }
        }
        var repeated = 0, fourGrams = 0, bigrams = 0, copied = 0, trigrams = 0
        var distinct = Set<[Int32]>()
        var latencies: [Double] = []
        for (i, sentence) in sentences.enumerated() {
            let start = Date()
            let out = try system.generate(prompt: tokenizer.encode(sentence), maxTokens: options.sanityTokens)
            if !out.isEmpty { latencies.append(Date().timeIntervalSince(start) / Double(out.count)) }
            var seen = Set<[Int32]>()
            if out.count >= 4 {
                for j in 0...(out.count - 4) {
                    fourGrams += 1
                    if !seen.insert(Array(out[j..<j + 4])).inserted { repeated += 1 }
                }
            }
            if out.count >= 2 { for j in 0...(out.count - 2) { bigrams += 1; distinct.insert(Array(out[j..<j + 2])) } }
            if out.count >= 3 {
                for j in 0...(out.count - 3) { trigrams += 1; if learnedTrigrams.contains(Array(out[j..<j + 3])) { copied += 1 } }
            }
            progress("\(system.id) T8", i + 1, sentences.count)
        }
        return ([
            "supported": true, "prompts": sentences.count,
            "repeated_4gram_rate": Double(repeated) / Double(max(1, fourGrams)),
            "distinct_2": Double(distinct.count) / Double(max(1, bigrams)),
            "learned_trigram_rate": Double(copied) / Double(max(1, trigrams)),
        ], latencies)
    }
}

enum Hashing {
    /// sha256 of a file through coreutils (present on every Debian system).
    static func fileSHA256(_ path: String) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init)
    }

    /// A digest of the corpus: sha256 over every document's id and text, in id order.
    static func corpusDigest(_ corpus: FreshDocsCorpus) -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("freshdocs-digest-\(getpid())")
        var data = Data()
        for d in corpus.documents + corpus.general { data.append(Data((d.id + "\n").utf8)); data.append(Data(d.text.utf8)) }
        try? data.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return fileSHA256(url.path) ?? ""
    }

    static func cpuModel() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        }
        return "unknown"
    }
}
