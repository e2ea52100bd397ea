import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Bytes → NFC text. UTF-8 (with or without BOM), UTF-16 with a BOM, and the legacy Chinese
/// encodings offices still produce (GB18030/GBK, Big5), converted with glibc's iconv. Anything
/// else is an error rather than mojibake.
public enum TextDecoding {
    public static func decode(_ data: Data) throws -> (text: String, encoding: String) {
        let bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            guard let s = String(validating: bytes.dropFirst(3), as: UTF8.self) else { throw ExtractionError.malformed("invalid UTF-8 after a UTF-8 byte-order mark") }
            return (normalize(s), "UTF-8")
        }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            let encoding = bytes[0] == 0xFF ? "UTF-16LE" : "UTF-16BE"
            guard let s = convert(Array(bytes.dropFirst(2)), from: encoding) else { throw ExtractionError.malformed("invalid \(encoding)") }
            return (normalize(s), encoding)
        }
        if let s = String(validating: bytes, as: UTF8.self) {
            guard !s.contains("\u{0}") else { throw ExtractionError.unsupported("binary data (NUL bytes), not text") }
            return (normalize(s), "UTF-8")
        }
        // Legacy CJK: both decoders may accept the bytes; keep the reading with more common
        // ideographs (the other one turns the text into rare characters and symbols).
        let candidates = ["GB18030", "BIG5"].compactMap { e in convert(bytes, from: e).map { (e, $0) } }
        guard let best = candidates.max(by: { plausibility($0.1) < plausibility($1.1) }) else {
            throw ExtractionError.unsupported("not UTF-8, UTF-16 with a byte-order mark, GB18030 or Big5 text")
        }
        return (normalize(best.1), best.0)
    }

    static func normalize(_ s: String) -> String {
        s.precomposedStringWithCanonicalMapping.replacingOccurrences(of: "\r\n", with: "\n")
    }

    /// Share of characters that are ASCII, CJK punctuation or among the most frequent ideograph
    /// ranges; garbled decodings land in rare blocks and private use.
    static func plausibility(_ s: String) -> Double {
        var good = 0, total = 0
        for u in s.unicodeScalars {
            total += 1
            switch u.value {
            case 0x20...0x7E, 0x0A, 0x0D, 0x09, 0x3000...0x303F, 0xFF00...0xFFEF: good += 1
            case 0x4E00...0x9FFF: good += frequentIdeographs.contains(u) ? 2 : 1
            default: break
            }
        }
        return total == 0 ? 0 : Double(good) / Double(total)
    }

    /// Common characters of modern Chinese text in both scripts (的 是 不 了 人 在 有 我 他 这 中 …).
    static let frequentIdeographs = Set(("的一是不了人在有我他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴照按管產們為個說國會這來時過發後對當從問學還種頭開現裡" as String).unicodeScalars)

    /// Strict conversion to UTF-8 through iconv; nil when the bytes are not valid in `encoding`.
    static func convert(_ bytes: [UInt8], from encoding: String) -> String? {
        let cd = iconv_open("UTF-8", encoding)
        guard cd != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(cd) }
        var input = bytes.map { CChar(bitPattern: $0) }
        var output = [CChar](repeating: 0, count: bytes.count * 4 + 16)
        let written: Int? = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                var inPointer: UnsafeMutablePointer<CChar>? = inBuffer.baseAddress
                var outPointer: UnsafeMutablePointer<CChar>? = outBuffer.baseAddress
                var inLeft = inBuffer.count, outLeft = outBuffer.count
                let r = iconv(cd, &inPointer, &inLeft, &outPointer, &outLeft)
                return r != -1 && inLeft == 0 ? outBuffer.count - outLeft : nil
            }
        }
        guard let written else { return nil }
        return String(validating: output[0..<written].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
