import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    /// `twinbrain models`: the model that serves; `list`, `import`, `use` and `remove` manage the
    /// model files the box has (admin).
    struct Models: ParsableCommand {
        static let subcommandNames: Set<String> = ["served", "list", "import", "use", "remove"]

        static let configuration = CommandConfiguration(
            abstract: "The model that serves; list, import, choose and remove models (admin).",
            discussion: """
                A model is a GGUF file (llama, qwen2, qwen3 or gemma3 families). `import` copies one from a drive or \
                any path into the daemon's state directory and checks it as the engine would load it; `use` makes it \
                the serving model without a restart (requests in flight finish first) and the choice survives \
                restarts; `remove` deletes an imported one.
                """,
            subcommands: [Served.self, List.self, Import.self, Use.self, Remove.self],
            defaultSubcommand: Served.self)

        struct Served: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Print the id of the model that serves.")

            @OptionGroup var connection: ConnectionOptions
            @Flag(help: "Print the daemon's JSON reply.") var json = false

            func run() throws {
                try runReportingErrors {
                    let reply = try connection.client.send("GET", "/v1/models")
                    let list = try decodeOK(ModelList.self, reply)
                    if json { printRaw(reply.body); return }
                    list.data.forEach { print($0.id) }
                }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the model files the box has (admin).")

            @OptionGroup var connection: ConnectionOptions
            @Flag(help: "Print the daemon's JSON reply.") var json = false

            func run() throws {
                try runReportingErrors {
                    let reply = try connection.client.send("GET", "/v1/admin/models")
                    let list = try decodeOK(InstalledModels.self, reply)
                    if json { printRaw(reply.body); return }
                    Models.printList(list)
                }
            }
        }

        struct Import: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Copy a GGUF model from a drive or a path onto the box and check it (admin).",
                discussion: """
                    The file is checked before anything is copied (a file that is not a model the engine serves, or \
                    that the machine's memory cannot hold with the daemon's context and slots, is refused with the \
                    numbers), copied with a progress bar, checked again and its SHA-256 recorded. An interrupted copy \
                    (a pulled drive, a restart) resumes where it stopped when the same file is imported again.
                    """)

            @OptionGroup var connection: ConnectionOptions
            @Argument(help: "The GGUF file, e.g. /media/twinbrain/usb-stick/qwen2.5-1.5b-instruct-q4_k_m.gguf.") var path: String
            @Flag(help: "Print JSON: the import's status, one line per change.") var json = false

            func run() throws {
                try runReportingErrors {
                    let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
                    let client = connection.client
                    var status = try decodeOK(ModelImportStatus.self,
                                              try client.send("POST", "/v1/admin/models/import", body: try JSONEncoder().encode(ModelImportRequest(path: absolute))))
                    var last: ModelImportStatus?
                    while true {
                        if status != last {
                            if json { printRaw(try JSONEncoder().encode(status)) } else { Self.draw(status) }
                            last = status
                        }
                        if status.state == .done || status.state == .failed { break }
                        Thread.sleep(forTimeInterval: 0.25)
                        status = try decodeOK(ModelImportStatus.self, try client.send("GET", "/v1/admin/models/imports/\(status.id)"))
                    }
                    if !json { ProgressBar.finish() }
                    guard status.state == .done, let model = status.installed else {
                        throw CLIError(description: "import of \(status.source) failed: \(status.error ?? "no reason given")", code: 5)
                    }
                    if !json {
                        print("imported \(model.id) (\(Models.describe(model))); serve it with `twinbrain models use \(model.id)`")
                    }
                }
            }

            static func draw(_ status: ModelImportStatus) {
                switch status.state {
                case .copying: ProgressBar.draw(done: status.copiedBytes >> 20, total: status.totalBytes >> 20, label: "MiB " + status.model)
                case .verifying: ProgressBar.draw(done: status.totalBytes >> 20, total: status.totalBytes >> 20, label: "MiB, checking " + status.model)
                case .done, .failed: break
                }
            }
        }

        struct Use: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Serve another model from now on, without a restart (admin).",
                discussion: """
                    Requests in flight finish on the old model; new ones wait while the new model loads. The token \
                    memory and the reader follow the model (documents are learned again for it in the background \
                    when its keyspace is fitted). The choice survives restarts.
                    """)

            @OptionGroup var connection: ConnectionOptions
            @Argument(help: "The model's id, as `twinbrain models list` shows it.") var id: String
            @Flag(help: "Print the daemon's JSON reply.") var json = false

            func run() throws {
                try runReportingErrors {
                    let reply = try connection.client.send("POST", "/v1/admin/models/use", body: try JSONEncoder().encode(ModelUseRequest(id: id)))
                    _ = try decodeOK(InstalledModels.self, reply)
                    if json { printRaw(reply.body); return }
                    print("serving \(id)")
                }
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete an imported model (admin); never the serving one.")

            @OptionGroup var connection: ConnectionOptions
            @Argument(help: "The model's id, as `twinbrain models list` shows it.") var id: String
            @Flag(help: "Print the daemon's JSON reply.") var json = false

            func run() throws {
                try runReportingErrors {
                    let reply = try connection.client.send("DELETE", "/v1/admin/models/\(id)")
                    _ = try decodeOK(InstalledModels.self, reply)
                    if json { printRaw(reply.body); return }
                    print("removed \(id)")
                }
            }
        }

        static func describe(_ m: InstalledModel) -> String {
            var parts: [String] = []
            if let a = m.architecture { parts.append(a) }
            if let p = m.parameters { parts.append(parameters(p)) }
            if let q = m.quantization { parts.append(q) }
            parts.append(String(format: "%.0f MiB", Double(m.fileBytes) / Double(1 << 20)))
            return parts.joined(separator: ", ")
        }

        static func parameters(_ p: Int) -> String {
            p >= 1_000_000_000 ? String(format: "%.1fB", Double(p) / 1e9) : "\(p / 1_000_000)M"
        }

        static func printList(_ list: InstalledModels) {
            printTable(["", "id", "family", "parameters", "weights", "size", "context", "memory keyspace", "sha256"], list.models.map { m in
                [m.serving ? "*" : "", m.id, m.architecture ?? "-",
                 m.parameters.map(parameters) ?? "-",
                 m.quantization ?? "-", String(format: "%.0f MiB", Double(m.fileBytes) / Double(1 << 20)),
                 m.contextLength.map(String.init) ?? "-", m.keyspaceFitted ? "fitted" : "none", m.sha256.map { String($0.prefix(12)) } ?? "-"]
            })
            for m in list.models where m.problem != nil { print("\(m.id): cannot be served: \(m.problem!)") }
            print("* serves. Imported models live in \(list.directory).")
        }
    }
}
