import Foundation
import MainBrain
import Store

/// A passage cut along a document's structure: whole blocks under one heading path, with the
/// context a reader needs to use it alone (`header`: the headings, or a changelog entry's
/// version line) and where it stands (lines, page) for citation.
public struct DocumentPassage: Sendable, Equatable {
    /// The heading path, outermost first, joined by " › " ("" when the text has no headings).
    public var header: String
    /// The document's lines `lines` as written (a table's passage: its header row first).
    public var text: String
    public var lines: ClosedRange<Int>
    public var page: Int?
    /// Main-brain tokens of `text`.
    public var tokens: Int

    public init(header: String, text: String, lines: ClosedRange<Int>, page: Int?, tokens: Int) {
        self.header = header
        self.text = text
        self.lines = lines
        self.page = page
        self.tokens = tokens
    }

    /// What the passage index searches: the header's words count as the passage's own ("Release
    /// 15.17" finds the bullets under that heading).
    public var searchText: String { header.isEmpty ? text : header + "\n" + text }
}

/// Packs a document's blocks (`DocumentStructure`) into passages of at most `maxTokens`
/// main-brain tokens: consecutive blocks under the same headings (and table header) share a
/// passage; a block too long for one is cut at lines, then sentences, then words. Headings
/// are not passages of their own: they travel in the header of the passages under them.
public struct DocumentPassageBuilder: Sendable {
    public static let standard = DocumentPassageBuilder(maxTokens: 128)
    public let maxTokens: Int

    public init(maxTokens: Int) {
        precondition(maxTokens > 0)
        self.maxTokens = maxTokens
    }

    public static let headerSeparator = " › "

    public func passages(of text: String, countTokens: (String) -> Int) -> [DocumentPassage] {
        struct Unit { var text: String; var lines: ClosedRange<Int>; var tokens: Int }
        var out: [DocumentPassage] = []
        var key: [String]? = nil, page: Int? = nil, tableHeader: String? = nil, units: [Unit] = []
        func flush() {
            guard let first = units.first, let last = units.last else { return }
            // Line i of the text is line `lines.lowerBound + i` of the document (blank lines between
            // blocks kept, pieces of one long line joined), so evidence can cite any line of it.
            var body = first.text
            for (previous, unit) in zip(units, units.dropFirst()) {
                let gap = unit.lines.lowerBound - previous.lines.upperBound
                body += (gap <= 0 ? "" : String(repeating: "\n", count: gap)) + unit.text
            }
            if let tableHeader { body = tableHeader + "\n" + body }
            out.append(DocumentPassage(header: (key ?? []).joined(separator: Self.headerSeparator), text: body,
                                       lines: first.lines.lowerBound...last.lines.upperBound, page: page,
                                       tokens: units.reduce(0) { $0 + $1.tokens }))
            units = []
        }
        for block in DocumentStructure.blocks(of: text) where block.kind != .heading {
            if block.headings != key || block.page != page || block.tableHeader != tableHeader {
                flush()
                key = block.headings
                page = block.page
                tableHeader = block.tableHeader
            }
            for piece in pieces(of: block, countTokens: countTokens) {
                if !units.isEmpty && units.reduce(0, { $0 + $1.tokens }) + piece.tokens > maxTokens { flush() }
                units.append(Unit(text: piece.text, lines: piece.lines, tokens: piece.tokens))
            }
        }
        flush()
        return out
    }

    /// A block as pieces of at most `maxTokens` (the whole block when it fits).
    func pieces(of block: DocumentBlock, countTokens: (String) -> Int) -> [(text: String, lines: ClosedRange<Int>, tokens: Int)] {
        let whole = countTokens(block.text)
        if whole <= maxTokens { return [(block.text, block.lines, whole)] }
        var out: [(text: String, lines: ClosedRange<Int>, tokens: Int)] = []
        for (i, line) in block.text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = block.lines.lowerBound + i
            var current = "", currentTokens = 0
            for sentence in Self.sentences(String(line)) {
                let n = countTokens(sentence)
                if !current.isEmpty && currentTokens + n > maxTokens {
                    out.append((current, number...number, currentTokens))
                    current = ""
                    currentTokens = 0
                }
                if n > maxTokens {
                    // A sentence longer than a passage: cut at words (a run of CJK text at characters).
                    for chunk in Self.chunks(sentence, count: Int((Double(sentence.count) * Double(maxTokens) / Double(n)).rounded(.down))) {
                        out.append((chunk, number...number, countTokens(chunk)))
                    }
                    continue
                }
                current += sentence
                currentTokens += n
            }
            if !current.trimmingCharacters(in: .whitespaces).isEmpty { out.append((current, number...number, currentTokens)) }
        }
        return out
    }

    /// A line cut after each sentence end (". ", "? ", "! ", and the CJK full stops), ends kept.
    static func sentences(_ line: String) -> [String] {
        var out: [String] = [], current = ""
        var previous: Character? = nil
        for c in line {
            if let p = previous, ".?!".contains(p), c == " ", current.count > 1 {
                out.append(current)
                current = ""
            }
            current.append(c)
            if "。！？；".contains(c) {
                out.append(current)
                current = ""
            }
            previous = c
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Pieces of about `count` characters, cut at a space when one is near.
    static func chunks(_ text: String, count: Int) -> [String] {
        let size = max(8, count)
        var out: [String] = [], rest = Substring(text)
        while rest.count > size {
            var cut = rest.index(rest.startIndex, offsetBy: size)
            if let space = rest[..<cut].lastIndex(of: " "), rest.distance(from: rest.startIndex, to: space) > size / 2 {
                cut = rest.index(after: space)
            }
            out.append(String(rest[..<cut]))
            rest = rest[cut...]
        }
        if !rest.isEmpty { out.append(String(rest)) }
        return out
    }
}

extension DocumentPassageBuilder {
    /// A document's passages as the store keeps them: with their headings, lines and search
    /// terms, measured in the main brain's tokens.
    public func records(of text: String, tokenizer: Tokenizer) -> [PassageRecord] {
        var offset = 0
        return passages(of: text, countTokens: { tokenizer.encode($0).count }).map { p in
            defer { offset += p.tokens }
            return PassageRecord(tokenOffset: offset, tokens: p.tokens, text: p.text, header: p.header, lines: p.lines, page: p.page,
                                 terms: SearchTerms.indexText(p.searchText))
        }
    }
}
