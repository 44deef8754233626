//! Metadata in SQLite (the seed's GraphDB): layers, images, tags and container layers.
//!
//! WAL mode, foreign keys on, and every change in one transaction. Layers are inserted
//! `incomplete` before their content lands and flipped to complete after; `Db::incomplete_layers`
//! lists what a crash left behind so the store can remove it at open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::digest::Digest;
use crate::error::{CorruptRow, Error, Result};

/// The image-layer limit of the seed (Docker's 127).
pub const MAX_LAYERS: usize = 127;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layers(
    cache_id     TEXT PRIMARY KEY,
    chain_id     TEXT UNIQUE,
    diff_id      TEXT,
    parent_cache TEXT REFERENCES layers(cache_id),
    depth        INTEGER NOT NULL,
    size         INTEGER NOT NULL DEFAULT 0,
    tar_size     INTEGER NOT NULL DEFAULT 0,
    blob_digest  TEXT,
    blob_size    INTEGER NOT NULL DEFAULT 0,
    media_type   TEXT,
    refcount     INTEGER NOT NULL DEFAULT 0,
    incomplete   INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent_cache);
CREATE TABLE IF NOT EXISTS images(
    id           TEXT PRIMARY KEY,
    top_cache    TEXT REFERENCES layers(cache_id),
    parent_image TEXT,
    size         INTEGER NOT NULL DEFAULT 0,
    created      TEXT
);
CREATE TABLE IF NOT EXISTS tags(
    reference TEXT PRIMARY KEY,
    repo      TEXT NOT NULL,
    image_id  TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS repo_digests(
    reference TEXT PRIMARY KEY,
    image_id  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers(
    id         TEXT PRIMARY KEY,
    image_id   TEXT,
    cache_id   TEXT NOT NULL,
    incomplete INTEGER NOT NULL DEFAULT 1,
    top_cache  TEXT
);
-- the few containers a crash left incomplete, found at every open without a scan
CREATE INDEX IF NOT EXISTS containers_incomplete ON containers(id) WHERE incomplete != 0;
";

/// One layer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// The driver's ID for this layer.
    pub cache_id: String,
    /// Chain ID (absent while incomplete).
    pub chain_id: Option<Digest>,
    /// Diff ID (absent while incomplete).
    pub diff_id: Option<Digest>,
    /// The parent layer's cache ID.
    pub parent_cache: Option<String>,
    /// 1 for a base layer.
    pub depth: usize,
    /// Bytes of file content.
    pub size: u64,
    /// Uncompressed tar size.
    pub tar_size: u64,
    /// The stored layer blob.
    pub blob_digest: Option<Digest>,
    /// The blob's size.
    pub blob_size: u64,
    /// The blob's media type.
    pub media_type: Option<String>,
    /// Images and containers holding this layer as their top.
    pub refcount: u64,
    /// Content not fully written yet.
    pub incomplete: bool,
}

/// One image row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Image ID (the config digest).
    pub id: Digest,
    /// Top layer (cache ID), none for an image without layers.
    pub top_cache: Option<String>,
    /// The image this one was committed from.
    pub parent_image: Option<Digest>,
    /// Sum of layer content sizes.
    pub size: u64,
    /// Creation time from the config.
    pub created: Option<String>,
}

/// The metadata database (the store's own: its transactions are not part of the API).
pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
}

/// A digest column of one row that does not parse: carried through rusqlite's row
/// mappers and turned into [`Error::CorruptRow`] by [`Db::err`].
#[derive(Debug)]
struct CorruptDigest {
    table: &'static str,
    key: String,
    column: &'static str,
    value: String,
    reason: String,
}

impl std::fmt::Display for CorruptDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row {:?}: invalid {} {:?}: {}",
            self.table, self.key, self.column, self.value, self.reason
        )
    }
}

impl std::error::Error for CorruptDigest {}

/// Parses a digest column of the row `key` of `table`; a value that does not parse is an
/// error naming the row, never taken for an absent value.
fn dig(
    table: &'static str,
    key: &str,
    column: &'static str,
    s: Option<String>,
) -> std::result::Result<Option<Digest>, CorruptDigest> {
    let Some(s) = s else { return Ok(None) };
    match Digest::parse(&s) {
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(CorruptDigest {
            table,
            key: key.to_string(),
            column,
            reason: match e {
                longshore_reference::Error::InvalidDigest { reason, .. } => reason,
                e => e.to_string(),
            },
            value: s,
        }),
    }
}

/// [`dig`] inside a rusqlite row mapper (column `idx`).
fn dig_col(
    row: &rusqlite::Row<'_>,
    idx: usize,
    table: &'static str,
    key: &str,
    column: &'static str,
) -> rusqlite::Result<Option<Digest>> {
    dig(table, key, column, row.get(idx)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Db {
    /// Opens (creating) the database in WAL mode.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(|e| Error::Database {
            path: path.to_path_buf(),
            source: e,
        })?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db.err(e))?;
        db.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| db.err(e))?;
        // WAL with synchronous=NORMAL: every transaction is atomic and survives the process
        // being killed at any point (the WAL is in the page cache); only a power loss can
        // drop the last few commits, which leaves files no row names (found by `check`,
        // removed by `gc`), never rows naming missing files: blobs are fsynced before the
        // rows that name them. FULL would fsync on every commit (1-25 ms each here).
        db.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| db.err(e))?;
        db.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| db.err(e))?;
        // No checkpoint when a connection closes: closing the last one would checkpoint
        // (two fsyncs) and delete the -wal and -shm files, 20-40 ms on this disk in the
        // path of every command that opened the store (`run` paid it before attaching).
        // The WAL stays, as durable as before; commits checkpoint it every 1000 pages
        // (SQLite's wal_autocheckpoint), so it stays small.
        db.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(|e| db.err(e))?;
        db.conn.execute_batch(SCHEMA).map_err(|e| db.err(e))?;
        db.migrate().map_err(|e| db.err(e))?;
        Ok(db)
    }

    /// Folds the write-ahead log into the database and truncates it to nothing, unless
    /// another connection is writing or reading an older snapshot (then nothing happens:
    /// `Ok(false)`, at once, without waiting).
    pub fn truncate_log(&self) -> Result<bool> {
        self.conn
            .busy_timeout(std::time::Duration::ZERO)
            .map_err(|e| self.err(e))?;
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.err(e))?;
        match r {
            Ok(busy) => Ok(busy == 0),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Brings stores made by earlier versions to the current schema.
    fn migrate(&self) -> rusqlite::Result<()> {
        // containers.image_id lost its foreign key: like Docker, a forced `rmi` deletes an
        // image a stopped container uses, and the container keeps the image ID.
        let fk: i64 = self.conn.query_row(
            "SELECT count(*) FROM pragma_foreign_key_list('containers')",
            [],
            |r| r.get(0),
        )?;
        if fk > 0 {
            self.conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE containers_v2(
                     id         TEXT PRIMARY KEY,
                     image_id   TEXT,
                     cache_id   TEXT NOT NULL,
                     incomplete INTEGER NOT NULL DEFAULT 1,
                     top_cache  TEXT
                 );
                 INSERT INTO containers_v2(id, image_id, cache_id, incomplete)
                     SELECT id, image_id, cache_id, incomplete FROM containers;
                 DROP TABLE containers;
                 ALTER TABLE containers_v2 RENAME TO containers;
                 COMMIT;",
            )?;
        }
        // containers.top_cache: the layer a container holds a reference on, kept in the row
        // so that a container whose image is gone, or whose removal was interrupted, can
        // still give it back (rows from earlier versions fall back to the image's top)
        let has_top: i64 = self.conn.query_row(
            "SELECT count(*) FROM pragma_table_info('containers') WHERE name = 'top_cache'",
            [],
            |r| r.get(0),
        )?;
        if has_top == 0 {
            self.conn
                .execute_batch("ALTER TABLE containers ADD COLUMN top_cache TEXT;")?;
        }
        Ok(())
    }

    /// The layer container `id` holds a reference on, as recorded in its row.
    pub fn container_top(&self, id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT top_cache FROM containers WHERE id = ?1",
                [id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner)
                if inner.is::<CorruptDigest>() =>
            {
                let c = inner.downcast::<CorruptDigest>().expect("checked by is()");
                self.corrupt(*c)
            }
            e => Error::Database {
                path: self.path.clone(),
                source: e,
            },
        }
    }

    fn corrupt(&self, c: CorruptDigest) -> Error {
        Error::CorruptRow(Box::new(CorruptRow {
            path: self.path.clone(),
            table: c.table,
            key: c.key,
            column: c.column,
            value: c.value,
            reason: c.reason,
        }))
    }

    /// The digests in one column of rows that are keyed by those same digests.
    fn digests(&self, table: &'static str, ids: Vec<String>) -> Result<Vec<Digest>> {
        ids.into_iter()
            .map(|s| {
                dig(table, &s, "id", Some(s.clone()))
                    .map(|d| d.expect("Some in, Some out"))
                    .map_err(|c| self.corrupt(c))
            })
            .collect()
    }

    /// Runs `f` in one immediate transaction.
    pub fn tx<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T> {
        let path = self.path.clone();
        let map = |e| Error::Database {
            path: path.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map)?;
        let v = f(&tx).map_err(map)?;
        tx.commit().map_err(map)?;
        Ok(v)
    }

    fn layer_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<LayerRow> {
        let cache_id: String = row.get(0)?;
        let dig = |idx, column| dig_col(row, idx, "layers", &cache_id, column);
        Ok(LayerRow {
            chain_id: dig(1, "chain_id")?,
            diff_id: dig(2, "diff_id")?,
            parent_cache: row.get(3)?,
            depth: row.get::<_, i64>(4)? as usize,
            size: row.get::<_, i64>(5)? as u64,
            tar_size: row.get::<_, i64>(6)? as u64,
            blob_digest: dig(7, "blob_digest")?,
            blob_size: row.get::<_, i64>(8)? as u64,
            media_type: row.get(9)?,
            refcount: row.get::<_, i64>(10)? as u64,
            incomplete: row.get::<_, i64>(11)? != 0,
            cache_id,
        })
    }

    const LAYER_COLS: &'static str = "cache_id, chain_id, diff_id, parent_cache, depth, size, \
        tar_size, blob_digest, blob_size, media_type, refcount, incomplete";

    /// A layer by cache ID.
    pub fn layer(&self, cache_id: &str) -> Result<Option<LayerRow>> {
        let sql = format!(
            "SELECT {} FROM layers WHERE cache_id = ?1",
            Self::LAYER_COLS
        );
        self.conn
            .query_row(&sql, [cache_id], Self::layer_from)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A complete layer by chain ID.
    pub fn layer_by_chain(&self, chain: &Digest) -> Result<Option<LayerRow>> {
        let sql = format!(
            "SELECT {} FROM layers WHERE chain_id = ?1 AND incomplete = 0",
            Self::LAYER_COLS
        );
        self.conn
            .query_row(&sql, [chain.to_string()], Self::layer_from)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every layer row.
    pub fn layers(&self) -> Result<Vec<LayerRow>> {
        let sql = format!(
            "SELECT {} FROM layers ORDER BY depth, cache_id",
            Self::LAYER_COLS
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], Self::layer_from)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Layers a crash left incomplete, deepest first.
    pub fn incomplete_layers(&self) -> Result<Vec<LayerRow>> {
        let mut v: Vec<LayerRow> = self
            .layers()?
            .into_iter()
            .filter(|l| l.incomplete)
            .collect();
        v.sort_by_key(|l| std::cmp::Reverse(l.depth));
        Ok(v)
    }

    /// Number of layers whose parent is `cache_id`.
    pub fn children(&self, cache_id: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM layers WHERE parent_cache = ?1",
                [cache_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn image_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
        let id: String = row.get(0)?;
        Ok(ImageRow {
            id: dig_col(row, 0, "images", &id, "id")?.expect("an id column is NOT NULL"),
            top_cache: row.get(1)?,
            parent_image: dig_col(row, 2, "images", &id, "parent_image")?,
            size: row.get::<_, i64>(3)? as u64,
            created: row.get(4)?,
        })
    }

    /// An image by ID.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRow>> {
        self.conn
            .query_row(
                "SELECT id, top_cache, parent_image, size, created FROM images WHERE id = ?1",
                [id.to_string()],
                Self::image_from,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, top_cache, parent_image, size, created FROM images ORDER BY id")
            .map_err(|e| self.err(e))?;
        st.query_map([], Self::image_from)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// Images whose ID starts with `prefix` (hex, without algorithm).
    pub fn images_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let like = format!("sha256:{prefix}%");
        let mut st = self
            .conn
            .prepare("SELECT id FROM images WHERE id LIKE ?1")
            .map_err(|e| self.err(e))?;
        let v: Vec<String> = st
            .query_map([like], |r| r.get(0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        self.digests("images", v)
    }

    /// The image a tag points at.
    pub fn tag(&self, reference: &str) -> Result<Option<Digest>> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT image_id FROM tags WHERE reference = ?1",
                [reference],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        dig("tags", reference, "image_id", s).map_err(|c| self.corrupt(c))
    }

    /// Tags of an image, as (reference, repository).
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT reference, repo FROM tags WHERE image_id = ?1 ORDER BY reference")
            .map_err(|e| self.err(e))?;
        st.query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// Repository digests of an image (`repo@sha256:...`: the manifests it was pulled
    /// or pushed as), sorted.
    pub fn repo_digests_of(&self, id: &Digest) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT reference FROM repo_digests WHERE image_id = ?1 ORDER BY reference")
            .map_err(|e| self.err(e))?;
        st.query_map([id.to_string()], |r| r.get(0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// Images whose parent image is `id`.
    pub fn child_images(&self, id: &Digest) -> Result<Vec<Digest>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM images WHERE parent_image = ?1")
            .map_err(|e| self.err(e))?;
        let v: Vec<String> = st
            .query_map([id.to_string()], |r| r.get(0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        self.digests("images", v)
    }

    /// Containers using an image.
    pub fn containers_of(&self, id: &Digest) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM containers WHERE image_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        st.query_map([id.to_string()], |r| r.get(0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// A container's (image, cache id, incomplete).
    pub fn container(&self, id: &str) -> Result<Option<(Option<Digest>, String, bool)>> {
        self.conn
            .query_row(
                "SELECT image_id, cache_id, incomplete FROM containers WHERE id = ?1",
                [id],
                |r| {
                    let image = dig_col(r, 0, "containers", id, "image_id")?;
                    Ok((image, r.get(1)?, r.get::<_, i64>(2)? != 0))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The containers still incomplete (a crash cut their create or removal short) as
    /// (id, cache id).
    pub fn incomplete_containers(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, cache_id FROM containers WHERE incomplete != 0 ORDER BY id")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// Every container row: (ID, cache ID, incomplete).
    pub fn containers(&self) -> Result<Vec<(String, String, bool)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, cache_id, incomplete FROM containers ORDER BY id")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }
}

/// Inserts an incomplete layer row.
pub(crate) fn insert_incomplete_layer(
    tx: &Transaction<'_>,
    cache_id: &str,
    parent: Option<&str>,
    depth: usize,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO layers(cache_id, parent_cache, depth, incomplete) VALUES (?1, ?2, ?3, 1)",
        params![cache_id, parent, depth as i64],
    )?;
    Ok(())
}

/// Gives an incomplete layer (staged with no parent) its parent and depth.
pub(crate) fn set_layer_parent(
    tx: &Transaction<'_>,
    cache_id: &str,
    parent: Option<&str>,
    depth: usize,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE layers SET parent_cache = ?2, depth = ?3 WHERE cache_id = ?1 AND incomplete = 1",
        params![cache_id, parent, depth as i64],
    )?;
    Ok(())
}

/// Fields that complete a layer.
pub(crate) struct Completed<'a> {
    pub chain_id: &'a Digest,
    pub diff_id: &'a Digest,
    pub size: u64,
    pub tar_size: u64,
    pub blob: Option<(&'a Digest, u64, &'a str)>,
}

pub(crate) fn complete_layer(
    tx: &Transaction<'_>,
    cache_id: &str,
    c: &Completed<'_>,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE layers SET chain_id = ?2, diff_id = ?3, size = ?4, tar_size = ?5, blob_digest = ?6,
         blob_size = ?7, media_type = ?8, incomplete = 0 WHERE cache_id = ?1",
        params![
            cache_id,
            c.chain_id.to_string(),
            c.diff_id.to_string(),
            c.size as i64,
            c.tar_size as i64,
            c.blob.map(|b| b.0.to_string()),
            c.blob.map_or(0, |b| b.1 as i64),
            c.blob.map(|b| b.2),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_with_the_old_container_foreign_key_are_migrated() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-meta")
            .tempdir()
            .unwrap();
        let path = dir.path().join("metadata.db");
        {
            // the schema as an earlier version made it
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE images(id TEXT PRIMARY KEY, top_cache TEXT, parent_image TEXT,
                     size INTEGER NOT NULL DEFAULT 0, created TEXT);
                 CREATE TABLE containers(id TEXT PRIMARY KEY,
                     image_id TEXT REFERENCES images(id), cache_id TEXT NOT NULL,
                     incomplete INTEGER NOT NULL DEFAULT 1);
                 INSERT INTO images(id) VALUES ('sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
                 INSERT INTO containers VALUES ('c1', 'sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'x-rw', 0);",
            )
            .unwrap();
        }
        let mut db = Db::open(&path).unwrap();
        // the container survived, and the image can now go while it stays
        assert!(db.container("c1").unwrap().is_some());
        db.tx(|tx| {
            tx.execute("DELETE FROM images WHERE id = 'sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'", [])
                .map(|_| ())
        })
        .unwrap();
        assert_eq!(db.container("c1").unwrap().unwrap().1, "x-rw");
        assert_eq!(
            db.container_top("c1").unwrap(),
            None,
            "old rows have no top yet"
        );
        // opening again finds nothing to migrate
        drop(db);
        Db::open(&path).unwrap();
    }
}
