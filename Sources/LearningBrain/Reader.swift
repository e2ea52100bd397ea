import Foundation
import Kernels
import MainBrain
import Store

/// Where the recalled passages and the question sit in a prompt built by `KnowledgeContext.userText`,
/// token by token: the reader scores only tokens of the passages' titles and texts, and reads the
/// question from its own tokens. Built from the prompt's bytes, so it holds whatever the chat
/// template put around the user turn.
public struct ReaderLayout: Sendable {
    /// A line of a passage (its title is a line of its own), as bytes of the rendered prompt.
    public struct Line: Sendable {
        public var passage: Int
        public var bytes: Range<Int>
        public var isTitle: Bool
    }

    /// A prompt token the reader may start or end an answer at.
    public struct Candidate: Sendable {
        /// Position in the prompt.
        public var token: Int
        public var line: Int
        /// The token's bytes inside its line (without leading spaces).
        public var bytes: Range<Int>
    }

    public let rendered: [UInt8]
    public let lines: [Line]
    public let candidates: [Candidate]
    /// Prompt positions of the question's tokens.
    public let question: Range<Int>
    public let questionText: String
    public let passageCount: Int

    /// Nil when the prompt does not hold the passages and the question as `KnowledgeContext.userText` writes them.
    public init?(prompt: [Int32], tokenizer: Tokenizer, recalled: [KnowledgeContext.Recalled], question: String) {
        guard !recalled.isEmpty else { return nil }
        var (rendered, starts) = Self.render(prompt, tokenizer: tokenizer)
        starts.append(rendered.count)
        var lines: [Line] = [], from = 0
        for (k, r) in recalled.enumerated() {
            let head = Array("[\(k + 1)] ".utf8), title = Array(r.title.utf8)
            let body = Array(r.text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
            guard let at = Self.find(head + title + Array(":\n".utf8) + body, in: rendered, from: from) else { return nil }
            // The title is "path (headings)": the headings are read, the path names the document
            // and is no answer ("release-15-11.txt" is not "15.11").
            let titleStart = at + head.count
            var headings = titleStart..<titleStart + title.count
            if r.title.hasSuffix(")"), let open = Self.find(Array(" (".utf8), in: rendered, from: titleStart), open < headings.upperBound {
                headings = open + 2..<headings.upperBound - 1
            }
            lines.append(Line(passage: k, bytes: headings, isTitle: true))
            var lineStart = titleStart + title.count + 2
            let end = lineStart + body.count
            for i in lineStart..<end where rendered[i] == 0x0A {
                if i > lineStart { lines.append(Line(passage: k, bytes: lineStart..<i, isTitle: false)) }
                lineStart = i + 1
            }
            if end > lineStart { lines.append(Line(passage: k, bytes: lineStart..<end, isTitle: false)) }
            from = end
        }
        let asked = Array("Question: \(question)".utf8)
        guard let q = Self.find(asked, in: rendered, from: from) else { return nil }
        let questionBytes = (q + asked.count - question.utf8.count)..<(q + asked.count)
        // Tokens by their first non-space byte: BPE puts a word's leading space on the word.
        var candidates: [Candidate] = [], questionTokens: [Int] = []
        var line = 0
        for t in prompt.indices {
            var a = starts[t]
            let b = starts[t + 1]
            while a < b, rendered[a] == 0x20 || rendered[a] == 0x0A || rendered[a] == 0x09 { a += 1 }
            guard a < b else { continue }
            if questionBytes.contains(a) { questionTokens.append(t) }
            while line < lines.count, lines[line].bytes.upperBound <= a { line += 1 }
            guard line < lines.count, lines[line].bytes.contains(a) else { continue }
            candidates.append(Candidate(token: t, line: line, bytes: a..<min(b, lines[line].bytes.upperBound)))
        }
        guard let first = questionTokens.first, let last = questionTokens.last, !candidates.isEmpty else { return nil }
        self.rendered = rendered
        self.lines = lines
        self.candidates = candidates
        self.question = first..<last + 1
        questionText = question
        passageCount = recalled.count
    }

    /// Candidates where a whole-word occurrence of `answer` starts and ends, in the lines of the
    /// passages `passages` admits.
    public func occurrences(of answer: String, passages: (Int) -> Bool = { _ in true }) -> (starts: [Int], ends: [Int]) {
        let needle = Array(answer.utf8)
        var starts: [Int] = [], ends: [Int] = []
        for (l, line) in lines.enumerated() where passages(line.passage) {
            var from = line.bytes.lowerBound
            while let at = Self.find(needle, in: rendered, from: from), at + needle.count <= line.bytes.upperBound {
                from = at + 1
                let bytes = at..<at + needle.count
                guard snapped(bytes, line: l) == bytes,
                      let s = candidates.firstIndex(where: { $0.line == l && $0.bytes.contains(bytes.lowerBound) }),
                      let e = candidates.firstIndex(where: { $0.line == l && $0.bytes.contains(bytes.upperBound - 1) }) else { continue }
                starts.append(s)
                ends.append(e)
            }
        }
        return (Array(Set(starts)).sorted(), Array(Set(ends)).sorted())
    }

    /// The prompt's bytes (special tokens rendered) and where each token's begin.
    static func render(_ prompt: [Int32], tokenizer: Tokenizer) -> (bytes: [UInt8], starts: [Int]) {
        var rendered: [UInt8] = [], starts: [Int] = []
        for id in prompt {
            starts.append(rendered.count)
            rendered += tokenizer.bytes(of: id, renderSpecial: true)
        }
        return (rendered, starts)
    }

    /// The prompt position of the token where the first passage ("[1] title:") begins.
    public static func firstPassageToken(prompt: [Int32], tokenizer: Tokenizer, first: KnowledgeContext.Recalled) -> Int? {
        let (rendered, starts) = render(prompt, tokenizer: tokenizer)
        guard let at = find(Array("[1] \(first.title):\n".utf8), in: rendered, from: 0) else { return nil }
        return starts.lastIndex { $0 <= at }
    }

    public static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        for i in from...(haystack.count - needle.count) where haystack[i] == first {
            if haystack[i..<i + needle.count].elementsEqual(needle) { return i }
        }
        return nil
    }

    public func text(_ bytes: Range<Int>) -> String { String(decoding: rendered[bytes], as: UTF8.self) }

    /// The span's bytes widened to whole words (a version or a name is never cut: "15.1" of
    /// "15.11") and to whole UTF-8 characters, inside its line.
    public func snapped(_ bytes: Range<Int>, line: Int) -> Range<Int> {
        let bounds = lines[line].bytes
        var a = bytes.lowerBound, b = bytes.upperBound
        while a > bounds.lowerBound, rendered[a] & 0xC0 == 0x80 { a -= 1 }
        while b < bounds.upperBound, rendered[b] & 0xC0 == 0x80 { b += 1 }
        func word(_ i: Int) -> Bool { i >= bounds.lowerBound && i < bounds.upperBound && Self.isWordByte(rendered[i]) }
        func joiner(_ i: Int) -> Bool { i >= bounds.lowerBound && i < bounds.upperBound && Self.joiners.contains(rendered[i]) }
        while a > bounds.lowerBound, word(a) && (word(a - 1) || (joiner(a - 1) && word(a - 2))) { a -= word(a - 1) ? 1 : 2 }
        while b < bounds.upperBound, word(b - 1) && (word(b) || (joiner(b) && word(b + 1))) { b += word(b) ? 1 : 2 }
        return a..<b
    }

    /// A span without the punctuation a token carried in beside it ("Ilic)." → "Ilic"); a
    /// bracket it opens or closes itself stays ("f(x)").
    public static func trimmed(_ text: String) -> String {
        var t = Substring(text)
        func unbalanced(_ open: Character, _ close: Character) -> Bool { t.filter { $0 == open }.count != t.filter { $0 == close }.count }
        while let c = t.last, trailing.contains(c) || c.isWhitespace {
            if let open = pairs[c], !unbalanced(open, c) { break }
            t = t.dropLast()
        }
        while let c = t.first, leading.contains(c) || c.isWhitespace {
            if let close = pairs.first(where: { $0.value == c })?.key, !unbalanced(c, close) {
                // Wrapped whole: "(Ana Horvat)" says "Ana Horvat".
                guard t.count > 2, t.last == close else { break }
                return trimmed(String(t.dropFirst().dropLast()))
            }
            t = t.dropFirst()
        }
        return String(t)
    }

    /// The text of the span from candidate `first` to `last`: widened to whole words, trimmed.
    public func spanText(_ first: Int, _ last: Int) -> String {
        let a = candidates[first], b = candidates[last]
        return Self.trimmed(text(snapped(a.bytes.lowerBound..<b.bytes.upperBound, line: a.line)))
    }

    static let trailing: Set<Character> = [".", ",", ";", ":", "!", "?", ")", "]", "\"", "'", "。", "，", "；", "：", "？", "！", "）", "”", "、"]
    static let leading: Set<Character> = ["(", "[", "\"", "'", "-", "*", "（", "“"]
    static let pairs: [Character: Character] = [")": "(", "]": "[", "）": "（", "”": "“"]

    /// ASCII letters and digits, and the bytes of non-CJK letters (Latin accents: "Ilić").
    static func isWordByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
            || (byte >= 0x80 && byte < 0xE0)
    }

    static let joiners: Set<UInt8> = Array(".-:+~".utf8).reduce(into: []) { $0.insert($1) }
}

/// What the reader reads besides the hidden states: how a token's line, passage and word relate to
/// the question. The question's words come after the passages, so the passages' states (causal
/// attention) never saw them: these carry the match, the states carry what kind of word a token is.
public enum ReaderFeatures {
    public static let lexicalCount = 15
    /// Lexical features the null score reads beside the question's state.
    public static let nullLexicalCount = 2

    /// [candidates.count × lexicalCount] for a question, and the null score's features.
    public static func lexical(_ layout: ReaderLayout) -> (tokens: [Float], null: [Float]) {
        let words = QueryWords.content(of: layout.questionText)
        let asked = Set(QueryWords.words(in: layout.questionText))
        var lineShare = [Float](repeating: 0, count: layout.lines.count)
        if !words.isEmpty {
            for (i, line) in layout.lines.enumerated() {
                let stems = PassageRelevance.stems(QueryWords.words(in: layout.text(line.bytes)))
                lineShare[i] = Float(words.filter { stems.contains(PassageRelevance.stem($0)) }.count) / Float(words.count)
            }
        }
        let best = lineShare.max() ?? 0
        var passageBest = [Float](repeating: 0, count: layout.passageCount)
        for (i, line) in layout.lines.enumerated() { passageBest[line.passage] = max(passageBest[line.passage], lineShare[i]) }
        var out = [Float](repeating: 0, count: layout.candidates.count * lexicalCount)
        for (c, candidate) in layout.candidates.enumerated() {
            let line = layout.lines[candidate.line], bounds = line.bytes
            let word = layout.snapped(candidate.bytes.lowerBound..<candidate.bytes.lowerBound + 1, line: candidate.line)
            let wordText = layout.text(word)
            var depth = 0
            for i in bounds.lowerBound..<candidate.bytes.lowerBound {
                if layout.rendered[i] == 0x28 { depth += 1 } else if layout.rendered[i] == 0x29 { depth = max(0, depth - 1) }
            }
            let f: [Float] = [
                lineShare[candidate.line],
                best > 0 ? lineShare[candidate.line] / best : 0,
                best > 0 && lineShare[candidate.line] == best ? 1 : 0,
                best > 0 ? passageBest[line.passage] / best : 0,
                line.passage == 0 ? 1 : 0,
                line.passage == 1 ? 1 : 0,
                line.passage >= 2 ? 1 : 0,
                line.isTitle ? 1 : 0,
                depth > 0 ? 1 : 0,
                wordText.contains(where: \.isNumber) ? 1 : 0,
                QueryWords.words(in: wordText).contains(where: asked.contains) ? 1 : 0,
                word.lowerBound == candidate.bytes.lowerBound ? 1 : 0,
                word.upperBound <= candidate.bytes.upperBound ? 1 : 0,
                Float(candidate.bytes.lowerBound - bounds.lowerBound) / Float(max(1, bounds.count)),
                1,
            ]
            out.replaceSubrange(c * lexicalCount..<(c + 1) * lexicalCount, with: f)
        }
        return (out, [best, 1])
    }

    /// The mean of rows [n × dim] (the question's state: the mean of its tokens').
    public static func meanRow(_ rows: [Float], dim: Int) -> [Float] {
        let n = rows.count / dim
        var out = [Float](repeating: 0, count: dim)
        for r in 0..<n { for d in 0..<dim { out[d] += rows[r * dim + d] } }
        return out.map { $0 / Float(max(1, n)) }
    }

    /// Hidden-state rows made comparable across positions and prompts: RMS-normalised (llama
    /// residuals have a few huge dimensions), then standardised with the fitted mean and spread.
    public static func normalise(_ rows: UnsafeBufferPointer<Float>, count: Int, dim: Int, mean: [Float], std: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: count * dim)
        for r in 0..<count {
            var ss: Float = 0
            for d in 0..<dim { ss += rows[r * dim + d] * rows[r * dim + d] }
            let scale = 1 / (ss / Float(dim) + 1e-6).squareRoot()
            for d in 0..<dim { out[r * dim + d] = (rows[r * dim + d] * scale - mean[d]) / std[d] }
        }
        return out
    }
}

/// One score head (start or end): token i scores xᵢ · (w + Aᵀ·B·q̂), xᵢ = [its normalised state;
/// its lexical features], q̂ = [the question's mean normalised state; 1]: a linear head whose
/// weights the question turns through a rank-r map. The null score (no answer here) is
/// nullWeights · [q̂'s state; the null lexical features].
public struct ReaderHead: Sendable, Equatable {
    public var w: [Float]
    public var a: [Float]
    public var b: [Float]
    public var nullWeights: [Float]

    public init(w: [Float], a: [Float], b: [Float], nullWeights: [Float]) {
        self.w = w
        self.a = a
        self.b = b
        self.nullWeights = nullWeights
    }

    /// The question-turned weights (features long).
    public func effective(question q: [Float], rank: Int) -> [Float] {
        let features = w.count, dim = q.count
        var v = [Float](repeating: 0, count: rank)
        for r in 0..<rank {
            var s = b[r * (dim + 1) + dim]
            for d in 0..<dim { s += b[r * (dim + 1) + d] * q[d] }
            v[r] = s
        }
        var e = w
        for r in 0..<rank where v[r] != 0 { for f in 0..<features { e[f] += a[r * features + f] * v[r] } }
        return e
    }

    public func nullScore(question q: [Float], lexical: [Float]) -> Float {
        var s: Float = 0
        for (x, y) in zip(nullWeights, q + lexical) { s += x * y }
        return s
    }

    /// Each candidate's score: states [n × dim] (normalised), lexical [n × lexicalCount].
    public static func scores(effective e: [Float], states: [Float], lexical: [Float], count n: Int, dim: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        guard n > 0 else { return out }
        let l = ReaderFeatures.lexicalCount
        // One row (the weights) against n rows (the states): out = e · statesᵀ.
        states.withUnsafeBufferPointer { s in
            e.withUnsafeBufferPointer { e in
                out.withUnsafeMutableBufferPointer { o in
                    matmul(o.baseAddress!, e.baseAddress!, s.baseAddress!, rows: 1, outFeatures: n, inFeatures: dim)
                }
            }
        }
        for i in 0..<n {
            var t: Float = 0
            for f in 0..<l { t += lexical[i * l + f] * e[dim + f] }
            out[i] += t
        }
        return out
    }
}

/// The reader's fitted weights, a versioned record (`twinbrain.reader/1`) for one main brain
/// (by the SHA-256 of its file): the layer whose residual it reads, the normalisation, the start
/// and end heads and the thresholds fitted on held-out synthetic questions.
public struct ReaderWeights: Sendable, Equatable {
    public static let format = "twinbrain.reader/1"
    public var modelSHA256: String
    /// `FittedKeyspace.shape` of the model: a cheap test before hashing a file.
    public var shape: String
    public var layer: Int
    public var dim: Int
    public var rank: Int
    public var maxSpanTokens: Int
    public var mean: [Float]
    public var std: [Float]
    public var start: ReaderHead
    public var end: ReaderHead
    /// A span is stated when its probability reaches `sure`; the reply says the documents do not
    /// say when the null's reaches `silent`.
    public var sure: Float
    public var silent: Float
    /// What the fit measured (held-out exact match, precision when sure, …), for the record.
    public var fit: [String: Double]

    public init(modelSHA256: String, shape: String, layer: Int, dim: Int, rank: Int, maxSpanTokens: Int, mean: [Float], std: [Float],
                start: ReaderHead, end: ReaderHead, sure: Float, silent: Float, fit: [String: Double]) {
        self.modelSHA256 = modelSHA256
        self.shape = shape
        self.layer = layer
        self.dim = dim
        self.rank = rank
        self.maxSpanTokens = maxSpanTokens
        self.mean = mean
        self.std = std
        self.start = start
        self.end = end
        self.sure = sure
        self.silent = silent
        self.fit = fit
    }

    public var featureCount: Int { dim + ReaderFeatures.lexicalCount }

    /// The shipped reader for a model file, when one was fitted for it.
    public static func shipped(forShape shape: String, sha256: () -> String?) -> ReaderWeights? {
        let candidates = FittedReaders.records.compactMap { try? ReaderWeights(json: Data($0.filter { $0 != "\n" }.utf8)) }.filter { $0.shape == shape }
        guard !candidates.isEmpty, let digest = sha256() else { return nil }
        return candidates.first { $0.modelSHA256 == digest }
    }
}

extension ReaderWeights: Codable {
    enum CodingKeys: String, CodingKey {
        case format, modelSHA256 = "model_sha256", shape, layer, dim, rank, maxSpanTokens = "max_span_tokens", mean, std, start, end,
             sure, silent, fit
    }
    enum HeadKeys: String, CodingKey { case w, a, b, nullWeights = "null" }

    public init(json: Data) throws { self = try JSONDecoder().decode(ReaderWeights.self, from: json) }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let format = try c.decode(String.self, forKey: .format)
        guard format == Self.format else {
            throw DecodingError.dataCorruptedError(forKey: .format, in: c, debugDescription: "a \(format) record, not \(Self.format)")
        }
        modelSHA256 = try c.decode(String.self, forKey: .modelSHA256)
        shape = try c.decode(String.self, forKey: .shape)
        layer = try c.decode(Int.self, forKey: .layer)
        dim = try c.decode(Int.self, forKey: .dim)
        rank = try c.decode(Int.self, forKey: .rank)
        maxSpanTokens = try c.decode(Int.self, forKey: .maxSpanTokens)
        sure = try c.decode(Float.self, forKey: .sure)
        silent = try c.decode(Float.self, forKey: .silent)
        fit = try c.decode([String: Double].self, forKey: .fit)
        let dim = self.dim, rank = self.rank, features = dim + ReaderFeatures.lexicalCount
        func floats(_ text: String, _ count: Int, _ key: CodingKey) throws -> [Float] {
            guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters), data.count == count * 4 else {
                throw DecodingError.dataCorrupted(.init(codingPath: [key], debugDescription: "\(key.stringValue): not \(count) floats"))
            }
            return data.withUnsafeBytes { raw in (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
        }
        mean = try floats(c.decode(String.self, forKey: .mean), dim, CodingKeys.mean)
        std = try floats(c.decode(String.self, forKey: .std), dim, CodingKeys.std)
        func head(_ key: CodingKeys) throws -> ReaderHead {
            let h = try c.nestedContainer(keyedBy: HeadKeys.self, forKey: key)
            return ReaderHead(w: try floats(h.decode(String.self, forKey: .w), features, HeadKeys.w),
                              a: try floats(h.decode(String.self, forKey: .a), rank * features, HeadKeys.a),
                              b: try floats(h.decode(String.self, forKey: .b), rank * (dim + 1), HeadKeys.b),
                              nullWeights: try floats(h.decode(String.self, forKey: .nullWeights), dim + ReaderFeatures.nullLexicalCount,
                                                      HeadKeys.nullWeights))
        }
        let start = try head(.start), end = try head(.end)
        self.start = start
        self.end = end
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func text(_ values: [Float]) -> String {
            var data = Data(capacity: values.count * 4)
            for x in values { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            return data.base64EncodedString()
        }
        try c.encode(Self.format, forKey: .format)
        try c.encode(modelSHA256, forKey: .modelSHA256)
        try c.encode(shape, forKey: .shape)
        try c.encode(layer, forKey: .layer)
        try c.encode(dim, forKey: .dim)
        try c.encode(rank, forKey: .rank)
        try c.encode(maxSpanTokens, forKey: .maxSpanTokens)
        try c.encode(sure, forKey: .sure)
        try c.encode(silent, forKey: .silent)
        try c.encode(fit, forKey: .fit)
        try c.encode(text(mean), forKey: .mean)
        try c.encode(text(std), forKey: .std)
        for (key, head) in [(CodingKeys.start, start), (.end, end)] {
            var h = c.nestedContainer(keyedBy: HeadKeys.self, forKey: key)
            try h.encode(text(head.w), forKey: .w)
            try h.encode(text(head.a), forKey: .a)
            try h.encode(text(head.b), forKey: .b)
            try h.encode(text(head.nullWeights), forKey: .nullWeights)
        }
    }
}

/// What the reader found for a question: the best answer span, or that the passages hold none.
public struct ReaderSpan: Sendable, Equatable {
    /// The span as the passage writes it (widened to whole words).
    public var text: String
    /// Which recalled passage (0 = the first) and the line holding it.
    public var passage: Int
    public var line: String
    /// P(start) · P(end) of the span, and of no answer, each softmax over the candidates and the null.
    public var probability: Float
    public var nullProbability: Float
    /// The share of the question's words held by the passages' best line.
    public var bestLineShare: Float
}

/// The learning brain's reader: a small head over one middle layer of the frozen main brain's
/// residual stream, scoring where in the recalled passages the answer starts and ends (SQuAD-style,
/// with a null for "not here"), trained on synthetic questions over public text (`twinbrain-eval fit-reader`).
public final class Reader: @unchecked Sendable {
    public let weights: ReaderWeights
    public var tapPoint: TapPoint { .residual(layer: weights.layer) }

    /// The SHA-256 of the weights' record: what on-site examples were made with.
    public let identity: String

    public init(weights: ReaderWeights) {
        self.weights = weights
        identity = (try? weights.json()).map { SHA256.hex($0) } ?? weights.modelSHA256
    }

    private var siteAdapters: [String: ReaderAdapter] = [:]
    /// The corrections fitted on this box's documents, one per shard (a folder of documents:
    /// `ReaderSiteLearning.shard`); a shard without one reads as shipped.
    public func adapter(for shard: String?) -> ReaderAdapter? { lock.withLock { shard.flatMap { siteAdapters[$0] } } }
    public func setAdapter(_ adapter: ReaderAdapter?, for shard: String) { lock.withLock { siteAdapters[shard] = adapter } }

    /// The reply says the documents do not say only when no recalled line holds this share of the
    /// question's words, whatever the null head says: on documents unlike its training text the
    /// head called answerable questions unanswered ("How much is a hotel night in Berlin
    /// reimbursed?" beside "Hotel nights are reimbursed up to 140 EUR per night in Berlin"), and a
    /// wrong "the documents do not say" costs the user more than the main brain's own reply.
    public static let silenceLineShare: Float = 0.5

    private let lock = NSLock()
    private var breaks: [ObjectIdentifier: [Int32]] = [:]

    /// The vocabulary's tokens holding a line break (found once per tokenizer).
    func lineBreaks(_ tokenizer: Tokenizer) -> [Int32] {
        lock.withLock {
            if let known = breaks[ObjectIdentifier(tokenizer)] { return known }
            let found = (0..<Int32(tokenizer.count)).filter { !tokenizer.isControl($0) && tokenizer.bytes(of: $0).contains(0x0A) }
            breaks[ObjectIdentifier(tokenizer)] = found
            return found
        }
    }

    /// The inputs of both heads for a prompt, from the layer's rows for every prompt position.
    public struct Inputs {
        public var states: [Float]
        public var question: [Float]
        public var lexical: [Float]
        public var nullLexical: [Float]
        public init(states: [Float], question: [Float], lexical: [Float], nullLexical: [Float]) {
            self.states = states
            self.question = question
            self.lexical = lexical
            self.nullLexical = nullLexical
        }
    }

    public func inputs(rows: [Float], layout: ReaderLayout) -> Inputs {
        Self.inputs(rows: rows, layout: layout, dim: weights.dim, mean: weights.mean, std: weights.std)
    }

    public static func inputs(rows: [Float], layout: ReaderLayout, dim: Int, mean: [Float], std: [Float]) -> Inputs {
        let n = layout.candidates.count
        var picked = [Float](repeating: 0, count: n * dim)
        for (i, c) in layout.candidates.enumerated() {
            picked.replaceSubrange(i * dim..<(i + 1) * dim, with: rows[c.token * dim..<(c.token + 1) * dim])
        }
        let states = picked.withUnsafeBufferPointer { ReaderFeatures.normalise($0, count: n, dim: dim, mean: mean, std: std) }
        let qRows = Array(rows[layout.question.lowerBound * dim..<layout.question.upperBound * dim])
        let q = qRows.withUnsafeBufferPointer { ReaderFeatures.normalise($0, count: layout.question.count, dim: dim, mean: mean, std: std) }
        let question = ReaderFeatures.meanRow(q, dim: dim)
        let lexical = ReaderFeatures.lexical(layout)
        return Inputs(states: states, question: question, lexical: lexical.tokens, nullLexical: lexical.null)
    }

    /// Log-probabilities of each candidate, with the null's last (softmax over both).
    public static func logProbabilities(_ head: ReaderHead, _ x: Inputs, rank: Int, dim: Int) -> [Float] {
        let n = x.lexical.count / ReaderFeatures.lexicalCount
        var s = ReaderHead.scores(effective: head.effective(question: x.question, rank: rank), states: x.states, lexical: x.lexical,
                                  count: n, dim: dim)
        s.append(head.nullScore(question: x.question, lexical: x.nullLexical))
        return ReaderAdapter.logSoftmax(s)
    }

    /// Both heads' log-probabilities, adapted when an adapter is given.
    public static func logProbabilities(_ w: ReaderWeights, adapter: ReaderAdapter?, _ x: Inputs) -> (start: [Float], end: [Float]) {
        guard let adapter else { return (logProbabilities(w.start, x, rank: w.rank, dim: w.dim), logProbabilities(w.end, x, rank: w.rank, dim: w.dim)) }
        func adapted(_ head: ReaderHead, _ p: ReaderAdapter.Head) -> [Float] {
            let h = ReaderAdapter.headInputs(head, x, rank: w.rank, dim: w.dim)
            return ReaderAdapter.logSoftmax(ReaderAdapter.scores(h, p, nullLexical: x.nullLexical, rank: w.rank))
        }
        return (adapted(w.start, adapter.start), adapted(w.end, adapter.end))
    }

    /// The best span (start ≤ end on one line, at most `maxSpanTokens`) and the null's probability.
    public static func best(start: [Float], end: [Float], layout: ReaderLayout, maxSpanTokens: Int) -> (range: Range<Int>, logP: Float, nullLogP: Float)? {
        let n = layout.candidates.count
        var best: (Range<Int>, Float)?
        for i in 0..<n {
            var j = i
            while j < n, j - i < maxSpanTokens, layout.candidates[j].line == layout.candidates[i].line {
                let s = start[i] + end[j]
                if best == nil || s > best!.1 { best = (i..<j + 1, s) }
                j += 1
            }
        }
        guard let best else { return nil }
        return (best.0, best.1, start[n] + end[n])
    }

    /// Reads the passages: `rows` are the layer's states for every prompt position; `shard`: the
    /// first passage's, whose adapter reads (when there is one).
    public func read(rows: [Float], layout: ReaderLayout, shard: String? = nil) -> ReaderSpan? {
        let x = inputs(rows: rows, layout: layout)
        let w = weights
        let (start, end) = Self.logProbabilities(w, adapter: adapter(for: shard), x)
        guard let found = Self.best(start: start, end: end, layout: layout, maxSpanTokens: w.maxSpanTokens) else { return nil }
        let line = layout.lines[layout.candidates[found.range.lowerBound].line]
        return ReaderSpan(text: layout.spanText(found.range.lowerBound, found.range.upperBound - 1), passage: line.passage, line: layout.text(line.bytes),
                          probability: exp(found.logP), nullProbability: exp(found.nullLogP), bestLineShare: x.nullLexical[0])
    }
}

/// Joint decoding that copies: the main brain's prefill feeds the reader in the same pass (the
/// token memory's when it joins, through `extraTap`); when the reader is sure, the reply begins
/// with its span verbatim, forced token by token (the main brain still reads every forced token,
/// so what it writes next follows it); when the passages hold no answer, the reply says so;
/// otherwise the reply is the main brain's (and memory's) own.
public final class ReadingPredictor: NextTokenPredictor {
    public enum Decision: Sendable, Equatable {
        case stated(ReaderSpan)
        case silent(ReaderSpan?)
        case unsure(ReaderSpan?)
        case unread
    }

    let model: Model
    let tokenizer: Tokenizer
    let reader: Reader
    let inner: MemoryJoin?
    let recalled: [KnowledgeContext.Recalled]
    let question: String
    /// After a stated span: nothing (`none`, the reply is the span, the evidence line under it),
    /// the main brain's own words to the end of the line, or freely. Measured on FreshDocs with the
    /// 135M model, its words after a span mostly loop ("1.1.7. 1.1.1.1.1…") or invent ("Tom Lane,
    /// the author of the error, …"), and its second line more so: `none` by default.
    public enum AfterSpan: Sendable { case none, line, free }
    public var afterSpan = AfterSpan.none
    public private(set) var decision: Decision = .unread
    /// Seconds the reader took after the prefill (layout, features, scores).
    public private(set) var readSeconds = 0.0
    private var forced: [Int32] = []
    private var started = false

    /// A prompt of its own holding `recalled` (passages below recall's floor), read before the
    /// generation's prompt, which does not hold them; only silence is taken from it.
    let probe: [Int32]?
    /// The first passage's shard, whose adapter reads (`Reader.adapter(for:)`).
    let shard: String?

    public init(model: Model, tokenizer: Tokenizer, reader: Reader, inner: MemoryJoin?,
                recalled: [KnowledgeContext.Recalled], question: String, probe: [Int32]? = nil, shard: String? = nil) {
        self.model = model
        self.tokenizer = tokenizer
        self.reader = reader
        self.inner = inner
        self.recalled = recalled
        self.question = question
        self.probe = probe
        self.shard = shard
    }

    /// The reply when the documents do not answer, in the question's language.
    public static func silence(for question: String) -> String {
        question.contains(where: SearchTerms.isCJK) ? "文档中没有提到这一点。" : "The documents do not say."
    }

    /// Without a probe of its own, the reader reads the hidden states of the prompt from the
    /// first passage on (its features are those positions' rows and bytes alone), so a reused
    /// prefix may reach that far.
    public func reusablePrefix(of prompt: [Int32]) -> Int {
        guard probe == nil, let first = recalled.first else { return prompt.count }
        return ReaderLayout.firstPassageToken(prompt: prompt, tokenizer: tokenizer, first: first) ?? 0
    }

    public func nextLogits(_ input: [Int32], cache: KVCache) throws -> Logits {
        var logits: Logits
        if !started, let probe {
            started = true
            let recorder = HiddenStateRecorder(points: [reader.tapPoint])
            _ = try model.forward(probe, cache: model.makeCache(capacity: probe.count), logits: .none, tap: recorder,
                                  throughLayer: reader.weights.layer)
            let began = DispatchTime.now()
            decide(rows: recorder.states[reader.tapPoint] ?? [], prompt: probe, silenceOnly: true)
            readSeconds = Double(DispatchTime.now().uptimeNanoseconds - began.uptimeNanoseconds) / 1e9
            logits = try inner?.nextLogits(input, cache: cache) ?? model.forward(input, cache: cache, logits: .last)
        } else if !started {
            started = true
            let recorder = HiddenStateRecorder(points: [reader.tapPoint])
            if let inner {
                inner.extraTap = recorder
                defer { inner.extraTap = nil }
                logits = try inner.nextLogits(input, cache: cache)
            } else {
                logits = try model.forward(input, cache: cache, logits: .last, tap: recorder)
            }
            let began = DispatchTime.now()
            decide(rows: recorder.states[reader.tapPoint] ?? [], prompt: input)
            readSeconds = Double(DispatchTime.now().uptimeNanoseconds - began.uptimeNanoseconds) / 1e9
        } else {
            logits = try inner?.nextLogits(input, cache: cache) ?? model.forward(input, cache: cache, logits: .last)
        }
        return steered(logits)
    }

    public var decodeTap: TapPoint? { inner?.decodeTap }

    public var decodeSharing: DecodeSharing? { inner?.decodeSharing }

    public func decoded(_ logits: Logits, state: ArraySlice<Float>?) -> Logits {
        steered(inner?.decoded(logits, state: state) ?? logits)
    }

    /// The step's row after the reader's decision: its span or silence forced token by token,
    /// then (after a span, `afterSpan == .line`) the reply ending with its line.
    private func steered(_ logits: Logits) -> Logits {
        if forced.isEmpty, afterSpan == .line, case .stated = decision { return endingLines(logits) }
        guard !forced.isEmpty else { return logits }
        let token = forced.removeFirst()
        var row = [Float](repeating: -.infinity, count: logits.vocab)
        row[Int(token)] = 0
        return Logits(rows: 1, vocab: logits.vocab, values: row)
    }

    /// The row with every line-breaking token's probability moved to the end of the turn: the
    /// reply ends where its line would (the same for any sampler).
    func endingLines(_ logits: Logits) -> Logits {
        guard let end = tokenizer.endOfGeneration.sorted().first else { return logits }
        var row = Array(logits.row(0))
        let breaks = reader.lineBreaks(tokenizer)
        let top = breaks.reduce(row[Int(end)]) { max($0, row[Int($1)]) }
        guard top > -.infinity else { return logits }
        var sum = exp(row[Int(end)] - top)
        for t in breaks { sum += exp(row[Int(t)] - top); row[Int(t)] = -.infinity }
        row[Int(end)] = top + log(sum)
        return Logits(rows: 1, vocab: logits.vocab, values: row)
    }

    /// `silenceOnly`: passages below recall's floor were read; a span found there is not stated.
    func decide(rows: [Float], prompt: [Int32], silenceOnly: Bool = false) {
        guard rows.count == prompt.count * reader.weights.dim,
              let layout = ReaderLayout(prompt: prompt, tokenizer: tokenizer, recalled: recalled, question: question) else { return }
        let span = reader.read(rows: rows, layout: layout, shard: shard)
        let end = Array(tokenizer.endOfGeneration.sorted().prefix(1))
        if !silenceOnly, let span, span.probability >= reader.weights.sure {
            decision = .stated(span)
            forced = tokenizer.encode(span.text) + (afterSpan == .none ? end : [])
        } else if let span, span.nullProbability >= reader.weights.silent, span.bestLineShare < Reader.silenceLineShare, !end.isEmpty {
            decision = .silent(span)
            forced = tokenizer.encode(Self.silence(for: question)) + end
        } else {
            decision = .unsure(span)
        }
    }
}
