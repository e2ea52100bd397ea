import Foundation
import MainBrain
import Store

/// Where recall finds passages: the daemon's SQLite FTS5 index (`Store`), or any index that
/// ranks by BM25 over `SearchTerms` and counts the passages holding a term.
public protocol PassageIndex {
    /// The passages that best match any of these terms, best first.
    func searchPassages(terms: [String], limit: Int) throws -> [PassageHit]
    /// How many passages there are, and how many hold each term (absent: none).
    func passageFrequencies(terms: [String]) throws -> (passages: Int, containing: [String: Int])
    /// The passage after this one in its document, nil at its end.
    func passage(after hit: PassageHit) throws -> PassageHit?
}

extension Store: PassageIndex {}

/// Passage recall for one question, as the daemon and FreshDocs's `hybrid` run it: the
/// question's content words (`QueryWords`) find passages by BM25; a passage joins only if it
/// holds enough of the question (`PassageRelevance.floor`, on its header and text) and scores
/// at least `relativeFloor` of the best one's BM25; at most `limit` join.
public struct Recall: Sendable {
    public var passages: [PassageHit] = []
    /// When no passage clears the floor: the best of those holding at least
    /// `PassageRelevance.subjectFloor` of the question (at most `limit`), read for silence only.
    public var nearMisses: [PassageHit] = []
    /// The question's content words and their passage counts (evidence weighs by them too).
    public private(set) var words: [String] = []
    /// Each CJK bigram of the question and those beside it (`PassageRelevance.share`).
    public private(set) var neighbours: [String: Set<String>] = [:]
    public private(set) var frequencies: (passages: Int, containing: [String: Int]) = (0, [:])

    /// A relevant passage joins only if its BM25 score is at least this share of the best
    /// one's: the tail of weak matches stays out of the context.
    public static let relativeFloor = 0.5
    /// Passages put before a question (the daemon's `knowledge_passages` default).
    public static let defaultLimit = 3
    /// BM25 candidates read before the floors: the floors are applied to these, then `limit` kept.
    static let candidateCount = 16

    public init() {}

    public init(question: String, index: PassageIndex, limit: Int) throws {
        guard limit > 0 else { self.init(); return }
        self.init(candidates: try Self.candidates(for: question, index: index, limit: limit), limit: limit)
    }

    /// The decision on a question's candidates (`candidates(for:)`).
    init(candidates found: Candidates, limit: Int) {
        words = found.words
        neighbours = found.neighbours
        frequencies = found.frequencies
        let relevant = found.hits.filter { $0.share >= PassageRelevance.floor }.map(\.hit)
        guard let best = relevant.first?.score, best > 0 else {
            nearMisses = Array(found.hits.filter { $0.share >= PassageRelevance.subjectFloor }.map(\.hit).prefix(limit))
            return
        }
        passages = Array(relevant.filter { $0.score >= Self.relativeFloor * best }.prefix(limit))
    }

    public typealias Candidates = (words: [String], neighbours: [String: Set<String>], frequencies: (passages: Int, containing: [String: Int]),
                                   hits: [(hit: PassageHit, share: Double)])

    /// Recall for a text to be continued (a plain prompt): what comes next is what follows the
    /// prompt's last words in a learned document, so the passage holding the prompt's end
    /// (`tail`, cleared by the floors like a question) and the passage after it come first, then
    /// those recalled for the whole prompt. Recall for the whole prompt alone finds where most
    /// of the prompt is, and a continuation often sits in the passage after that.
    public init(continuing prompt: String, index: PassageIndex, limit: Int) throws {
        self = try Recall(question: prompt, index: index, limit: limit)
        let tail = Self.tail(of: prompt)
        guard limit > 0, tail.count < prompt.count, let anchor = try Recall(question: String(tail), index: index, limit: 1).passages.first
        else { return }
        var ahead = [anchor]
        if limit > 1, let next = try index.passage(after: anchor) { ahead.append(next) }
        let kept = Set(ahead.map(\.passageId))
        passages = Array((ahead + passages.filter { !kept.contains($0.passageId) }).prefix(limit))
    }

    /// Content words a prompt's end must hold to locate it in a document.
    static let tailWords = 4

    /// The prompt's last lines, as few as hold `tailWords` content words (the whole prompt when it
    /// holds fewer).
    static func tail(of prompt: String) -> Substring {
        var start = prompt.endIndex
        while let newline = prompt[..<start].dropLast().lastIndex(of: "\n") {
            start = prompt.index(after: newline)
            if QueryWords.content(of: String(prompt[start...]), limit: tailWords).count >= tailWords { return prompt[start...] }
            start = newline
        }
        return prompt[...]
    }

    /// The BM25 candidates for a question with the share of it each holds (on its header and
    /// text), best BM25 first: what the floors are applied to (and what `make recall-floor` fits on).
    public static func candidates(for question: String, index: PassageIndex, limit: Int = defaultLimit) throws -> Candidates {
        let words = QueryWords.content(of: question), neighbours = QueryWords.neighbours(in: question)
        let hits = try index.searchPassages(terms: words, limit: max(limit, candidateCount))
        guard !hits.isEmpty else { return (words, neighbours, (0, [:]), []) }
        let frequencies = try index.passageFrequencies(terms: words)
        return (words, neighbours, frequencies, hits.map { hit in
            (hit, PassageRelevance.share(of: words, holding: PassageRelevance.stems(QueryWords.words(in: searchText(hit))),
                                         containing: frequencies.containing, passages: frequencies.passages, neighbours: neighbours))
        })
    }

    static func searchText(_ p: PassageHit) -> String { p.header.isEmpty ? p.text : p.header + "\n" + p.text }

    /// Each recalled document's share of the recalled passages' scores (they sum to 1), and its passages.
    public var shares: [Int64: (share: Double, passages: Int)] {
        let total = passages.reduce(0) { $0 + $1.score }
        var out: [Int64: (share: Double, passages: Int)] = [:]
        for p in passages {
            out[p.documentId, default: (0, 0)].share += total > 0 ? p.score / total : 0
            out[p.documentId, default: (0, 0)].passages += 1
        }
        return out
    }

    /// The passages as the prompt names them: by the document's path and the headings they sit under.
    public var recalled: [KnowledgeContext.Recalled] { Self.named(passages) }

    static func named(_ hits: [PassageHit]) -> [KnowledgeContext.Recalled] {
        hits.map { .init(title: $0.header.isEmpty ? $0.path : "\($0.path) (\($0.header))", text: $0.text) }
    }

    /// The reader for a question, around the generation's predictor: over the recalled
    /// passages, or, when none cleared the floor, over the near misses in a prompt of their own
    /// (`ReadingPredictor.probe`), only to say the documents do not answer. Nil: nothing to read.
    public func reading(model: Model, tokenizer: Tokenizer, template: ChatTemplate?, reader: Reader, inner: MemoryJoin?,
                        question: String) -> ReadingPredictor? {
        if let first = passages.first {
            return ReadingPredictor(model: model, tokenizer: tokenizer, reader: reader, inner: inner, recalled: recalled, question: question,
                                    shard: ReaderSiteLearning.shard(of: first.path))
        }
        guard !nearMisses.isEmpty, let template, let text = KnowledgeContext.userText(Self.named(nearMisses), question: question) else { return nil }
        let probe = tokenizer.encode(template.render([ChatMessage(role: "user", content: text)]), parseSpecial: true)
        guard probe.count < model.config.contextLength else { return nil }
        return ReadingPredictor(model: model, tokenizer: tokenizer, reader: reader, inner: inner, recalled: Self.named(nearMisses),
                                question: question, probe: probe, shard: ReaderSiteLearning.shard(of: nearMisses[0].path))
    }

    /// Keeps the best `count` passages (to fit a context).
    public func keeping(_ count: Int) -> Recall {
        var r = self
        r.passages = Array(passages.prefix(count))
        return r
    }

    /// The lines of the recalled passages that best support an answer (`EvidencePicker`).
    public func evidence(answer: String) -> [EvidenceLines] {
        EvidencePicker.pick(question: words, neighbours: neighbours, answer: answer, passages: passages, frequencies: frequencies)
    }
}

/// Why recall puts what it does before the main brain for a question (the retrieval test,
/// `twinbrain search`): every BM25 candidate with the share of the question it holds and what
/// became of it, the decision itself, and the lines of the recalled passages that best match the
/// question.
public struct RecallExplanation: Sendable {
    public enum Verdict: String, Sendable {
        /// Put before the main brain.
        case recalled
        /// Holds enough of the question, but scores below `Recall.relativeFloor` of the best one.
        case belowRelativeFloor = "below-relative-floor"
        /// Would join, but `limit` passages already did.
        case beyondLimit = "beyond-limit"
        /// Holds too little of the question (`PassageRelevance.floor`).
        case belowFloor = "below-floor"
        /// Nothing cleared the floor; this one holds the question's subject and is read for silence only.
        case nearMiss = "near-miss"
    }

    public struct Candidate: Sendable {
        public var hit: PassageHit
        /// The share of the question it holds (rarity-weighted), against `PassageRelevance.floor`.
        public var share: Double
        /// Its BM25 score over the best relevant passage's (nil when none is relevant).
        public var relativeScore: Double?
        public var verdict: Verdict
    }

    public var words: [String]
    public var limit: Int
    public var candidates: [Candidate]
    public var recall: Recall
    /// The recalled passages' lines that best match the question (the evidence an answer cites
    /// comes from these passages, weighed by the answer too).
    public var evidence: [EvidenceLines]

    public init(question: String, index: PassageIndex, limit: Int) throws {
        let found = try Recall.candidates(for: question, index: index, limit: limit)
        let recall = limit > 0 ? Recall(candidates: found, limit: limit) : Recall()
        let recalled = Set(recall.passages.map(\.passageId)), near = Set(recall.nearMisses.map(\.passageId))
        let best = found.hits.first { $0.share >= PassageRelevance.floor }?.hit.score
        self.words = found.words
        self.limit = limit
        self.recall = recall
        candidates = found.hits.map { hit, share in
            let relative = best.flatMap { $0 > 0 ? hit.score / $0 : nil }
            let verdict: Verdict
            if recalled.contains(hit.passageId) { verdict = .recalled }
            else if near.contains(hit.passageId) { verdict = .nearMiss }
            else if share < PassageRelevance.floor { verdict = .belowFloor }
            else if (relative ?? 0) < Recall.relativeFloor { verdict = .belowRelativeFloor }
            else { verdict = .beyondLimit }
            return Candidate(hit: hit, share: share, relativeScore: relative, verdict: verdict)
        }
        evidence = recall.evidence(answer: "")
    }
}

/// Lines of a learned document that support an answer, with their citation.
public struct EvidenceLines: Sendable, Equatable {
    public var documentId: Int64
    public var path: String
    /// Lines from 1 (nil for passages stored before lines were kept).
    public var lines: ClosedRange<Int>?
    public var page: Int?
    /// The heading path the lines sit under.
    public var header: String
    public var text: String

    /// "deb/redis.txt:27–31", "manual.pdf p. 4:12".
    public var citation: String {
        var s = path
        if let page { s += " p. \(page)" }
        if let lines { s += lines.count == 1 ? ":\(lines.lowerBound)" : ":\(lines.lowerBound)–\(lines.upperBound)" }
        return s
    }
}

/// Picks evidence at line level from recalled passages: each line is scored by the share of
/// the question's content words it holds (rarity-weighted, as `PassageRelevance`) plus the
/// share of the answer's own content words (what the reply states that the question did not
/// ask) it holds. The best line and those within `closeness` of it join (at most `maxLines`),
/// each with the line before it when that opens the list item it continues; adjacent lines merge.
public enum EvidencePicker {
    public static let maxLines = 3
    static let closeness = 0.8
    /// A line below this score supports nothing (it shares only common words with the question).
    public static let minimumScore = 0.2

    public static func pick(question: [String], neighbours: [String: Set<String>], answer: String, passages: [PassageHit],
                            frequencies: (passages: Int, containing: [String: Int])) -> [EvidenceLines] {
        guard !passages.isEmpty else { return [] }
        let questionSet = Set(question)
        let answerWords = QueryWords.content(of: answer).filter { !questionSet.contains($0) }
        let answerNeighbours = QueryWords.neighbours(in: answer)
        // The index was asked about the question's terms only: the answer's weigh as rare ones.
        let answerContaining = Dictionary(answerWords.map { ($0, frequencies.containing[$0] ?? 1) }, uniquingKeysWith: { a, _ in a })
        struct Line { let passage: Int; let index: Int; let number: Int?; let text: String; let score: Double }
        var lines: [Line] = []
        for (p, hit) in passages.enumerated() {
            let rows = hit.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // A passage of rows starts with its table's header, which is no line of the passage's range.
            let offset = rows.count == (hit.lines?.count ?? rows.count) + 1 ? -1 : 0
            for (i, row) in rows.enumerated() where !row.trimmingCharacters(in: .whitespaces).isEmpty {
                let stems = PassageRelevance.stems(QueryWords.words(in: row))
                let q = PassageRelevance.share(of: question, holding: stems, containing: frequencies.containing,
                                               passages: frequencies.passages, neighbours: neighbours)
                let a = answerWords.isEmpty ? 0 : PassageRelevance.share(of: answerWords, holding: stems, containing: answerContaining,
                                                                         passages: frequencies.passages, neighbours: answerNeighbours)
                let number = hit.lines.map { $0.lowerBound + i + offset }
                lines.append(Line(passage: p, index: i, number: number.flatMap { $0 >= hit.lines!.lowerBound ? $0 : nil }, text: row,
                                  score: q + 0.5 * a - 0.001 * Double(p)))
            }
        }
        guard let best = lines.map(\.score).max(), best >= minimumScore else { return [] }
        let chosen = lines.filter { $0.score >= closeness * best }.sorted { $0.score > $1.score }.prefix(maxLines)
        // Per passage, the chosen line indices (plus the item line a continuation belongs to), in order.
        var picked: [Int: Set<Int>] = [:]
        for l in chosen {
            picked[l.passage, default: []].insert(l.index)
            let rows = passages[l.passage].text.split(separator: "\n", omittingEmptySubsequences: false)
            if l.index > 0, DocumentStructure.leadingSpaces(String(rows[l.index])) > 0,
               DocumentStructure.listIndent(String(rows[l.index - 1])) != nil {
                picked[l.passage]!.insert(l.index - 1)
            }
        }
        var out: [EvidenceLines] = []
        for p in picked.keys.sorted(by: { a, b in
            (chosen.firstIndex { $0.passage == a } ?? 0) < (chosen.firstIndex { $0.passage == b } ?? 0)
        }) {
            let hit = passages[p]
            let rows = hit.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let byIndex = Dictionary(lines.filter { $0.passage == p }.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
            var run: [Int] = []
            func close() {
                guard let first = run.first, let last = run.last else { return }
                let a = byIndex[first]?.number, b = byIndex[last]?.number
                out.append(EvidenceLines(documentId: hit.documentId, path: hit.path, lines: a.flatMap { a in b.map { a...max(a, $0) } },
                                         page: hit.page, header: hit.header, text: run.map { rows[$0] }.joined(separator: "\n")))
                run = []
            }
            for i in picked[p]!.sorted() {
                if let last = run.last, last + 1 != i { close() }
                run.append(i)
            }
            close()
        }
        return out
    }
}
