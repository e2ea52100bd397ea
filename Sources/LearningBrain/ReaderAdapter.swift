import Foundation
import Kernels

/// The reader adapted to the box's own documents: a small correction to the shipped heads'
/// scores, fitted on the questions the box writes about what it learned (`ReaderQuestions`).
/// Token i's score becomes sᵢ + φᵢᵀ·M·ψ and the null's s∅ + n·[ψ; its lexical features], where
/// sᵢ is the shipped head's score, φᵢ = [the token's lexical features; A·xᵢ] (what the shipped
/// head already projects the token to) and ψ = [B·q̂; 1] (what it projects the question to).
/// The shipped head stays as it is; all zeros is the shipped reader exactly. Small (about 1,100
/// numbers), so a few questions per document fit it in seconds, and fitting it again from the
/// kept features without one document is exact forgetting.
public struct ReaderAdapter: Sendable, Equatable {
    public struct Head: Sendable, Equatable {
        /// tokenWidth × questionWidth, row-major.
        public var m: [Float]
        /// questionWidth + `ReaderFeatures.nullLexicalCount`.
        public var null: [Float]
    }

    public var rank: Int
    public var start: Head
    public var end: Head

    public static func tokenWidth(rank: Int) -> Int { ReaderFeatures.lexicalCount + rank }
    public static func questionWidth(rank: Int) -> Int { rank + 1 }

    public init(rank: Int) {
        self.rank = rank
        let zero = Head(m: .init(repeating: 0, count: Self.tokenWidth(rank: rank) * Self.questionWidth(rank: rank)),
                        null: .init(repeating: 0, count: Self.questionWidth(rank: rank) + ReaderFeatures.nullLexicalCount))
        start = zero
        end = zero
    }

    /// What one shipped head makes of a question over its passages, reduced to what the adapter reads.
    public struct HeadInputs: Sendable, Equatable {
        /// The shipped head's raw scores, the null's last.
        public var base: [Float]
        /// φ per candidate: [candidates × tokenWidth].
        public var tokens: [Float]
        /// ψ.
        public var question: [Float]
        public init(base: [Float], tokens: [Float], question: [Float]) {
            self.base = base
            self.tokens = tokens
            self.question = question
        }
    }

    public static func headInputs(_ head: ReaderHead, _ x: Reader.Inputs, rank: Int, dim: Int) -> HeadInputs {
        let l = ReaderFeatures.lexicalCount, features = dim + l, n = x.lexical.count / l
        var base = ReaderHead.scores(effective: head.effective(question: x.question, rank: rank), states: x.states, lexical: x.lexical,
                                     count: n, dim: dim)
        base.append(head.nullScore(question: x.question, lexical: x.nullLexical))
        // A·x: the states against A's state columns, then its lexical columns.
        var aStates = [Float](repeating: 0, count: rank * dim)
        for r in 0..<rank { aStates.replaceSubrange(r * dim..<(r + 1) * dim, with: head.a[r * features..<r * features + dim]) }
        var projected = [Float](repeating: 0, count: n * rank)
        if n > 0 {
            x.states.withUnsafeBufferPointer { s in
                aStates.withUnsafeBufferPointer { a in
                    projected.withUnsafeMutableBufferPointer { o in
                        matmul(o.baseAddress!, s.baseAddress!, a.baseAddress!, rows: n, outFeatures: rank, inFeatures: dim)
                    }
                }
            }
        }
        let width = tokenWidth(rank: rank)
        var tokens = [Float](repeating: 0, count: n * width)
        for i in 0..<n {
            for f in 0..<l { tokens[i * width + f] = x.lexical[i * l + f] }
            for r in 0..<rank {
                var s = projected[i * rank + r]
                for f in 0..<l { s += head.a[r * features + dim + f] * x.lexical[i * l + f] }
                tokens[i * width + l + r] = s
            }
        }
        var question = [Float](repeating: 0, count: rank + 1)
        for r in 0..<rank {
            var s = head.b[r * (dim + 1) + dim]
            for d in 0..<dim { s += head.b[r * (dim + 1) + d] * x.question[d] }
            question[r] = s
        }
        question[rank] = 1
        return HeadInputs(base: base, tokens: tokens, question: question)
    }

    /// The adapted raw scores (the null's last).
    public static func scores(_ h: HeadInputs, _ p: Head, nullLexical: [Float], rank: Int) -> [Float] {
        let tw = tokenWidth(rank: rank), qw = questionWidth(rank: rank), n = h.base.count - 1
        // M·ψ once, then each token's φ against it.
        var turned = [Float](repeating: 0, count: tw)
        for f in 0..<tw { var s: Float = 0; for q in 0..<qw { s += p.m[f * qw + q] * h.question[q] }; turned[f] = s }
        var out = h.base
        for i in 0..<n { var s: Float = 0; for f in 0..<tw { s += h.tokens[i * tw + f] * turned[f] }; out[i] += s }
        let nullInput = h.question + nullLexical
        for (w, v) in zip(p.null, nullInput) { out[n] += w * v }
        return out
    }

    public static func logSoftmax(_ s: [Float]) -> [Float] {
        let m = s.max()!
        let lse = m + log(s.reduce(Float(0)) { $0 + exp($1 - m) })
        return s.map { $0 - lse }
    }
}

/// A synthetic question over its context as the adapter trains on it: both heads' inputs and
/// the candidates where the answer starts and ends (none: the passage does not answer it).
public struct ReaderExample: Sendable, Equatable {
    public var start: ReaderAdapter.HeadInputs
    public var end: ReaderAdapter.HeadInputs
    public var nullLexical: [Float]
    public var starts: [Int]
    public var ends: [Int]
    public var answerable: Bool { !starts.isEmpty }

    public init(start: ReaderAdapter.HeadInputs, end: ReaderAdapter.HeadInputs, nullLexical: [Float], starts: [Int], ends: [Int]) {
        self.start = start
        self.end = end
        self.nullLexical = nullLexical
        self.starts = starts
        self.ends = ends
    }
}

/// Fits a `ReaderAdapter`: Adam on the heads' mean softmax cross-entropy over all examples at
/// once (the gold being any occurrence of the answer, or the null), no randomness, so the same
/// examples in the same order give the same adapter to the bit. All at once rather than in
/// mini-batches: in document order, the last documents' batches pulled the adapter their way
/// (measured on FreshDocs: the Swift diagnostics learned last moved PostgreSQL credits off by a word).
public struct ReaderAdapterFitting: Sendable {
    public var steps = 150
    public var learningRate: Float = 0.01
    public var l2: Float = 1e-3
    /// φ's features the adapter may weigh: all (the lexical ones and A·x), or only the first
    /// this many (the lexical ones: `ReaderFeatures.lexicalCount`).
    public var tokenFeatures: Int?

    public init() {}

    /// What a fit on half the examples does on the other half: answerable examples whose start
    /// and end both land on the answer, under the adapter and under the shipped heads.
    public struct Check: Sendable, Equatable {
        public var examples = 0
        public var adapted = 0
        public var shipped = 0
        public var helps: Bool { adapted > shipped }
        public init() {}
    }

    /// Fits on the even examples and checks on the odd ones, then the other way round. The
    /// adapter is used only when it lands more answers than the shipped heads on the questions
    /// it was not fitted on: documents unlike any the reader knows must not make it worse.
    public func check(_ examples: [ReaderExample], rank: Int) -> Check {
        var check = Check()
        for fold in 0..<2 {
            let train = examples.indices.filter { $0 % 2 == fold }.map { examples[$0] }
            let test = examples.indices.filter { $0 % 2 != fold && examples[$0].answerable }.map { examples[$0] }
            guard !train.isEmpty, !test.isEmpty else { continue }
            let adapter = fit(train, rank: rank), zero = ReaderAdapter(rank: rank)
            for e in test {
                check.examples += 1
                if Self.lands(e, adapter, rank: rank) { check.adapted += 1 }
                if Self.lands(e, zero, rank: rank) { check.shipped += 1 }
            }
        }
        return check
    }

    static func lands(_ e: ReaderExample, _ a: ReaderAdapter, rank: Int) -> Bool {
        // The best candidate, as the reader picks a span (the null decides only whether to state it).
        func best(_ h: ReaderAdapter.HeadInputs, _ p: ReaderAdapter.Head) -> Int {
            let s = ReaderAdapter.scores(h, p, nullLexical: e.nullLexical, rank: rank).dropLast()
            return s.indices.max { s[$0] < s[$1] }!
        }
        return e.starts.contains(best(e.start, a.start)) && e.ends.contains(best(e.end, a.end))
    }

    public func fit(_ examples: [ReaderExample], rank: Int) -> ReaderAdapter {
        var adapter = ReaderAdapter(rank: rank)
        guard !examples.isEmpty else { return adapter }
        adapter.start = fitHead(examples.map { ($0.start, $0.nullLexical, $0.starts) }, rank: rank)
        adapter.end = fitHead(examples.map { ($0.end, $0.nullLexical, $0.ends) }, rank: rank)
        return adapter
    }

    func fitHead(_ data: [(ReaderAdapter.HeadInputs, [Float], [Int])], rank: Int) -> ReaderAdapter.Head {
        let tw = ReaderAdapter.tokenWidth(rank: rank), qw = ReaderAdapter.questionWidth(rank: rank)
        var head = ReaderAdapter(rank: rank).start
        var mM = [Float](repeating: 0, count: head.m.count), vM = mM
        var mN = [Float](repeating: 0, count: head.null.count), vN = mN
        let beta1: Float = 0.9, beta2: Float = 0.999
        for step in 1...max(1, steps) {
            var gM = [Float](repeating: 0, count: head.m.count), gN = [Float](repeating: 0, count: head.null.count)
            for (h, nullLexical, gold) in data {
                let s = ReaderAdapter.scores(h, head, nullLexical: nullLexical, rank: rank)
                let n = s.count - 1, top = s.max()!
                var p = s.map { exp($0 - top) }
                let total = p.reduce(0, +)
                p = p.map { $0 / total }
                var g = p
                if gold.isEmpty { g[n] -= 1 } else {
                    let mass = gold.reduce(Float(0)) { $0 + p[$1] }
                    for i in gold { g[i] -= p[i] / max(mass, 1e-30) }
                }
                // ∂/∂M = Σᵢ gᵢ φᵢ ψᵀ: the tokens' φ weighted by g, then the outer product with ψ.
                var phi = [Float](repeating: 0, count: tw)
                for i in 0..<n where g[i] != 0 { for f in 0..<tw { phi[f] += g[i] * h.tokens[i * tw + f] } }
                for f in 0..<min(tw, tokenFeatures ?? tw) where phi[f] != 0 { for q in 0..<qw { gM[f * qw + q] += phi[f] * h.question[q] } }
                for (k, v) in (h.question + nullLexical).enumerated() { gN[k] += g[n] * v }
            }
            func adam(_ w: inout [Float], _ g: [Float], _ m: inout [Float], _ v: inout [Float]) {
                for j in w.indices {
                    let grad = g[j] / Float(data.count) + l2 * w[j]
                    m[j] = beta1 * m[j] + (1 - beta1) * grad
                    v[j] = beta2 * v[j] + (1 - beta2) * grad * grad
                    let mh = m[j] / (1 - pow(beta1, Float(step))), vh = v[j] / (1 - pow(beta2, Float(step)))
                    w[j] -= learningRate * mh / (vh.squareRoot() + 1e-8)
                }
            }
            adam(&head.m, gM, &mM, &vM)
            adam(&head.null, gN, &mN, &vN)
        }
        return head
    }
}

/// One learned document version's reader examples on disk (`<document>.rdx` in a `DocumentFiles`
/// directory), for the reader it was made with: examples of another reader (another model, a
/// new fit) are refused on reading and made again.
///
/// Layout (little-endian): magic "TBREADX1", document i64, rank u32, the reader's identity
/// and the document's shard (each u16 length, UTF-8), count u32; per example: candidates u32, starts u32, ends u32, then f32
/// start.base, start.tokens, start.question, end.base, end.tokens, end.question, nullLexical,
/// i32 starts, ends; CRC-32 u32 of all that precedes it.
public enum ReaderExampleFile {
    static let magic = Array("TBREADX1".utf8)

    public static func encoded(_ examples: [ReaderExample], document: Int64, shard: String, rank: Int, reader: String) -> Data {
        var data = Data()
        data.append(contentsOf: magic)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        func floats(_ values: [Float]) { for x in values { put(x.bitPattern) } }
        put(document)
        put(UInt32(rank))
        for text in [reader, shard] {
            let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
            put(UInt16(bytes.count))
            data.append(contentsOf: bytes)
        }
        put(UInt32(examples.count))
        for e in examples {
            put(UInt32(e.start.base.count - 1))
            put(UInt32(e.starts.count))
            put(UInt32(e.ends.count))
            for h in [e.start, e.end] { floats(h.base); floats(h.tokens); floats(h.question) }
            floats(e.nullLexical)
            for i in e.starts + e.ends { put(Int32(i)) }
        }
        put(CRC32.checksum(data))
        return data
    }

    public static func decoded(_ data: Data, rank: Int, reader: String) throws -> (document: Int64, shard: String, examples: [ReaderExample]) {
        let bytes = [UInt8](data)
        func damaged(_ why: String) -> MemorySegment.Damaged { MemorySegment.Damaged(description: "reader examples: \(why)") }
        guard bytes.count >= 8 + 8 + 4 + 2 + 4 + 4, Array(bytes[0..<8]) == magic else { throw damaged("not a reader example file (bad magic or too short)") }
        let stored = UInt32(bytes[bytes.count - 4]) | UInt32(bytes[bytes.count - 3]) << 8
            | UInt32(bytes[bytes.count - 2]) << 16 | UInt32(bytes[bytes.count - 1]) << 24
        guard CRC32.checksum(bytes[0..<(bytes.count - 4)]) == stored else { throw damaged("checksum mismatch (damaged or truncated)") }
        var at = 8
        let end = bytes.count - 4
        func take<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard at + MemoryLayout<T>.size <= end else { throw damaged("shorter than its header says") }
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: bytes[at..<at + MemoryLayout<T>.size]) }
            at += MemoryLayout<T>.size
            return T(littleEndian: v)
        }
        func floats(_ count: Int) throws -> [Float] { try (0..<count).map { _ in Float(bitPattern: try take(UInt32.self)) } }
        let document = try take(Int64.self)
        guard Int(try take(UInt32.self)) == rank else { throw damaged("made for a reader of another rank") }
        func text() throws -> String {
            let length = Int(try take(UInt16.self))
            guard at + length <= end else { throw damaged("shorter than its header says") }
            defer { at += length }
            return String(decoding: bytes[at..<at + length], as: UTF8.self)
        }
        guard try text() == reader else { throw damaged("made for another reader (another model or fit)") }
        let shard = try text()
        let count = Int(try take(UInt32.self))
        let tw = ReaderAdapter.tokenWidth(rank: rank), qw = ReaderAdapter.questionWidth(rank: rank)
        var examples: [ReaderExample] = []
        for _ in 0..<count {
            let n = Int(try take(UInt32.self)), s = Int(try take(UInt32.self)), e = Int(try take(UInt32.self))
            guard ((n + 1 + n * tw + qw) * 2 + ReaderFeatures.nullLexicalCount + s + e) * 4 <= end - at else {
                throw damaged("shorter than its header says")
            }
            let start = ReaderAdapter.HeadInputs(base: try floats(n + 1), tokens: try floats(n * tw), question: try floats(qw))
            let endInputs = ReaderAdapter.HeadInputs(base: try floats(n + 1), tokens: try floats(n * tw), question: try floats(qw))
            let nullLexical = try floats(ReaderFeatures.nullLexicalCount)
            let starts = try (0..<s).map { _ in Int(try take(Int32.self)) }, ends = try (0..<e).map { _ in Int(try take(Int32.self)) }
            guard (starts + ends).allSatisfy({ $0 >= 0 && $0 < n }) else { throw damaged("an answer outside its candidates") }
            examples.append(ReaderExample(start: start, end: endInputs, nullLexical: nullLexical, starts: starts, ends: ends))
        }
        guard at == end else { throw damaged("longer than its header says") }
        return (document, shard, examples)
    }
}
