import Foundation

/// One unit of a document as a reader sees it: a heading, a paragraph, a list item with its
/// continuation lines, a table row (with the table's header), a code block, with where it is
/// (lines from 1; the page, for text with form feeds between pages as pdftotext writes) and
/// the headings it sits under.
public struct DocumentBlock: Sendable, Equatable {
    public enum Kind: String, Sendable { case heading, paragraph, item, row, code }
    public var kind: Kind
    public var lines: ClosedRange<Int>
    public var page: Int?
    /// Outermost first: "E.4. Release 15.17", "E.4.2. Changes"; a changelog entry's header line.
    public var headings: [String]
    /// The lines as written (a table row: the row alone; `tableHeader` holds its header).
    public var text: String
    public var tableHeader: String?
}

/// Splits extracted text into `DocumentBlock`s by the cues plain text keeps of its structure:
/// Markdown and numbered headings ("E.4.2. Changes", "1.1.3. root 账户"), underlined
/// headings, upper-case section names (man pages), Debian changelog entries (a package's
/// version line up to its " -- " trailer), list items and their indented continuation,
/// tab/CSV/pipe table rows under their header, fenced code, paragraphs between blank lines,
/// and pages at form feeds.
public enum DocumentStructure {
    public static func blocks(of text: String) -> [DocumentBlock] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let paged = text.contains("\u{0C}")
        var out: [DocumentBlock] = []
        var headings: [(level: Int, text: String)] = []
        var page = 1
        var i = 0

        func add(_ kind: DocumentBlock.Kind, _ range: ClosedRange<Int>, tableHeader: String? = nil) {
            let body = lines[range].map { $0.replacingOccurrences(of: "\u{0C}", with: "") }.joined(separator: "\n")
            guard !body.trimmingCharacters(in: .whitespaces).isEmpty else { return }
            out.append(DocumentBlock(kind: kind, lines: (range.lowerBound + 1)...(range.upperBound + 1), page: paged ? page : nil,
                                     headings: headings.map(\.text), text: body, tableHeader: tableHeader))
        }
        func open(_ level: Int, _ title: String) {
            headings.removeAll { $0.level >= level }
            headings.append((level, title))
        }

        while i < lines.count {
            // A form feed starts a page (pdftotext puts one before every page but the first).
            if lines[i].hasPrefix("\u{0C}") {
                page += lines[i].prefix(while: { $0 == "\u{0C}" }).count
                lines[i] = String(lines[i].drop(while: { $0 == "\u{0C}" }))
            }
            let line = lines[i]
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { i += 1; continue }
            let next = i + 1 < lines.count ? lines[i + 1] : nil

            if trimmed.hasPrefix("```") || trimmed.hasPrefix("~~~") {
                let fence = String(trimmed.prefix(3))
                var j = i + 1
                while j < lines.count, !lines[j].trimmingCharacters(in: .whitespaces).hasPrefix(fence) { j += 1 }
                add(.code, i...min(j, lines.count - 1))
                i = j + 1
                continue
            }
            if let (level, title) = heading(line, next: next) {
                open(level, title)
                add(.heading, i...i)
                i += isUnderline(next) ? 2 : 1
                continue
            }
            if isChangelogEntry(line) {
                // The entry's header line is the heading of its bullets; the trailer ends it.
                open(1, trimmed)
                add(.heading, i...i)
                i += 1
                continue
            }
            if line.hasPrefix(" -- ") && line.contains("@") {
                add(.paragraph, i...i)
                headings.removeAll { $0.level >= 1 }
                i += 1
                continue
            }
            if let indent = listIndent(line) {
                var j = i + 1
                while j < lines.count {
                    let l = lines[j]
                    if l.trimmingCharacters(in: .whitespaces).isEmpty || listIndent(l) != nil || leadingSpaces(l) < indent { break }
                    j += 1
                }
                add(.item, i...(j - 1))
                i = j
                continue
            }
            if let separator = tableSeparator(line), let n = next, tableSeparator(n) == separator {
                var j = i + 1
                while j < lines.count, tableSeparator(lines[j]) == separator { j += 1 }
                // The header row, then each row with it; a Markdown rule line (|---|) is skipped.
                add(.row, i...i)
                for r in (i + 1)..<j where !isRule(lines[r]) { add(.row, r...r, tableHeader: trimmed) }
                i = j
                continue
            }
            var j = i + 1
            while j < lines.count {
                let l = lines[j]
                if l.trimmingCharacters(in: .whitespaces).isEmpty || l.hasPrefix("\u{0C}") || listIndent(l) != nil
                    || heading(l, next: j + 1 < lines.count ? lines[j + 1] : nil) != nil || isChangelogEntry(l) { break }
                j += 1
            }
            add(.paragraph, i...(j - 1))
            i = j
        }
        return out
    }

    /// A heading's level and text, or nil.
    public static func heading(_ line: String, next: String?) -> (Int, String)? {
        let t = line.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty, t.count <= 120 else { return nil }
        if t.hasPrefix("#") {
            let hashes = t.prefix(while: { $0 == "#" }).count
            let rest = t.dropFirst(hashes)
            guard hashes <= 6, rest.first?.isWhitespace == true else { return nil }
            return (hashes, rest.trimmingCharacters(in: .whitespaces))
        }
        if isUnderline(next), leadingSpaces(line) == 0, !isUnderline(line), listIndent(line) == nil {
            return (next!.trimmingCharacters(in: .whitespaces).hasPrefix("=") ? 1 : 2, t)
        }
        // "E.4.2. Changes", "1.1.3. root 账户", "2.3 Options": two or more numbered parts
        // (a lone "1." opens a list item), then a title that does not end like a sentence.
        let number = t.prefix(while: { $0.isNumber || $0 == "." || ($0.isUppercase && $0.isASCII) })
        let parts = number.split(separator: ".", omittingEmptySubsequences: true)
        if parts.count >= 2, parts.dropFirst().allSatisfy({ $0.allSatisfy(\.isNumber) }),
           parts[0].count <= 2, parts[0].allSatisfy({ $0.isNumber }) || parts[0].count == 1,
           t.dropFirst(number.count).first?.isWhitespace == true, let last = t.last, !".,;:".contains(last) {
            return (parts.count, t)
        }
        // Upper-case section names as man pages print them ("DESCRIPTION", "SEE ALSO").
        if leadingSpaces(line) == 0, t.count >= 3, t.count <= 40, t.allSatisfy({ ($0.isUppercase && $0.isLetter) || $0 == " " }) {
            return (1, t)
        }
        return nil
    }

    static func isUnderline(_ line: String?) -> Bool {
        guard let t = line?.trimmingCharacters(in: .whitespaces), t.count >= 3 else { return false }
        return t.allSatisfy { $0 == "=" } || t.allSatisfy { $0 == "-" }
    }

    /// "redis (5:7.0.15-1~deb12u2) bookworm-security; urgency=medium"
    static func isChangelogEntry(_ line: String) -> Bool {
        guard let first = line.first, !first.isWhitespace, line.contains("; urgency="),
              let open = line.firstIndex(of: "("), let close = line.firstIndex(of: ")"), open < close else { return false }
        return line[..<open].hasSuffix(" ") && !line[..<open].dropLast().contains(" ")
    }

    /// The column a list item's continuation lines are indented past, or nil when the line opens no item.
    static func listIndent(_ line: String) -> Int? {
        let spaces = leadingSpaces(line)
        let rest = line.dropFirst(spaces)
        if let c = rest.first, "-*•+".contains(c), rest.dropFirst().first?.isWhitespace == true { return spaces + 1 }
        let digits = rest.prefix(while: \.isNumber)
        if (1...3).contains(digits.count), let mark = rest.dropFirst(digits.count).first, mark == "." || mark == ")",
           rest.dropFirst(digits.count + 1).first?.isWhitespace == true {
            return spaces + 1
        }
        return nil
    }

    /// Indentation in characters (spaces, tabs, no-break spaces).
    static func leadingSpaces(_ line: String) -> Int { line.prefix(while: { $0.isWhitespace && !$0.isNewline }).count }

    /// The cell separator of a table row: tab, "|" or "," (two or more of them), or nil.
    static func tableSeparator(_ line: String) -> Character? {
        let t = line.trimmingCharacters(in: .whitespaces)
        for separator: Character in ["\t", "|", ","] where t.filter({ $0 == separator }).count >= 2 {
            // A sentence with commas is no table row: rows are short cells.
            if separator == "," && t.split(separator: ",").contains(where: { $0.split(separator: " ").count > 6 }) { continue }
            return separator
        }
        return nil
    }

    static func isRule(_ line: String) -> Bool {
        let t = line.trimmingCharacters(in: .whitespaces)
        return t.contains("-") && t.allSatisfy { "|-: ".contains($0) }
    }
}
