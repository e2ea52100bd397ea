import Foundation

/// Cuts documents into overlapping windows of main-brain tokens: `length` tokens every
/// `stride`, the last one reaching the end: the evaluated RAG baselines' chunks (the box cuts
/// along the document's structure: `DocumentPassageBuilder`).
public struct PassageChunker: Sendable {
    public static let standard = PassageChunker(length: 128, stride: 64)
    public let length: Int
    public let stride: Int

    public init(length: Int, stride: Int) {
        precondition(length > 0 && stride > 0 && stride <= length)
        self.length = length
        self.stride = stride
    }

    /// The token ranges of a document of `count` tokens.
    public func ranges(count: Int) -> [Range<Int>] {
        guard count > 0 else { return [] }
        var out: [Range<Int>] = [], start = 0
        repeat {
            out.append(start..<min(start + length, count))
            start += stride
        } while start + stride < count
        return out
    }
}

/// Puts recalled passages before the question: the last user message becomes an instruction
/// to answer from the numbered excerpts (each named by its document and headings), the excerpts, and the
/// question. Measured with the default 135M model on a small policy set: excerpts in the user
/// turn were answered from, excerpts in a system message were not (it repeated itself), and
/// adding "if they do not contain the answer, say so" made it refuse answerable questions, so
/// that sentence is left out; the relevance floor of recall keeps unrelated questions clear.
public enum KnowledgeContext {
    public struct Recalled: Sendable {
        public var title: String
        public var text: String
        public init(title: String, text: String) {
            self.title = title
            self.text = text
        }
    }

    public static let instruction = "Answer the question using these excerpts from the company's documents."

    /// The user turn with the excerpts, or nil when nothing was recalled (the conversation then
    /// goes to the main brain unchanged).
    public static func userText(_ recalled: [Recalled], question: String) -> String? {
        guard !recalled.isEmpty else { return nil }
        var parts = [instruction]
        for (i, r) in recalled.enumerated() {
            parts.append("[\(i + 1)] \(r.title):\n\(r.text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        parts.append("Question: \(question)")
        return parts.joined(separator: "\n\n")
    }

    /// For a plain continuation (no chat): the passages as text before the prompt, or nil.
    public static func prefixText(_ recalled: [Recalled]) -> String? {
        guard !recalled.isEmpty else { return nil }
        return recalled.map { "From \($0.title):\n\($0.text.trimmingCharacters(in: .whitespacesAndNewlines))\n\n" }.joined()
    }
}

/// The words of a question that can find passages (`SearchTerms`), without English function
/// words, one-letter words and the Chinese bigrams that hold a question or function character
/// ("谁批" of 谁批准: no document holds it, and a word no passage holds weighs most). "What is
/// it?" finds nothing, so a general question reaches the main brain unchanged.
public enum QueryWords {
    public static func content(of question: String, limit: Int = 64) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for word in words(in: question) {
            if SearchTerms.isCJKTerm(word) {
                guard !word.contains(where: stopCharacters.contains), !stopBigrams.contains(word) else { continue }
            } else {
                guard word.count > 1, !stopWords.contains(word) else { continue }
            }
            guard seen.insert(word).inserted else { continue }
            out.append(word)
            if out.count == limit { break }
        }
        return out
    }

    /// Each CJK bigram of a text and the bigrams beside it in the text (`PassageRelevance.share`).
    public static func neighbours(in text: String) -> [String: Set<String>] {
        let terms = words(in: text)
        var out: [String: Set<String>] = [:]
        for (i, t) in terms.enumerated() where SearchTerms.isCJKTerm(t) && t.count == 2 {
            // Bigrams of one run overlap by a character: "国际" "际航".
            if i > 0, terms[i - 1].count == 2, terms[i - 1].last == t.first { out[t, default: []].insert(terms[i - 1]) }
            if i + 1 < terms.count, terms[i + 1].count == 2, terms[i + 1].first == t.last { out[t, default: []].insert(terms[i + 1]) }
        }
        return out
    }

    /// Every word of a text as the passage index splits it (`SearchTerms`), repeats included.
    public static func words(in text: String) -> [String] { SearchTerms.terms(in: text) }

    /// Chinese characters of questions and grammar, not of content.
    static let stopCharacters: Set<Character> = [
        "的", "了", "是", "吗", "呢", "吧", "啊", "呀", "嘛", "谁", "什", "么", "哪", "怎", "请", "问", "我", "你", "您",
        "他", "她", "它", "们", "这", "那", "在", "和", "与", "或", "把", "被", "给", "让", "个", "之", "其", "及", "并",
        "而", "也", "都", "就", "还", "又", "很", "吗", "几", "多", "少", "如", "何", "为", "要", "需", "应", "该",
    ]

    /// Chinese function words of two content characters ("according to", "about", "can", "because").
    static let stopBigrams: Set<String> = ["根据", "关于", "对于", "按照", "可以", "能够", "以及", "因为", "所以", "但是", "通过", "已经", "或者"]

    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because",
        "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
        "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
        "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most",
        "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over",
        "own", "same", "she", "should", "so", "some", "such", "tell", "than", "that", "the", "their", "theirs", "them",
        "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "us", "very",
        "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
        "you", "your", "yours", "please", "explain", "describe", "know", "say", "says", "said",
    ]
}

/// How much of a query a passage holds: the share of the query's content words found in it,
/// each word weighted by its rarity among the learned passages (BM25's inverse document
/// frequency; a word no passage holds weighs most). BM25's own score grows with the index and
/// the query, so it cannot tell a question about the documents from general text that shares
/// a few of their words; this share can, on one scale for every index. A passage below
/// `floor` is not recalled: the main brain then reads the text as it would without passages.
public enum PassageRelevance {
    /// Fitted on the public FreshDocs development corpus (`make recall-floor`: `twinbrain-eval
    /// fit-recall`, docs/results/recall-floor.json): the smallest multiple of 0.05 that at most one
    /// in 200 windows of 64 tokens of its general text reaches against its documents' passages.
    /// A test checks the two agree.
    public static let floor = 0.40
    /// Below the floor, a passage holding this share of a question still shows the question is
    /// about the learned documents' subject (`Recall.nearMisses`): the reader may then say the
    /// documents do not answer it, rather than the main brain answering from nowhere.
    public static let subjectFloor = 0.20

    /// A word's weight when `containing` of the `passages` hold it.
    public static func weight(containing: Int, passages: Int) -> Double {
        log(1 + (Double(passages - containing) + 0.5) / (Double(containing) + 0.5))
    }

    /// The share (0…1) of `query`'s words (content words, distinct) that a passage holds in some
    /// form (`stems`: of its words); 0 for an empty query. `containing` gives each word's count of
    /// passages holding it as written (absent: 0); a CJK bigram no passage holds counts for
    /// nothing (mostly it spans two words: "节讲" of 哪一节讲到). With `neighbours` (the bigrams
    /// next to each in the query), a CJK bigram counts as held only beside another held one, so
    /// three or more characters in a row must match: a lone two-character match is mostly a
    /// common word ("系统", "文件") that general text shares with any passage.
    public static func share(of query: [String], holding stems: Set<String>, containing: [String: Int], passages: Int,
                             neighbours: [String: Set<String>]? = nil) -> Double {
        var held = 0.0, total = 0.0
        for word in query {
            let n = containing[word] ?? 0
            if n == 0 && SearchTerms.isCJKTerm(word) { continue }
            let w = weight(containing: n, passages: passages)
            total += w
            guard stems.contains(stem(word)) else { continue }
            if let neighbours, SearchTerms.isCJKTerm(word), word.count == 2, !(neighbours[word] ?? []).contains(where: stems.contains) {
                continue
            }
            held += w
        }
        return total > 0 ? held / total : 0
    }

    /// A passage's words without their inflections, as `share` compares them.
    public static func stems<Words: Sequence<String>>(_ words: Words) -> Set<String> { Set(words.map(stem)) }

    /// An English word without its inflection ("approves", "approved" → "approv";
    /// "policies" → "policy"): a question rarely uses the form the document does. Other words as they are.
    static func stem(_ word: String) -> String {
        guard word.count > 3, word.allSatisfy({ $0.isASCII && $0.isLetter }) else { return word }
        if word.hasSuffix("ies") { return word.dropLast(3) + "y" }
        var w = Substring(word)
        if !w.hasSuffix("ss") {
            for suffix in ["ing", "ed", "es", "s"] where w.hasSuffix(suffix) && w.count - suffix.count >= 3 {
                w = w.dropLast(suffix.count)
                break
            }
        }
        if w.hasSuffix("e") && w.count > 3 { w = w.dropLast() }
        return String(w)
    }
}
