import Foundation
import LearningBrain
import MainBrain

/// Fits passage recall's relevance floor (`PassageRelevance.floor`) on a FreshDocs-format
/// corpus of public text (`make recall-floor`: the development corpus, as k, temperature and
/// radius may be tuned on it): its learned documents are learned into a temporary store as the
/// box learns them (`PassageStore`), and every 32 tokens the last 64 tokens of its general
/// texts ask `Recall` for its candidates, as the hybrid does when it reads text; a window's
/// figure is the largest share a candidate holds. The floor is the smallest multiple of
/// 0.05 that at most one general window in 200 reaches (`allowedRecall`), so text that only
/// shares words with the documents hardly ever pulls passages into the context. Reported, not
/// fitted: the held-out documents' windows, and the items' questions (what the share means for
/// recall).
public struct RecallFloorFitting {
    public struct SetFigures: Codable, Sendable {
        public var queries: Int
        /// Shares at the 50th, 90th, 99th percentile and the largest.
        public var p50: Double, p90: Double, p99: Double, max: Double
        /// The fraction of queries at or above each candidate floor ("0.30": …).
        public var recalled: [String: Double]
    }

    public struct Result: Codable, Sendable {
        public var floor: Double
        public var corpus: String
        public var passages: Int
        public var windowTokens: Int
        public var general: SetFigures
        public var learned: SetFigures
        public var heldout: SetFigures
        public var verbatim: SetFigures
        public var paraphrase: SetFigures
    }

    /// Tokens of text that make one query, and how far apart queries are.
    public static let windowTokens = 64
    static let windowStride = 32
    public static let allowedRecall = 0.005
    static let candidateFloors = (1...20).map { Double($0) / 20 }
    let tokenizer: Tokenizer

    public init(tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
    }

    public func run(_ corpus: FreshDocsCorpus) throws -> Result {
        let store = try PassageStore(tokenizer: tokenizer)
        try store.learn(corpus.learned)
        func share(_ text: String) throws -> Double {
            try Recall.candidates(for: text, index: store.store).hits.map(\.share).max() ?? 0
        }
        func windows(_ documents: [FreshDocsCorpus.Document]) throws -> [Double] {
            try documents.flatMap { d -> [Double] in
                let tokens = tokenizer.encode(d.text)
                return try stride(from: Self.windowStride, through: tokens.count, by: Self.windowStride).map { end in
                    try share(tokenizer.decode(Array(tokens[max(0, end - Self.windowTokens)..<end])))
                }
            }
        }
        let general = try windows(corpus.general)
        let floor = Self.candidateFloors.first { f in Double(general.filter { $0 >= f }.count) <= Self.allowedRecall * Double(general.count) } ?? 1
        return Result(floor: floor, corpus: corpus.name, passages: try store.store.passageCounts().passages, windowTokens: Self.windowTokens,
                      general: Self.figures(general), learned: Self.figures(try windows(corpus.learned)),
                      heldout: Self.figures(try windows(corpus.heldoutDocuments)),
                      verbatim: Self.figures(try corpus.items.filter { $0.kind == "verbatim" }.map { try share($0.prompt) }),
                      paraphrase: Self.figures(try corpus.items.filter { $0.kind == "paraphrase" }.map { try share($0.prompt) }))
    }

    static func figures(_ shares: [Double]) -> SetFigures {
        let sorted = shares.sorted()
        func quantile(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] }
        var recalled: [String: Double] = [:]
        for floor in candidateFloors {
            recalled[String(format: "%.2f", floor)] = Double(sorted.filter { $0 >= floor }.count) / Double(max(1, sorted.count))
        }
        return SetFigures(queries: sorted.count, p50: quantile(0.5), p90: quantile(0.9), p99: quantile(0.99),
                          max: sorted.last ?? 0, recalled: recalled)
    }
}
