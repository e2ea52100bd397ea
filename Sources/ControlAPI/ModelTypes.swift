/// Model management (`/v1/admin/models…`, `twinbrain models`): the GGUF files the box can
/// serve, importing one from a drive or a path, choosing the one that serves, removing one.

/// One model file the box has.
public struct InstalledModel: Codable, Sendable, Equatable {
    /// The file name without `.gguf`: what `use` and `remove` take, and the API's model id.
    public var id: String
    public var path: String
    public var architecture: String?
    /// `general.name` of the file, when it has one.
    public var name: String?
    public var parameters: Int?
    /// The type of most of the weights ("Q4_K", "Q8_0", …).
    public var quantization: String?
    public var fileBytes: Int
    public var contextLength: Int?
    /// Recorded beside the file (`<file>.sha256`), when known.
    public var sha256: String?
    /// Whether the learning brain's keyspace is fitted for this file (its token memory can run).
    public var keyspaceFitted: Bool
    public var serving: Bool
    /// Imported into the state directory (removable); false for the configured or packaged file.
    public var imported: Bool
    /// Why the engine would not load it, when it would not.
    public var problem: String?

    public init(id: String, path: String, architecture: String? = nil, name: String? = nil, parameters: Int? = nil,
                quantization: String? = nil, fileBytes: Int, contextLength: Int? = nil, sha256: String? = nil,
                keyspaceFitted: Bool = false, serving: Bool = false, imported: Bool = false, problem: String? = nil) {
        self.id = id
        self.path = path
        self.architecture = architecture
        self.name = name
        self.parameters = parameters
        self.quantization = quantization
        self.fileBytes = fileBytes
        self.contextLength = contextLength
        self.sha256 = sha256
        self.keyspaceFitted = keyspaceFitted
        self.serving = serving
        self.imported = imported
        self.problem = problem
    }

    enum CodingKeys: String, CodingKey {
        case id, path, architecture, name, parameters, quantization, sha256, serving, imported, problem
        case fileBytes = "file_bytes", contextLength = "context_length", keyspaceFitted = "keyspace_fitted"
    }
}

/// `GET /v1/admin/models`.
public struct InstalledModels: Codable, Sendable {
    public var models: [InstalledModel]
    /// Where imported models live.
    public var directory: String
    public init(models: [InstalledModel], directory: String) {
        self.models = models
        self.directory = directory
    }
}

/// `POST /v1/admin/models/import`: an absolute path to a GGUF file the daemon can read.
public struct ModelImportRequest: Codable, Sendable {
    public var path: String
    public init(path: String) { self.path = path }
}

/// An import: copying (resumable: an interrupted copy continues where it stopped when the
/// same file is imported again), verifying, then done or failed with the reason.
public struct ModelImportStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case copying, verifying, done, failed }
    public var id: Int
    public var source: String
    /// The id the model will have.
    public var model: String
    public var state: State
    public var copiedBytes: Int
    public var totalBytes: Int
    /// Bytes a resumed copy found already copied.
    public var resumedFrom: Int
    public var error: String?
    /// The installed model, once done.
    public var installed: InstalledModel?

    public init(id: Int, source: String, model: String, state: State, copiedBytes: Int, totalBytes: Int, resumedFrom: Int = 0,
                error: String? = nil, installed: InstalledModel? = nil) {
        self.id = id
        self.source = source
        self.model = model
        self.state = state
        self.copiedBytes = copiedBytes
        self.totalBytes = totalBytes
        self.resumedFrom = resumedFrom
        self.error = error
        self.installed = installed
    }

    enum CodingKeys: String, CodingKey {
        case id, source, model, state, error, installed
        case copiedBytes = "copied_bytes", totalBytes = "total_bytes", resumedFrom = "resumed_from"
    }
}

/// `POST /v1/admin/models/use`: the model to serve from now on (an id from the list).
public struct ModelUseRequest: Codable, Sendable {
    public var id: String
    public init(id: String) { self.id = id }
}
