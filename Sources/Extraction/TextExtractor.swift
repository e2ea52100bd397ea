import Foundation

/// Why a file gave no text. The exit status of `twinbrain-extract` carries the kind.
public enum ExtractionError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)
    case malformed(String)
    case tooLarge(String)

    public var description: String {
        switch self {
        case .unsupported(let m): return "unsupported: " + m
        case .malformed(let m): return "malformed: " + m
        case .tooLarge(let m): return "too large: " + m
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .unsupported: return 2
        case .malformed: return 3
        case .tooLarge: return 4
        }
    }
}

/// File contents → text, by format. Runs inside the sandboxed `twinbrain-extract` helper, never
/// in the daemon: a file that crashes or exhausts a parser takes only the helper down.
public enum TextExtractor {
    /// Formats by file-name extension.
    public static let formats: [String: String] = [
        "txt": "text", "text": "text", "md": "markdown", "markdown": "markdown", "rst": "rst", "csv": "csv", "tsv": "tsv",
        "json": "json", "log": "log", "html": "html", "htm": "html", "xhtml": "html", "xml": "xml",
        "docx": "docx", "odt": "odt", "pptx": "pptx", "odp": "odp", "xlsx": "xlsx", "ods": "ods", "pdf": "pdf",
    ]

    /// The format a file name announces, or nil when the box does not read such files.
    public static func format(forName name: String) -> String? {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        return formats[name[name.index(after: dot)...].lowercased()]
    }

    public static func extract(_ data: Data, format: String, pdftotext: String? = "/usr/bin/pdftotext") throws -> String {
        switch format {
        case "text", "markdown", "rst", "csv", "tsv", "json", "log":
            return try TextDecoding.decode(data).text
        case "html":
            return MarkupText.html(try TextDecoding.decode(data).text)
        case "xml":
            return MarkupText.xml(try TextDecoding.decode(data).text)
        case "docx", "pptx", "xlsx", "odt", "odp", "ods":
            return TextDecoding.normalize(try OfficeDocuments.text(format: format, data: data))
        case "pdf":
            return TextDecoding.normalize(try PDFText.extract(data, tool: pdftotext))
        default:
            throw ExtractionError.unsupported("no reader for format '\(format)'")
        }
    }
}

/// PDF through poppler's pdftotext (Debian `poppler-utils`), fed on stdin: no file is written.
enum PDFText {
    static func extract(_ data: Data, tool: String?) throws -> String {
        guard data.starts(with: Array("%PDF-".utf8)) else { throw ExtractionError.malformed("not a PDF (no %PDF- header)") }
        guard let tool, FileManager.default.isExecutableFile(atPath: tool) else {
            throw ExtractionError.unsupported("PDF needs pdftotext: apt-get install poppler-utils")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["-q", "-enc", "UTF-8", "-", "-"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = errors
        try p.run()
        // Feed stdin from another thread so a large output cannot deadlock the two pipes.
        let writer = Thread {
            try? input.fileHandleForWriting.write(contentsOf: data)
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let text = output.fileHandleForReading.readDataToEndOfFile()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let why = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ExtractionError.malformed("pdftotext failed (status \(p.terminationStatus))\(why.isEmpty ? "" : ": " + why)")
        }
        guard let s = String(data: text, encoding: .utf8) else { throw ExtractionError.malformed("pdftotext gave invalid UTF-8") }
        // pdftotext ends every page with a form feed: kept, it tells the learning brain's
        // passages (and the evidence they give) which page a line is on.
        return s
    }
}
