// The tokenizers GGUF files name in tokenizer.ggml.model, built from their metadata and
// matching llama.cpp token for token: byte-level BPE ("gpt2": SmolLM2, Qwen, Llama 3) and
// SentencePiece with scores and byte fallback ("llama": Gemma, Llama 2).

import Foundation

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case unsupportedModel(String)
    case unsupportedPreTokenizer(String)
    case malformed(String)

    public var description: String {
        switch self {
        case let .missing(key): return "model file lacks tokenizer metadata '\(key)'"
        case let .unsupportedModel(m):
            return "tokenizer model '\(m)' is not supported (twinbrain reads byte-level BPE, 'gpt2', and SentencePiece, 'llama')"
        case let .unsupportedPreTokenizer(p):
            return "pre-tokenizer '\(p)' is not supported (supported: gpt2, smollm, llama-bpe, qwen2 and their aliases)"
        case let .malformed(what): return "tokenizer metadata is malformed: \(what)"
        }
    }
}

/// llama.cpp's token types (tokenizer.ggml.token_type).
public enum TokenType: Int32, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// Which algorithm turns text into tokens (`tokenizer.ggml.model`).
public enum TokenizerModel: String, Sendable {
    /// "gpt2": byte-level BPE with ranked merges after a pre-tokenizer.
    case bytePairs = "gpt2"
    /// "llama": SentencePiece, merging adjacent pieces by score, spaces as ▁, unknown bytes as <0xXX>.
    case sentencePiece = "llama"
}

public final class Tokenizer: @unchecked Sendable {
    public let model: TokenizerModel
    public let tokens: [String]
    public let types: [TokenType]
    /// The pre-tokenizer of byte-level BPE (SentencePiece has none).
    public let preTokenizer: PreTokenizerKind
    public let bos: Int32?
    public let eos: Int32?
    /// Ids that end a turn or a text (eos, eot, `<|im_end|>`, `<|endoftext|>`): generation stops on these.
    public let endOfGeneration: Set<Int32>
    public let addBOS: Bool

    let ids: [String: Int32]
    /// (left << 32 | right) → (rank, merged id) (byte-level BPE)
    let merges: [UInt64: (rank: Int32, result: Int32)]
    /// Each token's score (SentencePiece: higher merges first).
    let scores: [Float]
    /// SentencePiece: a space goes before text that starts the input or follows a special token.
    let addSpacePrefix: Bool
    /// Token id of each byte's single-character byte-level token.
    let byteTokens: [Int32]
    /// Control and user-defined tokens, longest first (the order llama.cpp partitions in).
    let specialTokens: [(text: [UInt8], id: Int32, type: TokenType)]
    /// Decoded bytes of every token (control tokens: their text).
    let pieces: [[UInt8]]

    public var count: Int { tokens.count }

    public init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        guard let modelName = md["tokenizer.ggml.model"]?.string else { throw TokenizerError.missing("tokenizer.ggml.model") }
        guard let model = TokenizerModel(rawValue: modelName) else { throw TokenizerError.unsupportedModel(modelName) }
        self.model = model
        if model == .bytePairs {
            let preName = md["tokenizer.ggml.pre"]?.string ?? "default"
            guard let pre = PreTokenizerKind(ggufName: preName) else { throw TokenizerError.unsupportedPreTokenizer(preName) }
            preTokenizer = pre
        } else {
            preTokenizer = .gpt2  // unused: llama.cpp ignores the pre-tokenizer of SentencePiece vocabularies
        }
        guard let tokenValues = md["tokenizer.ggml.tokens"]?.array else { throw TokenizerError.missing("tokenizer.ggml.tokens") }
        var tokens: [String] = []
        tokens.reserveCapacity(tokenValues.count)
        for (i, v) in tokenValues.enumerated() {
            guard let s = v.string else { throw TokenizerError.malformed("token \(i) is not a string") }
            tokens.append(s)
        }
        guard !tokens.isEmpty, tokens.count < Int(Int32.max) else { throw TokenizerError.malformed("\(tokens.count) tokens") }
        self.tokens = tokens
        if let typeValues = md["tokenizer.ggml.token_type"]?.array {
            guard typeValues.count == tokens.count else {
                throw TokenizerError.malformed("\(typeValues.count) token types for \(tokens.count) tokens")
            }
            types = typeValues.map { TokenType(rawValue: Int32(truncatingIfNeeded: $0.int ?? 1)) ?? .normal }
        } else {
            types = Array(repeating: .normal, count: tokens.count)
        }
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids

        func tokenId(_ key: String) throws -> Int32? {
            guard let v = md[key] else { return nil }
            guard let i = v.int, i >= 0, i < tokens.count else { throw TokenizerError.malformed("\(key) = \(v)") }
            return Int32(i)
        }
        bos = try tokenId("tokenizer.ggml.bos_token_id")
        eos = try tokenId("tokenizer.ggml.eos_token_id")
        // llama.cpp's defaults: SentencePiece and Llama 3's pre-tokenizer add BOS, SentencePiece a
        // space prefix, unless the file says otherwise.
        addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? (model == .sentencePiece || preTokenizer == .llama3)
        addSpacePrefix = model == .sentencePiece && (md["tokenizer.ggml.add_space_prefix"]?.bool ?? true)
        var ends = Set<Int32>()
        if let eos { ends.insert(eos) }
        if let eot = try tokenId("tokenizer.ggml.eot_token_id") { ends.insert(eot) }
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>"] {
            if let id = ids[name], types[Int(id)] == .control { ends.insert(id) }
        }
        endOfGeneration = ends

        var byteTokens = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            switch model {
            case .bytePairs:
                if let id = ids[String(ByteLevel.scalar(for: UInt8(b)))] { byteTokens[b] = id }
            case .sentencePiece:
                // "<0xAB>", else the byte itself as a token (llama.cpp's byte_to_token).
                if let id = ids[String(format: "<0x%02X>", b)] ?? (b < 0x80 ? ids[String(UnicodeScalar(UInt8(b)))] : nil) { byteTokens[b] = id }
            }
        }
        self.byteTokens = byteTokens

        if model == .sentencePiece {
            guard let scoreValues = md["tokenizer.ggml.scores"]?.array, scoreValues.count == tokens.count else {
                throw TokenizerError.missing("tokenizer.ggml.scores")
            }
            scores = scoreValues.map { Float($0.float ?? 0) }
        } else {
            scores = []
        }
        let mergeValues: [GGUFValue]
        if model == .bytePairs {
            guard let values = md["tokenizer.ggml.merges"]?.array else { throw TokenizerError.missing("tokenizer.ggml.merges") }
            mergeValues = values
        } else {
            mergeValues = []
        }
        var merges: [UInt64: (rank: Int32, result: Int32)] = [:]
        merges.reserveCapacity(mergeValues.count)
        for (rank, v) in mergeValues.enumerated() {
            guard let m = v.string else { throw TokenizerError.malformed("merge \(rank) is not a string") }
            // "left right"; the separator is searched from the second character on, as llama.cpp does.
            let chars = Array(m)
            guard chars.count >= 3, let sep = chars[1...].firstIndex(of: " ") else {
                throw TokenizerError.malformed("merge \(rank) '\(m)' has no separator")
            }
            let left = String(chars[..<sep]), right = String(chars[(sep + 1)...])
            // A merge whose parts or result are not tokens can never fire here.
            guard let l = ids[left], let r = ids[right], let result = ids[left + right] else { continue }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if merges[key] == nil { merges[key] = (Int32(rank), result) }
        }
        self.merges = merges

        var special: [(text: [UInt8], id: Int32, type: TokenType)] = []
        for (i, t) in tokens.enumerated() where types[i] == .control || types[i] == .userDefined || types[i] == .unknown {
            if !t.isEmpty { special.append((Array(t.utf8), Int32(i), types[i])) }
        }
        special.sort { $0.text.count != $1.text.count ? $0.text.count > $1.text.count : $0.id < $1.id }
        specialTokens = special

        let tokenTypes = types
        pieces = tokens.enumerated().map { i, t in
            if model == .sentencePiece {
                switch tokenTypes[i] {
                case .normal, .undefined: return Array(t.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
                case .byte:
                    if t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).dropLast(), radix: 16) { return [b] }
                    return []
                case .unused: return []
                default: return Array(t.utf8)
                }
            }
            switch tokenTypes[i] {
            case .normal, .undefined: return ByteLevel.decode(t)
            case .byte:
                // "<0xAB>"
                if t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).dropLast(), radix: 16) { return [b] }
                return ByteLevel.decode(t)
            default: return Array(t.utf8)
            }
        }
    }

    /// Token ids of `text` (bytes as given; invalid UTF-8 becomes U+FFFD as in llama.cpp).
    /// `parseSpecial`: control tokens written in the text (`<|im_start|>`) become control ids
    /// (chat text); otherwise they are plain text. `addBOS` defaults to the model's setting.
    public func encode(_ text: [UInt8], parseSpecial: Bool = false, addBOS: Bool? = nil) -> [Int32] {
        var out: [Int32] = []
        if addBOS ?? self.addBOS, let bos { out.append(bos) }
        var afterSpecial = true
        for fragment in partition(text, parseSpecial: parseSpecial) {
            switch fragment {
            case let .special(id):
                out.append(id)
                afterSpecial = true
            case let .text(range):
                switch model {
                case .bytePairs: encodeText(text[range], into: &out)
                case .sentencePiece: encodePieces((addSpacePrefix && afterSpecial ? [0x20] : []) + text[range], into: &out)
                }
                afterSpecial = false
            }
        }
        return out
    }

    public func encode(_ text: String, parseSpecial: Bool = false, addBOS: Bool? = nil) -> [Int32] {
        encode(Array(text.utf8), parseSpecial: parseSpecial, addBOS: addBOS)
    }

    /// Bytes of one token. Control tokens render only when `renderSpecial` is set.
    public func bytes(of id: Int32, renderSpecial: Bool = false) -> [UInt8] {
        guard id >= 0, Int(id) < pieces.count else { return [] }
        if types[Int(id)] == .control && !renderSpecial { return [] }
        return pieces[Int(id)]
    }

    /// Text of a whole sequence (invalid UTF-8 replaced).
    public func decode(_ ids: [Int32], renderSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids { bytes += self.bytes(of: id, renderSpecial: renderSpecial) }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func isControl(_ id: Int32) -> Bool { id >= 0 && Int(id) < types.count && types[Int(id)] == .control }

    public func id(of token: String) -> Int32? { ids[token] }

    // MARK: - Special-token partition

    enum Fragment: Equatable { case text(Range<Int>), special(Int32) }

    /// Splits text on special tokens, longest token first over every remaining text
    /// fragment (llama.cpp's tokenizer_st_partition).
    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = text.isEmpty ? [] : [.text(0..<text.count)]
        for token in specialTokens {
            if !parseSpecial && (token.type == .control || token.type == .unknown) { continue }
            let needle = token.text
            var next: [Fragment] = []
            for fragment in fragments {
                guard case let .text(range) = fragment, range.count >= needle.count else { next.append(fragment); continue }
                var start = range.lowerBound
                var i = range.lowerBound
                while i + needle.count <= range.upperBound {
                    if text[i] == needle[0] && text[i..<i + needle.count].elementsEqual(needle) {
                        if i > start { next.append(.text(start..<i)) }
                        next.append(.special(token.id))
                        i += needle.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < range.upperBound { next.append(.text(start..<range.upperBound)) }
            }
            fragments = next
        }
        return fragments
    }

    // MARK: - BPE

    private func encodeText(_ bytes: ArraySlice<UInt8>, into out: inout [Int32]) {
        let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        for word in PreTokenizer(kind: preTokenizer).split(scalars) {
            var wordBytes: [UInt8] = []
            for s in scalars[word] { wordBytes.append(contentsOf: String(s).utf8) }
            bpe(wordBytes, into: &out)
        }
    }

    private struct Symbol { var id: Int32; var prev: Int; var next: Int; var start: Int; var end: Int }
    private struct Candidate: Comparable {
        let rank: Int32, left: Int, leftId: Int32, rightId: Int32
        static func < (a: Candidate, b: Candidate) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.left < b.left }
    }

    /// Merges the byte symbols of one word, lowest rank first, leftmost on ties.
    private func bpe(_ word: [UInt8], into out: inout [Int32]) {
        guard !word.isEmpty else { return }
        // A whole word that is a token still goes through merges, as in llama.cpp (ignore_merges is llama3-only).
        var symbols = word.indices.map { Symbol(id: byteTokens[Int(word[$0])], prev: $0 - 1, next: $0 + 1, start: $0, end: $0 + 1) }
        symbols[symbols.count - 1].next = -1
        var heap = MinHeap<Candidate>()
        func consider(_ left: Int) {
            guard left >= 0 else { return }
            let right = symbols[left].next
            guard right >= 0 else { return }
            let l = symbols[left].id, r = symbols[right].id
            guard l >= 0, r >= 0, let m = merges[UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))] else { return }
            heap.push(Candidate(rank: m.rank, left: left, leftId: l, rightId: r))
        }
        if llama3IgnoresMerges, let id = ids[ByteLevel.encode(word)] { out.append(id); return }
        for i in 0..<symbols.count - 1 { consider(i) }
        while let c = heap.pop() {
            let left = c.left
            let right = symbols[left].next
            // Stale: either side has merged since this candidate was queued.
            guard symbols[left].end > symbols[left].start, right >= 0,
                  symbols[left].id == c.leftId, symbols[right].id == c.rightId,
                  let m = merges[UInt64(UInt32(c.leftId)) << 32 | UInt64(UInt32(c.rightId))] else { continue }
            symbols[left].id = m.result
            symbols[left].end = symbols[right].end
            symbols[left].next = symbols[right].next
            symbols[right].end = symbols[right].start  // dead
            symbols[right].id = -2
            if symbols[left].next >= 0 { symbols[symbols[left].next].prev = left }
            consider(symbols[left].prev)
            consider(left)
        }
        var i = 0
        while i >= 0 {
            let s = symbols[i]
            if s.id >= 0 {
                out.append(s.id)
            } else {
                // No token for this byte: nothing llama.cpp's vocabularies produce, but never drop input.
                for b in word[s.start..<s.end] where byteTokens[Int(b)] >= 0 { out.append(byteTokens[Int(b)]) }
            }
            i = s.next
        }
    }

    private var llama3IgnoresMerges: Bool { preTokenizer == .llama3 }

    // MARK: - SentencePiece

    private struct PieceCandidate: Comparable {
        let score: Float, left: Int, right: Int, length: Int
        // The heap pops its least element: the highest score, then the leftmost.
        static func < (a: PieceCandidate, b: PieceCandidate) -> Bool { a.score != b.score ? a.score > b.score : a.left < b.left }
    }

    /// llama.cpp's llm_tokenizer_spm: spaces become ▁, the text is split into UTF-8 characters,
    /// and adjacent pieces whose concatenation is a token merge, best score first; a piece that
    /// is not a token is written as its bytes' tokens.
    private func encodePieces(_ raw: [UInt8], into out: inout [Int32]) {
        var text: [UInt8] = []
        text.reserveCapacity(raw.count + raw.count / 2)
        for b in raw { if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) } }
        guard !text.isEmpty else { return }
        // Symbols: [start, start + length) of `text`, linked; a merged-away symbol has length 0.
        var start: [Int] = [], length: [Int] = [], prev: [Int] = [], next: [Int] = []
        var offset = 0
        while offset < text.count {
            let n = min(Self.utf8Length(text[offset]), text.count - offset)
            prev.append(start.count - 1)
            start.append(offset)
            length.append(n)
            offset += n
            next.append(offset == text.count ? -1 : start.count)
        }
        func token(_ from: Int, _ count: Int) -> Int32? {
            guard let s = String(validating: text[from..<from + count], as: UTF8.self) else { return nil }
            return ids[s]
        }
        var heap = MinHeap<PieceCandidate>()
        func consider(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0, let id = token(start[left], length[left] + length[right]) else { return }
            heap.push(PieceCandidate(score: scores[Int(id)], left: left, right: right, length: length[left] + length[right]))
        }
        for i in 1..<start.count { consider(i - 1, i) }
        while let c = heap.pop() {
            // Stale when either side has merged since this was queued.
            guard length[c.left] > 0, length[c.right] > 0, length[c.left] + length[c.right] == c.length else { continue }
            length[c.left] += length[c.right]
            length[c.right] = 0
            next[c.left] = next[c.right]
            if next[c.right] >= 0 { prev[next[c.right]] = c.left }
            consider(prev[c.left], c.left)
            consider(c.left, next[c.left])
        }
        var i = 0
        while i >= 0 {
            if let id = token(start[i], length[i]) {
                out.append(id)
            } else {
                for b in text[start[i]..<start[i] + length[i]] where byteTokens[Int(b)] >= 0 { out.append(byteTokens[Int(b)]) }
            }
            i = next[i]
        }
    }

    /// Bytes of the UTF-8 character a lead byte starts (1 for a stray continuation byte), as llama.cpp counts.
    private static func utf8Length(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }
}


/// GPT-2's reversible byte ↔ printable-character mapping.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    static func scalar(for byte: UInt8) -> Character { Character(byteToScalar[Int(byte)]) }

    static func encode(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// Token text → bytes; characters outside the mapping pass through as UTF-8.
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for s in text.unicodeScalars {
            if let b = scalarToByte[s.value] { out.append(b) } else { out.append(contentsOf: String(s).utf8) }
        }
        return out
    }
}

/// A small binary min-heap.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []
    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i] < items[parent] else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l] < items[m] { m = l }
            if r < items.count && items[r] < items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}
