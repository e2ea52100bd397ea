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
        /// Cuts every document to its first this-many characters (at a line break; quick runs).
        public var maxDocumentCharacters: Int?
        public var sanityPrompts = 50
        public var sanityTokens = 64
        /// T9: tokens of an open answer (greedy).
        public var answerTokens = 64
        /// Tasks to run ("t1"…"t9"); nil = all. The others are reported as not run.
        public var tasks: Set<String>?
        /// T6 compares the forgetting system with a never-taught one on this many windows of
        /// each of T1, T2 and T5, and on this many items beside the forgotten documents' own.
        public var deletionWindows = 16
        public var deletionItems = 32
        public init() {}
    }

    public let corpus: FreshDocsCorpus
    public let model: Model
    public let modelPath: String
    public let tokenizer: Tokenizer
    public let options: Options
    public var progress: (String, Int, Int) -> Void = { _, _, _ in }
    /// Called after each system but the last with everything so far.
    public var onPartialResult: (Result) -> Void = { _ in }
    /// Systems taken from an earlier run of the same protocol instead of being run again (see `reusing`).
    public private(set) var previous: Result?
    /// Systems run again even when the earlier result holds them (their code changed).
    public private(set) var rerun: Set<String> = []

    public init(corpus: FreshDocsCorpus, model: Model, modelPath: String, tokenizer: Tokenizer, options: Options) {
        self.corpus = corpus
        self.model = model
        self.modelPath = modelPath
        self.tokenizer = tokenizer
        self.options = options
    }

    static func unsupported(_ reason: String) -> [String: Any] { ["supported": false, "reason": reason] }
    static let notRun: [String: Any] = ["run": false, "reason": "not asked for (--tasks)"]
    static let tasks = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"]

    static func encode<T: Encodable>(_ value: T?) throws -> Any {
        guard let value else { return unsupported("the corpus has no data for this task") }
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as! [String: Any]
        object["supported"] = true
        return object
    }

    /// The versioned JSON object, and how every system did on every item (for item analysis).
    public struct Result {
        public var json: [String: Any]
        public var itemOutcomes: [ItemOutcome]
        public init(json: [String: Any], itemOutcomes: [ItemOutcome]) {
            self.json = json
            self.itemOutcomes = itemOutcomes
        }
    }

    /// Takes the systems an earlier result (a checkpoint of a stopped run) already holds, so a long
    /// run goes on where it stopped. Only a result of the same corpus, model and options is used,
    /// and `run` also checks that the base answers every item as it did then. The systems of
    /// `except` are run again.
    public mutating func reusing(_ earlier: Result, except: Set<String> = []) throws {
        let mine = envelope([], pending: [])
        for key in ["corpus", "model", "options"] {
            let a = earlier.json[key] as? NSDictionary, b = mine[key] as? NSDictionary
            guard let a, let b, a == b else {
                throw ReuseError("the earlier result was made with other \(key == "options" ? "options" : "\(key) files"); run without reusing it")
            }
        }
        previous = earlier
        rerun = except
    }

    public func run(systems ids: [String]) throws -> Result {
        try ids.forEach(SystemRegistry.check)
        let template = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        let tasks = Tasks(tokenizer: tokenizer, chatTemplate: template, window: options.window, stride: options.stride, progress: progress)
        func limit<T>(_ list: [T], _ n: Int?) -> [T] { n.map { Array(list.prefix($0)) } ?? list }
        func cut(_ documents: [FreshDocsCorpus.Document]) -> [FreshDocsCorpus.Document] {
            guard let n = options.maxDocumentCharacters else { return documents }
            return documents.map { d in
                guard d.text.count > n else { return d }
                let head = d.text.prefix(n)
                return .init(id: d.id, text: String(head[..<(head.lastIndex(of: "\n") ?? head.endIndex)]))
            }
        }
        let learned = cut(limit(corpus.learned, options.maxDocuments))
        let heldout = cut(limit(corpus.heldoutDocuments, options.maxDocuments))
        let general = cut(limit(corpus.general, options.maxDocuments))
        let learnedIDs = Set(learned.map(\.id))
        let verbatim = limit(corpus.items.filter { $0.kind == "verbatim" && learnedIDs.contains($0.doc) }, options.maxItems)
        let paraphrase = limit(corpus.items.filter { $0.kind == "paraphrase" && learnedIDs.contains($0.doc) }, options.maxItems)

        func wants(_ task: String) -> Bool { options.tasks?.contains(task) ?? true }

        // The base's answers define the "unknown" subset for every system and T6's recall floor.
        let base = BaseSystem(model: model, tokenizer: tokenizer)
        let baseVerbatim = wants("t3") ? try tasks.recall(verbatim, base, label: "base T3") : []
        let baseParaphrase = wants("t4") ? try tasks.recall(paraphrase, base, label: "base T4") : []
        var outcomes = baseVerbatim + baseParaphrase
        let reused = try reusedSystems(ids, baseOutcomes: outcomes)

        var results: [[String: Any]] = []
        for id in ids {
            if let (json, itemOutcomes) = reused[id] {
                progress("\(id): taken from the earlier result", 1, 1)
                results.append(json)
                outcomes += itemOutcomes
                continue
            }
            let system: EvalSystem = id == "base" ? base : try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
            var r: [String: Any] = ["id": id]
            let learnStart = Date()
            try system.learn(learned)
            let learnSeconds = Date().timeIntervalSince(learnStart)
            if let figures = system.learningFigures { r["learning"] = figures }

            let scoreStart = Date()
            r["t1"] = wants("t1") ? try Self.encode(tasks.perplexity(heldout, system, label: "\(id) T1")) : Self.notRun
            r["t2"] = wants("t2") ? try Self.encode(tasks.perplexity(learned, system, label: "\(id) T2")) : Self.notRun
            func sum(_ key: String) -> Int { ["t1", "t2"].reduce(0) { $0 + ((r[$1] as? [String: Any])?[key] as? Int ?? 0) } }
            let scoreSeconds = Date().timeIntervalSince(scoreStart)

            var systemOutcomes: [ItemOutcome] = []
            if wants("t3") {
                let v = system === base ? baseVerbatim : try tasks.recall(verbatim, system, label: "\(id) T3")
                r["t3"] = try Self.encode(Tasks.summarize(verbatim, v, baseNorm: baseVerbatim.map(\.accNorm)))
                systemOutcomes += v
            } else { r["t3"] = Self.notRun }
            if wants("t4") {
                let p = system === base ? baseParaphrase : try tasks.recall(paraphrase, system, label: "\(id) T4")
                r["t4"] = try Self.encode(Tasks.summarize(paraphrase, p, baseNorm: baseParaphrase.map(\.accNorm)))
                systemOutcomes += p
            } else { r["t4"] = Self.notRun }
            if system !== base { outcomes += systemOutcomes }
            r["t5"] = wants("t5") ? try Self.encode(tasks.retention(general, system, base: base)) : Self.notRun
            let sanity = wants("t8") ? try generationSanity(system, heldout: heldout, learned: learned, tasks: tasks)
                                     : (result: Self.notRun, latencies: [])
            r["t8"] = sanity.result
            if wants("t9") {
                let (t9, answers) = try tasks.openAnswers(paraphrase, unanswerable: limit(corpus.unanswerable, options.maxItems), system, maxTokens: options.answerTokens, label: "\(id) T9")
                var json = try Self.encode(t9) as! [String: Any]
                json["answers"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(answers))
                r["t9"] = json
            } else { r["t9"] = Self.notRun }
            var forgetSeconds: Double?
            if !wants("t6") {
                r["t6"] = Self.notRun
            } else if let forget = system.forgetting {
                let t6 = try deletion(id, system, forget: forget, learned: learned, heldout: heldout, general: general,
                                      items: verbatim + paraphrase, before: systemOutcomes, base: baseVerbatim + baseParaphrase, tasks: tasks)
                r["t6"] = t6
                forgetSeconds = t6["forget_s"] as? Double
            } else {
                r["t6"] = Self.unsupported(id == "base" ? "the base learns nothing, so there is nothing to forget" : "\(id) cannot forget documents")
            }
            r["t7"] = [
                "supported": true,
                "learn_s": learnSeconds,
                "ingest_tok_s": id == "base" ? NSNull() : Double(TokenStream(learned, tokenizer: tokenizer).tokens.count) / max(learnSeconds, 1e-9),
                "scoring_tok_s": sum("tokens") == 0 ? NSNull() : Double(sum("tokens")) / max(scoreSeconds, 1e-9),
                "window_tok_s": sum("window_tokens") == 0 ? NSNull() : Double(sum("window_tokens")) / max(scoreSeconds, 1e-9),
                "forget_s": forgetSeconds ?? NSNull(),
                "decode_ms_mean": sanity.latencies.isEmpty ? NSNull() : 1000 * sanity.latencies.reduce(0, +) / Double(sanity.latencies.count),
                // Nearest-rank 95th percentile.
                "decode_ms_p95": sanity.latencies.isEmpty ? NSNull()
                    : 1000 * sanity.latencies.sorted()[Int((0.95 * Double(sanity.latencies.count)).rounded(.up)) - 1],
            ] as [String: Any]
            results.append(r)
            if results.count < ids.count {
                onPartialResult(Result(json: envelope(results, pending: Array(ids[results.count...]), reused: reused.keys.sorted()),
                                       itemOutcomes: outcomes))
            }
        }
        return Result(json: envelope(results, pending: [], reused: reused.keys.sorted()), itemOutcomes: outcomes)
    }

    /// The earlier result's entries for the asked-for systems, once its base outcomes match
    /// the ones just computed (the same items, answered the same way by the same engine).
    func reusedSystems(_ ids: [String], baseOutcomes: [ItemOutcome]) throws -> [String: ([String: Any], [ItemOutcome])] {
        guard let previous else { return [:] }
        let earlierBase = previous.itemOutcomes.filter { $0.system == "base" }
        guard earlierBase == baseOutcomes else {
            throw ReuseError("the base answers the items differently than in the earlier result (other items or another engine); run without reusing it")
        }
        var out: [String: ([String: Any], [ItemOutcome])] = [:]
        for case let system as [String: Any] in previous.json["systems"] as? [Any] ?? [] {
            guard let id = system["id"] as? String, ids.contains(id), !rerun.contains(id) else { continue }
            var json = system
            // A task added since the earlier run (T9) is reported as not run for the systems taken from it.
            for task in Self.tasks where json[task] == nil {
                json[task] = ["run": false, "reason": "not in the earlier result this system was taken from"]
            }
            out[id] = (json, id == "base" ? [] : previous.itemOutcomes.filter { $0.system == id })
        }
        return out
    }

    /// The result document around the systems done so far; `systems_pending` lists the others
    /// (a checkpoint of a long run: what is done survives a crash or a stop).
    /// `systems_reused` names those taken from an earlier result (`earlier_date`).
    func envelope(_ results: [[String: Any]], pending: [String], reused: [String] = []) -> [String: Any] {
        [
            "schema": "twinbrain.freshdocs/1",
            "date": ISO8601DateFormatter().string(from: Date()),
            "corpus": ["name": corpus.name, "path": corpus.root.path, "documents": corpus.documents.count,
                       "learned": corpus.learned.count, "heldout": corpus.heldout.count, "general": corpus.general.count,
                       "items": corpus.items.count, "sha256": Hashing.corpusDigest(corpus)] as [String: Any],
            "model": ["path": modelPath, "sha256": Hashing.fileSHA256(modelPath) ?? NSNull()] as [String: Any],
            "machine": ["cores": ProcessInfo.processInfo.activeProcessorCount, "cpu": Hashing.cpuModel()],
            "options": ["window": options.window, "stride": options.stride, "max_documents": options.maxDocuments ?? NSNull(),
                        "max_items": options.maxItems ?? NSNull(), "tasks": options.tasks.map { $0.sorted() } ?? NSNull()] as [String: Any],
            "systems": results,
            "systems_pending": pending,
            "systems_reused": reused,
            "earlier_date": reused.isEmpty ? NSNull() : previous?.json["date"] ?? NSNull(),
        ]
    }

    /// T6: forget a seeded 20% of the learned documents from the taught system, teach a fresh
    /// instance only the rest, and compare the two on a spread of T1/T2/T5 windows and on the
    /// items (the forgotten documents' items and a sample of the others): the same retrieved
    /// entries and |Δ log p| ≤ 1e-5 make them equivalent. Then recall on the forgotten
    /// documents' items, before and after, against the base.
    func deletion(_ id: String, _ system: EvalSystem, forget: ([String]) throws -> Void,
                  learned: [FreshDocsCorpus.Document], heldout: [FreshDocsCorpus.Document], general: [FreshDocsCorpus.Document],
                  items: [FreshDocsCorpus.Item], before: [ItemOutcome], base: [ItemOutcome], tasks: Tasks) throws -> [String: Any] {
        guard learned.count >= 2 else { return Self.unsupported("T6 needs at least 2 learned documents") }
        var rng = SeededGenerator(seed: 6)
        let deleted = Set(learned.map(\.id).shuffled(using: &rng).prefix(max(1, Int((0.2 * Double(learned.count)).rounded()))))
        let forgetStart = Date()
        try forget(deleted.sorted())
        let forgetSeconds = Date().timeIntervalSince(forgetStart)
        let fresh = try SystemRegistry.make(id, model: model, tokenizer: tokenizer)
        try fresh.learn(learned.filter { !deleted.contains($0.id) })

        var maxDelta = 0.0, sameRetrieval = true, windowsCompared = 0, tokensCompared = 0
        func compareTraces() {
            if system.retrievalTrace?.take() != fresh.retrievalTrace?.take() { sameRetrieval = false }
        }
        system.retrievalTrace?.isRecording = true
        fresh.retrievalTrace?.isRecording = true
        defer { system.retrievalTrace?.isRecording = false; fresh.retrievalTrace?.isRecording = false }
        for (label, documents) in [("T1", heldout), ("T2", learned), ("T5", general)] where !documents.isEmpty {
            let stream = TokenStream(documents, tokenizer: tokenizer)
            let windows = slidingWindows(count: stream.tokens.count, window: options.window, stride: options.stride)
            let picked = Self.spread(windows.count, options.deletionWindows)
            for (n, w) in picked.map({ windows[$0] }).enumerated() {
                let tokens = Array(stream.tokens[w.begin..<w.end]), first = w.firstTarget - 1 - w.begin
                let a = try system.windowLogits(tokens, from: first), b = try fresh.windowLogits(tokens, from: first)
                for (row, target) in (w.firstTarget..<w.end).enumerated() {
                    let d = Scorer.logProbability(a.row(row), of: stream.tokens[target]) - Scorer.logProbability(b.row(row), of: stream.tokens[target])
                    maxDelta = max(maxDelta, abs(d))
                }
                compareTraces()
                windowsCompared += 1
                tokensCompared += w.end - w.firstTarget
                progress("\(id) T6 \(label)", n + 1, picked.count)
            }
        }
        let deletedItems = items.filter { deleted.contains($0.doc) }
        let others = items.filter { !deleted.contains($0.doc) }
        let compared = deletedItems + Self.spread(others.count, options.deletionItems).map { others[$0] }
        var after: [ItemOutcome] = []
        for (n, item) in compared.enumerated() {
            let a = try tasks.itemScores(item, system), b = try tasks.itemScores(item, fresh)
            for (x, y) in zip(a.s + a.s0, b.s + b.s0) { maxDelta = max(maxDelta, abs(x - y)) }
            compareTraces()
            if deleted.contains(item.doc) { after.append(tasks.outcome(item, system: id, s: a.s, s0: a.s0)) }
            progress("\(id) T6 items", n + 1, compared.count)
        }
        let deletedIDs = Set(deletedItems.map(\.id))
        func accNorm(_ o: [ItemOutcome]) -> Any {
            let picked = o.filter { deletedIDs.contains($0.item) }
            return picked.isEmpty ? NSNull() : Double(picked.filter(\.accNorm).count) / Double(picked.count)
        }
        return [
            "supported": true,
            "equivalent": sameRetrieval && maxDelta <= 1e-5,
            "same_retrieval": sameRetrieval,
            "max_abs_dlogp": maxDelta,
            "forgotten_documents": deleted.count,
            "windows_compared": windowsCompared,
            "tokens_compared": tokensCompared,
            "items_compared": compared.count,
            "forget_s": forgetSeconds,
            "forgotten_items": deletedItems.count,
            "forgotten_acc_norm_before": accNorm(before),
            "forgotten_acc_norm_after": accNorm(after),
            "forgotten_acc_norm_base": accNorm(base),
        ]
    }

    /// `count` indices spread evenly over 0..<n (all of them when n ≤ count).
    static func spread(_ n: Int, _ count: Int) -> [Int] {
        guard n > count else { return Array(0..<n) }
        return (0..<count).map { $0 * n / count }
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

public struct ReuseError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

public enum Hashing {
    /// sha256 of a file through coreutils (present on every Debian system).
    public static func fileSHA256(_ path: String) -> String? {
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
