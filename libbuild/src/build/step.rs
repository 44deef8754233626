//! The metadata instructions (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER, WORKDIR,
//! STOPSIGNAL, SHELL, ONBUILD, HEALTHCHECK, MAINTAINER, ARG) and the dispatch of every step.

use super::*;

impl Shared<'_> {
    pub(super) fn step(
        &self,
        st: &mut State,
        stage: &Stage,
        idx: Option<usize>,
        ins: &Instruction,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<()> {
        match &ins.kind {
            Kind::From { .. } => Err(self.step_err(ins, "FROM inside a stage".into())),
            Kind::Env(pairs) => {
                // every pair expands against the environment before the instruction
                // (`ENV abc=bye def=$abc` gives def the old abc), as in Docker
                let mut vals = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(st, ins, k)?;
                    let v = self.expand(st, ins, v)?;
                    if k.is_empty() {
                        return Err(self.step_err(ins, "ENV names can not be blank".into()));
                    }
                    vals.push((k, v));
                }
                let text: Vec<String> = vals.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.meta_step(st, format!("ENV {}", text.join(" ")), |st| {
                    for (k, v) in &vals {
                        st.set_env(k, v);
                    }
                })
            }
            Kind::Label(pairs) => {
                let mut vals = Vec::new();
                for (k, v) in pairs {
                    vals.push((self.expand(st, ins, k)?, self.expand(st, ins, v)?));
                }
                let text: Vec<String> = vals.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.meta_step(st, format!("LABEL {}", text.join(" ")), |st| {
                    if !st.config["config"]["Labels"].is_object() {
                        st.config["config"]["Labels"] = json!({});
                    }
                    for (k, v) in &vals {
                        st.config["config"]["Labels"][k] = json!(v);
                    }
                })
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                self.meta_step(st, format!("MAINTAINER {m}"), |st| {
                    st.config["author"] = json!(m);
                })
            }
            Kind::Cmd(c) | Kind::Entrypoint(c) => {
                let is_cmd = matches!(ins.kind, Kind::Cmd(_));
                let argv = match c {
                    CommandForm::Exec(a) => a.clone(),
                    CommandForm::Shell(s) => {
                        let mut v = st.shell();
                        v.push(s.clone());
                        v
                    }
                };
                let shown = serde_json::to_string(&argv).unwrap_or_default();
                let word = if is_cmd { "CMD" } else { "ENTRYPOINT" };
                if is_cmd {
                    st.cmd_set = true;
                }
                // ENTRYPOINT resets a CMD inherited from the base, not one this stage set
                let reset_cmd = !is_cmd && !st.cmd_set;
                self.meta_step(st, format!("{word} {shown}"), |st| {
                    if is_cmd {
                        st.config["config"]["Cmd"] = json!(argv);
                    } else {
                        st.config["config"]["Entrypoint"] = json!(argv);
                        if reset_cmd {
                            st.config["config"]["Cmd"] = Value::Null;
                        }
                    }
                })
            }
            Kind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    let p = self.expand(st, ins, p)?;
                    for one in p.split_whitespace() {
                        list.push(normalize_port(one).map_err(|m| self.step_err(ins, m))?);
                    }
                }
                list.sort();
                list.dedup();
                self.meta_step(st, format!("EXPOSE {}", list.join(" ")), |st| {
                    if !st.config["config"]["ExposedPorts"].is_object() {
                        st.config["config"]["ExposedPorts"] = json!({});
                    }
                    for p in &list {
                        st.config["config"]["ExposedPorts"][p] = json!({});
                    }
                })
            }
            Kind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, ins, v)?;
                    if v.trim().is_empty() {
                        return Err(self
                            .step_err(ins, "VOLUME specified can not be an empty string".into()));
                    }
                    list.push(v);
                }
                self.meta_step(st, format!("VOLUME [{}]", list.join(" ")), |st| {
                    if !st.config["config"]["Volumes"].is_object() {
                        st.config["config"]["Volumes"] = json!({});
                    }
                    for v in &list {
                        st.config["config"]["Volumes"][v] = json!({});
                    }
                })
            }
            Kind::User(u) => {
                let u = self.expand(st, ins, u)?;
                self.meta_step(st, format!("USER {u}"), |st| {
                    st.config["config"]["User"] = json!(u);
                })
            }
            Kind::Workdir(w) => {
                let w = self.expand(st, ins, w)?;
                let path = if w.starts_with('/') {
                    crate::ignore::clean(&w)
                } else {
                    crate::ignore::clean(&format!("{}/{w}", st.workdir()))
                };
                // the directory is made now (as BuildKit does), in a layer only when it was
                // missing
                let desc = format!("WORKDIR {path}");
                let key = self.cache_key(st, &desc, None);
                self.cached_or(st, &key, |st| {
                    st.config["config"]["WorkingDir"] = json!(path);
                    self.container_step(
                        st,
                        &format!("/bin/sh -c #(nop) {desc}"),
                        false,
                        |_, rootfs| {
                            fsutil::mkdir_in_root(rootfs, &path, Attrs::default()).map(|_| ())
                        },
                    )
                })
            }
            Kind::Stopsignal(s) => {
                let s = self.expand(st, ins, s)?;
                self.meta_step(st, format!("STOPSIGNAL {s}"), |st| {
                    st.config["config"]["StopSignal"] = json!(s);
                })
            }
            Kind::Shell(v) => {
                let v = v.clone();
                let shown = serde_json::to_string(&v).unwrap_or_default();
                self.meta_step(st, format!("SHELL {shown}"), |st| {
                    st.config["config"]["Shell"] = json!(v);
                })
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                self.meta_step(st, format!("ONBUILD {t}"), |st| {
                    let mut v = st.config["config"]["OnBuild"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    v.push(json!(t));
                    st.config["config"]["OnBuild"] = Value::Array(v);
                })
            }
            Kind::Healthcheck(h) => {
                let (value, shown) = match h {
                    Health::None => (json!({"Test": ["NONE"]}), "NONE".to_string()),
                    Health::Cmd {
                        cmd,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test: Vec<String> = match cmd {
                            CommandForm::Exec(a) => std::iter::once("CMD".to_string())
                                .chain(a.iter().cloned())
                                .collect(),
                            CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let mut v = json!({"Test": test});
                        let dur = |s: &Option<String>| -> Result<Option<u64>> {
                            s.as_ref()
                                .map(|d| {
                                    crate::instructions::parse_duration(d)
                                        .map(|d| d.as_nanos() as u64)
                                        .map_err(|m| self.step_err(ins, m))
                                })
                                .transpose()
                        };
                        for (k, d) in [
                            ("Interval", interval),
                            ("Timeout", timeout),
                            ("StartPeriod", start_period),
                            ("StartInterval", start_interval),
                        ] {
                            if let Some(ns) = dur(d)? {
                                v[k] = json!(ns);
                            }
                        }
                        if let Some(r) = retries {
                            v["Retries"] = json!(r);
                        }
                        let shown = serde_json::to_string(&v["Test"]).unwrap_or_default();
                        (v, shown)
                    }
                };
                self.meta_step(st, format!("HEALTHCHECK {shown}"), |st| {
                    st.config["config"]["Healthcheck"] = value;
                })
            }
            Kind::Arg(args) => {
                let mut vals = Vec::new();
                for (k, default) in args {
                    self.declared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(k.clone());
                    let v = match (self.opts.build_args.get(k), default) {
                        (Some(b), _) => Some(b.clone()),
                        (None, Some(d)) => Some(self.expand(st, ins, d)?),
                        // an ARG without default takes the global value, or the
                        // automatic platform value
                        (None, None) => self
                            .plan
                            .global_args
                            .iter()
                            .rfind(|(g, _)| g == k)
                            .and_then(|(_, v)| v.clone())
                            .or_else(|| {
                                crate::plan::platform_args()
                                    .into_iter()
                                    .find(|(p, _)| p == k)
                                    .map(|(_, v)| v)
                            }),
                    };
                    vals.push((k.clone(), v));
                }
                // ARG changes nothing in the image; it only brings values into scope
                st.args.extend(vals);
                if let Some(id) = &st.image {
                    self.say(&format!(" ---> {}\n", short(id)));
                }
                Ok(())
            }
            Kind::Run { .. } => self.run_step(st, stage, idx, ins, done),
            Kind::Copy(spec) | Kind::Add(spec) => {
                let is_add = matches!(ins.kind, Kind::Add(_));
                let from = idx.and_then(|i| stage.copy_from.get(&i)).cloned();
                self.copy_step(st, ins, spec, is_add, from, done)
            }
        }
    }
}

/// `80` → `80/tcp`; checks the port and protocol.
pub(super) fn normalize_port(p: &str) -> std::result::Result<String, String> {
    let (port, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let valid = match port.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(port),
    };
    if !valid {
        return Err(format!("invalid containerPort: {port}"));
    }
    Ok(format!("{port}/{proto}"))
}
