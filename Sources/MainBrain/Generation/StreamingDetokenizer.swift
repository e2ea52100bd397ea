/// Turns tokens into text pieces as they arrive, holding back bytes of a UTF-8
/// character that a later token completes (one character may span several tokens).
public struct StreamingDetokenizer: Sendable {
    let tokenizer: Tokenizer
    public var renderSpecial = false
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// The text that is now complete after adding `id` (maybe empty).
    public mutating func append(_ id: Int32) -> String {
        pending += tokenizer.bytes(of: id, renderSpecial: renderSpecial)
        let complete = Self.completePrefixLength(pending)
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is held back, with incomplete characters replaced (end of stream).
    public mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the prefix of `bytes` that ends on a character boundary: everything except
    /// a trailing, still-valid start of a multi-byte character. Invalid bytes are not held.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Look back at most 3 bytes for the start of a multi-byte sequence.
        var i = n - 1
        while i >= 0 && i >= n - 4 {
            let b = bytes[i]
            if b & 0xC0 == 0x80 { i -= 1; continue }  // continuation byte
            let needed: Int
            switch b {
            case 0xC2...0xDF: needed = 2
            case 0xE0...0xEF: needed = 3
            case 0xF0...0xF4: needed = 4
            default: return n  // ASCII or invalid lead: nothing to wait for
            }
            return n - i < needed ? i : n
        }
        return n
    }
}
