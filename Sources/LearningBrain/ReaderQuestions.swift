import Foundation

/// A question the box writes about a passage of a document it learns, with the answer the
/// passage holds: what the reader adapts on, on site (`ReaderSiteLearning`).
public struct SyntheticQuestion: Sendable, Equatable {
    public enum Kind: String, Sendable { case credit, heading, cloze, field }
    /// The document's passage holding the answer, and the line of its text the question is about.
    public var passage: Int
    public var line: Int
    public var kind: Kind
    public var question: String
    public var answer: String
    /// Another passage of the same document without the answer's line: the question is put to
    /// it as well, as one those passages do not answer. Only for questions about a line's own words.
    public var distractor: Int?
}

/// Template questions over the lines of a document's passages, in the lines' language, from the
/// four kinds of fact a company's documents state in their layout rather than in prose:
/// - credit: who a line names as its doer, "(Ana Horvat, Li Wei)" ending it or "by Ana Horvat";
/// - heading: the version or section number its headings give a line ("Release 15.11", "1.1.7.");
/// - cloze: an identifier or command in a line, blanked ("run ____ as root");
/// - field: the value of a "Key: value" line.
/// Deterministic (no randomness): the same document always gives the same questions, so a
/// reader fitted on them can be fitted again exactly without one document.
public enum ReaderQuestions {
    /// At most `limit` questions, spread over the kinds and over the document's passages.
    public static func synthesise(passages: [(header: String, text: String)], limit: Int = 12) -> [SyntheticQuestion] {
        var byKind: [SyntheticQuestion.Kind: [SyntheticQuestion]] = [:]
        var count = 0
        for (p, passage) in passages.enumerated() {
            let lines = passage.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let heading = headingNumber(passage.header)
            for (l, raw) in lines.enumerated() {
                let line = raw.trimmingCharacters(in: .whitespaces)
                guard line.count >= 8, !looksLikeCode(line) else { continue }
                let chinese = line.contains(where: SearchTerms.isCJK)
                var found: [SyntheticQuestion] = []
                if let (subject, names) = credit(line) {
                    found.append(.init(passage: p, line: l, kind: .credit, question: creditQuestion(subject, variant: count, chinese: chinese),
                                       answer: names))
                }
                if let heading, let sentence = quotable(line) {
                    found.append(.init(passage: p, line: l, kind: .heading,
                                       question: headingQuestion(sentence, noun: heading.noun, variant: count, chinese: chinese), answer: heading.number))
                }
                if let (blanked, word) = cloze(line) {
                    found.append(.init(passage: p, line: l, kind: .cloze, question: clozeQuestion(blanked, variant: count, chinese: chinese), answer: word))
                }
                if let (key, value) = field(line) {
                    found.append(.init(passage: p, line: l, kind: .field,
                                       question: fieldQuestion(key, of: lastHeading(passage.header), variant: count, chinese: chinese), answer: value))
                }
                for q in found { byKind[q.kind, default: []].append(q); count += 1 }
            }
        }
        // Evenly spaced within each kind, the kinds in turn.
        var queues = [SyntheticQuestion.Kind.credit, .heading, .cloze, .field].compactMap { byKind[$0] }.map { spaced($0, count: limit) }
        var out: [SyntheticQuestion] = []
        while out.count < limit, queues.contains(where: { !$0.isEmpty }) {
            for k in queues.indices where !queues[k].isEmpty && out.count < limit { out.append(queues[k].removeFirst()) }
        }
        return out.map { q in
            var q = q
            if q.kind == .credit || q.kind == .cloze || q.kind == .field { q.distractor = distractor(for: q, passages: passages) }
            return q
        }
    }

    static func spaced<T>(_ items: [T], count: Int) -> [T] {
        guard items.count > count, count > 0 else { return items }
        return (0..<count).map { items[$0 * items.count / count] }
    }

    /// The nearest other passage that holds neither the answer nor the line.
    static func distractor(for q: SyntheticQuestion, passages: [(header: String, text: String)]) -> Int? {
        let offsets = (1..<max(1, passages.count)).flatMap { [q.passage + $0, q.passage - $0] }
        return offsets.first { $0 >= 0 && $0 < passages.count && !passages[$0].text.contains(q.answer) && !(passages[$0].header).contains(q.answer) }
    }

    // MARK: Credit

    /// "Fix X (Ana Horvat, Li Wei)." → ("Fix X", "Ana Horvat, Li Wei"); "X, fixed by Ana Horvat." likewise.
    public static func credit(_ line: String) -> (subject: String, names: String)? {
        var text = Substring(bulletless(line))
        while let last = text.last, last == "." || last == " " { text = text.dropLast() }
        if text.last == ")", let open = text.lastIndex(of: "(") {
            let inside = text[text.index(after: open)..<text.index(before: text.endIndex)]
            let subject = text[..<open].trimmingCharacters(in: .whitespaces)
            if names(inside), subject.split(separator: " ").count >= 3 { return (sentence(subject), String(inside)) }
        }
        // "… is descaled by Bogdan Ilic every second Tuesday": the capitalised words after "by".
        if let by = text.range(of: " by ", options: .backwards) {
            let words = text[by.upperBound...].split(separator: " ", omittingEmptySubsequences: true)
            let run = words.prefix { w in w.first!.isUppercase && w.dropLast().allSatisfy { $0.isLetter || $0 == "-" || $0 == "'" } }.prefix(3)
            var who = run.joined(separator: " ")
            while let last = who.last, !last.isLetter { who.removeLast() }
            let rest = words.dropFirst(run.count).joined(separator: " ")
            let subject = (text[..<by.lowerBound] + (rest.isEmpty ? "" : " " + rest)).trimmingCharacters(in: CharacterSet(charactersIn: " ,"))
            if !who.isEmpty, names(Substring(who)), subject.split(separator: " ").count >= 3 { return (sentence(subject), who) }
        }
        return nil
    }

    /// A list of people's names: one to four comma- or "and"-separated names of one to four capitalised words.
    static func names(_ text: Substring) -> Bool {
        let parts = text.replacingOccurrences(of: " and ", with: ", ").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard (1...4).contains(parts.count) else { return false }
        return parts.allSatisfy { part in
            let words = part.split(separator: " ")
            return (1...4).contains(words.count) && words.allSatisfy { w in
                w.first!.isUppercase && w.allSatisfy { $0.isLetter || $0 == "-" || $0 == "'" || $0 == "." }
            } && (words.count > 1 || part.count >= 3)
        }
    }

    static func creditQuestion(_ subject: String, variant: Int, chinese: Bool) -> String {
        if chinese { return ["“\(subject)”是谁做的？", "谁负责“\(subject)”？"][variant % 2] }
        return ["Who is credited with \"\(subject)\"?", "Who did this: \"\(subject)\"?", "Whose work is \"\(subject)\"?"][variant % 3]
    }

    // MARK: Heading

    /// The number the headings give their text: after "Release"/"Version"/"版本" when one is there
    /// (a version), else the last section number ("1.1.7").
    static func headingNumber(_ header: String) -> (number: String, noun: String)? {
        let scalars = Array(header)
        var found: [(number: String, before: String)] = []
        var i = 0
        while i < scalars.count {
            guard scalars[i].isASCII, scalars[i].isNumber, i == 0 || !(scalars[i - 1].isLetter || scalars[i - 1] == ".") else { i += 1; continue }
            var j = i
            while j < scalars.count, scalars[j].isASCII && (scalars[j].isNumber || scalars[j] == ".") { j += 1 }
            let number = String(scalars[i..<j]).trimmingCharacters(in: CharacterSet(charactersIn: "."))
            let before = String(scalars[..<i]).split(whereSeparator: { $0 == " " || $0 == "›" }).last.map(String.init) ?? ""
            if number.contains(".") || ["release", "version", "版本"].contains(before.lowercased()) { found.append((number, before)) }
            i = j
        }
        if let version = found.first(where: { ["release", "version", "版本"].contains($0.before.lowercased()) }) {
            return (version.number, version.before.lowercased() == "版本" ? "version" : version.before.lowercased())
        }
        return found.last.map { ($0.number, "section") }
    }

    static func headingQuestion(_ sentence: String, noun: String, variant: Int, chinese: Bool) -> String {
        if chinese {
            return noun == "section" ? ["“\(sentence)”出自哪一节？", "哪一节写到“\(sentence)”？"][variant % 2]
                : ["“\(sentence)”是哪个版本的？", "哪个版本提到“\(sentence)”？"][variant % 2]
        }
        return ["In which \(noun) is this: \"\(sentence)\"?", "Which \(noun) says \"\(sentence)\"?",
                "What \(noun) mentions \"\(sentence)\"?"][variant % 3]
    }

    // MARK: Cloze

    /// A line with its first identifier blanked: a word with digits, "_", "/", "." or "-" inside
    /// (a version, a path, a package), a number of two digits or more (an amount, a year), or in
    /// Chinese text a Latin word (a command).
    public static func cloze(_ line: String) -> (blanked: String, word: String)? {
        guard let text = quotable(line) else { return nil }
        let chinese = text.contains(where: SearchTerms.isCJK)
        var start: String.Index?
        var index = text.startIndex
        func candidate(_ word: Substring) -> Bool {
            let trimmed = word.trimmingCharacters(in: CharacterSet(charactersIn: ".,;:"))
            guard trimmed.count >= 2, trimmed.unicodeScalars.allSatisfy({ $0.isASCII }), trimmed.contains(where: { $0.isLetter || $0.isNumber }),
                  cleanAnswer(trimmed) else { return false }
            let inner = trimmed.dropFirst().dropLast()
            let marked = inner.contains { "_/.-".contains($0) } || (trimmed.contains(where: \.isNumber) && trimmed.contains(where: \.isLetter))
                || trimmed.allSatisfy(\.isNumber)  // an amount, a count, a year
            return marked || (chinese && trimmed.allSatisfy { $0.isLetter || $0 == "-" } && trimmed.first!.isLowercase)
        }
        while index <= text.endIndex {
            let atEnd = index == text.endIndex
            let isWord = !atEnd && (text[index].isASCII && !text[index].isWhitespace && !"()[]\"'“”，。、：；".contains(text[index]))
            if isWord, start == nil { start = index }
            if !isWord, let s = start {
                let word = text[s..<index]
                if candidate(word) {
                    let clean = word.trimmingCharacters(in: CharacterSet(charactersIn: ".,;:"))
                    let range = text.range(of: clean, range: s..<index)!
                    return (text.replacingCharacters(in: range, with: "____"), clean)
                }
                start = nil
            }
            if atEnd { break }
            index = text.index(after: index)
        }
        return nil
    }

    static func clozeQuestion(_ blanked: String, variant: Int, chinese: Bool) -> String {
        if chinese { return ["“\(blanked)”中空白处应是什么？", "填空：“\(blanked)”"][variant % 2] }
        return ["What goes in the blank: \"\(blanked)\"?", "Fill in the blank: \"\(blanked)\""][variant % 2]
    }

    // MARK: Field

    /// "Maintainer: Ana Horvat" → ("Maintainer", "Ana Horvat"): a short key, a short value.
    public static func field(_ line: String) -> (key: String, value: String)? {
        let text = bulletless(line)
        guard let colon = text.firstIndex(where: { $0 == ":" || $0 == "：" }) else { return nil }
        let key = text[..<colon].trimmingCharacters(in: .whitespaces)
        let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        let answer = value.trimmingCharacters(in: CharacterSet(charactersIn: ".。"))
        guard (2...30).contains(key.count), key.split(separator: " ").count <= 3, key.first!.isLetter,
              key.allSatisfy({ $0.isLetter || $0 == " " || $0 == "-" }), cleanAnswer(answer), !answer.hasPrefix("//") else { return nil }
        return (key, answer)
    }

    static func fieldQuestion(_ key: String, of subject: String, variant: Int, chinese: Bool) -> String {
        if chinese { return subject.isEmpty ? "\(key)是什么？" : "\(subject)的\(key)是什么？" }
        let of = subject.isEmpty ? "" : " in \(subject)"
        return ["What is the \(key)\(of)?", "What does it give as \(key)\(of)?"][variant % 2]
    }

    // MARK: Text

    /// Source code, diagnostics, tables and markup are no sentences to ask about: their
    /// "answers" would be cut at brackets and backticks.
    static func looksLikeCode(_ line: String) -> Bool {
        let symbols = line.filter { "{}[]<>;=|`#\\$".contains($0) }.count
        guard let first = bulletless(line).first else { return true }
        return symbols * 20 > line.count || !(first.isLetter || first.isNumber || first == "\"" || first == "“")
            || line.hasPrefix("//") || line.contains("://")
    }

    /// An answer worth copying: a few characters, no brackets, quotes or backticks to cut.
    static func cleanAnswer(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 40 && !text.contains(where: { "()[]{}<>`'\"“”‘’".contains($0) })
    }

    static func bulletless(_ line: String) -> String {
        var t = Substring(line.trimmingCharacters(in: .whitespaces))
        while let c = t.first, "-*•+".contains(c) { t = t.dropFirst() }
        return t.trimmingCharacters(in: .whitespaces)
    }

    /// A line's first sentence, at most about 25 words, for quoting; nil for a line too short to ask about.
    static func quotable(_ line: String) -> String? {
        let text = sentence(bulletless(line))
        let words = text.contains(where: SearchTerms.isCJK) ? text.count / 2 : text.split(separator: " ").count
        return words >= 4 ? text : nil
    }

    static func sentence(_ text: String) -> String {
        var t = text
        if let stop = t.range(of: ". ") ?? t.range(of: "。") { t = String(t[..<stop.lowerBound]) }
        let words = t.split(separator: " ")
        if words.count > 25 { t = words.prefix(25).joined(separator: " ") }
        return t.trimmingCharacters(in: CharacterSet(charactersIn: " .。"))
    }

    static func lastHeading(_ header: String) -> String {
        header.components(separatedBy: " › ").last?.trimmingCharacters(in: .whitespaces) ?? ""
    }
}
