//! Client mode: the commands against a daemon's Engine API (`-H`, `LONGSHORE_HOST`,
//! `DOCKER_HOST`). Each command sends docker's requests and prints the answer with the
//! same printing code as in process, so the output is the same either way. A command not
//! wired here fails with "not supported against a daemon yet"; none runs in process.

use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::client::{Client, ClientError, ReqBody, enc};
use crate::{
    Cmd, ContainerCmd, Failure, ImageCmd, NetworkCmd, Res, RunOpts, SystemCmd, VolumeCmd, fail,
    progress,
};

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure {
            code: 125,
            msg: if e.status == 0 {
                e.message
            } else {
                format!("Error response from daemon: {}", e.message)
            },
        }
    }
}

fn unsupported(what: &str) -> Failure {
    fail(format!(
        "longshore {what}: not supported against a daemon yet (run it without -H/LONGSHORE_HOST/DOCKER_HOST to use the engine in process)"
    ))
}

/// `?a=1&b=x` from pairs (empty values left out).
fn query(pairs: &[(&str, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn flag(b: bool) -> String {
    if b { "1".into() } else { String::new() }
}

/// The API's `filters` parameter.
fn filters_json(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        if let Some(a) = m
            .entry(k.clone())
            .or_insert_with(|| Value::Array(vec![]))
            .as_array_mut()
        {
            a.push(Value::String(v.clone()));
        }
    }
    Value::Object(m).to_string()
}

/// Runs `f` on each name, printing it or the daemon's error (exit 1 if any failed).
fn each(names: Vec<String>, f: impl Fn(&str) -> Result<(), ClientError>) -> Res<u8> {
    let mut failed = false;
    for n in names {
        match f(&n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{}", Failure::from(e).msg);
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Runs `cmd` against the daemon.
pub fn run(c: &Client, config_dir: &Path, cmd: Cmd) -> Res<u8> {
    match cmd {
        Cmd::Version { format } => {
            let v = c.get("/version")?;
            crate::print_version(&v, format)
        }
        Cmd::Info { format } => crate::print_info(&c.get("/info")?, format),
        Cmd::Ps(o) | Cmd::Container(ContainerCmd::Ls(o)) => {
            let lo = crate::ps_options(&o)?;
            let path = format!(
                "/containers/json{}",
                query(&[
                    ("all", flag(lo.all)),
                    ("limit", lo.limit.map(|n| n.to_string()).unwrap_or_default()),
                    ("filters", filters_json(&lo.filters)),
                    ("size", flag(lo.size)),
                ])
            );
            let list: Vec<longshore_engine::Summary> = serde_json::from_value(c.get(&path)?)
                .map_err(|e| fail(format!("the daemon's container list: {e}")))?;
            crate::print_ps(&list, o)
        }
        Cmd::Images(o) | Cmd::Image(ImageCmd::Ls(o)) => {
            let filters = crate::images_filters(&o)?;
            let path = format!(
                "/images/json{}",
                query(&[("all", flag(o.all)), ("filters", filters_json(&filters))])
            );
            let list: Vec<longshore_engine::ImageSummary> =
                serde_json::from_value(c.get(&path)?)
                    .map_err(|e| fail(format!("the daemon's image list: {e}")))?;
            crate::print_images(&list, o)
        }
        Cmd::Inspect {
            format,
            kind,
            size,
            names,
        } => {
            let mut out = Vec::new();
            let mut failed = None;
            for n in &names {
                let cpath = format!(
                    "/containers/{}/json{}",
                    enc(n),
                    if size { "?size=1" } else { "" }
                );
                let ipath = format!("/images/{n}/json");
                let r = match kind.as_deref() {
                    Some("container") => c.get(&cpath),
                    Some("image") => c.get(&ipath),
                    Some(k) => {
                        return Err(fail(format!("\"{k}\" is not a valid value for --type")));
                    }
                    None => c.get(&cpath).or_else(|e| {
                        if e.status == 404 {
                            c.get(&ipath)
                        } else {
                            Err(e)
                        }
                    }),
                };
                match r {
                    Ok(v) => out.push(v),
                    Err(e) if e.status == 404 => {
                        failed = Some(format!("Error: No such object: {n}"))
                    }
                    Err(e) => failed = Some(Failure::from(e).msg),
                }
            }
            crate::print_inspect(out, failed, format)
        }
        Cmd::Run(o) => run_container(c, config_dir, o, true),
        Cmd::Create(o) => run_container(c, config_dir, o, false),
        Cmd::Start {
            attach,
            interactive,
            detach_keys,
            containers,
        } => {
            if attach || interactive {
                let v = c.get(&format!("/containers/{}/json", enc(&containers[0])))?;
                let id = v["Id"].as_str().unwrap_or_default().to_string();
                let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
                return attached_start(
                    c,
                    &id,
                    interactive,
                    tty,
                    true,
                    detach_keys.as_deref(),
                    "next-exit",
                    true,
                );
            }
            each(containers, |n| {
                c.post(&format!("/containers/{}/start", enc(n))).map(|_| ())
            })
            .and_then(|code| {
                if code != 0 {
                    Err(fail("Error: failed to start containers"))
                } else {
                    Ok(0)
                }
            })
        }
        Cmd::Stop {
            time,
            signal,
            containers,
        } => each(containers, |n| {
            let q = query(&[
                ("t", time.map(|t| t.to_string()).unwrap_or_default()),
                ("signal", signal.clone().unwrap_or_default()),
            ]);
            c.post(&format!("/containers/{}/stop{q}", enc(n)))
                .map(|_| ())
        }),
        Cmd::Restart {
            time,
            signal,
            containers,
        } => each(containers, |n| {
            let q = query(&[
                ("t", time.map(|t| t.to_string()).unwrap_or_default()),
                ("signal", signal.clone().unwrap_or_default()),
            ]);
            c.post(&format!("/containers/{}/restart{q}", enc(n)))
                .map(|_| ())
        }),
        Cmd::Kill { signal, containers } => each(containers, |n| {
            let q = query(&[("signal", signal.clone())]);
            c.post(&format!("/containers/{}/kill{q}", enc(n)))
                .map(|_| ())
        }),
        Cmd::Pause { containers } => each(containers, |n| {
            c.post(&format!("/containers/{}/pause", enc(n))).map(|_| ())
        }),
        Cmd::Unpause { containers } => each(containers, |n| {
            c.post(&format!("/containers/{}/unpause", enc(n)))
                .map(|_| ())
        }),
        Cmd::Rm {
            force,
            volumes,
            link,
            containers,
        } => each(containers, |n| {
            let q = query(&[
                ("force", flag(force)),
                ("v", flag(volumes)),
                ("link", flag(link)),
            ]);
            c.request(
                "DELETE",
                &format!("/containers/{}{q}", enc(n)),
                ReqBody::Empty,
                &[],
            )
            .map(|_| ())
        }),
        Cmd::Wait { containers } => {
            let mut failed = false;
            for n in containers {
                match c.post(&format!("/containers/{}/wait", enc(&n))) {
                    Ok(v) => println!("{}", v["StatusCode"].as_i64().unwrap_or(0)),
                    Err(e) => {
                        eprintln!("{}", Failure::from(e).msg);
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Cmd::Rename {
            container,
            new_name,
        } => {
            c.post(&format!(
                "/containers/{}/rename{}",
                enc(&container),
                query(&[("name", new_name)])
            ))?;
            Ok(0)
        }
        Cmd::Logs {
            follow,
            timestamps,
            since,
            until,
            tail,
            details,
            container,
        } => {
            let v = c.get(&format!("/containers/{}/json", enc(&container)))?;
            let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
            if tail != "all" && tail.parse::<i64>().is_err() {
                return Err(fail(format!("invalid value for --tail: {tail:?}")));
            }
            let q = query(&[
                ("stdout", "1".into()),
                ("stderr", "1".into()),
                ("follow", flag(follow)),
                ("timestamps", flag(timestamps)),
                ("details", flag(details)),
                ("since", since.unwrap_or_default()),
                ("until", until.unwrap_or_default()),
                ("tail", tail),
            ]);
            let r = c.request(
                "GET",
                &format!("/containers/{}/logs{q}", enc(&container)),
                ReqBody::Empty,
                &[],
            )?;
            copy_stream(r, tty)?;
            Ok(0)
        }
        Cmd::Exec {
            detach,
            interactive,
            tty,
            user,
            workdir,
            env,
            env_file: _,
            privileged,
            detach_keys,
            container,
            cmd,
        } => {
            let body = json!({
                "DetachKeys": detach_keys.clone().unwrap_or_default(),
                "AttachStdin": interactive && !detach,
                "AttachStdout": !detach,
                "AttachStderr": !detach,
                "Tty": tty && !detach,
                "Cmd": cmd,
                "Env": resolve_env(env),
                "User": user.unwrap_or_default(),
                "WorkingDir": workdir.unwrap_or_default(),
                "Privileged": privileged,
            });
            let created = c
                .request(
                    "POST",
                    &format!("/containers/{}/exec", enc(&container)),
                    ReqBody::Json(&body),
                    &[],
                )?
                .json()?;
            let id = created["Id"].as_str().unwrap_or_default().to_string();
            if detach {
                c.request(
                    "POST",
                    &format!("/exec/{id}/start"),
                    ReqBody::Json(&json!({"Detach": true, "Tty": false})),
                    &[],
                )?;
                return Ok(0);
            }
            let up = c
                .upgrade(
                    "POST",
                    &format!("/exec/{id}/start"),
                    Some(&json!({"Detach": false, "Tty": tty})),
                )
                .map_err(|e| Failure {
                    code: start_exit_code(&e.message),
                    msg: format!("Error response from daemon: {}", e.message),
                })?
                .into_upgraded();
            let rc = c.clone();
            let rid = id.clone();
            crate::term::relay(
                up,
                interactive,
                tty,
                false,
                detach_keys.as_deref(),
                move |h, w| {
                    let _ = rc.post(&format!("/exec/{rid}/resize?h={h}&w={w}"));
                },
                |_| {},
            )?;
            let v = c.get(&format!("/exec/{id}/json"))?;
            Ok(v["ExitCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8)
        }
        Cmd::Attach {
            no_stdin,
            sig_proxy,
            detach_keys,
            container,
        } => {
            let v = c.get(&format!("/containers/{}/json", enc(&container)))?;
            if v["State"]["Running"].as_bool() != Some(true) {
                return Err(fail(
                    "You cannot attach to a stopped container, start it first",
                ));
            }
            let id = v["Id"].as_str().unwrap_or_default().to_string();
            let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
            let stdin = v["Config"]["OpenStdin"].as_bool().unwrap_or(false) && !no_stdin;
            attached_start(
                c,
                &id,
                stdin,
                tty,
                sig_proxy,
                detach_keys.as_deref(),
                "not-running",
                false,
            )
        }
        Cmd::Port {
            container,
            private_port,
        } => {
            let v = c.get(&format!("/containers/{}/json", enc(&container)))?;
            let mut ports = Vec::new();
            if v["State"]["Running"].as_bool() == Some(true)
                && let Some(m) = v["NetworkSettings"]["Ports"].as_object()
            {
                for (k, bindings) in m {
                    for b in bindings.as_array().into_iter().flatten() {
                        ports.push((
                            k.clone(),
                            b["HostIp"].as_str().unwrap_or_default().to_string(),
                            b["HostPort"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
            }
            crate::print_ports(ports, private_port, &container)
        }
        Cmd::Top { container, ps_args } => {
            let v = c.get(&format!(
                "/containers/{}/top{}",
                enc(&container),
                query(&[("ps_args", ps_args.join(" "))])
            ))?;
            let strs = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            };
            let titles = strs(&v["Titles"]);
            let procs: Vec<Vec<String>> = v["Processes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(strs)
                .collect();
            crate::print_top(&titles, &procs);
            Ok(0)
        }
        Cmd::Diff { container } => {
            let v = c.get(&format!("/containers/{}/changes", enc(&container)))?;
            for ch in v.as_array().into_iter().flatten() {
                let k = match ch["Kind"].as_i64() {
                    Some(0) => "C",
                    Some(1) => "A",
                    _ => "D",
                };
                println!("{k} {}", ch["Path"].as_str().unwrap_or_default());
            }
            Ok(0)
        }
        Cmd::Export { output, container } => {
            if output.is_none() && crate::term::stdout_is_tty() {
                return Err(fail(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let r = c.request(
                "GET",
                &format!("/containers/{}/export", enc(&container)),
                ReqBody::Empty,
                &[],
            )?;
            write_out(r, output.as_deref())
        }
        Cmd::Save { output, images } => {
            if output.is_none() && crate::term::stdout_is_tty() {
                return Err(fail(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let q: Vec<String> = images.iter().map(|i| format!("names={}", enc(i))).collect();
            let r = c.request(
                "GET",
                &format!("/images/get?{}", q.join("&")),
                ReqBody::Empty,
                &[],
            )?;
            write_out(r, output.as_deref())
        }
        Cmd::Load { input, quiet } => {
            let mut src: Box<dyn Read> = match input {
                Some(p) => Box::new(std::fs::File::open(p)?),
                None => Box::new(io::stdin()),
            };
            // docker's habit: per-layer progress on a terminal only, else just the result
            let quiet = quiet || !io::stdout().is_terminal();
            let r = c.request(
                "POST",
                &format!("/images/load{}", query(&[("quiet", flag(quiet))])),
                ReqBody::Stream(&mut src, "application/x-tar"),
                &[],
            )?;
            messages(r, false).map(|_| 0)
        }
        Cmd::Import {
            change,
            message,
            file,
            reference,
        } => {
            let mut src: Box<dyn Read> = if file == "-" {
                Box::new(io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .map_err(|err| fail(format!("open {file}: {err}")))?,
                )
            };
            let mut q = vec![
                ("fromSrc", "-".to_string()),
                ("repo", reference.unwrap_or_default()),
                ("message", message.unwrap_or_default()),
            ];
            for ch in change {
                q.push(("changes", ch));
            }
            let v = c
                .request(
                    "POST",
                    &format!("/images/create{}", query(&q)),
                    ReqBody::Stream(&mut src, "application/x-tar"),
                    &[],
                )?
                .json()?;
            println!("{}", v["status"].as_str().unwrap_or_default());
            Ok(0)
        }
        Cmd::Pull {
            all_tags: true,
            platform,
            quiet,
            image,
        } => {
            crate::parse_platform(platform.as_deref())?;
            // no tag: the daemon pulls every tag of the repository
            let repo = crate::all_tags_repository(&image)?;
            let reference = pull(c, config_dir, &repo, platform.as_deref(), quiet)?;
            println!("{reference}");
            Ok(0)
        }
        Cmd::Pull {
            all_tags: false,
            platform,
            quiet,
            image,
        } => {
            crate::parse_platform(platform.as_deref())?;
            let reference = crate::pull_preamble(&image, quiet)?;
            let reference = pull(
                c,
                config_dir,
                &reference.to_string(),
                platform.as_deref(),
                quiet,
            )?;
            println!("{reference}");
            Ok(0)
        }
        Cmd::Push {
            all_tags,
            quiet,
            image,
        } => {
            // the API pushes every local tag of the repository when given no tag
            let (repo, tag) = if all_tags {
                (crate::all_tags_repository(&image)?, String::new())
            } else {
                match split_tag(&image) {
                    (repo, t) if t.is_empty() => (repo, "latest".to_string()),
                    rt => rt,
                }
            };
            let auth = registry_auth(config_dir, &image);
            let r = c.request(
                "POST",
                &format!("/images/{repo}/push{}", query(&[("tag", tag)])),
                ReqBody::Empty,
                &[("X-Registry-Auth", auth)],
            )?;
            let last = messages_collect(r, quiet)?;
            if quiet {
                if all_tags {
                    println!("{repo}");
                } else {
                    println!("{}", image_name(&image));
                }
            }
            let _ = last;
            Ok(0)
        }
        Cmd::Tag { source, target, .. } => {
            let (repo, tag) = split_tag(&target);
            c.post(&format!(
                "/images/{source}/tag{}",
                query(&[("repo", repo), ("tag", tag)])
            ))?;
            Ok(0)
        }
        Cmd::Rmi {
            force,
            no_prune,
            images,
        } => {
            let mut failed = false;
            for i in images {
                let q = query(&[("force", flag(force)), ("noprune", flag(no_prune))]);
                match c
                    .request("DELETE", &format!("/images/{i}{q}"), ReqBody::Empty, &[])
                    .and_then(|r| r.json())
                {
                    Ok(v) => {
                        for x in v.as_array().into_iter().flatten() {
                            if let Some(t) = x["Untagged"].as_str() {
                                println!("Untagged: {t}");
                            }
                            if let Some(d) = x["Deleted"].as_str() {
                                println!("Deleted: {d}");
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("{}", Failure::from(e).msg);
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Cmd::Cp {
            archive: _,
            follow_link: _,
            src,
            dest,
        } => crate::cmd_cp(c, &src, &dest),
        Cmd::Events {
            since,
            until,
            filter,
            format,
        } => {
            let since = since.as_deref().map(crate::event_time).transpose()?;
            let until = until.as_deref().map(crate::event_time).transpose()?;
            let filters = crate::parse_filters(&filter)?;
            let t = format
                .as_deref()
                .map(crate::format::Template::parse)
                .transpose()?;
            let q = query(&[
                ("since", since.map(|s| s.to_string()).unwrap_or_default()),
                ("until", until.map(|s| s.to_string()).unwrap_or_default()),
                ("filters", filters_json(&filters)),
            ]);
            let r = c.request("GET", &format!("/events{q}"), ReqBody::Empty, &[])?;
            let out = io::stdout();
            for line in io::BufRead::lines(io::BufReader::new(r)) {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let ev: longshore_engine::Event = serde_json::from_str(&line)
                    .map_err(|e| fail(format!("an event from the daemon: {e}")))?;
                let mut o = out.lock();
                if writeln!(o, "{}", crate::event_line(&ev, t.as_ref())).is_err()
                    || o.flush().is_err()
                {
                    break;
                }
            }
            Ok(0)
        }
        Cmd::Login {
            username,
            password,
            password_stdin,
            server,
            ..
        } => {
            let (server, creds) =
                crate::login_credentials(username, password, password_stdin, server)?;
            c.request(
                "POST",
                "/auth",
                ReqBody::Json(&json!({"username": creds.username, "password": creds.password, "serveraddress": server})),
                &[],
            )?;
            crate::save_login(config_dir, &server, &creds)
        }
        Cmd::Logout { server } => crate::logout(config_dir, server),
        Cmd::Search {
            limit,
            filter,
            format,
            no_trunc,
            term,
            ..
        } => {
            let q = query(&[
                ("term", term),
                ("limit", limit.map(|l| l.to_string()).unwrap_or_default()),
            ]);
            let v = c.get(&format!("/images/search{q}"))?;
            let rows = v.as_array().cloned().unwrap_or_default();
            crate::print_search(rows, &filter, format, no_trunc, limit)
        }
        Cmd::Volume(v) => volume(c, v),
        Cmd::Network(n) => network(c, n),
        Cmd::Commit {
            author,
            message,
            change,
            pause,
            container,
            repository,
        } => {
            if !change.is_empty() {
                return Err(fail(
                    "commit --change is not supported yet: commit, then import --change",
                ));
            }
            let (repo, tag) = repository.as_deref().map(split_tag).unwrap_or_default();
            let v = c.post(&format!(
                "/commit{}",
                query(&[
                    ("container", container),
                    ("repo", repo),
                    ("tag", tag),
                    ("author", author.unwrap_or_default()),
                    ("comment", message.unwrap_or_default()),
                    ("pause", if pause { "1".into() } else { "0".into() }),
                ])
            ))?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            Ok(0)
        }
        Cmd::History {
            no_trunc,
            quiet,
            format,
            human,
            image,
        } => {
            let v = c.get(&format!("/images/{image}/history"))?;
            let rows = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| crate::HistoryRow {
                    id: x["Id"]
                        .as_str()
                        .filter(|i| *i != "<missing>")
                        .map(String::from),
                    created: x["Created"].as_i64().filter(|t| *t > 0),
                    created_by: x["CreatedBy"].as_str().unwrap_or_default().to_string(),
                    size: x["Size"].as_u64().unwrap_or(0),
                    comment: x["Comment"].as_str().unwrap_or_default().to_string(),
                })
                .collect();
            crate::print_history(rows, no_trunc, quiet, format, human)
        }
        Cmd::Update(u) => {
            let crate::UpdateOpts {
                memory,
                memory_swap,
                cpu_shares,
                cpus,
                cpuset_cpus,
                pids_limit,
                restart,
                cpu_period,
                cpu_quota,
                memory_reservation,
                blkio_weight,
                containers,
            } = u;
            let mut body = json!({
                "CpuPeriod": cpu_period.unwrap_or(0),
                "CpuQuota": cpu_quota.unwrap_or(0),
                "MemoryReservation": memory_reservation.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
                "BlkioWeight": blkio_weight.unwrap_or(0),
                "Memory": memory.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
                "MemorySwap": memory_swap.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
                "CpuShares": cpu_shares.unwrap_or(0),
                "NanoCpus": cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
                "CpusetCpus": cpuset_cpus.unwrap_or_default(),
                "PidsLimit": pids_limit.unwrap_or(0),
            });
            if let Some(r) = restart {
                let (name, n) = r.split_once(':').unwrap_or((&r, "0"));
                body["RestartPolicy"] =
                    json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)});
            }
            each(containers, |n| {
                let v = c
                    .request(
                        "POST",
                        &format!("/containers/{}/update", enc(n)),
                        ReqBody::Json(&body),
                        &[],
                    )?
                    .json()?;
                for w in v["Warnings"].as_array().into_iter().flatten() {
                    eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
                }
                Ok(())
            })
        }
        Cmd::Build(b) => build(c, config_dir, b),
        Cmd::Stats {
            no_stream,
            all,
            format,
            no_trunc,
            containers,
        } => {
            let ids: Vec<String> = if containers.is_empty() {
                let list = c.get(&format!("/containers/json{}", query(&[("all", flag(all))])))?;
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["Id"].as_str().map(String::from))
                    .collect()
            } else {
                containers
            };
            // one sample at a time (one-shot): the CPU use is worked out from two of
            // them as in process
            let sample = |id: &str| -> Res<Option<longshore_engine::StatsSample>> {
                let v = match c.get(&format!(
                    "/containers/{}/stats?stream=0&one-shot=1",
                    enc(id)
                )) {
                    Ok(v) => v,
                    Err(e) if e.status == 409 => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(Some(longshore_engine::StatsSample {
                    id: v["id"].as_str().unwrap_or(id).to_string(),
                    name: v["name"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    cpu_usage_ns: v["cpu_stats"]["cpu_usage"]["total_usage"]
                        .as_u64()
                        .unwrap_or(0),
                    memory_usage: v["memory_stats"]["usage"].as_u64().unwrap_or(0),
                    memory_limit: v["memory_stats"]["limit"].as_u64().unwrap_or(0),
                    pids: v["pids_stats"]["current"].as_u64().unwrap_or(0),
                }))
            };
            crate::print_stats(&sample, &ids, no_stream, format, no_trunc)
        }
        Cmd::Container(ContainerCmd::Prune { force, filter }) => {
            let q = prune_query(&filter, crate::CONTAINER_PRUNE_FILTERS, &[])?;
            if !crate::confirm(force, "This will remove all stopped containers.") {
                return Ok(0);
            }
            let v = c.post(&format!("/containers/prune{q}"))?;
            crate::print_pruned(
                "Deleted Containers:",
                &strings(&v["ContainersDeleted"]),
                v["SpaceReclaimed"].as_u64().unwrap_or(0),
            );
            Ok(0)
        }
        Cmd::Image(ImageCmd::Prune { all, force, filter }) => {
            let q = prune_query(&filter, crate::IMAGE_PRUNE_FILTERS, &[])?;
            let msg = if all {
                "This will remove all images without at least one container associated to them."
            } else {
                "This will remove all dangling images."
            };
            if !crate::confirm(force, msg) {
                return Ok(0);
            }
            let (deleted, space) = prune_images(c, all, &filter, &q)?;
            crate::print_pruned("Deleted Images:", &deleted, space);
            Ok(0)
        }
        Cmd::System(SystemCmd::Df { verbose, format }) => {
            crate::print_df(&disk_usage(&c.get("/system/df")?), verbose, format)
        }
        Cmd::System(SystemCmd::Prune {
            all,
            volumes,
            force,
            filter,
        }) => {
            crate::system_prune_filters(&filter, volumes)?;
            let q = prune_query(&filter, crate::CONTAINER_PRUNE_FILTERS, &[])?;
            if !crate::confirm(force, &crate::system_prune_warning(all, volumes)) {
                return Ok(0);
            }
            // docker's order: containers, networks, volumes, images
            let v = c.post(&format!("/containers/prune{q}"))?;
            let mut total = v["SpaceReclaimed"].as_u64().unwrap_or(0);
            crate::print_deleted("Deleted Containers:", &strings(&v["ContainersDeleted"]));
            let v = c.post(&format!("/networks/prune{q}"))?;
            crate::print_deleted("Deleted Networks:", &strings(&v["NetworksDeleted"]));
            if volumes {
                let v = c.post(&format!("/volumes/prune{q}"))?;
                total += v["SpaceReclaimed"].as_u64().unwrap_or(0);
                crate::print_deleted("Deleted Volumes:", &strings(&v["VolumesDeleted"]));
            }
            let (deleted, space) = prune_images(c, all, &filter, &q)?;
            total += space;
            crate::print_deleted("Deleted Images:", &deleted);
            println!("Total reclaimed space: {}", crate::human_size(total));
            Ok(0)
        }
        Cmd::Daemon { .. } | Cmd::Completion { .. } => Err(fail(
            "daemon and completion run locally, not against a daemon",
        )),
    }
}

/// A prune's `?filters=` from its `--filter`s (checked as in process: malformed or not
/// `allowed` is refused before anything is asked) plus `extra` pairs.
fn prune_query(flags: &[String], allowed: &[&str], extra: &[(String, String)]) -> Res<String> {
    crate::prune_filters(flags, allowed)?;
    let mut pairs = crate::parse_filters(flags)?;
    pairs.extend_from_slice(extra);
    Ok(query(&[("filters", filters_json(&pairs))]))
}

/// `POST /images/prune` (every unused image with `all`): docker's lines
/// (`untagged: x`, `deleted: sha256:...`) and the bytes freed.
fn prune_images(c: &Client, all: bool, filter: &[String], q: &str) -> Res<(Vec<String>, u64)> {
    let q = if all {
        prune_query(
            filter,
            crate::IMAGE_PRUNE_FILTERS,
            &[("dangling".into(), "false".into())],
        )?
    } else {
        q.to_string()
    };
    let v = c.post(&format!("/images/prune{q}"))?;
    let deleted: Vec<String> = v["ImagesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| {
            x["Untagged"]
                .as_str()
                .map(|t| format!("untagged: {t}"))
                .or_else(|| x["Deleted"].as_str().map(|d| format!("deleted: {d}")))
        })
        .collect();
    Ok((deleted, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
}

/// The engine's disk usage read back from `GET /system/df`.
fn disk_usage(v: &Value) -> longshore_engine::system::DiskUsage {
    use longshore_engine::system::{ContainerUsage, DiskUsage, ImageUsage, VolumeUsage};
    let u = |x: &Value| x.as_u64().unwrap_or(0);
    let i = |x: &Value| x.as_i64().unwrap_or(0);
    let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    DiskUsage {
        layers_size: u(&v["LayersSize"]),
        images: list("Images")
            .iter()
            .map(|x| ImageUsage {
                id: s(&x["Id"]),
                repo_tags: strings(&x["RepoTags"]),
                created: i(&x["Created"]),
                size: u(&x["Size"]),
                shared_size: u(&x["SharedSize"]),
                containers: i(&x["Containers"]),
            })
            .collect(),
        containers: list("Containers")
            .iter()
            .map(|x| ContainerUsage {
                id: s(&x["Id"]),
                names: strings(&x["Names"]),
                image: s(&x["Image"]),
                command: s(&x["Command"]),
                state: s(&x["State"]),
                status: s(&x["Status"]),
                size_rw: u(&x["SizeRw"]),
                local_volumes: i(&x["LocalVolumes"]),
                created: i(&x["Created"]),
            })
            .collect(),
        volumes: list("Volumes")
            .iter()
            .map(|x| VolumeUsage {
                name: s(&x["Name"]),
                ref_count: i(&x["UsageData"]["RefCount"]),
                size: u(&x["UsageData"]["Size"]),
            })
            .collect(),
    }
}

/// The name a Dockerfile from outside the context (or stdin) gets inside the context's
/// tar, as docker's client adds it.
const OUTSIDE_DOCKERFILE: &str = ".longshore-dockerfile";

/// `build` through the daemon (`POST /build`, the legacy builder's API): the context
/// directory sent as a tar as it is made (or a tar on stdin with `-`), the build's lines
/// as they come, its exit code on failure.
fn build(c: &Client, config_dir: &Path, b: crate::BuildOpts) -> Res<u8> {
    crate::build_checks(
        b.platform.as_deref(),
        &b.progress,
        b.output.as_deref(),
        &b.ssh,
    )?;
    if !b.secret.is_empty() {
        return Err(fail(
            "ERROR: build --secret needs BuildKit: the daemon's legacy build API (POST /build) carries no secrets; run the build without -H",
        ));
    }
    longshore_engine::build::BuildAuths::default().with_network(b.network.as_deref())?;
    // the Dockerfile: inside the context by its relative path, else added to the tar
    let mut extra: Option<Vec<u8>> = None;
    let dockerfile = match &b.file {
        None => "Dockerfile".to_string(),
        Some(f) if f.as_os_str() == "-" => {
            let mut s = Vec::new();
            io::stdin().read_to_end(&mut s)?;
            extra = Some(s);
            OUTSIDE_DOCKERFILE.into()
        }
        Some(f) if b.context == "-" => f.to_string_lossy().into_owned(),
        Some(f) => {
            let ctx = std::fs::canonicalize(&b.context)
                .map_err(|e| fail(format!("ERROR: context {}: {e}", b.context)))?;
            let abs = std::fs::canonicalize(f)
                .map_err(|e| fail(format!("ERROR: failed to read the Dockerfile: {e}")))?;
            match abs.strip_prefix(&ctx) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => {
                    extra = Some(std::fs::read(&abs)?);
                    OUTSIDE_DOCKERFILE.into()
                }
            }
        }
    };
    let mut buildargs = serde_json::Map::new();
    for a in &b.build_arg {
        match a.split_once('=') {
            Some((k, v)) => buildargs.insert(k.into(), json!(v)),
            // a bare name takes this environment's value, or none
            None => buildargs.insert(
                a.clone(),
                std::env::var(a).map(Value::from).unwrap_or(Value::Null),
            ),
        };
    }
    let mut labels = serde_json::Map::new();
    for l in &b.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.into(), json!(v));
    }
    let mut q: Vec<(&str, String)> = b.tag.iter().map(|t| ("t", t.clone())).collect();
    q.extend([
        ("dockerfile", dockerfile),
        ("buildargs", Value::Object(buildargs).to_string()),
        ("labels", Value::Object(labels).to_string()),
        ("cachefrom", json!(b.cache_from).to_string()),
        ("target", b.target.clone().unwrap_or_default()),
        ("nocache", flag(b.no_cache)),
        ("q", flag(b.quiet)),
        ("rm", if b.rm { "1".into() } else { "0".into() }),
        ("forcerm", flag(b.force_rm)),
        ("pull", flag(b.pull)),
        ("networkmode", b.network.clone().unwrap_or_default()),
        ("platform", b.platform.clone().unwrap_or_default()),
    ]);
    let path = format!("/build{}", query(&q));
    let mut body: Box<dyn Read + Send> = if b.context == "-" {
        Box::new(io::stdin())
    } else {
        let dir = std::path::PathBuf::from(&b.context);
        if !dir.is_dir() {
            return Err(fail(format!(
                "ERROR: unable to prepare context: path {:?} not found",
                b.context
            )));
        }
        if !b.quiet {
            println!(
                "Sending build context to Docker daemon  {}",
                progress::size4(crate::tar_size(&dir))
            );
        }
        let (r, w) = io::pipe()?;
        std::thread::spawn(move || {
            let mut t = tar::Builder::new(w);
            t.follow_symlinks(false);
            let _ = t.append_dir_all(".", &dir);
            if let Some(df) = extra {
                let mut h = tar::Header::new_gnu();
                h.set_size(df.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                let _ = t.append_data(&mut h, OUTSIDE_DOCKERFILE, &df[..]);
            }
            let _ = t.finish();
        });
        Box::new(r)
    };
    // the credentials of every registry config.json knows, for the base images' pulls
    let r = c.request(
        "POST",
        &path,
        ReqBody::Stream(&mut body, "application/x-tar"),
        &[("X-Registry-Config", registry_config(config_dir))],
    )?;
    let mut out = io::stdout();
    for line in io::BufRead::lines(io::BufReader::new(r)) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let m: Value = serde_json::from_str(&line)
            .map_err(|e| fail(format!("a message from the daemon: {e}")))?;
        if let Some(e) = m["error"].as_str() {
            let code = m["errorDetail"]["code"].as_i64().unwrap_or(1).clamp(1, 255) as u8;
            return Err(Failure {
                code,
                msg: format!("ERROR: {e}"),
            });
        }
        if let Some(s) = m["stream"].as_str() {
            out.write_all(s.as_bytes())?;
            out.flush()?;
        }
        if let (Some(p), Some(id)) = (&b.iidfile, m["aux"]["ID"].as_str()) {
            crate::write_iidfile(p, id)?;
        }
    }
    Ok(0)
}

/// A JSON array of strings.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

/// `repo[:tag]` split as the API's `tag` endpoints want it (a port is not a tag).
fn split_tag(r: &str) -> (String, String) {
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        return (name.to_string(), d.to_string());
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), String::new()),
    }
}

fn image_name(image: &str) -> String {
    match longshore_registry::Reference::parse(image) {
        Ok(r) if r.tag().is_none() && r.digest().is_none() => r
            .with_tag("latest")
            .map(|r| r.to_string())
            .unwrap_or_else(|_| image.to_string()),
        Ok(r) => r.to_string(),
        Err(_) => image.to_string(),
    }
}

/// `X-Registry-Config` of a build: each registry of `config.json`'s `auths` with its
/// credentials (through the credential store, so helpers answer too), base64 JSON as the
/// docker CLI sends it (empty: none).
fn registry_config(config_dir: &Path) -> String {
    use base64::Engine as _;
    let path = config_dir.join("config.json");
    let Some(v) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        return String::new();
    };
    let store = longshore_registry::CredentialStore::new(path);
    let mut m = serde_json::Map::new();
    for k in v["auths"].as_object().into_iter().flat_map(|o| o.keys()) {
        if let Ok(Some(c)) = store.get(k) {
            m.insert(
                k.clone(),
                json!({"username": c.username, "password": c.password, "serveraddress": k}),
            );
        }
    }
    if m.is_empty() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE.encode(Value::Object(m).to_string())
}

/// `X-Registry-Auth` for the registry of `image`, from `config.json` (empty: none).
fn registry_auth(config_dir: &Path, image: &str) -> String {
    use base64::Engine as _;
    let Ok(r) = longshore_registry::Reference::parse(image) else {
        return String::new();
    };
    let store = longshore_registry::CredentialStore::new(config_dir.join("config.json"));
    match store.get(r.domain()) {
        Ok(Some(c)) => base64::engine::general_purpose::URL_SAFE.encode(
            json!({"username": c.username, "password": c.password, "serveraddress": r.domain()})
                .to_string(),
        ),
        _ => String::new(),
    }
}

/// Pulls `reference` through the daemon, drawing its progress; returns the reference
/// pulled, normalised as the daemon reports it.
fn pull(
    c: &Client,
    config_dir: &Path,
    reference: &str,
    platform: Option<&str>,
    quiet: bool,
) -> Res<String> {
    let (repo, tag) = split_tag(reference);
    let auth = registry_auth(config_dir, reference);
    let r = c.request(
        "POST",
        &format!(
            "/images/create{}",
            query(&[
                ("fromImage", repo),
                ("tag", tag),
                ("platform", platform.unwrap_or_default().to_string())
            ])
        ),
        ReqBody::Empty,
        &[("X-Registry-Auth", auth)],
    )?;
    let statuses = messages_collect(r, quiet)?;
    Ok(statuses
        .iter()
        .rev()
        .find_map(|s| {
            s.strip_prefix("Status: ")?
                .rsplit_once(" for ")
                .map(|(_, r)| r.to_string())
        })
        .unwrap_or_else(|| image_name(reference)))
}

/// Shows a JSON message stream (pull, push, load); fails on its error message.
fn messages(r: crate::client::Response, quiet: bool) -> Res<()> {
    messages_collect(r, quiet).map(|_| ())
}

/// [`messages`], returning the statuses seen.
fn messages_collect(r: crate::client::Response, quiet: bool) -> Res<Vec<String>> {
    let mut d = progress::Display::new();
    let mut statuses = Vec::new();
    for line in io::BufRead::lines(io::BufReader::new(r)) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let m: Value = serde_json::from_str(&line)
            .map_err(|e| fail(format!("a message from the daemon: {e}")))?;
        if let Some(s) = m["status"].as_str() {
            statuses.push(s.to_string());
        }
        if quiet {
            if let Some(e) = m["error"].as_str() {
                return Err(Failure {
                    code: 1,
                    msg: e.to_string(),
                });
            }
            continue;
        }
        d.show(&m).map_err(|e| Failure { code: 1, msg: e })?;
    }
    Ok(statuses)
}

/// A logs stream to stdout and stderr (raw with a terminal, else framed).
fn copy_stream(mut r: crate::client::Response, tty: bool) -> Res<()> {
    let out = io::stdout();
    let err = io::stderr();
    if tty {
        let mut buf = [0u8; 32 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut o = out.lock();
            o.write_all(&buf[..n])?;
            o.flush()?;
        }
    }
    let mut h = [0u8; 8];
    loop {
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut d = vec![0u8; n];
        r.read_exact(&mut d)?;
        if h[0] == 2 {
            err.lock().write_all(&d)?;
        } else {
            let mut o = out.lock();
            o.write_all(&d)?;
            o.flush()?;
        }
    }
}

/// A tar stream to a file or stdout.
fn write_out(mut r: crate::client::Response, output: Option<&Path>) -> Res<u8> {
    match output {
        Some(p) => {
            let mut f = std::fs::File::create(p)?;
            io::copy(&mut r, &mut f)?;
        }
        None => {
            io::copy(&mut r, &mut io::stdout().lock())?;
        }
    }
    Ok(0)
}

/// `-e NAME` takes NAME's value from this environment, as docker's client does.
fn resolve_env(env: Vec<String>) -> Vec<String> {
    env.into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// Docker's sizes (`64m`, `1g`, `512k`, bytes) as bytes; `-1` stays -1.
fn ram_bytes(s: &str) -> Res<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| fail(format!("invalid size: '{s}'")))?;
    Ok((n * mul as f64) as i64)
}

/// Docker's create body for `run`/`create`'s flags.
fn create_body(o: &RunOpts) -> Res<Value> {
    let unsupported_flag = |f: &str| unsupported(&format!("run {f}"));
    if !o.lxc_conf.is_empty() {
        return Err(unsupported_flag("--lxc-conf"));
    }
    crate::refuse_unsupported_run_flags(o)?;
    let mounts = o
        .mount
        .iter()
        .map(|m| longshore_engine::MountSpec::parse(m))
        .collect::<longshore_engine::Result<Vec<_>>>()?;
    let sysctls = o
        .sysctl
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), json!(v)))
                .ok_or_else(|| fail(format!("invalid --sysctl {s:?}: expected key=value")))
        })
        .collect::<Res<serde_json::Map<String, Value>>>()?;
    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(crate::read_env_file(f)?);
    }
    env.extend(o.env.clone());
    let env = resolve_env(env);
    let mut labels = serde_json::Map::new();
    for l in &o.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), json!(v));
    }
    let mut exposed = serde_json::Map::new();
    for e in &o.expose {
        let p = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(p, json!({}));
    }
    let mut bindings = serde_json::Map::new();
    for p in &o.publish {
        let (spec, proto) = match p.rsplit_once('/') {
            Some((s, pr)) => (s, pr),
            None => (p.as_str(), "tcp"),
        };
        // [ip:]host:container, [ip:]:container, container; an IPv6 ip in brackets
        let (ip, rest) = if let Some(r) = spec.strip_prefix('[') {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| fail(format!("invalid publish spec {p:?}")))?;
            (ip.to_string(), r.to_string())
        } else {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.len() {
                1 | 2 => (String::new(), spec.to_string()),
                3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
                _ => return Err(fail(format!("invalid publish spec {p:?}"))),
            }
        };
        let (host, cport) = match rest.split_once(':') {
            Some((h, c)) => (h.to_string(), c.to_string()),
            None => (String::new(), rest),
        };
        if cport.is_empty() {
            return Err(fail(format!(
                "invalid publish spec {p:?}: no container port"
            )));
        }
        let key = format!("{cport}/{proto}");
        exposed.insert(key.clone(), json!({}));
        if let Some(a) = bindings
            .entry(key)
            .or_insert_with(|| Value::Array(vec![]))
            .as_array_mut()
        {
            a.push(json!({"HostIp": ip, "HostPort": host}));
        }
    }
    let mut volumes = serde_json::Map::new();
    let mut binds = Vec::new();
    for v in &o.volume {
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            volumes.insert(v.clone(), json!({}));
        }
    }
    let mut tmpfs = serde_json::Map::new();
    for t in &o.tmpfs {
        let (p, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.to_string(), json!(opts));
    }
    let restart = o.restart.as_deref().map(|r| {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)})
    });
    let mut ulimits = Vec::new();
    for u in &o.ulimit {
        let (name, lim) = u
            .split_once('=')
            .ok_or_else(|| fail(format!("invalid ulimit argument: {u}")))?;
        let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
        let num = |x: &str| {
            x.parse::<i64>()
                .map_err(|_| fail(format!("invalid ulimit argument: {u}")))
        };
        ulimits.push(json!({"Name": name, "Soft": num(soft)?, "Hard": num(hard)?}));
    }
    let mut devices = Vec::new();
    for d in &o.device {
        let parts: Vec<&str> = d.split(':').collect();
        let (host, cont, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] if c.chars().all(|x| "rwm".contains(x)) => (*h, *h, *c),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(fail(format!("invalid device specification: {d}"))),
        };
        devices
            .push(json!({"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perms}));
    }
    let mut log_config = serde_json::Map::new();
    for l in &o.log_opt {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| fail(format!("invalid log opt {l:?} (key=value)")))?;
        log_config.insert(k.to_string(), json!(v));
    }
    let attach =
        |s: &str| o.attach.is_empty() || o.attach.iter().any(|a| a.eq_ignore_ascii_case(s));
    let mut host = json!({
        "Binds": binds,
        "NetworkMode": o.network.clone().unwrap_or_default(),
        "PortBindings": bindings,
        "PublishAllPorts": o.publish_all,
        "AutoRemove": o.rm,
        "VolumesFrom": o.volumes_from,
        "CapAdd": o.cap_add,
        "CapDrop": o.cap_drop,
        "Dns": o.dns,
        "DnsSearch": o.dns_search,
        "ExtraHosts": o.add_host,
        "Links": o.link,
        "Privileged": o.privileged,
        "ReadonlyRootfs": o.read_only,
        "SecurityOpt": o.security_opt,
        "Tmpfs": tmpfs,
        "IpcMode": o.ipc.clone().unwrap_or_default(),
        "PidMode": o.pid.clone().unwrap_or_default(),
        "UTSMode": o.uts.clone().unwrap_or_default(),
        "Init": o.init,
        "Memory": o.memory.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "MemorySwap": o.memory_swap.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "CpuShares": o.cpu_shares.unwrap_or(0),
        "NanoCpus": o.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
        "PidsLimit": o.pids_limit.unwrap_or(0),
        "Ulimits": ulimits,
        "Devices": devices,
        "CpuPeriod": o.cpu_period.unwrap_or(0),
        "CpuQuota": o.cpu_quota.unwrap_or(0),
        "MemoryReservation": o.memory_reservation.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "BlkioWeight": o.blkio_weight.unwrap_or(0),
        "OomKillDisable": o.oom_kill_disable,
        "ShmSize": o.shm_size.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "Sysctls": sysctls,
        "GroupAdd": o.group_add,
        "CgroupParent": o.cgroup_parent.clone().unwrap_or_default(),
        "Mounts": mounts,
    });
    if let Some(r) = restart {
        host["RestartPolicy"] = r;
    }
    if o.log_driver.is_some() || !log_config.is_empty() {
        host["LogConfig"] =
            json!({"Type": o.log_driver.clone().unwrap_or_default(), "Config": log_config});
    }
    let health = if o.no_healthcheck {
        json!({ "Test": ["NONE"] })
    } else {
        json!({
            "Test": o.health_cmd.iter().flat_map(|c| ["CMD-SHELL".to_string(), c.clone()]).collect::<Vec<_>>(),
            "Interval": o.health_interval.unwrap_or(0),
            "Timeout": o.health_timeout.unwrap_or(0),
            "StartPeriod": o.health_start_period.unwrap_or(0),
            "StartInterval": o.health_start_interval.unwrap_or(0),
            "Retries": o.health_retries.unwrap_or(0),
        })
    };
    let mut body = json!({
        "Healthcheck": health,
        "Image": o.image,
        "Cmd": o.args,
        "Env": env,
        "Labels": labels,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": o.interactive,
        "AttachStdin": o.interactive && !o.detach,
        "AttachStdout": !o.detach && attach("stdout"),
        "AttachStderr": !o.detach && attach("stderr"),
        "ExposedPorts": exposed,
        "Volumes": volumes,
        "Hostname": o.hostname.clone().unwrap_or_default(),
        "User": o.user.clone().unwrap_or_default(),
        "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "MacAddress": o.mac_address.clone().unwrap_or_default(),
        "StopSignal": o.stop_signal.clone().unwrap_or_default(),
        "HostConfig": host,
    });
    if let Some(ep) = &o.entrypoint {
        body["Entrypoint"] = json!([ep]);
    }
    if let Some(t) = o.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    if !o.network_alias.is_empty() || o.ip.is_some() {
        let net = o.network.clone().unwrap_or_else(|| "bridge".into());
        let mut ep = json!({"Aliases": o.network_alias});
        if let Some(ip) = &o.ip {
            ep["IPAMConfig"] = json!({"IPv4Address": ip});
        }
        body["NetworkingConfig"] = json!({"EndpointsConfig": {net: ep}});
    }
    if o.args.is_empty() {
        body.as_object_mut().map(|m| m.remove("Cmd"));
    }
    Ok(body)
}

/// Docker's exit status for a start that failed: 126/127 when the command cannot be
/// invoked or is not found, else 125.
fn start_exit_code(msg: &str) -> u8 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") || msg.contains("not executable") {
        126
    } else {
        125
    }
}

/// `run` and `create` through the daemon, as docker's client sends them: create (pull on
/// a missing image), then for `run` attach, wait, start, relay, and the exit code.
fn run_container(c: &Client, config_dir: &Path, o: RunOpts, run: bool) -> Res<u8> {
    let body = create_body(&o)?;
    let path = format!(
        "/containers/create{}",
        query(&[
            ("name", o.name.clone().unwrap_or_default()),
            ("platform", o.platform.clone().unwrap_or_default())
        ])
    );
    let create = || {
        c.request("POST", &path, ReqBody::Json(&body), &[])
            .and_then(|r| r.json())
    };
    let verb = if run { "run" } else { "create" };
    let created = match create() {
        Err(e) if e.status == 404 && o.pull != "never" && e.message.contains("No such image") => {
            eprintln!("Unable to find image '{}' locally", o.image);
            pull(c, config_dir, &image_name(&o.image), None, true).map_err(|f| Failure {
                code: 125,
                msg: format!("longshore: {}.\nSee 'longshore {verb} --help'.", f.msg),
            })?;
            create()
        }
        r => r,
    };
    let created = created.map_err(|e| Failure {
        code: 125,
        msg: format!(
            "longshore: Error response from daemon: {}.\nSee 'longshore {verb} --help'.",
            e.message
        ),
    })?;
    let id = created["Id"].as_str().unwrap_or_default().to_string();
    if let Some(p) = &o.cidfile {
        std::fs::write(p, &id)
            .map_err(|err| fail(format!("write cidfile {}: {err}", p.display())))?;
    }
    if !run {
        println!("{id}");
        return Ok(0);
    }
    if o.detach {
        c.post(&format!("/containers/{id}/start"))
            .map_err(|e| Failure {
                code: start_exit_code(&e.message),
                msg: format!("longshore: Error response from daemon: {}.", e.message),
            })?;
        println!("{id}");
        return Ok(0);
    }
    attached_start(
        c,
        &id,
        o.interactive,
        o.tty,
        o.sig_proxy,
        o.detach_keys.as_deref(),
        if o.rm { "removed" } else { "next-exit" },
        true,
    )
}

/// Attaches to `id` (and starts it when `start`), relays the streams, and returns the
/// container's exit code from a wait on `condition` (0 when the user detached).
#[allow(clippy::too_many_arguments)]
fn attached_start(
    c: &Client,
    id: &str,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    keys: Option<&str>,
    condition: &str,
    start: bool,
) -> Res<u8> {
    crate::term::block_forwarded();
    let up = c
        .upgrade(
            "POST",
            &format!(
                "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
                if stdin { "&stdin=1" } else { "" }
            ),
            None,
        )?
        .into_upgraded();
    // the wait is registered before the start, so it sees this exit
    let wait = c.request(
        "POST",
        &format!("/containers/{id}/wait?condition={condition}"),
        ReqBody::Empty,
        &[],
    )?;
    let waiter = std::thread::spawn(move || wait.json());
    if start && let Err(e) = c.post(&format!("/containers/{id}/start")) {
        return Err(Failure {
            code: start_exit_code(&e.message),
            msg: format!("longshore: Error response from daemon: {}.", e.message),
        });
    }
    let (rc, sc) = (c.clone(), c.clone());
    let (rid, sid) = (id.to_string(), id.to_string());
    let detached = crate::term::relay(
        up,
        stdin,
        tty,
        sig_proxy,
        keys,
        move |h, w| {
            let _ = rc.post(&format!("/containers/{rid}/resize?h={h}&w={w}"));
        },
        move |sig| {
            let _ = sc.post(&format!("/containers/{sid}/kill?signal={sig}"));
        },
    )?;
    if detached {
        return Ok(0);
    }
    let v = waiter
        .join()
        .map_err(|_| fail("wait for the container: the waiting thread failed"))??;
    if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        return Err(fail(format!("Error response from daemon: {m}")));
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8)
}

impl crate::Copier for Client {
    fn copy_from(&self, c: &str, path: &str, w: &mut dyn Write) -> Res<()> {
        let mut r = self.request(
            "GET",
            &format!(
                "/containers/{}/archive{}",
                enc(c),
                query(&[("path", path.to_string())])
            ),
            ReqBody::Empty,
            &[],
        )?;
        io::copy(&mut r, w)?;
        Ok(())
    }

    fn copy_to(
        &self,
        c: &str,
        path: &str,
        tar: &mut (dyn Read + Send),
    ) -> Result<(), (bool, Failure)> {
        self.request(
            "PUT",
            &format!(
                "/containers/{}/archive{}",
                enc(c),
                query(&[("path", path.to_string())])
            ),
            ReqBody::Stream(tar, "application/x-tar"),
            &[],
        )
        .map(|_| ())
        .map_err(|e| (e.status == 404 || e.status == 400, Failure::from(e)))
    }
}

fn volume(c: &Client, cmd: VolumeCmd) -> Res<u8> {
    match cmd {
        VolumeCmd::Create {
            label,
            driver,
            opt,
            name,
        } => {
            let opts = crate::volume_opts(&opt)?;
            let labels: serde_json::Map<String, Value> = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), json!(v))
                })
                .collect();
            let v = c
                .request(
                    "POST",
                    "/volumes/create",
                    ReqBody::Json(&json!({"Name": name.unwrap_or_default(), "Driver": driver, "Labels": labels, "DriverOpts": opts})),
                    &[],
                )?
                .json()?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(0)
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let filters = crate::parse_filters(&filter)?;
            let v = c.get(&format!(
                "/volumes{}",
                query(&[("filters", filters_json(&filters))])
            ))?;
            let vols: Vec<longshore_engine::Volume> =
                serde_json::from_value(v["Volumes"].clone()).unwrap_or_default();
            crate::print_volumes(&vols, quiet, format)
        }
        VolumeCmd::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(c.get(&format!("/volumes/{}", enc(n)))?);
            }
            crate::print_json_or_template(&out, format)
        }
        VolumeCmd::Rm { force, names } => each(names, |n| {
            c.request(
                "DELETE",
                &format!("/volumes/{}{}", enc(n), query(&[("force", flag(force))])),
                ReqBody::Empty,
                &[],
            )
            .map(|_| ())
        }),
        VolumeCmd::Prune { all, force, filter } => {
            let extra: Vec<(String, String)> = if all {
                vec![("all".into(), "true".into())]
            } else {
                vec![]
            };
            let q = prune_query(&filter, crate::VOLUME_PRUNE_FILTERS, &extra)?;
            let what = if all {
                "This will remove all local volumes not used by at least one container."
            } else {
                "This will remove anonymous local volumes not used by at least one container."
            };
            if !crate::confirm(force, what) {
                return Ok(0);
            }
            let v = c.post(&format!("/volumes/prune{q}"))?;
            crate::print_pruned(
                "Deleted Volumes:",
                &strings(&v["VolumesDeleted"]),
                v["SpaceReclaimed"].as_u64().unwrap_or(0),
            );
            Ok(0)
        }
    }
}

fn network(c: &Client, cmd: NetworkCmd) -> Res<u8> {
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            ip_range,
            gateway,
            label,
            internal,
            aux_address,
            opt,
            name,
        } => {
            crate::network_gateway(subnet.as_deref(), gateway.as_deref(), ip_range.as_deref())?;
            let aux = crate::aux_addresses(&aux_address)?;
            let labels: serde_json::Map<String, Value> = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), json!(v))
                })
                .collect();
            let mut options = serde_json::Map::new();
            for o in &opt {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| fail(format!("unsupported network option {o:?}")))?;
                options.insert(k.to_string(), json!(v));
            }
            let mut cfg = serde_json::Map::new();
            if let Some(s) = subnet {
                cfg.insert("Subnet".into(), json!(s));
            }
            if let Some(r) = ip_range {
                cfg.insert("IPRange".into(), json!(r));
            }
            if let Some(g) = gateway {
                cfg.insert("Gateway".into(), json!(g));
            }
            if !aux.is_empty() {
                cfg.insert("AuxiliaryAddresses".into(), json!(aux));
            }
            let ipam = if cfg.is_empty() {
                json!({"Driver": "default", "Config": []})
            } else {
                json!({"Driver": "default", "Config": [cfg]})
            };
            let v = c
                .request(
                    "POST",
                    "/networks/create",
                    ReqBody::Json(
                        &json!({"Name": name, "Driver": driver, "IPAM": ipam, "Options": options, "Labels": labels, "Internal": internal}),
                    ),
                    &[],
                )?
                .json()?;
            println!(
                "{}",
                v["Id"].as_str().filter(|i| !i.is_empty()).unwrap_or(&name)
            );
            Ok(0)
        }
        NetworkCmd::Ls(o) => {
            let v = c.get("/networks")?;
            let rows: Vec<[String; 4]> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                    [s("Id"), s("Name"), s("Driver"), s("Scope")]
                })
                .collect();
            crate::print_networks(rows, o)
        }
        NetworkCmd::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(c.get(&format!("/networks/{}", enc(n)))?);
            }
            crate::print_json_or_template(&out, format)
        }
        NetworkCmd::Prune { force, filter } => {
            let q = prune_query(&filter, crate::CONTAINER_PRUNE_FILTERS, &[])?;
            if !crate::confirm(force, crate::NETWORK_PRUNE_WARNING) {
                return Ok(0);
            }
            let v = c.post(&format!("/networks/prune{q}"))?;
            crate::print_deleted("Deleted Networks:", &strings(&v["NetworksDeleted"]));
            Ok(0)
        }
        NetworkCmd::Rm { names } => each(names, |n| {
            c.request(
                "DELETE",
                &format!("/networks/{}", enc(n)),
                ReqBody::Empty,
                &[],
            )
            .map(|_| ())
        }),
        NetworkCmd::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let mut endpoint = json!({ "Aliases": alias });
            if let Some(ip) = ip {
                endpoint["IPAMConfig"] = json!({ "IPv4Address": ip });
            }
            c.request(
                "POST",
                &format!("/networks/{}/connect", enc(&network)),
                ReqBody::Json(&json!({"Container": container, "EndpointConfig": endpoint})),
                &[],
            )?;
            Ok(0)
        }
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => {
            c.request(
                "POST",
                &format!("/networks/{}/disconnect", enc(&network)),
                ReqBody::Json(&json!({"Container": container, "Force": force})),
                &[],
            )?;
            Ok(0)
        }
    }
}
