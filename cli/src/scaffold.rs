//! `airlock new`: a plugin crate that builds and loads at once, with one action, one hook and a
//! unit test on the test harness (the real runtime, in-process).

use std::fs;
use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The name is not a valid plugin id.
    #[error("{0:?} cannot be a plugin name: {1} (the name is also the plugin's id)")]
    InvalidName(String, String),
    /// The directory exists.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// What was being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a new plugin crate finds `airlock-abi` (until it is published): `explicit` if given,
/// else `AIRLOCK_ABI_PATH`, else the checkout this command was built from, if it is still
/// there. `None` when none of them is: the caller must ask for `--abi PATH`.
pub fn abi_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(path) = std::env::var_os("AIRLOCK_ABI_PATH") {
        return Some(PathBuf::from(path));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugin-abi");
    fs::canonicalize(built_from)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
}

/// Creates the crate `name` in `parent/name`, depending on `airlock-abi` at `abi`.
///
/// # Errors
///
/// [`ScaffoldError`]: an invalid name, an existing directory, or an I/O error.
pub fn new_plugin(name: &str, parent: &Path, abi: &Path) -> Result<PathBuf, ScaffoldError> {
    PluginId::new(name).map_err(|e| ScaffoldError::InvalidName(name.to_owned(), e))?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let type_name: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    // The runtime (for the test harness) is the airlock-abi crate's sibling in a checkout.
    let host = abi
        .parent()
        .map_or_else(|| abi.join(".."), Path::to_path_buf)
        .join("host");
    let host = fs::canonicalize(&host).unwrap_or(host);
    let host = host.display().to_string().replace('\\', "/");
    let abi = abi.display().to_string().replace('\\', "/");
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("__NAME__", name)
                .replace("__ABI__", &abi)
                .replace("__HOST__", &host),
        ),
        ("plugin.json", PLUGIN_JSON.replace("__NAME__", name)),
        (
            "src/lib.rs",
            LIB_RS
                .replace("__TYPE__", &type_name)
                .replace("__NAME__", name),
        ),
        (".gitignore", "/target\n".to_owned()),
        (
            "README.md",
            README
                .replace("__LIB__", &name.replace('-', "_"))
                .replace("__NAME__", name),
        ),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, text)
        };
        write().map_err(|source| ScaffoldError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}

const README: &str = r#"# __NAME__

An Airlock plugin.

```sh
cargo build && cargo test                 # the test runs on Airlock's real runtime, in-process
airlock validate target/debug/lib__LIB__.so
airlock run target/debug --watch          # edit, `cargo build`: the new build is served
```

## Releasing it

Operators can require a publisher's signature (minisign's format) before a library loads.
Make a key pair once (keep `you.key` secret; `AIRLOCK_KEY_PASSWORD` encrypts it), and sign
every build you hand out:

```sh
airlock keygen you                        # you.key, you.pub, and the [trust] line to give operators
cargo build --release
airlock sign target/release/lib__LIB__.so --key you.key   # writes lib__LIB__.so.minisig beside it
```

(`.so` on Linux; `.dylib` on macOS, `.dll` without the `lib` on Windows.) Ship the library
with its `.minisig`. Operators install both with
`airlock install lib__LIB__.so --dir PLUGINS --policy POLICY`. The `minisign` tool makes and
checks the same files (`minisign -Sm lib__LIB__.so -s you.key`, `minisign -Vm lib__LIB__.so
-p you.pub`).
"#;

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the library Airlock loads; rlib: so that `cargo test` can test it in-process.
crate-type = ["cdylib", "rlib"]

[dependencies]
# Until airlock-abi is published, this points at the Airlock checkout that created the crate.
airlock-abi = { path = "__ABI__" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[dev-dependencies]
# The test harness: the plugin runs on Airlock's real runtime, in-process.
airlock = { path = "__HOST__", features = ["testing"] }

# A crate of its own, even when created inside another workspace.
[workspace]
"#;

const PLUGIN_JSON: &str = r#"{
  "id": "__NAME__",
  "version": "0.1.0",
  "description": "A new Airlock plugin",
  "concurrency": "parallel",
  "actions": [
    { "name": "greet", "description": "Greets {\"name\": ...}" }
  ],
  "hooks": [
    { "name": "reply.transform", "description": "Signs every reply" }
  ]
}
"#;

const LIB_RS: &str = r#"//! `__NAME__`: an Airlock plugin. `plugin.json` declares what it offers; this file implements it.

use airlock_abi::{ActionError, Actions, Context, HookReply, Hooks, InitError, Plugin};
use serde::Deserialize;

/// The input of `greet`.
#[derive(Debug, Deserialize)]
struct Greet {
    name: Option<String>,
}

/// The plugin. It must be `Send + Sync`: a `parallel` plugin is called from several threads.
pub struct __TYPE__ {
    ctx: Context,
}

impl Plugin for __TYPE__ {
    fn create(ctx: Context) -> Result<Self, InitError> {
        ctx.info("__NAME__ is ready");
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("greet", |this: &Self, input: Option<Greet>| {
            let name = input.and_then(|i| i.name).unwrap_or_else(|| "world".to_owned());
            this.ctx.debug(&format!("greeting {name}"));
            Ok::<_, ActionError>(format!("Hello, {name}!"))
        });
    }

    fn hooks(hooks: &mut Hooks<Self>) {
        hooks.add("reply.transform", |_: &Self, reply: String| {
            Ok::<_, ActionError>(HookReply::Continue(format!("{reply} (__NAME__)")))
        });
    }
}

airlock_abi::export_plugin!(__TYPE__);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use airlock::Reply;
    use airlock_abi::HookReply;
    use serde_json::json;

    use super::__TYPE__;

    #[test]
    fn greets_and_signs_replies() {
        // The plugin runs on the real runtime: the policy, the membrane and the audit log are
        // the ones a host uses.
        let plugin = TestHost::new().create::<__TYPE__>().expect("created");
        assert_eq!(plugin.call::<_, String>("greet", &json!({"name": "Ada"})), Ok(Reply::Ok("Hello, Ada!".to_owned())));
        assert_eq!(
            plugin.hook::<_, String>("reply.transform", &"hi"),
            Ok(HookReply::Continue("hi (__NAME__)".to_owned()))
        );
        plugin.teardown().expect("a clean teardown");
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["Hello", "a/b", "", "9lives", "with space"] {
            assert!(
                matches!(
                    new_plugin(bad, dir.path(), &abi_path(None).expect("this checkout")),
                    Err(ScaffoldError::InvalidName(..))
                ),
                "{bad}"
            );
        }
        let made = new_plugin(
            "my-plugin",
            dir.path(),
            &abi_path(None).expect("this checkout"),
        )
        .expect("created");
        let lib = fs::read_to_string(made.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct MyPlugin") && lib.contains("export_plugin!(MyPlugin)"));
        assert!(airlock_abi::manifest::Manifest::from_json(
            &fs::read_to_string(made.join("plugin.json")).expect("json")
        )
        .is_ok());
        assert!(matches!(
            new_plugin(
                "my-plugin",
                dir.path(),
                &abi_path(None).expect("this checkout")
            ),
            Err(ScaffoldError::Exists(_))
        ));
    }
}
