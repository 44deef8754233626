//! COPY and ADD: sources from the context, a stage or an image, downloads and heredocs,
//! written into the step's container (or an empty directory for `--link`).

use super::*;

impl Shared<'_> {
    pub(super) fn copy_step(
        &self,
        st: &mut State,
        ins: &Instruction,
        spec: &CopySpec,
        is_add: bool,
        from: Option<Source>,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<()> {
        let word = if is_add { "ADD" } else { "COPY" };
        // where the sources come from: the context, another stage or an image
        let (src_image, mut holder): (Option<Digest>, Option<ContainerGuard>) = match &from {
            None => (None, None),
            Some(Source::Stage(i)) => (done.get(i).cloned(), None),
            Some(Source::Image(r)) => (
                Some(self.store.resolve(r).map_err(|_| {
                    self.step_err(ins, format!("{word} --from={r}: there is no stage named {r:?} and no image {r:?} in the store"))
                })?),
                None,
            ),
            Some(Source::Scratch) => (None, None),
        };
        let (src_root, ignore): (PathBuf, Option<&crate::ignore::Ignore>) = match &src_image {
            Some(img) => {
                let (g, root) = ContainerGuard::mounted(self.store, "longshore-build-src-", img)?;
                holder = Some(g);
                (root, None)
            }
            None => (
                self.context.root().to_path_buf(),
                Some(self.context.ignore()),
            ),
        };
        let env = st.expand_env();
        let expand = |w: &str| -> Result<String> {
            self.lex
                .process_word(w, &env)
                .map_err(|source| Error::Expand {
                    file: self.plan.file.clone(),
                    line: ins.line,
                    source,
                })
        };
        let dest_raw = expand(&spec.dest)?;
        let dest_is_dir_syntax =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = crate::ignore::clean(&if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", st.workdir().trim_end_matches('/'), dest_raw)
        });
        let dest = if dest_is_dir_syntax && dest != "/" {
            format!("{dest}/")
        } else {
            dest
        };
        // resolve sources
        let mut srcs: Vec<Src> = Vec::new();
        // heredocs and downloads: (name, content, mode, mtime)
        let mut heredoc_files: Vec<(String, Vec<u8>, u32, Option<u64>)> = Vec::new();
        for s in &spec.sources {
            if let Some(h) = spec.heredocs.iter().find(|h| {
                crate::parser::parse_heredoc(s)
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.name == h.name)
            }) {
                let body = if h.chomp {
                    chomp_heredoc_content(&h.content)
                } else {
                    h.content.clone()
                };
                let body = if h.expand {
                    self.lex.process_word(&body, &env).unwrap_or(body)
                } else {
                    body
                };
                heredoc_files.push((h.name.clone(), body.into_bytes(), 0o644, None));
                continue;
            }
            let s = expand(s)?;
            if s.contains("://") || s.starts_with("git@") {
                if !is_add {
                    return Err(self.step_err(
                        ins,
                        format!("COPY {s}: source can't be a URL for COPY (use ADD)"),
                    ));
                }
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(self.step_err(
                        ins,
                        format!("ADD {s}: git sources are not supported by longshore-build yet"),
                    ));
                }
                let f = self
                    .runner
                    .fetch(&s)
                    .map_err(|m| self.step_err(ins, format!("ADD failed: {m}")))?;
                if let Some(want) = &spec.checksum {
                    let got = format!("sha256:{}", hex::encode(Sha256::digest(&f.data)));
                    if !want.eq_ignore_ascii_case(&got) {
                        return Err(self.step_err(ins, format!("ADD {s}: digest mismatch: the download is {got}, --checksum wants {want}")));
                    }
                }
                let name = crate::fetch::url_file_name(&s).unwrap_or_default();
                if name.is_empty() && (dest_is_dir_syntax || spec.sources.len() > 1) {
                    return Err(self.step_err(ins, format!("ADD {s}: cannot determine a file name from the URL; give a file path as destination")));
                }
                // Docker: downloads get mode 0600 and Last-Modified as their time
                heredoc_files.push((name, f.data, 0o600, f.last_modified));
                continue;
            }
            if spec.checksum.is_some() {
                return Err(self.step_err(
                    ins,
                    "checksum can't be specified for non-HTTP(S) sources".into(),
                ));
            }
            let rel =
                context_rel(&s).map_err(|e| self.step_err(ins, format!("{word} failed: {e}")))?;
            let found = self.find_sources(&src_root, &rel, ignore)?;
            if found.is_empty() {
                let what = if has_glob(&rel) {
                    "no source files were specified".to_string()
                } else {
                    format!(
                        "file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
                    )
                };
                return Err(self.step_err(ins, format!("{word} failed: {what}")));
            }
            srcs.extend(found);
        }
        // --exclude: patterns relative to each source (a file source by its name); they
        // join the .dockerignore rules for this copy
        let filter: Option<crate::ignore::Ignore> = if spec.exclude.is_empty() {
            None
        } else {
            let pats: Vec<String> = spec
                .exclude
                .iter()
                .map(|p| expand(p))
                .collect::<Result<_>>()?;
            let mut ig = ignore.cloned().unwrap_or_default();
            let top = crate::ignore::Ignore::parse(&pats.join("\n"))?;
            srcs.retain(|s| s.path.is_dir() || !top.excludes(&s.base));
            for s in &srcs {
                if s.path.is_dir() {
                    for p in &pats {
                        ig.push(&if s.rel.is_empty() {
                            p.clone()
                        } else {
                            format!("{}/{p}", s.rel)
                        })?;
                    }
                }
            }
            if srcs.is_empty() && heredoc_files.is_empty() {
                return Err(self.step_err(
                    ins,
                    format!("{word} failed: every source is excluded by --exclude"),
                ));
            }
            Some(ig)
        };
        let ignore = filter.as_ref().or(ignore);
        // --parents: each source keeps its path (relative to the context or stage root)
        if spec.parents {
            for s in &mut srcs {
                s.base = s.rel.clone();
            }
        }
        let multi = spec.parents
            || srcs.len() + heredoc_files.len() > 1
            || spec.sources.iter().any(|s| has_glob(s));
        if srcs.len() + heredoc_files.len() > 1 && !dest_is_dir_syntax {
            return Err(self.step_err(ins, format!("When using {word} with more than one source file, the destination must be a directory and end with a /")));
        }
        // the cache key: the instruction, and every source's content, mode and name
        let mut h = Sha256::new();
        for s in &srcs {
            fsutil::hash_source(&mut h, s, ignore, &self.memo)?;
        }
        for (n, b, mode, _) in &heredoc_files {
            h.update(format!("extra {n} {mode:o} {}\n", b.len()).as_bytes());
            h.update(b);
        }
        let content = hex::encode(h.finalize());
        let kind = if srcs.len() == 1 && heredoc_files.is_empty() {
            if srcs[0].path.is_dir() { "dir" } else { "file" }
        } else {
            "multi"
        };
        let mut flags = String::new();
        if let Some(c) = &spec.chown {
            flags.push_str(&format!("--chown={} ", expand(c)?));
        }
        if let Some(c) = &spec.chmod {
            flags.push_str(&format!("--chmod={c} "));
        }
        if spec.link {
            flags.push_str("--link ");
        }
        if spec.parents {
            flags.push_str("--parents ");
        }
        for x in &spec.exclude {
            flags.push_str(&format!("--exclude={} ", expand(x)?));
        }
        let desc = format!("{word} {flags}{kind}:{content} in {dest}");
        let key = self.cache_key(st, &format!("{desc} from={src_image:?}"), Some(&content));
        let chown = spec.chown.as_deref().map(expand).transpose()?;
        let chmod = spec
            .chmod
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok());
        let unpack = is_add && spec.unpack != Some(false);
        let link_key = {
            let mut h = Sha256::new();
            h.update(
                format!(
                    "link v1 epoch {} {desc} from={src_image:?}\n{content}",
                    self.epoch
                )
                .as_bytes(),
            );
            hex::encode(h.finalize())
        };
        let r = self.cached_or(st, &key, |st| {
            let created_by = format!("/bin/sh -c #(nop) {desc} ");
            let work = |_cid: &str, rootfs: &Path| -> Result<()> {
                let (uid, gid) = match &chown {
                    Some(c) => fsutil::resolve_owner(rootfs, c)?,
                    None => (0, 0),
                };
                let attrs = Attrs { uid, gid, chmod };
                let into_dir = dest_is_dir_syntax
                    || multi
                    || resolve_in_root(rootfs, &dest, true).is_ok_and(|p| p.is_dir());
                if into_dir {
                    let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                    for s in &srcs {
                        if s.path.is_dir() {
                            let d = if spec.parents && !s.base.is_empty() {
                                fsutil::mkdir_in_root(
                                    rootfs,
                                    &format!("{}/{}", dest.trim_end_matches('/'), s.base),
                                    attrs,
                                )?
                            } else {
                                d.clone()
                            };
                            fsutil::copy_entry(rootfs, s, &d, ignore, attrs, true)?;
                        } else if unpack && fsutil::is_archive(&s.path) {
                            self.extract(&s.path, &d)?;
                        } else {
                            let inside = format!("{}/{}", dest.trim_end_matches('/'), s.base);
                            if let Some((parent, _)) = inside.rsplit_once('/') {
                                fsutil::mkdir_in_root(
                                    rootfs,
                                    parent,
                                    Attrs {
                                        chmod: None,
                                        ..attrs
                                    },
                                )?;
                            }
                            let t =
                                resolve_in_root(rootfs, &inside, false).ctx("resolve", &inside)?;
                            fsutil::copy_entry(rootfs, s, &t, ignore, attrs, false)?;
                        }
                    }
                    for (n, body, mode, mtime) in &heredoc_files {
                        let inside = format!("{}/{n}", dest.trim_end_matches('/'));
                        let t = resolve_in_root(rootfs, &inside, false).ctx("resolve", &inside)?;
                        write_file(&t, body, attrs, *mode, *mtime)?;
                    }
                } else {
                    let parent = match dest.rsplit_once('/') {
                        Some((p, _)) if !p.is_empty() => p.to_string(),
                        _ => "/".to_string(),
                    };
                    fsutil::mkdir_in_root(
                        rootfs,
                        &parent,
                        Attrs {
                            chmod: None,
                            ..attrs
                        },
                    )?;
                    let t = resolve_in_root(rootfs, &dest, false).ctx("resolve", &dest)?;
                    if let Some(s) = srcs.first() {
                        if s.path.is_dir() {
                            let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                            fsutil::copy_entry(rootfs, s, &d, ignore, attrs, true)?;
                        } else if unpack && fsutil::is_archive(&s.path) {
                            let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                            self.extract(&s.path, &d)?;
                        } else {
                            fsutil::copy_entry(rootfs, s, &t, ignore, attrs, false)?;
                        }
                    } else if let Some((_, body, mode, mtime)) = heredoc_files.first() {
                        write_file(&t, body, attrs, *mode, *mtime)?;
                    }
                }
                Ok(())
            };
            if spec.link {
                self.link_step(st, &created_by, &link_key, work)
            } else {
                self.container_step(st, &created_by, true, work)
            }
        });
        drop(holder.take());
        r
    }

    /// `ADD` of a local archive: extracted with libgraph's layer apply, which resolves every
    /// entry inside `dir`, so a hostile archive writes nothing outside it.
    fn extract(&self, archive: &Path, dir: &Path) -> Result<()> {
        let f = fs::File::open(archive).ctx("open", archive)?;
        let opts = ApplyOptions::new().whiteouts(WhiteoutMode::Delete);
        apply_layer(f, dir, &opts).map_err(|e| {
            Error::Context(format!("ADD {}: cannot extract: {e}", archive.display()))
        })?;
        Ok(())
    }

    /// The sources a (possibly wildcard) path names under `root`, resolved inside it and
    /// filtered by `.dockerignore`.
    pub(super) fn find_sources(
        &self,
        root: &Path,
        rel: &str,
        ignore: Option<&crate::ignore::Ignore>,
    ) -> Result<Vec<Src>> {
        let excluded = |r: &str| ignore.is_some_and(|i| !r.is_empty() && i.excludes(r));
        if !has_glob(rel) {
            if excluded(rel) && !ignore.is_some_and(|i| i.may_include_below(rel)) {
                return Ok(Vec::new());
            }
            let p = resolve_in_root(root, rel, true).ctx("resolve", rel)?;
            if fs::symlink_metadata(&p).is_err() {
                return Ok(Vec::new());
            }
            let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
            return Ok(vec![Src {
                path: p,
                rel: rel.to_string(),
                base,
            }]);
        }
        // expand element by element
        let mut cur: Vec<String> = vec![String::new()];
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            let mut next = Vec::new();
            for c in &cur {
                if has_glob(part) {
                    let dir = resolve_in_root(root, c, true).ctx("resolve", c)?;
                    let Ok(rd) = fs::read_dir(&dir) else { continue };
                    let mut names: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        if element_match(part, &n) {
                            next.push(if c.is_empty() { n } else { format!("{c}/{n}") });
                        }
                    }
                } else {
                    next.push(if c.is_empty() {
                        part.to_string()
                    } else {
                        format!("{c}/{part}")
                    });
                }
            }
            cur = next;
        }
        let mut out = Vec::new();
        for r in cur {
            if excluded(&r) {
                continue;
            }
            let p = resolve_in_root(root, &r, true).ctx("resolve", &r)?;
            if fs::symlink_metadata(&p).is_ok() {
                let base = r.rsplit('/').next().unwrap_or(&r).to_string();
                out.push(Src {
                    path: p,
                    rel: r,
                    base,
                });
            }
        }
        Ok(out)
    }
}

fn write_file(
    path: &Path,
    data: &[u8],
    attrs: Attrs,
    default_mode: u32,
    mtime: Option<u64>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(path)
        && !m.is_dir()
    {
        fs::remove_file(path).ctx("replace", path)?;
    }
    fs::write(path, data).ctx("write", path)?;
    fs::set_permissions(
        path,
        fs::Permissions::from_mode(attrs.chmod.unwrap_or(default_mode)),
    )
    .ctx("chmod", path)?;
    if let Some(t) = mtime {
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)))
            .ctx("set the time of", path)?;
    }
    std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid)).ctx("chown", path)
}
