import GRDB

/// Versioned migrations. A migration, once released, never changes: add a new one.
enum Schema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: sources, documents, texts, jobs, audit") { db in
            try db.execute(sql: """
                CREATE TABLE sources (
                    id          INTEGER PRIMARY KEY,
                    key         TEXT NOT NULL UNIQUE,   -- "fs:<uuid>" for a drive, "path:<absolute path>" for an admin path
                    kind        TEXT NOT NULL CHECK (kind IN ('drive', 'path')),
                    uuid        TEXT,
                    label       TEXT,
                    fstype      TEXT,
                    device      TEXT,
                    mount_point TEXT,
                    state       TEXT NOT NULL CHECK (state IN ('present', 'absent', 'unsupported')),
                    first_seen  REAL NOT NULL,
                    last_seen   REAL NOT NULL
                );
                -- Extracted text, once per distinct content (sha256 of its UTF-8).
                CREATE TABLE texts (
                    sha256  TEXT PRIMARY KEY,
                    content TEXT NOT NULL,
                    bytes   INTEGER NOT NULL
                );
                CREATE TABLE documents (
                    id          INTEGER PRIMARY KEY,
                    source_id   INTEGER NOT NULL REFERENCES sources(id),
                    path        TEXT NOT NULL,          -- relative to the source's root, invalid UTF-8 bytes as \\xNN
                    size        INTEGER NOT NULL,
                    mtime       REAL NOT NULL,
                    format      TEXT NOT NULL,
                    raw_sha256  TEXT NOT NULL,
                    text_sha256 TEXT,                      -- texts(sha256); kept after the text is dropped
                    version     INTEGER NOT NULL,
                    state       TEXT NOT NULL CHECK (state IN
                                    ('discovered', 'extracted', 'learned', 'failed', 'superseded', 'forgotten')),
                    error       TEXT,
                    created     REAL NOT NULL,
                    updated     REAL NOT NULL,
                    UNIQUE (source_id, path, version)
                );
                CREATE INDEX documents_by_text ON documents(text_sha256);
                CREATE INDEX documents_by_state ON documents(state);
                CREATE TABLE jobs (
                    id        INTEGER PRIMARY KEY,
                    kind      TEXT NOT NULL,            -- 'ingest'
                    target    TEXT NOT NULL,            -- what it works on (a path)
                    source_id INTEGER REFERENCES sources(id),
                    state     TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
                    done      INTEGER NOT NULL DEFAULT 0,
                    total     INTEGER,
                    current   TEXT,
                    error     TEXT,
                    created   REAL NOT NULL,
                    updated   REAL NOT NULL
                );
                CREATE TABLE job_skips (
                    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                    path   TEXT NOT NULL,
                    reason TEXT NOT NULL
                );
                CREATE INDEX job_skips_by_job ON job_skips(job_id);
                CREATE TABLE audit (
                    id     INTEGER PRIMARY KEY,
                    time   REAL NOT NULL,
                    uid    INTEGER,
                    user   TEXT,
                    action TEXT NOT NULL,
                    detail TEXT
                );
                """)
        }
        m.registerMigration("v2: passages and their full-text index") { db in
            // The learning brain's passage recall: each learned document version cut into
            // overlapping passages of main-brain tokens, indexed by FTS5 (BM25). Deleting a
            // passage removes it from the index (trigger), so forgetting needs no second step.
            try db.execute(sql: """
                CREATE TABLE passages (
                    id           INTEGER PRIMARY KEY,
                    document_id  INTEGER NOT NULL REFERENCES documents(id),
                    token_offset INTEGER NOT NULL,
                    tokens       INTEGER NOT NULL,
                    text         TEXT NOT NULL
                );
                CREATE INDEX passages_by_document ON passages(document_id);
                CREATE VIRTUAL TABLE passages_fts USING fts5(
                    text, content = 'passages', content_rowid = 'id',
                    tokenize = "unicode61 remove_diacritics 0 tokenchars '_'"
                );
                CREATE TRIGGER passages_indexed AFTER INSERT ON passages BEGIN
                    INSERT INTO passages_fts (rowid, text) VALUES (new.id, new.text);
                END;
                CREATE TRIGGER passages_unindexed AFTER DELETE ON passages BEGIN
                    INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', old.id, old.text);
                END;
                """)
        }
        m.registerMigration("v3: passage word counts") { db in
            // How many passages hold each word (fts5vocab reads FTS5's own index): recall weighs
            // a question's words by their rarity (`PassageRelevance`).
            try db.execute(sql: "CREATE VIRTUAL TABLE passages_vocab USING fts5vocab(passages_fts, 'row')")
        }
        m.registerMigration("v4: structured passages, indexed by their search terms") { db in
            // Passages follow the document's structure: each carries its heading path and its
            // lines (and page) for citation. The index reads `terms` (the header and text as
            // the learning brain splits them: CJK text as character bigrams), not the text.
            // Passages of the earlier format have no terms: the learning brain cuts those
            // documents again at start (`passage_format`); their token memory is kept.
            try db.execute(sql: """
                DROP TRIGGER passages_indexed;
                DROP TRIGGER passages_unindexed;
                DROP TABLE passages_vocab;
                DROP TABLE passages_fts;
                ALTER TABLE passages ADD COLUMN header TEXT NOT NULL DEFAULT '';
                ALTER TABLE passages ADD COLUMN line_start INTEGER;
                ALTER TABLE passages ADD COLUMN line_end INTEGER;
                ALTER TABLE passages ADD COLUMN page INTEGER;
                ALTER TABLE passages ADD COLUMN terms TEXT NOT NULL DEFAULT '';
                ALTER TABLE documents ADD COLUMN passage_format INTEGER NOT NULL DEFAULT 1;
                CREATE VIRTUAL TABLE passages_fts USING fts5(
                    terms, content = 'passages', content_rowid = 'id',
                    tokenize = "unicode61 remove_diacritics 0 tokenchars '_'"
                );
                CREATE TRIGGER passages_indexed AFTER INSERT ON passages BEGIN
                    INSERT INTO passages_fts (rowid, terms) VALUES (new.id, new.terms);
                END;
                CREATE TRIGGER passages_unindexed AFTER DELETE ON passages BEGIN
                    INSERT INTO passages_fts (passages_fts, rowid, terms) VALUES ('delete', old.id, old.terms);
                END;
                CREATE VIRTUAL TABLE passages_vocab USING fts5vocab(passages_fts, 'row');
                -- The index must hold every row as the delete trigger will name it (empty terms
                -- for now): deleting a row it never held would damage it.
                INSERT INTO passages_fts (passages_fts) VALUES ('rebuild');
                """)
        }
        m.registerMigration("v5: settings") { db in
            // What an administrator chose at run time and a restart keeps (the serving model).
            try db.execute(sql: "CREATE TABLE settings (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
        }
        return m
    }
}
