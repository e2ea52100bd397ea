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
    /// What the reader decided (systems with one): "stated", "silent", "unsure" or "unread", and its best span.
    public var reading: (decision: String, span: String?)?
    /// Seconds to the first token (the prefill, the reader's reading included), and the reader's share of them.
    public var prefillSeconds: Double?
    public var readerSeconds: Double?
    public init(tokens: [Int32], evidence: [String] = [], sources: [String] = [], passages: [(document: String, text: String)] = [],
                reading: (decision: String, span: String?)? = nil, prefillSeconds: Double? = nil, readerSeconds: Double? = nil) {
        self.tokens = tokens
        self.evidence = evidence
        self.sources = sources
        self.passages = passages
        self.reading = reading
        self.prefillSeconds = prefillSeconds
        self.readerSeconds = readerSeconds
    }
}

/// A question about the learned documents that they do not answer (`unanswerable.jsonl` beside
/// items.jsonl: id, prompt): the reply should say the documents do not say.
public struct UnanswerableItem: Codable, Sendable, Equatable {
    public let id: String
    public let prompt: String
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
    /// The reply holds the gold, among questions whose gold passage was put before them.
    public var answerWhenRecalled: Double?
    /// The reply holds neither the gold nor a statement that the documents do not say, where the
    /// gold passage was put before the question: a wrong or evasive answer despite the evidence.
    public var wrongWhenRecalled: Double?
    /// Systems with a reader: how often it stated a span, how often that span held the gold, how
    /// often it said the documents do not say; and how often its best span held the gold at all.
    public var readerStated: Double?
    public var readerStatedRight: Double?
    public var readerSilent: Double?
    public var readerSpanContainsGold: Double?
    /// Questions the documents do not answer: how many, and the share of replies saying so.
    public var unanswerable: Int?
    public var unanswerableSaidSilent: Double?
    /// Mean seconds to the first token, and of them the reader's (layout, features, scores).
    public var meanPrefillSeconds: Double?
    public var meanReaderSeconds: Double?
    enum CodingKeys: String, CodingKey {
        case n, answerContainsGold = "answer_contains_gold", evidenceContainsGold = "evidence_contains_gold",
             goldDocumentCited = "gold_document_cited", goldDocumentFirst = "gold_document_first", passageRecall = "passage_recall",
             noEvidence = "no_evidence", meanSources = "mean_sources", answerWhenRecalled = "answer_when_recalled",
             wrongWhenRecalled = "wrong_when_recalled", readerStated = "reader_stated", readerStatedRight = "reader_stated_right",
             readerSilent = "reader_silent", readerSpanContainsGold = "reader_span_contains_gold", unanswerable,
             unanswerableSaidSilent = "unanswerable_said_silent", meanPrefillSeconds = "mean_prefill_s", meanReaderSeconds = "mean_reader_s"
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
    /// The reader's decision and best span, for systems with a reader.
    public var reader: String?
    enum CodingKeys: String, CodingKey {
        case system, item, answer, answerContainsGold = "answer_contains_gold", evidenceContainsGold = "evidence_contains_gold", sources,
             reader
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

/// Whether a reply says the documents do not answer (the reader's words, or the main brain's own).
public enum SilenceMatch {
    static let phrases = ["do not say", "does not say", "don't say", "doesn't say", "not mentioned", "no information", "do not mention",
                          "does not mention", "do not contain", "does not contain", "没有提到", "没有说明", "未提及", "没有相关", "未说明"]
    public static func says(_ reply: String) -> Bool {
        let t = reply.lowercased()
        return phrases.contains { t.contains($0) }
    }
}

/// A system told which item it is answering (the gold-passage ceiling needs the gold).
protocol ItemAware: AnyObject {
    var currentItem: FreshDocsCorpus.Item? { get set }
}

extension Tasks {
    /// T9: each chat item asked as an open question, greedy, `maxTokens`; scored against its gold
    /// candidate; then the questions the documents do not answer.
    func openAnswers(_ items: [FreshDocsCorpus.Item], unanswerable: [UnanswerableItem] = [], _ system: EvalSystem, maxTokens: Int,
                     label: String) throws -> (result: AnswerResult?, outcomes: [AnswerOutcome]) {
        let questions = items.filter(\.chat)
        guard !questions.isEmpty else { return (nil, []) }
        var outcomes: [AnswerOutcome] = []
        var answered = 0, evidenced = 0, cited = 0, first = 0, bare = 0, sourceCount = 0, recalled = 0
        var answeredRecalled = 0, wrongRecalled = 0, read = 0, stated = 0, statedRight = 0, silent = 0, spanRight = 0
        var prefills: [Double] = [], readings: [Double] = []
        func ask(_ prompt: String) throws -> (OpenAnswer, String) {
            let reply = try system.answer(chatPrompt: try promptTokens(chat: prompt), question: prompt, maxTokens: maxTokens)
            return (reply, tokenizer.decode(reply.tokens))
        }
        for (i, item) in questions.enumerated() {
            let gold = item.candidates[item.answer]
            (system as? ItemAware)?.currentItem = item
            let (reply, text) = try ask(item.prompt)
            let inAnswer = GoldMatch.contains(text, gold: gold)
            let inEvidence = GoldMatch.contains(reply.evidence.joined(separator: "\n"), gold: gold)
            answered += inAnswer ? 1 : 0
            evidenced += inEvidence ? 1 : 0
            cited += reply.sources.contains(item.doc) ? 1 : 0
            first += reply.sources.first == item.doc ? 1 : 0
            bare += reply.evidence.isEmpty ? 1 : 0
            if reply.passages.contains(where: { $0.document == item.doc && GoldMatch.contains($0.text, gold: gold) }) {
                recalled += 1
                answeredRecalled += inAnswer ? 1 : 0
                wrongRecalled += !inAnswer && !SilenceMatch.says(text) ? 1 : 0
            }
            if let reading = reply.reading {
                read += 1
                let right = reading.span.map { GoldMatch.contains($0, gold: gold) } ?? false
                spanRight += right ? 1 : 0
                if reading.decision == "stated" { stated += 1; statedRight += right ? 1 : 0 }
                silent += reading.decision == "silent" ? 1 : 0
            }
            sourceCount += reply.sources.count
            prefills += reply.prefillSeconds.map { [$0] } ?? []
            readings += reply.readerSeconds.map { [$0] } ?? []
            outcomes.append(AnswerOutcome(system: system.id, item: item.id, answer: text, answerContainsGold: inAnswer,
                                          evidenceContainsGold: inEvidence, sources: reply.sources,
                                          reader: reply.reading.map { "\($0.decision): \($0.span ?? "")" }))
            progress(label, i + 1, questions.count + unanswerable.count)
        }
        (system as? ItemAware)?.currentItem = nil
        var saidSilent = 0
        for (i, item) in unanswerable.enumerated() {
            let (reply, text) = try ask(item.prompt)
            let says = SilenceMatch.says(text)
            saidSilent += says ? 1 : 0
            outcomes.append(AnswerOutcome(system: system.id, item: item.id, answer: text, answerContainsGold: says,
                                          evidenceContainsGold: false, sources: reply.sources,
                                          reader: reply.reading.map { "\($0.decision): \($0.span ?? "")" }))
            progress(label, questions.count + i + 1, questions.count + unanswerable.count)
        }
        let n = Double(questions.count)
        func share(_ k: Int, _ of: Int) -> Double? { of > 0 ? Double(k) / Double(of) : nil }
        return (AnswerResult(n: questions.count, answerContainsGold: Double(answered) / n, evidenceContainsGold: Double(evidenced) / n,
                             goldDocumentCited: Double(cited) / n, goldDocumentFirst: Double(first) / n,
                             passageRecall: Double(recalled) / n,
                             noEvidence: Double(bare) / n, meanSources: Double(sourceCount) / n,
                             answerWhenRecalled: share(answeredRecalled, recalled), wrongWhenRecalled: share(wrongRecalled, recalled),
                             readerStated: share(stated, read), readerStatedRight: share(statedRight, stated),
                             readerSilent: share(silent, read), readerSpanContainsGold: share(spanRight, read),
                             unanswerable: unanswerable.isEmpty ? nil : unanswerable.count,
                             unanswerableSaidSilent: share(saidSilent, unanswerable.count),
                             meanPrefillSeconds: prefills.isEmpty ? nil : prefills.reduce(0, +) / Double(prefills.count),
                             meanReaderSeconds: readings.isEmpty ? nil : readings.reduce(0, +) / Double(readings.count)), outcomes)
    }
}
