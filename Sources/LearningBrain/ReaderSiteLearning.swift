import Foundation
import MainBrain

/// The reader learning on site: for each document the box learns, it writes questions about the
/// document's own lines (`ReaderQuestions`), puts each to its passage as recall would (the
/// daemon's prompt, one passage) and keeps what the shipped heads make of it (`ReaderExample`):
/// a few kilobytes per question, kept per document. Each shard (a folder: `shard(of:)`) has its
/// adapter (`ReaderAdapter`), fitted on its documents' examples in document order; forgetting a
/// document drops its examples and fits its shard again, which is the adapter of a box that never
/// learned it, to the bit (each document's examples depend on that document alone, and the fit
/// has no randomness).
///
/// The cost is the main brain's prefill, through the reader's layer only, of each passage asked
/// about, once, and of each question's own tokens after it.
public struct ReaderSiteLearning {
    public let model: Model
    public let tokenizer: Tokenizer
    public let template: ChatTemplate
    public let reader: Reader
    /// Questions written per document.
    public var questionsPerDocument = 12

    public init(model: Model, tokenizer: Tokenizer, template: ChatTemplate, reader: Reader) {
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.reader = reader
    }

    /// What was learned from one document: its examples and the questions they came from.
    public struct Learned: Sendable {
        public var examples: [ReaderExample]
        public var questions: [SyntheticQuestion]
    }

    /// One passage of a document and the questions put to it (those it answers and those it does not).
    public struct Context: Sendable {
        public var recalled: [KnowledgeContext.Recalled]
        public var asked: [(question: SyntheticQuestion, answerable: Bool)]
    }

    /// The questions of one document and the passages they are put to, in passage order, from
    /// its passages (header and text) as the store keeps them.
    public func plan(path: String, passages: [(header: String, text: String)]) -> (questions: [SyntheticQuestion], contexts: [Context]) {
        let questions = ReaderQuestions.synthesise(passages: passages, limit: questionsPerDocument)
        var asked: [Int: [(question: SyntheticQuestion, answerable: Bool)]] = [:]
        for q in questions {
            asked[q.passage, default: []].append((q, true))
            if let d = q.distractor { asked[d, default: []].append((q, false)) }
        }
        let contexts = asked.keys.sorted().map { p in
            let header = passages[p].header
            return Context(recalled: [.init(title: header.isEmpty ? path : "\(path) (\(header))", text: passages[p].text)], asked: asked[p]!)
        }
        return (questions, contexts)
    }

    /// The examples of one context: the passage is prefilled once, each question's own tokens after it.
    public func examples(_ context: Context) throws -> [ReaderExample] {
        guard let firstQuestion = context.asked.first?.question.question else { return [] }
        let first = render(context.recalled, question: firstQuestion)
        guard let cut = first.range(of: "\n\nQuestion:", options: .backwards) else { return [] }
        let w = reader.weights, point = reader.tapPoint
        let prefix = tokenizer.encode(String(first[..<cut.upperBound]), parseSpecial: true)
        let cache = model.makeCache(capacity: prefix.count + 256)
        let shared = HiddenStateRecorder(points: [point])
        // Only through the reader's layer: the deeper ones would be thrown away.
        _ = try model.forward(prefix, cache: cache, logits: .none, tap: shared, throughLayer: w.layer)
        var examples: [ReaderExample] = []
        for (q, answerable) in context.asked {
            let ids = tokenizer.encode(render(context.recalled, question: q.question), parseSpecial: true)
            guard ids.count > prefix.count, ids.count <= cache.capacity, ids.starts(with: prefix),
                  let layout = ReaderLayout(prompt: ids, tokenizer: tokenizer, recalled: context.recalled, question: q.question),
                  layout.question.lowerBound >= prefix.count else { continue }
            cache.truncate(to: prefix.count)
            let own = HiddenStateRecorder(points: [point])
            _ = try model.forward(Array(ids[prefix.count...]), cache: cache, logits: .none, tap: own, throughLayer: w.layer)
            let rows = (shared.states[point] ?? []) + (own.states[point] ?? [])
            guard rows.count == ids.count * w.dim else { continue }
            let gold: (starts: [Int], ends: [Int]) = answerable ? layout.occurrences(of: q.answer) : ([], [])
            guard !answerable || !gold.starts.isEmpty && !gold.ends.isEmpty else { continue }
            let x = reader.inputs(rows: rows, layout: layout)
            examples.append(ReaderExample(start: ReaderAdapter.headInputs(w.start, x, rank: w.rank, dim: w.dim),
                                          end: ReaderAdapter.headInputs(w.end, x, rank: w.rank, dim: w.dim),
                                          nullLexical: x.nullLexical, starts: gold.starts, ends: gold.ends))
        }
        return examples
    }

    /// Every example of one document (`plan`, then `examples` of each context).
    public func learn(path: String, passages: [(header: String, text: String)]) throws -> Learned {
        let (questions, contexts) = plan(path: path, passages: passages)
        return Learned(examples: try contexts.flatMap { try examples($0) }, questions: questions)
    }

    func render(_ recalled: [KnowledgeContext.Recalled], question: String) -> String {
        template.render([ChatMessage(role: "user", content: KnowledgeContext.userText(recalled, question: question)!)])
    }

    /// The shard a document's examples go to: its folder ("docs/pg" of "docs/pg/release-15-11.txt"),
    /// as documents of one layout sit together on a drive. One adapter for every document let a
    /// folder of Swift diagnostics pull PostgreSQL release notes' credits off by a word
    /// (FreshDocs: 0.41 of answers with one adapter, 0.67 fitted on the release notes alone), and a
    /// forget retrains one shard (SISA).
    public static func shard(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// The adapter for one shard's documents (their examples in document order), when it lands
    /// more answers than the shipped reader on questions it was not fitted on (`ReaderAdapterFitting.check`);
    /// nil reads as shipped.
    public static func fit(_ documents: [Int64: [ReaderExample]], rank: Int, fitting: ReaderAdapterFitting = .init())
        -> (adapter: ReaderAdapter?, check: ReaderAdapterFitting.Check) {
        let ordered = documents.keys.sorted().flatMap { documents[$0]! }
        let check = fitting.check(ordered, rank: rank)
        return (check.helps ? fitting.fit(ordered, rank: rank) : nil, check)
    }
}
