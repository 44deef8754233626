//! Credentials in Docker's `config.json` format.
//!
//! `auths` entries hold base64 `user:password` in `auth`; `credHelpers` (per registry)
//! and `credsStore` (default) name `docker-credential-<name>` programs that speak the
//! docker-credential-helpers protocol (`get`/`store`/`erase` on stdin/stdout). Unknown
//! keys in the file are preserved; the file is written atomically with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::auth::Credentials;
use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A `config.json` credentials file.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
}

impl CredentialStore {
    /// Uses the file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CredentialStore {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// Looks for `docker-credential-<name>` helpers in `dir` before `$PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    fn helper_program(&self, helper: &str) -> PathBuf {
        let name = format!("docker-credential-{helper}");
        match &self.helper_dir {
            Some(d) if d.join(&name).is_file() => d.join(name),
            _ => PathBuf::from(name),
        }
    }

    /// `$LONGSHORE_CONFIG/config.json`, else `$HOME/.longshore/config.json`.
    pub fn default_location() -> Self {
        let dir = std::env::var_os("LONGSHORE_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".longshore")))
            .unwrap_or_else(|| PathBuf::from("/root/.longshore"));
        CredentialStore::new(dir.join("config.json"))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Credentials {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn load(&self) -> Result<Map<String, Value>> {
        match std::fs::read(&self.path) {
            Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(self.bad("not a JSON object")),
                Err(e) => Err(self.bad(format!("invalid JSON: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(self.bad(e.to_string())),
        }
    }

    fn save(&self, map: &Map<String, Value>) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.bad(e.to_string()))?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let data = serde_json::to_vec_pretty(&Value::Object(map.clone()))
            .map_err(|e| self.bad(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.bad(e.to_string())
        })
    }

    /// The key for `registry` in `auths` and helper lookups.
    pub fn server_key(registry: &str) -> String {
        if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_AUTH_KEY.to_string()
        } else {
            registry.to_string()
        }
    }

    fn helper_for(map: &Map<String, Value>, key: &str) -> Option<String> {
        map.get("credHelpers")
            .and_then(|h| h.get(key))
            .or_else(|| map.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Credentials for `registry`, if any are stored.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let map = self.load()?;
        let key = Self::server_key(registry);
        if let Some(helper) = Self::helper_for(&map, &key) {
            return helper_get(&self.helper_program(&helper), &helper, &key);
        }
        let Some(entry) = map.get("auths").and_then(|a| a.get(&key)) else {
            return Ok(None);
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str)
            && !auth.is_empty()
        {
            let raw = B64
                .decode(auth.trim())
                .map_err(|_| self.bad(format!("auths.{key}.auth is not base64")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| self.bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| self.bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials::new(u, p)));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credentials::new(u, p))),
            _ => Ok(None),
        }
    }

    /// Saves credentials for `registry` (through its helper when one is configured).
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut map = self.load()?;
        let key = Self::server_key(registry);
        if let Some(helper) = Self::helper_for(&map, &key) {
            let input =
                json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
            run_helper(
                &self.helper_program(&helper),
                &helper,
                "store",
                &key,
                input.to_string().as_bytes(),
            )?;
            // Docker keeps an empty entry so `docker info` lists the registry.
            let auths = map
                .entry("auths")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = auths {
                a.insert(key, json!({}));
            }
        } else {
            let auths = map
                .entry("auths")
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(a) = auths else {
                return Err(self.bad("\"auths\" is not an object"));
            };
            let auth = B64.encode(format!("{}:{}", creds.username, creds.password));
            a.insert(key, json!({ "auth": auth }));
        }
        self.save(&map)
    }

    /// Removes credentials for `registry`. Returns whether anything was removed.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let mut map = self.load()?;
        let key = Self::server_key(registry);
        let mut removed = false;
        if let Some(helper) = Self::helper_for(&map, &key) {
            run_helper(
                &self.helper_program(&helper),
                &helper,
                "erase",
                &key,
                key.as_bytes(),
            )?;
            removed = true;
        }
        if let Some(Value::Object(a)) = map.get_mut("auths") {
            removed |= a.remove(&key).is_some();
        }
        if removed {
            self.save(&map)?;
        }
        Ok(removed)
    }
}

fn helper_get(program: &Path, helper: &str, key: &str) -> Result<Option<Credentials>> {
    let out = match run_helper(program, helper, "get", key, key.as_bytes()) {
        Ok(out) => out,
        Err(Error::CredentialHelper { reason, .. })
            if reason.contains("credentials not found in native keychain") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_slice(&out).map_err(|e| Error::CredentialHelper {
        helper: helper.to_string(),
        op: "get",
        server: key.to_string(),
        reason: format!("invalid JSON answer: {e}"),
    })?;
    let u = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let s = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(u, s)))
}

fn run_helper(
    program: &Path,
    helper: &str,
    op: &'static str,
    server: &str,
    input: &[u8],
) -> Result<Vec<u8>> {
    let fail = |reason: String| Error::CredentialHelper {
        helper: helper.to_string(),
        op,
        server: server.to_string(),
        reason,
    };
    if !helper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(fail(
            "helper name has characters outside [A-Za-z0-9._-]".into(),
        ));
    }
    let mut child = Command::new(program)
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("writing its stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        return Err(fail(format!("{}: {msg}", out.status)));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn store_get_erase_roundtrip_keeps_other_keys_and_mode() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-creds")
            .tempdir()
            .unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"detachKeys":"ctrl-x","auths":{}}"#).unwrap();
        let cs = CredentialStore::new(&path);
        assert_eq!(cs.get("127.0.0.1:5000").unwrap(), None);
        cs.store("127.0.0.1:5000", &Credentials::new("u", "p:w"))
            .unwrap();
        cs.store("docker.io", &Credentials::new("hub", "x"))
            .unwrap();
        assert_eq!(
            cs.get("127.0.0.1:5000").unwrap(),
            Some(Credentials::new("u", "p:w"))
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["detachKeys"], "ctrl-x");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], B64.encode("u:p:w"));
        assert!(v["auths"][DOCKER_HUB_AUTH_KEY].is_object());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(cs.erase("127.0.0.1:5000").unwrap());
        assert!(!cs.erase("127.0.0.1:5000").unwrap());
        assert_eq!(cs.get("127.0.0.1:5000").unwrap(), None);
        assert_eq!(
            cs.get("docker.io").unwrap(),
            Some(Credentials::new("hub", "x"))
        );
    }

    #[test]
    fn credential_helpers_store_get_erase() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-creds")
            .tempdir()
            .unwrap();
        let helper = dir.path().join("docker-credential-lstest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nd=$(dirname \"$0\")\ncase \"$1\" in\n\
             store) cat > \"$d/secret.json\" ;;\n\
             get) read s; [ -f \"$d/secret.json\" ] && cat \"$d/secret.json\" && exit 0; \
             echo 'credentials not found in native keychain'; exit 1 ;;\n\
             erase) read s; rm -f \"$d/secret.json\" ;;\n\
             *) exit 2 ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers":{"reg.example:5000":"lstest"},"auths":{}}"#,
        )
        .unwrap();
        let cs = CredentialStore::new(&path).with_helper_dir(dir.path());
        assert_eq!(cs.get("reg.example:5000").unwrap(), None);
        cs.store("reg.example:5000", &Credentials::new("u", "tok"))
            .unwrap();
        // The secret went to the helper, not into config.json.
        let secret = std::fs::read_to_string(dir.path().join("secret.json")).unwrap();
        assert!(secret.contains("\"Secret\":\"tok\""), "{secret}");
        assert!(!std::fs::read_to_string(&path).unwrap().contains("tok"));
        assert_eq!(
            cs.get("reg.example:5000").unwrap(),
            Some(Credentials::new("u", "tok"))
        );
        // Other registries still use auths.
        cs.store("other:1", &Credentials::new("a", "b")).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("other:1"));
        assert!(cs.erase("reg.example:5000").unwrap());
        assert!(!dir.path().join("secret.json").exists());
        // credsStore applies to every registry; a missing helper is a clear error.
        std::fs::write(&path, r#"{"credsStore":"missing-helper"}"#).unwrap();
        let e = cs.get("x:1").unwrap_err().to_string();
        assert!(e.contains("docker-credential-missing-helper"), "{e}");
    }

    #[test]
    fn malformed_files_give_clear_errors() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-creds")
            .tempdir()
            .unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"r":{"auth":"%%%"}}}"#).unwrap();
        let e = CredentialStore::new(&path)
            .get("r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64"), "{e}");
        std::fs::write(&path, "[1,2").unwrap();
        let e = CredentialStore::new(&path)
            .get("r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid JSON"), "{e}");
    }
}
