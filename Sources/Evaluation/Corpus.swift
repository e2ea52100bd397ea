import Foundation

/// A corpus in the FreshDocs format (docs/evaluation.md, ../shared/eval/FRESHDOCS.md):
/// `docs/` (any depth, one document per file, id = path from the corpus root), `heldout.txt`,
/// `general/`, `items.jsonl`. Nothing beyond the format is assumed.
public struct FreshDocsCorpus: Sendable {
    public struct Document: Sendable, Equatable {
        public let id: String
        public let text: String
        public init(id: String, text: String) {
            self.id = id
            self.text = text
        }
    }

    /// One multiple-choice item (a line of items.jsonl).
    public struct Item: Codable, Sendable, Equatable {
        public let id: String
        public let kind: String      // "verbatim" | "paraphrase"
        public let doc: String
        public let prompt: String
        public let chat: Bool
        public let candidates: [String]
        public let answer: Int
    }

    public let root: URL
    public let documents: [Document]
    public let heldout: Set<String>
    public let general: [Document]
    public let items: [Item]
    /// Questions about the learned documents that they do not answer (unanswerable.jsonl, optional).
    public var unanswerable: [UnanswerableItem] = []

    public var name: String { root.lastPathComponent }
    public var learned: [Document] { documents.filter { !heldout.contains($0.id) } }
    public var heldoutDocuments: [Document] { documents.filter { heldout.contains($0.id) } }

    public static func load(_ path: String) throws -> FreshDocsCorpus {
        let root = URL(fileURLWithPath: path).standardizedFileURL
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CorpusError("\(path) is not a directory")
        }
        let documents = try readTexts(under: root, folder: "docs")
        guard !documents.isEmpty else { throw CorpusError("\(path)/docs holds no documents") }
        let ids = Set(documents.map(\.id))
        var heldout = Set<String>()
        let heldoutURL = root.appendingPathComponent("heldout.txt")
        if fm.fileExists(atPath: heldoutURL.path) {
            for (n, line) in try String(contentsOf: heldoutURL, encoding: .utf8).split(separator: "\n").enumerated() {
                let id = line.trimmingCharacters(in: .whitespaces)
                if id.isEmpty || id.hasPrefix("#") { continue }
                guard ids.contains(id) else { throw CorpusError("heldout.txt line \(n + 1): no document '\(id)'") }
                heldout.insert(id)
            }
        }
        let general = fm.fileExists(atPath: root.appendingPathComponent("general").path)
            ? try readTexts(under: root, folder: "general") : []
        var items: [Item] = []
        let itemsURL = root.appendingPathComponent("items.jsonl")
        if fm.fileExists(atPath: itemsURL.path) {
            for (n, line) in try String(contentsOf: itemsURL, encoding: .utf8).split(separator: "\n").enumerated()
            where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                let item: Item
                do { item = try JSONDecoder().decode(Item.self, from: Data(line.utf8)) } catch {
                    throw CorpusError("items.jsonl line \(n + 1): \(error)")
                }
                guard ids.contains(item.doc) else { throw CorpusError("items.jsonl line \(n + 1): no document '\(item.doc)'") }
                guard item.candidates.count >= 2, item.candidates.indices.contains(item.answer) else {
                    throw CorpusError("items.jsonl line \(n + 1): needs 2+ candidates and an answer index among them")
                }
                guard ["verbatim", "paraphrase"].contains(item.kind) else {
                    throw CorpusError("items.jsonl line \(n + 1): kind '\(item.kind)' is not verbatim or paraphrase")
                }
                items.append(item)
            }
        }
        var corpus = FreshDocsCorpus(root: root, documents: documents, heldout: heldout, general: general, items: items)
        let unanswerableURL = root.appendingPathComponent("unanswerable.jsonl")
        if fm.fileExists(atPath: unanswerableURL.path) {
            for (n, line) in try String(contentsOf: unanswerableURL, encoding: .utf8).split(separator: "\n").enumerated()
            where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                do { corpus.unanswerable.append(try JSONDecoder().decode(UnanswerableItem.self, from: Data(line.utf8))) } catch {
                    throw CorpusError("unanswerable.jsonl line \(n + 1): \(error)")
                }
            }
        }
        return corpus
    }

    /// Every regular file under `root/folder`, sorted by id, as UTF-8 text.
    static func readTexts(under root: URL, folder: String) throws -> [Document] {
        let base = root.appendingPathComponent(folder)
        guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: [.isRegularFileKey]) else {
            throw CorpusError("cannot read \(base.path)")
        }
        var out: [Document] = []
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let id = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            let data = try Data(contentsOf: url)
            guard let text = String(data: data, encoding: .utf8) else { throw CorpusError("\(id) is not UTF-8 text") }
            out.append(Document(id: id, text: text))
        }
        return out.sorted { $0.id < $1.id }
    }
}

public struct CorpusError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = "corpus: " + description }
}
