/// The product's version, shared by the daemon and the CLI. `make deb` reads it from this line
/// for the package version; change it here only.
public let twinbrainVersion = "0.1.0"
