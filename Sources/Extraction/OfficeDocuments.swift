import Foundation
import ZIPFoundation

/// docx, pptx, xlsx (Office Open XML) and odt/odp/ods (OpenDocument): ZIP archives of XML.
/// Every member is inflated under caps on its size, the archive's total and the compression
/// ratio, counted as the bytes come out (a zip bomb's headers lie), so a bomb fails by itself.
enum OfficeDocuments {
    struct Caps {
        var memberBytes = 64 << 20
        var totalBytes = 256 << 20
        var ratio = 200
        var members = 10_000
    }

    static func text(format: String, data: Data, caps: Caps = Caps()) throws -> String {
        let archive: Archive
        do { archive = try Archive(data: data, accessMode: .read) } catch {
            throw ExtractionError.malformed("not a readable ZIP archive (\(format) files are ZIP): \(error)")
        }
        var reader = MemberReader(archive: archive, caps: caps)
        switch format {
        case "docx": return try word(reader.xml("word/document.xml"))
        case "pptx":
            let slides = reader.paths(matching: "ppt/slides/slide", suffix: ".xml")
            return try slides.map { try drawing(reader.xml($0)) }.joined(separator: "\n\n")
        case "xlsx":
            let shared = try reader.optionalXML("xl/sharedStrings.xml").map(sharedStrings) ?? []
            let sheets = reader.paths(matching: "xl/worksheets/sheet", suffix: ".xml")
            return try sheets.map { try sheet(reader.xml($0), shared: shared) }.joined(separator: "\n\n")
        case "odt", "odp", "ods": return try openDocument(reader.xml("content.xml"))
        default: throw ExtractionError.unsupported("\(format) is not an office format")
        }
    }

    struct MemberReader {
        let archive: Archive
        let caps: Caps
        var inflated = 0

        init(archive: Archive, caps: Caps) {
            self.archive = archive
            self.caps = caps
        }

        /// Member paths `prefix<number>suffix`, in numeric order (slide2 before slide10).
        func paths(matching prefix: String, suffix: String) -> [String] {
            archive.compactMap { entry -> (Int, String)? in
                let p = entry.path
                guard p.hasPrefix(prefix), p.hasSuffix(suffix),
                      let n = Int(p.dropFirst(prefix.count).dropLast(suffix.count)) else { return nil }
                return (n, p)
            }.sorted { $0.0 < $1.0 }.map(\.1)
        }

        mutating func optionalXML(_ path: String) throws -> String? {
            guard archive[path] != nil else { return nil }
            return try xml(path)
        }

        mutating func xml(_ path: String) throws -> String {
            var count = 0
            for _ in archive { count += 1; if count > caps.members { throw ExtractionError.tooLarge("more than \(caps.members) archive members") } }
            guard let entry = archive[path] else { throw ExtractionError.malformed("the archive has no \(path)") }
            let declared = Int(clamping: entry.uncompressedSize)
            if declared > caps.memberBytes { throw ExtractionError.tooLarge("\(path) inflates to \(declared) bytes (limit \(caps.memberBytes))") }
            var out = Data()
            let limit = min(caps.memberBytes, caps.totalBytes - inflated)
            let compressed = max(1, Int(clamping: entry.compressedSize))
            let ratio = caps.ratio
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    out.append(chunk)
                    if out.count > limit { throw ExtractionError.tooLarge("\(path) inflates beyond \(limit) bytes") }
                    if out.count > 1 << 20 && out.count / compressed > ratio {
                        throw ExtractionError.tooLarge("\(path) has a compression ratio above \(ratio):1 (a zip bomb?)")
                    }
                }
            } catch let e as ExtractionError { throw e } catch {
                throw ExtractionError.malformed("cannot inflate \(path): \(error)")
            }
            inflated += out.count
            guard let s = String(data: out, encoding: .utf8) else { throw ExtractionError.malformed("\(path) is not UTF-8 XML") }
            return s
        }
    }

    /// word/document.xml: text runs (w:t), tabs, breaks; a paragraph per line.
    static func word(_ xml: String) -> String {
        var out = "", inText = false
        Markup.scan(xml) { e in
            switch e {
            case .open(let name, _):
                switch name {
                case "w:t": inText = true
                case "w:tab": out += "\t"
                case "w:br", "w:cr": out += "\n"
                default: break
                }
            case .close(let name):
                if name == "w:t" { inText = false }
                if name == "w:p" { out += "\n" }
            case .text(let t): if inText { out += t }
            }
        }
        return MarkupText.tidy(out)
    }

    /// A slide (DrawingML): a:t runs, a paragraph per line.
    static func drawing(_ xml: String) -> String {
        var out = "", inText = false
        Markup.scan(xml) { e in
            switch e {
            case .open(let name, _): if name == "a:t" { inText = true } else if name == "a:br" { out += "\n" }
            case .close(let name):
                if name == "a:t" { inText = false }
                if name == "a:p" { out += "\n" }
            case .text(let t): if inText { out += t }
            }
        }
        return MarkupText.tidy(out)
    }

    static func sharedStrings(_ xml: String) -> [String] {
        var strings: [String] = [], current = "", inText = false
        Markup.scan(xml) { e in
            switch e {
            case .open(let name, _): if name == "si" { current = "" } else if name == "t" { inText = true }
            case .close(let name): if name == "t" { inText = false } else if name == "si" { strings.append(current) }
            case .text(let t): if inText { current += t }
            }
        }
        return strings
    }

    /// A worksheet: a row per line, cells separated by tabs; shared strings resolved.
    static func sheet(_ xml: String, shared: [String]) -> String {
        var out = "", cellType = "", value = "", inValue = false, firstCell = true
        Markup.scan(xml) { e in
            switch e {
            case .open(let name, let attributes):
                switch name {
                case "c": cellType = Markup.attribute("t", in: attributes) ?? ""; value = ""
                case "v", "t": inValue = true
                case "row": firstCell = true
                default: break
                }
            case .close(let name):
                switch name {
                case "v", "t": inValue = false
                case "c":
                    let text = cellType == "s" ? Int(value.trimmingCharacters(in: .whitespaces)).flatMap { shared.indices.contains($0) ? shared[$0] : nil } ?? "" : value
                    out += (firstCell ? "" : "\t") + text.replacingOccurrences(of: "\n", with: " ")
                    firstCell = false
                case "row": out += "\n"
                default: break
                }
            case .text(let t): if inValue { value += t }
            }
        }
        return out.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.joined(separator: "\n")
    }

    /// OpenDocument content.xml: paragraphs and headings per line, spaces/tabs/breaks, table cells.
    static func openDocument(_ xml: String) -> String {
        var out = "", inBody = false
        Markup.scan(xml) { e in
            switch e {
            case .open(let name, let attributes):
                switch name {
                case "office:body": inBody = true
                case "text:s": out += String(repeating: " ", count: Int(Markup.attribute("text:c", in: attributes) ?? "1") ?? 1)
                case "text:tab": out += "\t"
                case "text:line-break": out += "\n"
                default: break
                }
            case .close(let name):
                switch name {
                case "office:body": inBody = false
                case "text:p", "text:h", "table:table-row", "draw:page": out += "\n"
                case "table:table-cell": out += "\t"
                default: break
                }
            case .text(let t): if inBody { out += t }
            }
        }
        return MarkupText.tidy(out)
    }
}
