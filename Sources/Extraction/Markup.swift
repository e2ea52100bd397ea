import Foundation

/// A tolerant scanner for HTML and XML: text runs and tags, nothing else. No DTDs, no external
/// entities, no recursion (a hostile file cannot make it expand or nest its way out of memory);
/// malformed markup degrades to text.
enum Markup {
    enum Event {
        case text(String)
        /// A start tag; `attributes` is the raw text after the name.
        case open(name: String, attributes: Substring)
        case close(name: String)
    }

    static func scan(_ source: String, _ visit: (Event) throws -> Void) rethrows {
        var s = Substring(source)
        while !s.isEmpty {
            guard let lt = s.firstIndex(of: "<") else { try visit(.text(decodeEntities(s))); return }
            if lt > s.startIndex { try visit(.text(decodeEntities(s[s.startIndex..<lt]))) }
            s = s[lt...]
            if s.hasPrefix("<!--") {
                s = s.range(of: "-->").map { s[$0.upperBound...] } ?? ""
            } else if s.hasPrefix("<![CDATA[") {
                guard let end = s.range(of: "]]>") else { try visit(.text(String(s.dropFirst(9)))); return }
                try visit(.text(String(s[s.index(s.startIndex, offsetBy: 9)..<end.lowerBound])))
                s = s[end.upperBound...]
            } else if s.hasPrefix("<!") || s.hasPrefix("<?") {
                s = s.firstIndex(of: ">").map { s[s.index(after: $0)...] } ?? ""
            } else {
                guard let gt = s.firstIndex(of: ">") else { try visit(.text(decodeEntities(s))); return }
                var body = s[s.index(after: s.startIndex)..<gt]
                s = s[s.index(after: gt)...]
                let closing = body.hasPrefix("/")
                if closing { body = body.dropFirst() }
                let selfClosing = body.hasSuffix("/")
                if selfClosing { body = body.dropLast() }
                let nameEnd = body.firstIndex { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" } ?? body.endIndex
                let name = body[body.startIndex..<nameEnd].lowercased()
                guard !name.isEmpty else { try visit(.text("<")); continue }
                if closing {
                    try visit(.close(name: name))
                } else {
                    try visit(.open(name: name, attributes: body[nameEnd...]))
                    if selfClosing { try visit(.close(name: name)) }
                }
            }
        }
    }

    /// The value of `name="…"` (or single quotes) in a tag's attribute text.
    static func attribute(_ name: String, in attributes: Substring) -> String? {
        var rest = attributes
        while let r = rest.range(of: name + "=") {
            let preceding = r.lowerBound == rest.startIndex ? " " : rest[rest.index(before: r.lowerBound)]
            rest = rest[r.upperBound...]
            guard preceding == " " || preceding == "\t" || preceding == "\n", let quote = rest.first, quote == "\"" || quote == "'" else { continue }
            let value = rest.dropFirst()
            guard let end = value.firstIndex(of: quote) else { return nil }
            return decodeEntities(value[value.startIndex..<end])
        }
        return nil
    }

    static let namedEntities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{00A0}", "mdash": "—", "ndash": "–",
        "hellip": "…", "copy": "©", "reg": "®", "laquo": "«", "raquo": "»", "ldquo": "“", "rdquo": "”", "lsquo": "‘", "rsquo": "’",
    ]

    static func decodeEntities<S: StringProtocol>(_ s: S) -> String {
        guard s.contains("&") else { return String(s) }
        var out = ""
        var rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[rest.startIndex..<amp]
            let after = rest[rest.index(after: amp)...]
            if let semi = after.prefix(12).firstIndex(of: ";") {
                let name = after[after.startIndex..<semi]
                var replacement: String?
                if name.hasPrefix("#x") || name.hasPrefix("#X") {
                    replacement = UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
                } else if name.hasPrefix("#") {
                    replacement = UInt32(name.dropFirst()).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
                } else {
                    replacement = namedEntities[String(name)]
                }
                if let replacement {
                    out += replacement
                    rest = after[after.index(after: semi)...]
                    continue
                }
            }
            out += "&"
            rest = after
        }
        return out + rest
    }
}

/// HTML or generic XML to readable text: block elements end lines, list items become bullets,
/// table cells are tab-separated, scripts and styles are dropped.
enum MarkupText {
    static let blocks: Set<String> = [
        "p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article", "header", "footer",
        "ul", "ol", "dl", "dt", "dd", "blockquote", "pre", "hr", "title", "main", "nav", "aside", "figure", "figcaption",
    ]
    static let hidden: Set<String> = ["script", "style", "noscript", "template", "svg"]

    static func html(_ source: String) -> String {
        var out = "", hiddenDepth = 0
        Markup.scan(source) { event in
            switch event {
            case .text(let t):
                if hiddenDepth == 0 { out += t.replacingOccurrences(of: "\n", with: " ") }
            case .open(let name, _):
                if hidden.contains(name) { hiddenDepth += 1 }
                if name == "li" { out += "\n- " } else if blocks.contains(name) { out += "\n" }
                if name == "td" || name == "th" { out += "\t" }
            case .close(let name):
                if hidden.contains(name) { hiddenDepth = max(0, hiddenDepth - 1) }
                if blocks.contains(name) { out += "\n" }
            }
        }
        return tidy(out, blankLines: false)
    }

    /// Generic XML: every element's text on its own line.
    static func xml(_ source: String) -> String {
        var out = ""
        Markup.scan(source) { event in
            switch event {
            case .text(let t): out += t
            case .open: break
            case .close: out += "\n"
            }
        }
        return tidy(out)
    }

    /// Spaces collapsed within lines, lines trimmed, at most one blank line in a row (none when
    /// blank lines are only artefacts of markup, as in HTML).
    static func tidy(_ s: String, blankLines: Bool = true) -> String {
        var lines: [String] = []
        for raw in s.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.split(whereSeparator: { $0 == " " || $0 == "\u{00A0}" || $0 == "\r" }).joined(separator: " ")
                .trimmingCharacters(in: .whitespaces)
            if line.isEmpty && (!blankLines || (lines.last?.isEmpty ?? true)) { continue }
            lines.append(line)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n")
    }
}
