import ArgumentParser
import Foundation
import Kernels
import LearningBrain
import MainBrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed, load time and peak memory.",
        discussion: """
            pp128/pp512: a prompt of that many tokens in one batch, logits for the last position \
            only (as llama-bench measures). tg128: 128 tokens decoded one at a time. Each figure is \
            the median of --runs runs (spread printed beside it). --memory-entries N adds tg128 with \
            the learning brain's token memory of N entries joining every step (the daemon's decode with \
            knowledge), run alternately with the plain decode, and the query overhead as a ratio. Repeat \
            it for several sizes; beyond the exact-search limit the memory searches its inverted file, \
            and exact search is also timed at that size, with the lists' recall against it. Then four             sequences decoded together, the memory joining each, their searches one by one and shared             (each block of keys read once per step for all four), against the four decoded plain.
            """)

    @OptionGroup var options: ModelOptions

    @Option(help: "Runs per figure.")
    var runs = 5

    @Flag(name: .customLong("all-runs"), help: "With --json, give every run's figure as a list instead of the median.")
    var allRuns = false

    @Option(name: .customLong("prompt"), help: ArgumentHelp(
        "Also time a prompt of this many tokens (repeatable), e.g. 8, 16 and 32 to see where f32 prefill overtakes the quantised kernels."))
    var extraPrompts: [Int] = []

    @Option(name: .customLong("memory-entries"), help: "Also decode through a token memory of this many entries (repeatable).")
    var memoryEntries: [Int] = []

    @Option(name: .customLong("memory-text"), help: ArgumentHelp(
        "Text (a file, or a directory of files) whose first 8,192 tokens seed the token memory and whose next 128 are decoded.",
        discussion: "Without it, random tokens: their keys crowd into a few lists of the inverted file, unlike text's."))
    var memoryText: String?

    func run() throws {
        options.applyThreads()
        let path = try options.resolvedModelPath()
        let start = Date()
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf, arithmetic: options.arithmetic)
        let tokenizer = try Tokenizer(gguf: gguf)
        let loadSeconds = Date().timeIntervalSince(start)

        // Fixed pseudo-random tokens, like llama-bench's.
        var rng = SeededGenerator(seed: 42)
        let vocab = UInt64(model.config.vocabSize)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % vocab) } }
        let cache = model.makeCache(capacity: 1024)

        func prefill(_ n: Int) throws -> [Double] {
            let prompt = tokens(n)
            cache.clear()
            _ = try model.forward(prompt, cache: cache, logits: .last)  // warm-up
            return try (0..<runs).map { _ in
                cache.clear()
                let t0 = DispatchTime.now()
                _ = try model.forward(prompt, cache: cache, logits: .last)
                return Double(n) / seconds(since: t0)
            }
        }
        func decode(_ n: Int) throws -> [Double] {
            let input = tokens(n)
            return try (0..<runs + 1).map { _ in
                cache.clear()
                let t0 = DispatchTime.now()
                for token in input { _ = try model.forward([token], cache: cache, logits: .last) }
                return Double(n) / seconds(since: t0)
            }.dropFirst().map { $0 }
        }
        let extra = try extraPrompts.map { ("pp\($0)", try prefill($0)) }
        let pp128 = try prefill(128), pp512 = try prefill(512), tg128 = try decode(128)
        let rss = peakRSSMiB()
        if !memoryEntries.isEmpty {
            var seed = tokens(Self.seedTokens), input = tokens(128)
            if let memoryText {
                let text = try Self.tokens(of: memoryText, tokenizer)
                guard text.count >= Self.seedTokens + 128 else {
                    throw ValidationError("\(memoryText) holds \(text.count) tokens; --memory-text needs at least \(Self.seedTokens + 128)")
                }
                seed = Array(text[0..<Self.seedTokens])
                input = Array(text[Self.seedTokens..<Self.seedTokens + 128])
            }
            var sizes: [[String: Any]] = []
            for entries in memoryEntries {
                let d = try memoryDecode(model, input, entries: entries, seed: seed)
                let overhead = d.plain.indices.map { d.plain[$0] / d.joined[$0] - 1 }   // extra time per token, per pair of runs
                var figures: [String: Any] = ["memory_entries": entries, "tg128_tok_s": median(d.plain),
                                              "tg128_memory_tok_s": median(d.joined), "query_overhead": median(overhead),
                                              "search": d.exact.isEmpty ? "exact" : "inverted file"]
                var line = String(format: "tg128 %8.1f tok/s, with a %d-entry token memory %8.1f tok/s: query overhead %.0f%% of decode time",
                                  median(d.plain), entries, median(d.joined), 100 * median(overhead))
                if !d.exact.isEmpty {
                    let exactOverhead = d.plain.indices.map { d.plain[$0] / d.exact[$0] - 1 }
                    figures["exact_query_overhead"] = median(exactOverhead)
                    figures["recall"] = d.recall
                    figures["share_read"] = d.read
                    line += String(format: " (inverted file: %.1f%% of the entries read, recall@%d %.3f against exact search, whose overhead is %.0f%%)",
                                   100 * d.read, KNNLanguageModel.defaultNeighbours, d.recall, 100 * median(exactOverhead))
                }
                let aloneOverhead = d.batchPlain.indices.map { d.batchPlain[$0] / d.batchAlone[$0] - 1 }
                let sharedOverhead = d.batchPlain.indices.map { d.batchPlain[$0] / d.batchShared[$0] - 1 }
                figures["sequences"] = Self.sequences
                figures["together_tok_s"] = median(d.batchPlain)
                figures["together_memory_tok_s"] = median(d.batchShared)
                figures["together_query_overhead"] = median(sharedOverhead)
                figures["together_query_overhead_searched_one_by_one"] = median(aloneOverhead)
                line += String(format: "\n  %d sequences decoded together %8.1f tok/s, with the memory %8.1f tok/s: query overhead %.0f%% "
                                  + "(searched one by one: %.0f%%)", Self.sequences, median(d.batchPlain), median(d.batchShared),
                                  100 * median(sharedOverhead), 100 * median(aloneOverhead))
                if options.json { sizes.append(figures) } else { print(line) }
            }
            let learning = try learningSpeed(model, document: tokens(1000), prompt: tokens(512))
            let ratio = learning.learn.indices.map { learning.learn[$0] / learning.prefill[$0] }
            if options.json {
                printJSON(["memory": sizes, "learn_tok_s": median(learning.learn),
                           "pp512_tok_s": median(learning.prefill), "learn_vs_pp512": median(ratio),
                           "learn_1000_tokens_s": median(learning.seconds), "segment_bytes_per_token": learning.bytesPerToken])
            } else {
                print(String(format: "learning a 1000-token document %.2f s: %.1f tok/s against pp512 %.1f tok/s (%.0f%%); %.0f bytes per learned token on disk",
                             median(learning.seconds), median(learning.learn), median(learning.prefill), 100 * median(ratio),
                             learning.bytesPerToken))
            }
            return
        }
        let threads = BLASThreads.current
        if options.json && allRuns {
            var result: [String: Any] = ["threads": threads, "pp128": pp128, "pp512": pp512, "tg128": tg128,
                                         "load_s": loadSeconds, "peak_rss_mib": rss, "arithmetic": options.arithmetic.rawValue,
                                         "kv_cache": model.kvPrecision.rawValue, "kernels": model.kernels.path]
            for (name, v) in extra { result[name] = v }
            printJSON(result)
        } else if options.json {
            var result: [String: Any] = ["threads": threads, "pp128_tok_s": median(pp128), "pp512_tok_s": median(pp512),
                                         "tg128_tok_s": median(tg128), "load_s": loadSeconds, "peak_rss_mib": rss,
                                         "arithmetic": options.arithmetic.rawValue, "kv_cache": model.kvPrecision.rawValue,
                                         "kernels": model.kernels.path]
            for (name, v) in extra { result["\(name)_tok_s"] = median(v) }
            printJSON(result)
        } else {
            print("model \(path) threads \(threads), kernels \(model.kernels.path), arithmetic \(options.arithmetic.rawValue), KV cache \(model.kvPrecision.rawValue)")
            for (name, v) in extra + [("pp128", pp128), ("pp512", pp512), ("tg128", tg128)] {
                print(String(format: "%@  %8.1f tok/s  (min %.1f, max %.1f)", name, median(v), v.min()!, v.max()!))
            }
            print(String(format: "load %.2f s, peak RSS %.0f MiB", loadSeconds, rss))
        }
    }
}

extension Bench {
    /// Decode speed without and with a token memory of `entries` entries (gate open for every
    /// step), alternating so all see the same machine; beyond the exact-search limit also with
    /// exact search, and the recall of the lists against it over the decode's queries.
    /// The memory is the shipped one (projected keys, the fitted inverted file). Its keys are the
    /// model's own: `seed` learned, then copies of their keys with noise up to `entries`, so the
    /// entries spread over the keyspace as the learned text's do (uniform noise would not).
    func memoryDecode(_ model: Model, _ input: [Int32], entries: Int, seed: [Int32])
        throws -> (plain: [Double], joined: [Double], exact: [Double], recall: Double, read: Double,
                   batchPlain: [Double], batchAlone: [Double], batchShared: [Double])
    {
        let knn = FittedKeyspace.shipped(for: model).map { KNNLanguageModel(model: model, fitted: $0) }
            ?? KNNLanguageModel(model: model, projection: nil)
        knn.gate = MemoryGate(lambdaMax: 0.5, inner: .infinity, radius: .infinity)
        var rng = SeededGenerator(seed: 7)
        let vocab = UInt64(model.config.vocabSize)
        try knn.learn(document: 1, tokens: seed)
        let memory = knn.memory, d = memory.dimension, learned = memory.count
        let base = memory.keys.map(halfToFloat)
        let spread = (0..<d).map { j -> Float in
            let column = (0..<learned).map { base[$0 * d + j] }
            let mean = column.reduce(0, +) / Float(learned)
            return (column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(learned)).squareRoot()
        }
        func noise() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }
        var added = learned
        while added < entries {
            let n = min(4096, entries - added)
            var keys = [Float](repeating: 0, count: n * d)
            for r in 0..<n {
                let from = (added + r) % learned
                for j in 0..<d { keys[r * d + j] = base[from * d + j] + 0.25 * spread[j] * noise() }
            }
            memory.append(keys: keys, values: (0..<n).map { _ in Int32(rng.next() % vocab) }, document: 2,
                          positions: (0..<n).map { Int32(added + $0) })
            added += n
        }
        let listed = memory.quantizer != nil && memory.count > memory.exactLimit
        let cache = model.makeCache(capacity: input.count)
        func run(_ step: (Int32) throws -> Void) throws -> Double {
            cache.clear()
            let t0 = DispatchTime.now()
            for token in input { try step(token) }
            return Double(input.count) / seconds(since: t0)
        }
        func exactly<T>(_ body: () throws -> T) rethrows -> T {
            let limit = memory.exactLimit
            memory.exactLimit = .max
            defer { memory.exactLimit = limit }
            return try body()
        }
        var plain: [Double] = [], joined: [Double] = [], exact: [Double] = []
        for i in 0...runs {
            let p = try run { _ = try model.forward([$0], cache: cache, logits: .last) }
            let j = try run { _ = try knn.nextLogits([$0], cache: cache) }
            let e = listed ? try exactly { try run { _ = try knn.nextLogits([$0], cache: cache) } } : 0
            if i > 0 { plain.append(p); joined.append(j); if listed { exact.append(e) } }   // the first round warms up
        }
        // Four sequences decoded together (continuous batching), their steps' searches one by
        // one and shared (`KNNLanguageModel.prepare`: each block of keys read once for all).
        let caches = (0..<Self.sequences).map { _ in model.makeCache(capacity: input.count) }
        func together(shared: Bool?) throws -> Double {
            for c in caches { c.clear() }
            let t0 = DispatchTime.now()
            for i in input.indices {
                let steps = caches.enumerated().map { (input[(i + 17 * $0.offset) % input.count], $0.element) }
                guard let shared else { _ = try model.decode(steps); continue }
                let recorder = HiddenStateRecorder(points: [knn.tapPoint])
                let logits = try model.decode(steps, tap: recorder)
                let states = caches.indices.map { recorder.row(knn.tapPoint, $0) }
                if shared { knn.prepare(states: states) }
                for r in caches.indices {
                    _ = knn.decoded(Logits(rows: 1, vocab: logits.vocab, values: Array(logits.row(r))), state: states[r])
                }
                knn.release()
            }
            return Double(input.count * caches.count) / seconds(since: t0)
        }
        var batchPlain: [Double] = [], batchAlone: [Double] = [], batchShared: [Double] = []
        for i in 0...runs {
            let p = try together(shared: nil), a = try together(shared: false), s = try together(shared: true)
            if i > 0 { batchPlain.append(p); batchAlone.append(a); batchShared.append(s) }
        }
        var recall = 1.0, read = 1.0
        if listed {
            cache.clear()
            let (_, states) = try knn.mainBrain(input, cache: cache, from: 0)
            let queries = knn.keys(states), k = knn.neighbours
            let found = memory.search(queries, k: k), truth = exactly { memory.search(queries, k: k) }
            let hits = zip(found, truth).reduce(0) { $0 + Set($1.0.map(\.entry)).intersection($1.1.map(\.entry)).count }
            recall = Double(hits) / Double(truth.count * k)
            let d = memory.dimension
            read = (0..<truth.count).reduce(0.0) { total, q in
                total + Double(memory.entriesRead(for: Array(queries[q * d..<(q + 1) * d]))) / Double(memory.count)
            } / Double(truth.count)
        }
        return (plain, joined, exact, recall, read, batchPlain, batchAlone, batchShared)
    }

    /// Sequences decoded together in the memory bench.
    static let sequences = 4
}

extension Bench {
    static let seedTokens = 8192

    /// The tokens of a text file, or of a directory's files (recursively, in path order) joined
    /// by blank lines.
    static func tokens(of path: String, _ tokenizer: Tokenizer) throws -> [Int32] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path) does not exist")
        }
        var files = [path]
        if isDirectory.boolValue {
            let root = URL(fileURLWithPath: path)
            files = (FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])?.compactMap { item in
                guard let url = item as? URL, (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { return nil }
                return url.path
            } ?? []).sorted()
        }
        let texts = try files.map { file -> String in
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("\(file) is not UTF-8 text") }
            return text
        }
        return tokenizer.encode(texts.joined(separator: "\n\n"))
    }

    /// The token memory's learning (as the daemon learns: projected keys, pieces overlapping by
    /// half) against plain prefill of 512 tokens, alternating; and a learned token's size on disk.
    func learningSpeed(_ model: Model, document: [Int32], prompt: [Int32])
        throws -> (learn: [Double], prefill: [Double], seconds: [Double], bytesPerToken: Double)
    {
        let projection = FittedKeyspace.shipped(for: model)?.projection
        let cache = model.makeCache(capacity: prompt.count)
        var learn: [Double] = [], prefill: [Double] = [], took: [Double] = [], bytes = 0.0
        for i in 0...runs {
            let knn = KNNLanguageModel(model: model, projection: projection)
            var t0 = DispatchTime.now()
            try knn.learn(document: 1, tokens: document)
            let s = seconds(since: t0)
            cache.clear()
            t0 = DispatchTime.now()
            _ = try model.forward(prompt, cache: cache, logits: .last)
            let p = Double(prompt.count) / seconds(since: t0)
            bytes = Double(knn.memory.segment(document: 1).encoded(keyspace: knn.keyspace).count) / Double(knn.memory.count)
            if i > 0 { learn.append(Double(document.count) / s); prefill.append(p); took.append(s) }   // the first pair warms up
        }
        return (learn, prefill, took, bytes)
    }
}

func seconds(since t0: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident set size from /proc/self/status (VmHWM).
func peakRSSMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kb / 1024
    }
    return 0
}
