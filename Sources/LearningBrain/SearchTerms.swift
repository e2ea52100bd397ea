import Foundation

/// The words passages are indexed and searched by. Lower-cased runs of letters, digits and
/// '_' (not of '_' alone); inside a run, Chinese, Japanese and Korean characters (written without spaces between
/// words) become overlapping character bigrams, as Lucene's CJK analyzer does: "国际航班" →
/// 国际 际航 航班, a lone character stays itself, and mixed text ("root账户") splits at the
/// script change. The passage index stores its text as these terms joined by spaces, so
/// SQLite FTS5 (unicode61) sees the same words the query does.
public enum SearchTerms {
    public static func terms(in text: String) -> [String] {
        var out: [String] = []
        var word = "", cjk: [Character] = []
        func endWord() {
            // A run of underscores alone ("____", a blank to fill in) is no word.
            if word.contains(where: { $0 != "_" }) { out.append(word) }
            word = ""
        }
        func endCJK() {
            if cjk.count == 1 { out.append(String(cjk[0])) }
            for i in cjk.indices.dropLast() { out.append(String(cjk[i]) + String(cjk[i + 1])) }
            cjk = []
        }
        for c in text.lowercased() {
            if isCJK(c) {
                endWord()
                cjk.append(c)
            } else if c.isLetter || c.isNumber || c == "_" {
                endCJK()
                word.append(c)
            } else {
                endWord()
                endCJK()
            }
        }
        endWord()
        endCJK()
        return out
    }

    /// The text as the passage index stores it: its terms, space-separated.
    public static func indexText(_ text: String) -> String { terms(in: text).joined(separator: " ") }

    /// Han ideographs (with extensions and compatibility forms), kana and Hangul.
    public static func isCJK(_ c: Character) -> Bool {
        guard let s = c.unicodeScalars.first else { return false }
        switch s.value {
        case 0x3040...0x30FF, 0x31F0...0x31FF,   // hiragana, katakana
             0x3400...0x4DBF, 0x4E00...0x9FFF,   // CJK unified ideographs and extension A
             0xF900...0xFAFF, 0x20000...0x3134F, // compatibility ideographs, extensions B…
             0xAC00...0xD7AF, 0x1100...0x11FF, 0x3130...0x318F: // Hangul
            return true
        default:
            return false
        }
    }

    /// A term made of CJK characters (a bigram or a lone character).
    public static func isCJKTerm(_ term: String) -> Bool { term.first.map(isCJK) ?? false }
}
