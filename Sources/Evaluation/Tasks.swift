import Foundation
import Kernels
import MainBrain

/// Windows of the evaluation protocol: length W every S tokens; the first scores every token
/// but the first, each later one only tokens no earlier window scored.
struct Window { let begin: Int; let end: Int; let firstTarget: Int }

func slidingWindows(count n: Int, window w: Int, stride s: Int) -> [Window] {
    var out: [Window] = []
    var scored = 1, begin = 0
    while scored < n {
        let end = min(begin + w, n)
        out.append(Window(begin: begin, end: end, firstTarget: max(scored, begin + 1)))
        scored = end
        begin += s
    }
    return out
}

/// Documents joined by the end-of-text token, with the document each position belongs to.
struct TokenStream {
    var tokens: [Int32] = []
    var documentOf: [Int] = []
    var bytes: [Int] = []

    init(_ documents: [FreshDocsCorpus.Document], tokenizer: Tokenizer) {
        let separator = tokenizer.id(of: "<|endoftext|>") ?? tokenizer.eos ?? 0
        for (i, d) in documents.enumerated() {
            if i > 0 { tokens.append(separator); documentOf.append(i - 1) }
            let ids = tokenizer.encode(d.text)
            tokens += ids
            documentOf += Array(repeating: i, count: ids.count)
            bytes.append(d.text.utf8.count)
        }
    }
}

/// T1/T2 (and T5's base figures): perplexity with a bootstrap CI over documents, bits per byte.
public struct PerplexityResult: Codable, Sendable {
    public var ppl: Double
    public var pplCI: [Double]
    public var bitsPerByte: Double
    public var tokens: Int
    /// Tokens of the windows the model ran (each scored token's window context included).
    public var windowTokens: Int
    public var documents: Int
    enum CodingKeys: String, CodingKey {
        case ppl, pplCI = "ppl_ci", bitsPerByte = "bits_per_byte", tokens, windowTokens = "window_tokens", documents
    }
}

/// T5: the system against the base on general text.
public struct RetentionResult: Codable, Sendable {
    public var ppl: Double
    public var basePPL: Double
    public var dpplPct: Double
    public var kl: Double
    public var top1Agree: Double
    public var tokens: Int
    enum CodingKeys: String, CodingKey { case ppl, basePPL = "base_ppl", dpplPct = "dppl_pct", kl, top1Agree = "top1_agree", tokens }
}

/// T3/T4: multiple-choice recall.
public struct RecallResult: Codable, Sendable {
    public var n: Int
    public var acc: Double
    public var accNorm: Double
    public var accCal: Double
    public var chance: Double
    /// The same over items the base gets wrong by acc_norm.
    public var unknownN: Int
    public var unknownAccNorm: Double?
    enum CodingKeys: String, CodingKey {
        case n, acc, accNorm = "acc_norm", accCal = "acc_cal", chance, unknownN = "unknown_n", unknownAccNorm = "unknown_acc_norm"
    }
}

/// How a system did on one item (written one a line beside the result, for item analysis).
public struct ItemOutcome: Codable, Sendable, Equatable {
    public var system: String
    public var item: String
    public var acc: Bool
    public var accNorm: Bool
    public var accCal: Bool
    enum CodingKeys: String, CodingKey { case system, item, acc, accNorm = "acc_norm", accCal = "acc_cal" }
}

struct Tasks {
    let tokenizer: Tokenizer
    let chatTemplate: ChatTemplate?
    let window: Int
    let stride: Int
    let progress: (String, Int, Int) -> Void

    /// Per-token NLL of a stream under a system, and (when `reference` is given) the reference's
    /// NLL, KL and top-1 agreement against it, window by window, in one pass.
    func score(_ stream: TokenStream, _ system: EvalSystem, reference: EvalSystem? = nil, label: String)
        throws -> (nll: [Double], positions: [Int], referenceNLL: [Double], kl: Double, agree: Double)
    {
        var nll: [Double] = [], positions: [Int] = [], referenceNLL: [Double] = []
        var kl = 0.0, agree = 0
        let windows = slidingWindows(count: stream.tokens.count, window: window, stride: stride)
        for (i, w) in windows.enumerated() {
            let tokens = Array(stream.tokens[w.begin..<w.end])
            let first = w.firstTarget - 1 - w.begin
            let logits = try system.windowLogits(tokens, from: first)
            let base = try reference.map { try $0.windowLogits(tokens, from: first) }
            for (row, target) in (w.firstTarget..<w.end).enumerated() {
                let r = logits.row(row)
                nll.append(-Scorer.logProbability(r, of: stream.tokens[target]))
                positions.append(target)
                if let base {
                    let b = base.row(row)
                    referenceNLL.append(-Scorer.logProbability(b, of: stream.tokens[target]))
                    kl += Self.kl(b, r)
                    if Sampler.argmax(b) == Sampler.argmax(r) { agree += 1 }
                }
            }
            progress(label, i + 1, windows.count)
        }
        return (nll, positions, referenceNLL, nll.isEmpty ? 0 : kl / Double(nll.count), nll.isEmpty ? 1 : Double(agree) / Double(nll.count))
    }

    /// KL(p ‖ q) in nats from two logit rows.
    static func kl(_ p: ArraySlice<Float>, _ q: ArraySlice<Float>) -> Double {
        let lp = p.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: $0.count) }
        let lq = q.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: $0.count) }
        var sum = 0.0
        for (a, b) in zip(p, q) {
            let logP = Double(a) - lp
            sum += exp(logP) * (logP - (Double(b) - lq))
        }
        return max(0, sum)
    }

    func perplexity(_ documents: [FreshDocsCorpus.Document], _ system: EvalSystem, label: String) throws -> PerplexityResult? {
        guard !documents.isEmpty else { return nil }
        let stream = TokenStream(documents, tokenizer: tokenizer)
        guard stream.tokens.count >= 2 else { return nil }
        let (nll, positions, _, _, _) = try score(stream, system, label: label)
        var perDocNLL = [Double](repeating: 0, count: documents.count), perDocCount = [Int](repeating: 0, count: documents.count)
        for (v, p) in zip(nll, positions) { perDocNLL[stream.documentOf[p]] += v; perDocCount[stream.documentOf[p]] += 1 }
        let total = nll.reduce(0, +)
        return PerplexityResult(
            ppl: exp(total / Double(nll.count)),
            pplCI: Bootstrap.pplInterval(nll: perDocNLL, counts: perDocCount),
            bitsPerByte: total / log(2) / Double(stream.bytes.reduce(0, +)),
            tokens: nll.count,
            windowTokens: slidingWindows(count: stream.tokens.count, window: window, stride: stride).reduce(0) { $0 + $1.end - $1.begin },
            documents: documents.count)
    }

    func retention(_ general: [FreshDocsCorpus.Document], _ system: EvalSystem, base: EvalSystem) throws -> RetentionResult? {
        guard !general.isEmpty else { return nil }
        let stream = TokenStream(general, tokenizer: tokenizer)
        let (nll, _, baseNLL, kl, agree) = try score(stream, system, reference: base, label: "T5 \(system.id)")
        let ppl = exp(nll.reduce(0, +) / Double(nll.count)), basePPL = exp(baseNLL.reduce(0, +) / Double(baseNLL.count))
        return RetentionResult(ppl: ppl, basePPL: basePPL, dpplPct: 100 * (ppl / basePPL - 1), kl: kl, top1Agree: agree, tokens: nll.count)
    }

    /// Prompt tokens of an item: plain text, or a user message in the chat template whose
    /// candidates begin the assistant's reply.
    func promptTokens(_ item: FreshDocsCorpus.Item) throws -> [Int32] {
        guard item.chat else { return tokenizer.encode(item.prompt) }
        return try promptTokens(chat: item.prompt)
    }

    /// A question as one user message in the chat template.
    func promptTokens(chat question: String) throws -> [Int32] {
        guard let chatTemplate else { throw CorpusError("chat questions need a model with a usable chat template") }
        return tokenizer.encode(chatTemplate.render([ChatMessage(role: "user", content: question)]), parseSpecial: true)
    }

    /// The candidate scores of an item: s (after the prompt) and s0 (after the neutral prompt).
    func itemScores(_ item: FreshDocsCorpus.Item, _ system: EvalSystem) throws -> (s: [Double], s0: [Double]) {
        let candidates = item.candidates.map { tokenizer.encode($0) }
        return (try system.candidateScores(prompt: try promptTokens(item), candidates: candidates),
                try system.candidateScores(prompt: tokenizer.encode("Answer:"), candidates: candidates))
    }

    /// Which candidate each rule picks, per item.
    func recall(_ items: [FreshDocsCorpus.Item], _ system: EvalSystem, label: String) throws -> [ItemOutcome] {
        var out: [ItemOutcome] = []
        for (i, item) in items.enumerated() {
            let (s, s0) = try itemScores(item, system)
            out.append(outcome(item, system: system.id, s: s, s0: s0))
            progress(label, i + 1, items.count)
        }
        return out
    }

    /// acc = argmax s; acc_norm = argmax s/bytes; acc_cal = argmax s − s0.
    func outcome(_ item: FreshDocsCorpus.Item, system: String, s: [Double], s0: [Double]) -> ItemOutcome {
        let norm = zip(s, item.candidates).map { $0 / Double(max(1, $1.utf8.count)) }
        let cal = zip(s, s0).map { $0 - $1 }
        return ItemOutcome(system: system, item: item.id, acc: argmax(s) == item.answer,
                           accNorm: argmax(norm) == item.answer, accCal: argmax(cal) == item.answer)
    }

    static func summarize(_ items: [FreshDocsCorpus.Item], _ results: [ItemOutcome], baseNorm: [Bool]?) -> RecallResult? {
        guard !items.isEmpty else { return nil }
        func rate(_ v: [Bool]) -> Double { Double(v.filter { $0 }.count) / Double(max(1, v.count)) }
        let unknown = baseNorm.map { b in results.indices.filter { !b[$0] } } ?? []
        return RecallResult(
            n: items.count, acc: rate(results.map(\.acc)), accNorm: rate(results.map(\.accNorm)), accCal: rate(results.map(\.accCal)),
            chance: items.map { 1 / Double($0.candidates.count) }.reduce(0, +) / Double(items.count),
            unknownN: unknown.count, unknownAccNorm: unknown.isEmpty ? nil : rate(unknown.map { results[$0].accNorm }))
    }
}

func argmax(_ v: [Double]) -> Int { v.indices.max { v[$0] < v[$1] } ?? 0 }

enum Bootstrap {
    /// 95% interval of exp(Σ nll / Σ count) over documents resampled with replacement (1,000 times, seeded).
    static func pplInterval(nll: [Double], counts: [Int], resamples: Int = 1000) -> [Double] {
        let docs = nll.indices.filter { counts[$0] > 0 }
        guard docs.count > 1 else {
            let p = exp(nll.reduce(0, +) / Double(max(1, counts.reduce(0, +))))
            return [p, p]
        }
        var rng = SeededGenerator(seed: 1000)
        var values: [Double] = []
        for _ in 0..<resamples {
            var s = 0.0, c = 0
            for _ in docs {
                let d = docs[Int(rng.next() % UInt64(docs.count))]
                s += nll[d]; c += counts[d]
            }
            values.append(exp(s / Double(c)))
        }
        values.sort()
        return [values[Int(0.025 * Double(resamples))], values[Int(0.975 * Double(resamples)) - 1]]
    }
}
