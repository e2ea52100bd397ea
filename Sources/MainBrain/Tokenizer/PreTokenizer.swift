// Pre-tokenizers: split text into words before BPE, exactly as llama.cpp's hand-written
// versions of the published regexes do (unicode.cpp, unicode_regex_split_custom_*).

/// The pre-tokenizer families twinbrain implements, chosen by `tokenizer.ggml.pre`.
public enum PreTokenizerKind: String, Sendable, CaseIterable {
    /// GPT-2's regex: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    case gpt2
    /// Every number codepoint on its own (\p{N}), then GPT-2's regex (SmolLM, StarCoder).
    case smollm
    /// Llama 3's regex: letters with one leading non-letter, numbers in runs of at most 3.
    case llama3
    /// Qwen2's regex: as Llama 3, but numbers one digit at a time.
    case qwen2

    /// Maps `tokenizer.ggml.pre` names (llama.cpp's) to a family.
    public init?(ggufName: String) {
        switch ggufName {
        case "gpt2", "default": self = .gpt2
        case "smollm", "starcoder", "refact", "codeshell", "command-r": self = .smollm
        case "llama-bpe", "llama3", "llama-v3": self = .llama3
        case "qwen2", "deepseek-r1-qwen": self = .qwen2
        default: return nil
        }
    }
}

/// Character classes of the regexes: \p{L}, \p{N}, \s. `none` marks "outside the fragment".
struct CharClass: OptionSet {
    let rawValue: UInt8
    static let letter = CharClass(rawValue: 1)
    static let number = CharClass(rawValue: 2)
    static let whitespace = CharClass(rawValue: 4)
    /// Any real character (llama.cpp: a non-zero flag word); absent outside the fragment.
    static let present = CharClass(rawValue: 8)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ scalar: Unicode.Scalar) {
        var c: CharClass = .present
        let v = scalar.value
        if v < 128 {
            let b = UInt8(v)
            if (b >= 65 && b <= 90) || (b >= 97 && b <= 122) { c.insert(.letter) }
            else if b >= 48 && b <= 57 { c.insert(.number) }
            else if b == 32 || (b >= 9 && b <= 13) { c.insert(.whitespace) }
            self = c
            return
        }
        let p = scalar.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            c.insert(.number)
        default: break
        }
        if p.isWhitespace { c.insert(.whitespace) }
        self = c
    }
}

struct PreTokenizer {
    let kind: PreTokenizerKind

    /// Splits `scalars` into word ranges.
    func split(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = scalars.map(CharClass.init)
        var fragments: [Range<Int>] = [0..<scalars.count]
        if kind == .smollm {
            // First pass, "\p{N}": each number codepoint becomes its own fragment.
            fragments = []
            var start = 0
            for i in scalars.indices where classes[i].contains(.number) {
                if i > start { fragments.append(start..<i) }
                fragments.append(i..<i + 1)
                start = i + 1
            }
            if start < scalars.count { fragments.append(start..<scalars.count) }
        }
        var words: [Range<Int>] = []
        for fragment in fragments where !fragment.isEmpty {
            switch kind {
            case .gpt2, .smollm: splitGPT2(scalars, classes, fragment, into: &words)
            case .llama3: splitLlama3(scalars, classes, fragment, maxDigits: 3, into: &words)
            case .qwen2: splitLlama3(scalars, classes, fragment, maxDigits: 1, into: &words)
            }
        }
        return words
    }

    private func splitGPT2(_ s: [Unicode.Scalar], _ classes: [CharClass], _ r: Range<Int>, into words: inout [Range<Int>]) {
        var f = FragmentCursor(scalars: s, classes: classes, range: r)
        defer { words += f.words }
        let apostrophe = UInt32(UInt8(ascii: "'")), space = UInt32(32)
        var pos = r.lowerBound
        while pos < r.upperBound {
            let c = s[pos].value
            let flags = classes[pos]
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == apostrophe, pos + 1 < r.upperBound {
                let n = s[pos + 1]
                if n == "s" || n == "t" || n == "m" || n == "d" { pos += f.add(pos + 2); continue }
                if pos + 2 < r.upperBound {
                    let nn = s[pos + 2]
                    if (n == "r" && nn == "e") || (n == "v" && nn == "e") || (n == "l" && nn == "l") {
                        pos += f.add(pos + 3); continue
                    }
                }
            }
            var flags2 = c == space ? f.cls(pos + 1) : flags
            // ' ?\p{L}+'
            if flags2.contains(.letter) {
                if c == space { pos += 1 }
                while flags2.contains(.letter) { pos += 1; flags2 = f.cls(pos) }
                f.add(pos); continue
            }
            // ' ?\p{N}+'
            if flags2.contains(.number) {
                if c == space { pos += 1 }
                while flags2.contains(.number) { pos += 1; flags2 = f.cls(pos) }
                f.add(pos); continue
            }
            // ' ?[^\s\p{L}\p{N}]+'
            if flags2.isDisjoint(with: [.whitespace, .letter, .number]) && flags2.contains(.present) {
                if c == space { pos += 1 }
                while flags2.isDisjoint(with: [.whitespace, .letter, .number]) && flags2.contains(.present) {
                    pos += 1; flags2 = f.cls(pos)
                }
                f.add(pos); continue
            }
            var spaces = 0
            while f.cls(pos + spaces).contains(.whitespace) { spaces += 1 }
            // '\s+(?!\S)': leave the last whitespace to prefix the next word
            if spaces > 1 && f.cpt(pos + spaces) != nil { pos += spaces - 1; f.add(pos); continue }
            // '\s+'
            if spaces > 0 { pos += spaces; f.add(pos); continue }
            pos += 1
            f.add(pos)
        }
    }

    private func splitLlama3(
        _ s: [Unicode.Scalar], _ classes: [CharClass], _ r: Range<Int>, maxDigits: Int, into words: inout [Range<Int>]
    ) {
        var f = FragmentCursor(scalars: s, classes: classes, range: r)
        defer { words += f.words }
        func lower(_ i: Int) -> UInt32? {
            guard let v = f.cpt(i) else { return nil }
            return (v >= 65 && v <= 90) ? v + 32 : v
        }
        let cr = UInt32(13), lf = UInt32(10), space = UInt32(32)
        let a = { (ch: Character) in UInt32(ch.asciiValue!) }
        var pos = r.lowerBound
        while pos < r.upperBound {
            let c = s[pos].value
            let flags = classes[pos]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == a("'"), pos + 1 < r.upperBound {
                let n = lower(pos + 1)
                if n == a("s") || n == a("t") || n == a("m") || n == a("d") { pos += f.add(pos + 2); continue }
                if pos + 2 < r.upperBound {
                    let nn = lower(pos + 2)
                    if (n == a("r") && nn == a("e")) || (n == a("v") && nn == a("e")) || (n == a("l") && nn == a("l")) {
                        pos += f.add(pos + 3); continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == cr || c == lf || flags.contains(.number)) {
                if flags.contains(.letter) || f.cls(pos + 1).contains(.letter) {
                    pos += 1
                    while f.cls(pos).contains(.letter) { pos += 1 }
                    f.add(pos); continue
                }
            }
            // \p{N}{1,maxDigits}
            if flags.contains(.number) {
                var start = pos
                while f.cls(pos).contains(.number) {
                    pos += 1
                    if pos - start >= maxDigits { f.add(pos); start = pos }
                }
                f.add(pos); continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            var flags2 = c == space ? f.cls(pos + 1) : flags
            if flags2.isDisjoint(with: [.whitespace, .letter, .number]) && flags.contains(.present) {
                if c == space { pos += 1 }
                while flags2.isDisjoint(with: [.whitespace, .letter, .number]) && flags2.contains(.present) {
                    pos += 1; flags2 = f.cls(pos)
                }
                while let c2 = f.cpt(pos), c2 == cr || c2 == lf { pos += 1 }
                f.add(pos); continue
            }
            var spaces = 0
            var lastNewlineEnd = 0
            while f.cls(pos + spaces).contains(.whitespace) {
                if let c2 = f.cpt(pos + spaces), c2 == cr || c2 == lf { lastNewlineEnd = pos + spaces + 1 }
                spaces += 1
            }
            // \s*[\r\n]+
            if lastNewlineEnd > 0 { pos = lastNewlineEnd; f.add(pos); continue }
            // \s+(?!\S)
            if spaces > 1 && f.cpt(pos + spaces) != nil { pos += spaces - 1; f.add(pos); continue }
            // \s+
            if spaces > 0 { pos += spaces; f.add(pos); continue }
            pos += 1
            f.add(pos)
        }
    }
}

/// One fragment being split: lookups outside it read as nothing (llama.cpp's OUT_OF_RANGE),
/// and `add` cuts the next word where the previous one ended.
private struct FragmentCursor {
    let scalars: [Unicode.Scalar]
    let classes: [CharClass]
    let range: Range<Int>
    private(set) var words: [Range<Int>] = []
    private var previousEnd: Int

    init(scalars: [Unicode.Scalar], classes: [CharClass], range: Range<Int>) {
        self.scalars = scalars
        self.classes = classes
        self.range = range
        previousEnd = range.lowerBound
    }

    func cpt(_ i: Int) -> UInt32? { range.contains(i) ? scalars[i].value : nil }
    func cls(_ i: Int) -> CharClass { range.contains(i) ? classes[i] : [] }

    /// Ends a word at `end`; returns its length.
    @discardableResult mutating func add(_ end: Int) -> Int {
        let length = end - previousEnd
        if length > 0 { words.append(previousEnd..<end) }
        previousEnd = end
        return length
    }
}
