import Foundation
import LearningBrain
import MainBrain

/// Fits the token memory's gate on public text only: one set of texts is learned into a
/// memory, then every token of three sets is scored by the main brain and by the memory:
/// related texts never learned (what fresh documents of the same kind look like), the learned
/// texts again (re-reading), and unrelated texts (what general use looks like). The gate that
/// maximises the mixture's log-likelihood on the first two wins, among those that make neither
/// the related nor the unrelated texts any less likely than the main brain alone makes them
/// (the retention promise: the memory only speaks where it is close).
public struct GateFitting {
    public struct Result: Codable, Sendable {
        public var gate: MemoryGate
        /// Per set: tokens, the main brain's mean NLL, the gated mixture's, and the share of
        /// tokens where the gate is open (λ > 0).
        public var related: SetFigures
        public var learned: SetFigures
        public var unrelated: SetFigures
        public var memoryEntries: Int
        enum CodingKeys: String, CodingKey { case gate, related, learned, unrelated, memoryEntries = "memory_entries" }
    }

    public struct SetFigures: Codable, Sendable {
        public var tokens: Int
        public var mainNLL: Double
        public var gatedNLL: Double
        public var open: Double
        enum CodingKeys: String, CodingKey { case tokens, mainNLL = "main_nll", gatedNLL = "gated_nll", open }
    }

    let model: Model
    let tokenizer: Tokenizer
    public var window = 512
    public var stride = 256
    public var progress: (String, Int, Int) -> Void = { _, _, _ in }

    public init(model: Model, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    public func run(memory: [FreshDocsCorpus.Document], related: [FreshDocsCorpus.Document],
                    unrelated: [FreshDocsCorpus.Document]) throws -> Result {
        let knn = KNNLanguageModel(model: model)
        for (i, d) in memory.enumerated() {
            try knn.learn(document: Int64(i + 1), tokens: tokenizer.encode(d.text))
            progress("learning the calibration memory", i + 1, memory.count)
        }
        let r = try evidence(related, knn, label: "scoring related text")
        let l = try evidence(memory, knn, label: "scoring learned text")
        let u = try evidence(unrelated, knn, label: "scoring unrelated text")
        let gate = Self.fit(related: r, learned: l, unrelated: u)
        return Result(gate: gate, related: Self.figures(r, gate), learned: Self.figures(l, gate), unrelated: Self.figures(u, gate),
                      memoryEntries: knn.memory.count)
    }

    func evidence(_ documents: [FreshDocsCorpus.Document], _ knn: KNNLanguageModel, label: String) throws -> [KNNLanguageModel.Evidence] {
        var out: [KNNLanguageModel.Evidence] = []
        for (i, d) in documents.enumerated() {
            let tokens = tokenizer.encode(d.text)
            for w in slidingWindows(count: tokens.count, window: window, stride: stride) {
                let input = Array(tokens[w.begin..<(w.end - 1)]), first = w.firstTarget - 1 - w.begin
                let (logits, queries) = try knn.mainBrain(input, cache: model.makeCache(capacity: input.count), from: first)
                out += knn.evidence(logits, queries: queries, targets: Array(tokens[w.firstTarget..<w.end]))
            }
            progress(label, i + 1, documents.count)
        }
        return out
    }

    /// Total negative log-likelihood of the gated mixture over the evidence.
    public static func nll(_ e: [KNNLanguageModel.Evidence], _ gate: MemoryGate) -> Double {
        var total = 0.0
        for x in e {
            let l = Double(gate.lambda(relativeDistance: x.relativeDistance))
            total -= log(max((1 - l) * x.mainProbability + l * x.memoryProbability, 1e-300))
        }
        return total
    }

    static func figures(_ e: [KNNLanguageModel.Evidence], _ gate: MemoryGate) -> SetFigures {
        let n = Double(max(1, e.count))
        return SetFigures(tokens: e.count, mainNLL: e.reduce(0) { $0 - log(max($1.mainProbability, 1e-300)) } / n,
                          gatedNLL: nll(e, gate) / n,
                          open: Double(e.filter { gate.lambda(relativeDistance: $0.relativeDistance) > 0 }.count) / n)
    }

    /// Grid search: λmax in 0.05…0.95, the radius at quantiles of the observed distances, the
    /// inner edge a fraction of it. Only gates that raise neither the related nor the unrelated
    /// texts' NLL qualify; "never open" always does, so the result is at worst the main brain.
    public static func fit(related: [KNNLanguageModel.Evidence], learned: [KNNLanguageModel.Evidence],
                           unrelated: [KNNLanguageModel.Evidence]) -> MemoryGate {
        let closed = MemoryGate(lambdaMax: 0, inner: 0, radius: 0)
        let distances = (related + learned + unrelated).map(\.relativeDistance).sorted()
        guard !distances.isEmpty else { return closed }
        let quantiles = Swift.stride(from: 0.01, through: 0.99, by: 0.01).map { distances[Int($0 * Double(distances.count - 1))] }
        let relatedBase = nll(related, closed), unrelatedBase = nll(unrelated, closed)
        var best = closed, bestNLL = relatedBase + nll(learned, closed)
        for radius in Set(quantiles).sorted() where radius > 0 {
            for fraction: Float in [0, 0.25, 0.5, 0.75, 1] {
                for lambdaMax in Swift.stride(from: Float(0.05), through: 0.95, by: 0.05) {
                    let gate = MemoryGate(lambdaMax: lambdaMax, inner: fraction * radius, radius: radius)
                    guard nll(unrelated, gate) <= unrelatedBase else { continue }
                    let r = nll(related, gate)
                    guard r <= relatedBase else { continue }
                    let total = r + nll(learned, gate)
                    if total < bestNLL { best = gate; bestNLL = total }
                }
            }
        }
        return best
    }
}
