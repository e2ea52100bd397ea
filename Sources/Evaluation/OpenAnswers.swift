import Foundation
import LearningBrain
import MainBrain

/// What a system answered to an open question (T9): the reply, the lines it gave as evidence
/// (with their citation, so a heading that names the release counts) and the documents it
/// cited, best first.
public struct OpenAnswer: Sendable {
    public var tokens: [Int32]
    public var evidence: [String]
    public var sources: [String]
    /// The passages put before the question: document and text (with its headings).
    public var passages: [(document: String, text: String)]
    public init(tokens: [Int32], evidence: [String] = [], sources: [String] = [], passages: [(document: String, text: String)] = []) {
        self.tokens = tokens
        self.evidence = evidence
        self.sources = sources
        self.passages = passages
    }
}

/// T9 for one system: how often the reply, the evidence and the sources hold the answer.
public struct AnswerResult: Codable, Sendable {
    public var n: Int
    /// The gold string is in the reply (exactly, for identifiers, versions and numbers; 60% or
    /// more of its content words, for descriptions and names).
    public var answerContainsGold: Double
    public var evidenceContainsGold: Double
    public var goldDocumentCited: Double
    public var goldDocumentFirst: Double
    /// A passage put before the question is of the gold document and holds the gold (its
    /// headings included): recall@k for k = the passages the system gives (hybrid 3, bm25-rag 2).
    public var passageRecall: Double
    /// Replies with no evidence (nothing cleared the floor: the model's answer alone).
    public var noEvidence: Double
    public var meanSources: Double
    enum CodingKeys: String, CodingKey {
        case n, answerContainsGold = "answer_contains_gold", evidenceContainsGold = "evidence_contains_gold",
             goldDocumentCited = "gold_document_cited", goldDocumentFirst = "gold_document_first", passageRecall = "passage_recall",
             noEvidence = "no_evidence", meanSources = "mean_sources"
    }
}

/// One question's T9 outcome (for item analysis: docs/results/*.items.jsonl).
public struct AnswerOutcome: Codable, Sendable {
    public var system: String
    public var item: String
    public var answer: String
    public var answerContainsGold: Bool
    public var evidenceContainsGold: Bool
    public var sources: [String]
    enum CodingKeys: String, CodingKey {
        case system, item, answer, answerContainsGold = "answer_contains_gold", evidenceContainsGold = "evidence_contains_gold", sources
    }
}

/// Whether a text states a gold answer: an identifier, version or number (no spaces, or any
/// digit) must appear whole (not inside a longer token: "15.1" is not in "15.17"); a
/// description or a list of names needs 60% or more of its content words.
public enum GoldMatch {
    public static func contains(_ text: String, gold: String) -> Bool {
        let t = text.lowercased(), g = gold.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
        guard !g.isEmpty else { return false }
        if isExact(g) {
            var from = t.startIndex
            while let r = t.range(of: g, range: from..<t.endIndex) {
                let before = r.lowerBound > t.startIndex ? t[t.index(before: r.lowerBound)] : " "
                let after = r.upperBound < t.endIndex ? t[r.upperBound] : " "
                if !isPart(before) && !isPart(after) { return true }
                from = t.index(after: r.lowerBound)
            }
            return false
        }
        let wanted = Set(SearchTerms.terms(in: g))
        guard !wanted.isEmpty else { return false }
        let present = Set(SearchTerms.terms(in: t))
        return Double(wanted.filter(present.contains).count) >= 0.6 * Double(wanted.count)
    }

    static func isExact(_ gold: String) -> Bool {
        !gold.contains(" ") || gold.contains(where: \.isNumber)
    }

    /// A character that continues a token ("15.17" ends before a space or ".", not before "0").
    static func isPart(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c == "-" }
}

extension Tasks {
    /// T9: each chat item asked as an open question, greedy, `maxTokens`; scored against its gold candidate.
    func openAnswers(_ items: [FreshDocsCorpus.Item], _ system: EvalSystem, maxTokens: Int, label: String)
        throws -> (result: AnswerResult?, outcomes: [AnswerOutcome]) {
        let questions = items.filter(\.chat)
        guard !questions.isEmpty else { return (nil, []) }
        var outcomes: [AnswerOutcome] = []
        var answered = 0, evidenced = 0, cited = 0, first = 0, bare = 0, sourceCount = 0, recalled = 0
        for (i, item) in questions.enumerated() {
            let gold = item.candidates[item.answer]
            let reply = try system.answer(chatPrompt: try promptTokens(item), question: item.prompt, maxTokens: maxTokens)
            let text = tokenizer.decode(reply.tokens)
            let inAnswer = GoldMatch.contains(text, gold: gold)
            let inEvidence = GoldMatch.contains(reply.evidence.joined(separator: "\n"), gold: gold)
            answered += inAnswer ? 1 : 0
            evidenced += inEvidence ? 1 : 0
            cited += reply.sources.contains(item.doc) ? 1 : 0
            first += reply.sources.first == item.doc ? 1 : 0
            bare += reply.evidence.isEmpty ? 1 : 0
            recalled += reply.passages.contains { $0.document == item.doc && GoldMatch.contains($0.text, gold: gold) } ? 1 : 0
            sourceCount += reply.sources.count
            outcomes.append(AnswerOutcome(system: system.id, item: item.id, answer: text, answerContainsGold: inAnswer,
                                          evidenceContainsGold: inEvidence, sources: reply.sources))
            progress(label, i + 1, questions.count)
        }
        let n = Double(questions.count)
        return (AnswerResult(n: questions.count, answerContainsGold: Double(answered) / n, evidenceContainsGold: Double(evidenced) / n,
                             goldDocumentCited: Double(cited) / n, goldDocumentFirst: Double(first) / n,
                             passageRecall: Double(recalled) / n,
                             noEvidence: Double(bare) / n, meanSources: Double(sourceCount) / n), outcomes)
    }
}
