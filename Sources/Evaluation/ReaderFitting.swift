import Foundation
import Kernels
import LearningBrain
import MainBrain
import Store

/// Fits the learning brain's reader (`Reader`) on synthetic questions over public text
/// (`scripts/make_reader_data.py`: OUT/docs/ and OUT/items.jsonl), never on customer data.
///
/// The documents are learned into a passage store as the daemon learns them; each question
/// recalls its passages as the daemon's `Recall` does, and the prompt is the daemon's
/// (`KnowledgeContext.userText` in the chat template). Questions that recall the same passages
/// share one prefill of everything before "Question:"; only their own tokens run after it. The
/// main brain's residual rows at the candidate layers are kept for every passage token. An item
/// whose answer is not in its recalled passages is a question the passages do not answer (the
/// null), as is a question of another part of the same document put to a context without its answer.
/// Each layer gets a start and an end head trained by Adam on softmax cross-entropy (the gold
/// being any occurrence of the answer); the layer whose best span holds the answer most often on
/// the held-out documents wins, and the thresholds are fitted on those.
public struct ReaderFitting {
    public struct Item: Decodable, Sendable {
        public var id: String
        public var doc: String
        public var kind: String
        public var question: String
        public var answer: String
        public var split: String
        /// Where the text came from ("changelog", "debian-reference-zh"): contexts are drawn from each in turn.
        public var source: String?
    }

    /// One recalled context: its layout and, per layer, the passage tokens' RMS-normalised rows.
    struct Context {
        var layout: ReaderLayout
        var split: String
        var states: [[Float]]
    }

    /// One question on a context: its mean normalised state per layer, its lexical features and
    /// the candidates where an occurrence of the answer starts and ends (none: the null).
    struct Example {
        var context: Int
        var kind: String
        var answer: String
        var unanswerable: Bool
        var question: [[Float]]
        var lexical: [Float]
        var nullLexical: [Float]
        var starts: [Int]
        var ends: [Int]
    }

    public struct Figures: Codable, Sendable {
        public var layer: Int
        public var contexts: [String: Int]
        public var examples: [String: Int]
        /// Held-out: the best span holds the answer (answerable examples), per layer tried.
        public var heldOutByLayer: [String: Double]
        /// Held-out, chosen layer, per kind: the best span holds the answer.
        public var heldOutByKind: [String: Double]
        public var trainSpanContainsAnswer: Double
        public var sure: Double
        public var silent: Double
        /// Held-out at the thresholds: answerable examples stated, of those stated right; unanswerable ones silenced.
        public var statedShare: Double
        public var statedPrecision: Double
        public var silencedUnanswerable: Double
        public var silencedAnswerable: Double
        public var seconds: [String: Double]
        enum CodingKeys: String, CodingKey {
            case layer, contexts, examples, heldOutByLayer = "held_out_by_layer", heldOutByKind = "held_out_by_kind",
                 trainSpanContainsAnswer = "train_span_contains_answer", sure, silent, statedShare = "stated_share",
                 statedPrecision = "stated_precision", silencedUnanswerable = "silenced_unanswerable",
                 silencedAnswerable = "silenced_answerable", seconds
        }
    }

    let model: Model
    let tokenizer: Tokenizer
    let template: ChatTemplate
    public var layers: [Int]
    public var maxContexts = 500
    public var rank = 16
    public var epochs = 30
    public var learningRate: Float = 1e-3
    public var l2: Float = 1e-4
    public var maxSpanTokens = 24
    /// Held-out precision the `sure` threshold must keep.
    public var precision = 0.9
    public var progress: (String, Int, Int) -> Void = { _, _, _ in }

    var contexts: [Context] = []
    var examples: [Example] = []
    var seconds: [String: Double] = [:]

    public init(model: Model, tokenizer: Tokenizer, layers: [Int]) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.layers = layers
        guard let template = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer) else {
            throw CorpusError("the reader reads chat prompts, and this model has no usable chat template")
        }
        self.template = template
    }

    /// The prompt the daemon builds for a question over recalled passages.
    func prompt(_ recalled: [KnowledgeContext.Recalled], question: String) -> String {
        template.render([ChatMessage(role: "user", content: KnowledgeContext.userText(recalled, question: question)!)])
    }

    /// Reads OUT/docs and OUT/items.jsonl, recalls, prefills and keeps the rows.
    public mutating func extract(from directory: String) throws {
        let began = Date()
        let root = URL(fileURLWithPath: directory)
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent("items.jsonl").path) else {
            throw CorpusError("\(directory) holds no items.jsonl: write the training data with `make reader-data`")
        }
        let items = try String(contentsOf: root.appendingPathComponent("items.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(Item.self, from: Data($0.utf8)) }
        let documents = try FreshDocsCorpus.readTexts(under: root, folder: "docs")
        let store = try PassageStore(tokenizer: tokenizer)
        try store.learn(documents)
        // Questions that recall the same passages share a context.
        var groups: [String: [(item: Item, recall: Recall)]] = [:], order: [String] = []
        for (i, item) in items.enumerated() {
            let recall = try Recall(question: item.question, index: store.store, limit: Recall.defaultLimit)
            guard !recall.passages.isEmpty else { continue }
            let key = item.split + ":" + recall.passages.map { String($0.passageId) }.joined(separator: ",")
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append((item, recall))
            if i % 200 == 0 { progress("recall", i, items.count) }
        }
        var rng = SeededGenerator(seed: 20)
        order.shuffle(using: &rng)
        // Each source in turn, so a small one (the Chinese text) is not drowned by a large one.
        var bySource: [String: [String]] = [:]
        for key in order { bySource[groups[key]![0].item.source ?? "", default: []].append(key) }
        var queues = bySource.keys.sorted().map { bySource[$0]! }, chosen: [String] = []
        while chosen.count < maxContexts, queues.contains(where: { !$0.isEmpty }) {
            for q in queues.indices where !queues[q].isEmpty && chosen.count < maxContexts { chosen.append(queues[q].removeFirst()) }
        }
        // A question of another part of the same document, for contexts without its answer.
        var byDocument: [String: [Item]] = [:]
        for key in order { for g in groups[key]! { byDocument[g.item.doc, default: []].append(g.item) } }
        seconds["recall"] = Date().timeIntervalSince(began)
        let extracting = Date()
        let points = Set(layers.map { TapPoint.residual(layer: $0) })
        let dim = model.config.dim
        for (n, key) in chosen.enumerated() {
            progress("prefill", n, chosen.count)
            let group = groups[key]!
            let recalled = group[0].recall.recalled
            let first = prompt(recalled, question: group[0].item.question)
            guard let cut = first.range(of: "\n\nQuestion:", options: .backwards) else { continue }
            let prefix = tokenizer.encode(String(first[..<cut.upperBound]), parseSpecial: true)
            let recorder = HiddenStateRecorder(points: points)
            let cache = model.makeCache(capacity: prefix.count + 256)
            _ = try model.forward(prefix, cache: cache, logits: .none, tap: recorder)
            var questions = group.map { ($0.item, false) }
            let inContext = Set(recalled.flatMap { QueryWords.words(in: $0.title + "\n" + $0.text) })
            let text = recalled.map { $0.title + "\n" + $0.text }.joined(separator: "\n")
            if let other = byDocument[group[0].item.doc]?.shuffled(using: &rng).first(where: { o in
                !text.contains(o.answer) && !group.contains { $0.item.id == o.id } && QueryWords.content(of: o.question).contains(where: inContext.contains)
            }) {
                questions.append((other, true))
            }
            var contextIndex: Int?
            for (item, unanswerable) in questions {
                let ids = tokenizer.encode(prompt(recalled, question: item.question), parseSpecial: true)
                guard ids.count > prefix.count, ids.starts(with: prefix), ids.count <= cache.capacity,
                      let layout = ReaderLayout(prompt: ids, tokenizer: tokenizer, recalled: recalled, question: item.question),
                      layout.question.lowerBound >= prefix.count, layout.candidates.last!.token < prefix.count else { continue }
                cache.truncate(to: prefix.count)
                let asked = HiddenStateRecorder(points: points)
                _ = try model.forward(Array(ids[prefix.count...]), cache: cache, logits: .none, tap: asked)
                if contextIndex == nil {
                    contextIndex = contexts.count
                    contexts.append(Context(layout: layout, split: item.split == "dev" ? "dev" : "train", states: layers.map { l in
                        let rows = recorder.states[.residual(layer: l)]!
                        var picked = [Float](); picked.reserveCapacity(layout.candidates.count * dim)
                        for c in layout.candidates { picked += rows[c.token * dim..<(c.token + 1) * dim] }
                        return Self.rmsNormalised(picked, dim: dim)
                    }))
                }
                let question = layers.map { l -> [Float] in
                    let rows = asked.states[.residual(layer: l)]!
                    let questionRows = rows[(layout.question.lowerBound - prefix.count) * dim..<(layout.question.upperBound - prefix.count) * dim]
                    return ReaderFeatures.meanRow(Self.rmsNormalised(Array(questionRows), dim: dim), dim: dim)
                }
                let (starts, ends) = unanswerable ? ([], []) : layout.occurrences(of: item.answer) { group[0].recall.passages[$0].path == item.doc }
                let lexical = ReaderFeatures.lexical(layout)
                examples.append(Example(context: contextIndex!, kind: item.kind, answer: item.answer, unanswerable: starts.isEmpty,
                                        question: question, lexical: lexical.tokens, nullLexical: lexical.null, starts: starts, ends: ends))
            }
        }
        progress("prefill", chosen.count, chosen.count)
        seconds["prefill"] = Date().timeIntervalSince(extracting)
    }

    static func rmsNormalised(_ rows: [Float], dim: Int) -> [Float] {
        rows.withUnsafeBufferPointer {
            ReaderFeatures.normalise($0, count: rows.count / dim, dim: dim, mean: .init(repeating: 0, count: dim), std: .init(repeating: 1, count: dim))
        }
    }

    /// A head's parameters and Adam's moments.
    struct Trainable {
        var head: ReaderHead
        var m: [[Float]]
        var v: [[Float]]

        init(features: Int, dim: Int, rank: Int, rng: inout SeededGenerator) {
            func noise(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -0.02...0.02, using: &rng) } }
            head = ReaderHead(w: .init(repeating: 0, count: features), a: noise(rank * features), b: noise(rank * (dim + 1)),
                              nullWeights: .init(repeating: 0, count: dim + ReaderFeatures.nullLexicalCount))
            let sizes = [head.w.count, head.a.count, head.b.count, head.nullWeights.count]
            m = sizes.map { .init(repeating: 0, count: $0) }
            v = m
        }
    }

    /// Standardised inputs of one layer.
    struct LayerData {
        var mean: [Float]
        var std: [Float]
        var states: [[Float]]
        var questions: [[Float]]
    }

    func layerData(_ layer: Int) -> LayerData {
        let dim = model.config.dim
        var mean = [Double](repeating: 0, count: dim), square = [Double](repeating: 0, count: dim), n = 0.0
        for c in contexts where c.split == "train" {
            let rows = c.states[layer]
            for r in 0..<rows.count / dim { for d in 0..<dim { let x = Double(rows[r * dim + d]); mean[d] += x; square[d] += x * x }; n += 1 }
        }
        let mu = mean.map { Float($0 / n) }
        let sd = zip(mean, square).map { Float(max(1e-6, ($1 / n - ($0 / n) * ($0 / n))).squareRoot()) }
        func standard(_ rows: [Float]) -> [Float] { rows.enumerated().map { ($1 - mu[$0 % dim]) / sd[$0 % dim] } }
        return LayerData(mean: mu, std: sd, states: contexts.map { standard($0.states[layer]) }, questions: examples.map { standard($0.question[layer]) })
    }

    /// One example's loss and gradient for a head, added into `grads` (w, a, b, null).
    @discardableResult
    func accumulate(_ head: ReaderHead, _ x: Reader.Inputs, gold: [Int], into grads: inout [[Float]]) -> Float {
        let dim = model.config.dim, features = head.w.count, n = x.lexical.count / ReaderFeatures.lexicalCount
        let qh = x.question + [1]
        var v = [Float](repeating: 0, count: rank)
        for r in 0..<rank { var s: Float = 0; for d in 0...dim { s += head.b[r * (dim + 1) + d] * qh[d] }; v[r] = s }
        let e = head.effective(question: x.question, rank: rank)
        var logits = ReaderHead.scores(effective: e, states: x.states, lexical: x.lexical, count: n, dim: dim)
        logits.append(head.nullScore(question: x.question, lexical: x.nullLexical))
        let top = logits.max()!
        var p = logits.map { exp($0 - top) }
        let total = p.reduce(0, +)
        p = p.map { $0 / total }
        var g = p, loss: Float
        if gold.isEmpty {
            g[n] -= 1
            loss = -log(max(p[n], 1e-30))
        } else {
            let mass = gold.reduce(Float(0)) { $0 + p[$1] }
            for i in gold { g[i] -= p[i] / mass }
            loss = -log(max(mass, 1e-30))
        }
        // u = ∂loss/∂e: the states' and lexical features' sums weighted by g.
        var u = [Float](repeating: 0, count: features)
        x.states.withUnsafeBufferPointer { s in
            g.withUnsafeBufferPointer { g in
                u.withUnsafeMutableBufferPointer { u in
                    gemm(transA: true, transB: false, m: dim, n: 1, k: n, s.baseAddress!, lda: dim, g.baseAddress!, ldb: 1, u.baseAddress!, ldc: 1)
                }
            }
        }
        let l = ReaderFeatures.lexicalCount
        for i in 0..<n where g[i] != 0 { for f in 0..<l { u[dim + f] += x.lexical[i * l + f] * g[i] } }
        for f in 0..<features { grads[0][f] += u[f] }
        var au = [Float](repeating: 0, count: rank)
        for r in 0..<rank {
            var s: Float = 0
            for f in 0..<features { grads[1][r * features + f] += v[r] * u[f]; s += head.a[r * features + f] * u[f] }
            au[r] = s
        }
        for r in 0..<rank { for d in 0...dim { grads[2][r * (dim + 1) + d] += au[r] * qh[d] } }
        let nullInput = x.question + x.nullLexical
        for d in nullInput.indices { grads[3][d] += g[n] * nullInput[d] }
        return loss
    }

    func train(_ data: LayerData, end: Bool, rng: inout SeededGenerator) -> ReaderHead {
        let dim = model.config.dim
        var t = Trainable(features: dim + ReaderFeatures.lexicalCount, dim: dim, rank: rank, rng: &rng)
        let train = examples.indices.filter { contexts[examples[$0].context].split == "train" }
        let inputs = examples.indices.map { i in
            Reader.Inputs(states: data.states[examples[i].context], question: data.questions[i], lexical: examples[i].lexical,
                          nullLexical: examples[i].nullLexical)
        }
        var step: Float = 0
        let batch = 32, beta1: Float = 0.9, beta2: Float = 0.999
        for epoch in 0..<epochs {
            var order = train
            order.shuffle(using: &rng)
            for first in stride(from: 0, to: order.count, by: batch) {
                let chunk = order[first..<min(first + batch, order.count)]
                var grads = [t.head.w, t.head.a, t.head.b, t.head.nullWeights].map { [Float](repeating: 0, count: $0.count) }
                for i in chunk {
                    accumulate(t.head, inputs[i], gold: end ? examples[i].ends : examples[i].starts, into: &grads)
                }
                step += 1
                var params = [t.head.w, t.head.a, t.head.b, t.head.nullWeights]
                for k in 0..<4 {
                    for j in params[k].indices {
                        let grad = grads[k][j] / Float(chunk.count) + l2 * params[k][j]
                        t.m[k][j] = beta1 * t.m[k][j] + (1 - beta1) * grad
                        t.v[k][j] = beta2 * t.v[k][j] + (1 - beta2) * grad * grad
                        let mh = t.m[k][j] / (1 - pow(beta1, step)), vh = t.v[k][j] / (1 - pow(beta2, step))
                        params[k][j] -= learningRate * mh / (vh.squareRoot() + 1e-8)
                    }
                }
                t.head = ReaderHead(w: params[0], a: params[1], b: params[2], nullWeights: params[3])
            }
            progress(end ? "train end" : "train start", epoch + 1, epochs)
        }
        return t.head
    }

    /// For each example: the best span's text, its probability and the null's.
    func predictions(_ start: ReaderHead, _ end: ReaderHead, _ data: LayerData) -> [(text: String, p: Float, pNull: Float)] {
        let dim = model.config.dim
        return examples.indices.map { i in
            let e = examples[i], layout = contexts[e.context].layout
            let x = Reader.Inputs(states: data.states[e.context], question: data.questions[i], lexical: e.lexical, nullLexical: e.nullLexical)
            let s = Reader.logProbabilities(start, x, rank: rank, dim: dim), en = Reader.logProbabilities(end, x, rank: rank, dim: dim)
            guard let best = Reader.best(start: s, end: en, layout: layout, maxSpanTokens: maxSpanTokens) else { return ("", 0, 1) }
            return (layout.spanText(best.range.lowerBound, best.range.upperBound - 1), exp(best.logP), exp(best.nullLogP))
        }
    }

    func right(_ text: String, _ e: Example) -> Bool { !e.unanswerable && GoldMatch.contains(text, gold: e.answer) }

    /// Trains every layer, keeps the best on held-out documents and fits the thresholds there.
    public mutating func fit(modelSHA256: String) -> (weights: ReaderWeights, figures: Figures) {
        var rng = SeededGenerator(seed: 21)
        let dev = examples.indices.filter { contexts[examples[$0].context].split == "dev" }
        let trainIndices = examples.indices.filter { contexts[examples[$0].context].split == "train" }
        var best: (layer: Int, data: LayerData, start: ReaderHead, end: ReaderHead, score: Double)?
        var byLayer: [String: Double] = [:]
        let training = Date()
        for (k, layer) in layers.enumerated() {
            let data = layerData(k)
            let start = train(data, end: false, rng: &rng), end = train(data, end: true, rng: &rng)
            let found = predictions(start, end, data)
            let answerable = dev.filter { !examples[$0].unanswerable }
            let score = Double(answerable.filter { right(found[$0].text, examples[$0]) }.count) / Double(max(1, answerable.count))
            byLayer[String(layer)] = score
            if best == nil || score > best!.score { best = (layer, data, start, end, score) }
        }
        let chosen = best!
        let found = predictions(chosen.start, chosen.end, chosen.data)
        // sure: the lowest probability that keeps held-out precision (unanswerable ones count as wrong).
        let byP = dev.sorted { found[$0].p > found[$1].p }
        var sure: Float = 1, rightCount = 0
        for (n, i) in byP.enumerated() {
            rightCount += right(found[i].text, examples[i]) ? 1 : 0
            if Double(rightCount) / Double(n + 1) >= precision { sure = found[i].p }
        }
        // silent: among those not stated, the null probability that silences the most
        // unanswerable questions for at most one answerable one in ten.
        let unsure = dev.filter { found[$0].p < sure }
        var silent: Float = 1, bestGain = 0.0
        for candidate in Set(unsure.map { found[$0].pNull }) {
            let silenced = unsure.filter { found[$0].pNull >= candidate }
            let wrong = silenced.filter { !examples[$0].unanswerable }.count
            let answerable = dev.filter { !examples[$0].unanswerable }.count
            guard Double(wrong) <= 0.1 * Double(answerable) else { continue }
            let gain = Double(silenced.count - 2 * wrong)
            if gain > bestGain { bestGain = gain; silent = candidate }
        }
        seconds["train"] = Date().timeIntervalSince(training)
        let devAnswerable = dev.filter { !examples[$0].unanswerable }, devUnanswerable = dev.filter { examples[$0].unanswerable }
        let stated = dev.filter { found[$0].p >= sure }
        var kinds: [String: Double] = [:]
        for kind in Set(devAnswerable.map { examples[$0].kind }) {
            let of = devAnswerable.filter { examples[$0].kind == kind }
            kinds[kind] = Double(of.filter { right(found[$0].text, examples[$0]) }.count) / Double(of.count)
        }
        let trainAnswerable = trainIndices.filter { !examples[$0].unanswerable }
        func share(_ part: Int, _ whole: Int) -> Double { whole > 0 ? Double(part) / Double(whole) : 0 }
        let figures = Figures(
            layer: chosen.layer,
            contexts: ["train": contexts.filter { $0.split == "train" }.count, "dev": contexts.filter { $0.split == "dev" }.count],
            examples: ["train": trainIndices.count, "dev": dev.count, "dev_unanswerable": devUnanswerable.count,
                       "train_unanswerable": trainIndices.count - trainAnswerable.count],
            heldOutByLayer: byLayer, heldOutByKind: kinds,
            trainSpanContainsAnswer: share(trainAnswerable.filter { right(found[$0].text, examples[$0]) }.count, trainAnswerable.count),
            sure: Double(sure), silent: Double(silent),
            statedShare: share(devAnswerable.filter { found[$0].p >= sure }.count, devAnswerable.count),
            statedPrecision: share(stated.filter { right(found[$0].text, examples[$0]) }.count, stated.count),
            silencedUnanswerable: share(devUnanswerable.filter { found[$0].p < sure && found[$0].pNull >= silent }.count, devUnanswerable.count),
            silencedAnswerable: share(devAnswerable.filter { found[$0].p < sure && found[$0].pNull >= silent }.count, devAnswerable.count),
            seconds: seconds)
        let weights = ReaderWeights(
            modelSHA256: modelSHA256, shape: FittedKeyspace.shape(model.config), layer: chosen.layer, dim: model.config.dim, rank: rank,
            maxSpanTokens: maxSpanTokens, mean: chosen.data.mean, std: chosen.data.std, start: chosen.start, end: chosen.end,
            sure: sure, silent: silent,
            fit: ["held_out_span_contains_answer": chosen.score, "stated_precision": figures.statedPrecision, "stated_share": figures.statedShare])
        return (weights, figures)
    }

    /// The generated FittedReaders.swift: the record as JSON in a raw string, in lines of 100
    /// (the loader drops the line breaks).
    public static func swiftSource(_ weights: ReaderWeights, figures: Figures) throws -> String {
        let json = Array(String(decoding: try weights.json(), as: UTF8.self))
        let lines = stride(from: 0, to: json.count, by: 100).map { "        " + String(json[$0..<min($0 + 100, json.count)]) }
        func figure(_ x: Double) -> String { String(format: "%.3f", x) }
        return ([
            "// Generated by `make reader` (twinbrain-eval fit-reader --swift-out): fitted on synthetic questions",
            "// over public text only (scripts/make_reader_data.py), never on customer data. Figures:",
            "// docs/results/reader-fit.json. Do not edit by hand; fit again instead.",
            "// Layer \(figures.layer); on held-out documents the best span holds the answer \(figure(weights.fit["held_out_span_contains_answer"] ?? 0));",
            "// \(figure(figures.statedShare)) of answerable questions are stated, \(figure(figures.statedPrecision)) of those rightly.",
            "",
            "enum FittedReaders {",
            "    /// `twinbrain.reader/1` records (JSON), one per main brain file.",
            "    static let records: [String] = [",
            "        #\"\"\"",
        ] + lines + [
            "        \"\"\"#,",
            "    ]",
            "}",
            "",
        ]).joined(separator: "\n")
    }
}
