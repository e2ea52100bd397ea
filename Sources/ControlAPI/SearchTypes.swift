/// `GET /v1/search?q=…` (`twinbrain search`): what recall would put before the main brain for a
/// question, and why — the retrieval test administrators run before they trust the box.
public struct SearchResponse: Codable, Sendable {
    /// One BM25 candidate and what became of it.
    public struct Candidate: Codable, Sendable, Equatable {
        public var passageId: Int64
        public var documentId: Int64
        public var path: String
        /// The drive's label, or its key.
        public var source: String
        public var headings: [String]
        public var lineStart: Int?
        public var lineEnd: Int?
        public var page: Int?
        /// BM25 (higher is better).
        public var score: Double
        /// The share of the question it holds, rarity-weighted (against `floor`).
        public var share: Double
        /// Its score over the best relevant passage's (against `relative_floor`); nil when none is relevant.
        public var relativeScore: Double?
        /// "recalled", "below-floor", "below-relative-floor", "beyond-limit" or "near-miss".
        public var verdict: String
        public var text: String

        public init(passageId: Int64, documentId: Int64, path: String, source: String, headings: [String], lineStart: Int?, lineEnd: Int?,
                    page: Int?, score: Double, share: Double, relativeScore: Double?, verdict: String, text: String) {
            self.passageId = passageId
            self.documentId = documentId
            self.path = path
            self.source = source
            self.headings = headings
            self.lineStart = lineStart
            self.lineEnd = lineEnd
            self.page = page
            self.score = score
            self.share = share
            self.relativeScore = relativeScore
            self.verdict = verdict
            self.text = text
        }

        enum CodingKeys: String, CodingKey {
            case passageId = "passage_id", documentId = "document_id", path, source, headings, lineStart = "line_start", lineEnd = "line_end",
                 page, score, share, relativeScore = "relative_score", verdict, text
        }
    }

    /// What the token memory would add at the answer's first token.
    public struct Memory: Codable, Sendable, Equatable {
        public struct Document: Codable, Sendable, Equatable {
            public var documentId: Int64
            public var path: String
            /// Its share of the nearest entries' votes.
            public var votes: Double
            public init(documentId: Int64, path: String, votes: Double) {
                self.documentId = documentId
                self.path = path
                self.votes = votes
            }
            enum CodingKeys: String, CodingKey { case documentId = "document_id", path, votes }
        }
        public var entries: Int
        /// The gate's weight for the memory (0: it stays silent and the main brain speaks alone).
        public var weight: Double
        /// Documents of the nearest entries, most votes first.
        public var documents: [Document]
        /// What the nearest entries vote the next token to be.
        public var tokens: [String]
        public init(entries: Int, weight: Double, documents: [Document], tokens: [String]) {
            self.entries = entries
            self.weight = weight
            self.documents = documents
            self.tokens = tokens
        }
    }

    public var question: String
    /// The question's content words, as recall searches them.
    public var words: [String]
    public var floor: Double
    public var subjectFloor: Double
    public var relativeFloor: Double
    /// Passages put before a question at most (`knowledge_passages`).
    public var limit: Int
    /// The decision in a sentence.
    public var decision: String
    public var candidates: [Candidate]
    /// The recalled passages' lines that best match the question.
    public var evidence: [EvidenceLine]
    /// Nil when the token memory is off or empty.
    public var memory: Memory?

    public init(question: String, words: [String], floor: Double, subjectFloor: Double, relativeFloor: Double, limit: Int, decision: String,
                candidates: [Candidate], evidence: [EvidenceLine], memory: Memory?) {
        self.question = question
        self.words = words
        self.floor = floor
        self.subjectFloor = subjectFloor
        self.relativeFloor = relativeFloor
        self.limit = limit
        self.decision = decision
        self.candidates = candidates
        self.evidence = evidence
        self.memory = memory
    }

    enum CodingKeys: String, CodingKey {
        case question, words, floor, subjectFloor = "subject_floor", relativeFloor = "relative_floor", limit, decision, candidates, evidence,
             memory
    }
}
