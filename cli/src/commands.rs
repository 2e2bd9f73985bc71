//! What each command does: [`run`] hands it to the module that does it, and the commands that
//! are a few lines over a host — `check`, `lock` and `run` (the demo console) — are here.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock::pipeline::{check_report, pin, PipelineOptions, Status};
use airlock::plugins::TeardownOutcome;
use airlock::{Host, HostBuilder, LoadReport, Policy};

use crate::args::{Command, Format, Plugins};
use crate::console::EndableInput;
use crate::{check_config, distribute, inspect, listen, mcp, web, Console, Result};

/// Runs one command: its exit code, or the error that stopped it.
pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Inspect {
            file,
            policy,
            format,
            resource: Some(path),
            ..
        } => inspect::print_resource(&file, policy.as_deref(), format, &path),
        Command::Inspect {
            file,
            policy,
            format,
            explain,
            ..
        } if explain.action.is_some() || explain.hook.is_some() => {
            crate::explain::explain(&file, policy.as_deref(), format, &explain)
        }
        Command::Inspect {
            file,
            policy,
            format,
            resource: None,
            ..
        } => inspect::inspect(&file, policy.as_deref(), format),
        Command::Keygen { name, dir } => {
            distribute::keygen(&name, &dir.unwrap_or_else(|| PathBuf::from(".")))
        }
        Command::Sign { file, key, comment } => distribute::sign(&file, &key, comment.as_deref()),
        Command::Install {
            files,
            version,
            dir,
            policy,
            lock,
            replace,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock.or_else(|| policy.host().lock.clone());
            let artifact = files.first().and_then(|f| f.to_str()).filter(|f| {
                f.starts_with(airlock::fleet::reference::OCI_SCHEME)
                    || f.starts_with(airlock::fleet::reference::LAYOUT_SCHEME)
            });
            let to = airlock::fleet::Destination {
                dir: &dir,
                policy: &policy,
                lock: lock.as_deref(),
                replace,
            };
            match (artifact, files.len(), version) {
                (Some(reference), 1, version) => {
                    distribute::install_artifact(reference, version.as_deref(), to)
                }
                (Some(_), _, _) => Err("install one artifact at a time, without files beside it".into()),
                (None, _, Some(_)) => Err("--version chooses among an artifact's tags: name one as oci://REGISTRY/REPOSITORY".into()),
                (None, _, None) => distribute::install(&files, to),
            }
        }
        Command::Publish { mut args, policy } => {
            let policy = read_policy(policy.as_deref())?;
            let to = args.pop().unwrap_or_default();
            let files: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
            distribute::publish(&files, &to, &policy)
        }
        Command::Pull {
            reference,
            dir,
            version,
            tag,
            policy,
        } => {
            let policy = read_policy(policy.as_deref())?;
            distribute::pull(
                &reference,
                version.as_deref(),
                &dir,
                tag.as_deref(),
                &policy,
            )
        }
        Command::Outdated { policy, lock } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock_in_force(lock, &policy)?;
            distribute::outdated(&lock, &policy)
        }
        Command::Update {
            ids,
            dir,
            policy,
            lock,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock_in_force(lock, &policy)?;
            distribute::update(&ids, &dir, &lock, &policy)
        }
        Command::Remove {
            id,
            dir,
            policy,
            lock,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock.or_else(|| policy.host().lock.clone());
            distribute::remove(&id, &dir, lock.as_deref())
        }
        Command::List { plugins } => distribute::list(&builder(plugins)?.check_options()?),
        Command::Check {
            plugins,
            config: Some(file),
            format,
            ..
        } => check_config::run(builder(plugins)?, &file, format),
        Command::Check {
            plugins,
            load,
            config: None,
            format,
        } => check(builder(plugins)?, load, format),
        Command::Run {
            plugins,
            watch,
            debounce_ms,
            listen,
            console,
            limits,
            trace: _,
        } => run_console(
            builder(plugins)?,
            watch.then(|| std::time::Duration::from_millis(debounce_ms)),
            listen.as_deref().map(|addr| (addr, listen_limits(&limits))),
            console.as_deref(),
        ),
        Command::Mcp {
            plugins,
            no_watch,
            debounce_ms,
        } => {
            // Before any plugin code runs: nothing but the protocol reaches standard output.
            let protocol = mcp::protocol_output()?;
            // A plugin's request that the host shut down (`host.control`) ends the server.
            let asked = std::sync::Arc::new(tokio::sync::Notify::new());
            let ask = asked.clone();
            let host = builder(plugins)?
                .on_shutdown_request(move |_| ask.notify_one())
                .build()?;
            let report = host.load()?;
            eprint!("{}", report.to_table());
            let watch = (!no_watch).then(|| std::time::Duration::from_millis(debounce_ms));
            mcp::serve(host, protocol, watch, asked)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, path, abi } => {
            let parent = path.unwrap_or_else(|| PathBuf::from("."));
            let Some(abi) = crate::abi_path(abi.as_deref()) else {
                eprintln!(
                    "airlock new: cannot find the airlock-abi crate (it is not published yet): \
                     pass --abi PATH to an Airlock checkout's plugin-abi, or set AIRLOCK_ABI_PATH"
                );
                return Ok(ExitCode::from(2));
            };
            let dir = crate::new_plugin(&name, &parent, &abi)?;
            println!("created {}", dir.display());
            println!("next: cd {} && cargo build && cargo test", dir.display());
            println!(
                "then: airlock run {}",
                dir.join("target").join("debug").display()
            );
            println!("to release it signed: airlock keygen NAME, then airlock sign LIBRARY --key NAME.key (see its README.md)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, with, format } => {
            let report = crate::validate(&file, &with)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", report.to_text()),
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Lock {
            dirs,
            policy,
            output,
        } => write_lock(
            &builder(Plugins {
                dirs,
                policy,
                lock: None,
            })?,
            &output,
        ),
    }
}

/// The policy file's policy, or the default one.
/// The lock `--lock` names, or the policy's `[host] lock`.
fn lock_in_force(lock: Option<PathBuf>, policy: &Policy) -> Result<PathBuf> {
    lock.or_else(|| policy.host().lock.clone()).ok_or_else(|| {
        "no lock file: the sources of installed artifacts are pinned in one (--lock FILE, or \
         [host] lock in the policy)"
            .into()
    })
}

pub(crate) fn read_policy(path: Option<&Path>) -> Result<Policy> {
    Ok(match path {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default(),
    })
}

fn builder(plugins: Plugins) -> Result<HostBuilder> {
    let Plugins { dirs, policy, lock } = plugins;
    // Directories on the command line first, then those in AIRLOCK_PLUGIN_PATH.
    let mut builder = Host::builder();
    for dir in dirs {
        builder = builder.plugin_dir(dir);
    }
    builder = builder.plugin_dirs_from_env();
    if let Some(path) = policy {
        builder = builder.policy(Policy::from_file(&path)?);
    }
    if let Some(lock) = lock {
        builder = builder.lock_file(lock);
    }
    Ok(builder)
}

fn write_lock(builder: &HostBuilder, output: &Path) -> Result<ExitCode> {
    let (lock, report) = pin(builder.options(), output)?;
    lock.write()?;
    print!("{}", report.to_table());
    println!(
        "wrote {} pin(s) to {}",
        lock.entries().len(),
        output.display()
    );
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(builder: HostBuilder, load: bool, format: Format) -> Result<ExitCode> {
    let report: LoadReport = if load {
        let host = builder.build()?;
        let mut report = host.load()?;
        for record in host.shutdown() {
            if let TeardownOutcome::Clean = record.outcome {
                continue;
            }
            if let Some(entry) = report
                .plugins
                .iter_mut()
                .find(|p| p.id.as_deref() == Some(&record.id) && p.status == Status::Ok)
            {
                entry.detail = format!("{}; teardown: {:?}", entry.detail, record.outcome);
            }
        }
        report
    } else {
        let options: PipelineOptions = builder.check_options()?;
        check_report(&options)?
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        Format::Table => print!("{}", report.to_table()),
    }
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The listener's limits from the command line.
fn listen_limits(flags: &crate::args::ListenLimits) -> listen::Limits {
    let ms = std::time::Duration::from_millis;
    listen::Limits {
        max_connections: flags.max_connections.max(1),
        header_timeout: ms(flags.idle_timeout_ms).min(listen::Limits::default().header_timeout),
        body_timeout: ms(flags.body_timeout_ms),
        idle_timeout: ms(flags.idle_timeout_ms),
        ..listen::Limits::default()
    }
}

fn run_console(
    builder: HostBuilder,
    watch: Option<std::time::Duration>,
    listen: Option<(&str, listen::Limits)>,
    console: Option<&str>,
) -> Result<ExitCode> {
    // Read before anything loads: a token that is set but unusable stops the start.
    let token = match listen {
        Some(_) => listen::read_token()?,
        None => None,
    };
    let console_token = console.map(|_| web::console_token()).transpose()?;
    // A plugin's request that the host shut down (`host.control`) ends the console's input,
    // so the console quits as on `/quit`.
    let (input, end_input) = EndableInput::spawn(io::BufReader::new(io::stdin()))?;
    // A call the policy says to ask about waits for the operator: `/approvals`, `/approve ID`.
    let host = builder
        .on_shutdown_request(move |_| end_input.end())
        .approver(|_| airlock::approvals::Approval::Later)
        .http_auth(listen::token_auth(token.clone()))
        .build()?;
    let host = airlock::nonblocking::AsyncHost::from(host);
    let report = host.load()?;
    eprint!("{}", report.to_table());
    // The policy's `[[sources]]`: channels whose new builds are pulled, checked and loaded.
    let _follower = host.follow(|outcome| {
        if !matches!(outcome, airlock::fleet::SourceOutcome::Unchanged { .. }) {
            println!("{outcome}");
        }
    })?;
    if _follower.sources() > 0 {
        eprintln!("following {} source(s)", _follower.sources());
    }
    let _watcher = match watch {
        Some(debounce) => {
            let watcher = host.watch(debounce, |outcome| println!("{outcome}"))?;
            eprintln!(
                "watching the plugin directories (debounce {} ms)",
                debounce.as_millis()
            );
            Some(watcher)
        }
        None => None,
    };
    let listener = match listen {
        Some((addr, limits)) => {
            let listener = listen::Listener::bind(addr, token, limits)?;
            // Plugins' outbound HTTP must not come back in through it.
            host.serving_on(listener.addr());
            eprintln!(
                "serving the plugins' routes on http://{}/plugins/<id>/...",
                listener.addr()
            );
            Some(listener)
        }
        None => None,
    };
    let web = match (console, console_token) {
        (Some(addr), Some(token)) => {
            let web = web::WebConsole::bind(addr, token, web::limits())?;
            host.serving_on(web.addr());
            eprintln!("console: {}", web.url());
            Some(web)
        }
        _ => None,
    };
    std::thread::scope(|scope| -> Result<()> {
        let serving = listener.as_ref().map(|listener| {
            let host = host.clone();
            scope.spawn(move || listener.serve(host))
        });
        let web_serving = web.as_ref().map(|web| {
            let host = host.clone();
            scope.spawn(move || web.serve(host))
        });
        let ran = Console::new(&host).run(input, io::stdout());
        if let Some(web) = &web {
            web.stop();
        }
        if let Some(Ok(Err(why))) = web_serving.map(|serving| serving.join()) {
            eprintln!("the web console stopped: {why}");
        }
        if let Some(listener) = &listener {
            listener.stop();
        }
        if let Some(serving) = serving {
            if let Ok(Err(why)) = serving.join() {
                eprintln!("the listener stopped: {why}");
            }
        }
        ran?;
        Ok(())
    })?;
    if let Some(request) = host.shutdown_requested() {
        eprintln!("shutting down: {request}");
    }
    shut_down(&host);
    Ok(ExitCode::SUCCESS)
}

/// Tears every plugin down and says how each teardown went (on standard error).
pub(crate) fn shut_down(host: &Host) {
    for record in host.shutdown() {
        eprintln!(
            "{}: {:?} in {:.2} ms",
            record.id,
            record.outcome,
            record.elapsed.as_secs_f64() * 1e3
        );
    }
}
