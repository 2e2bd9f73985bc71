//! Resources of a built-in plugin: the `skills` fixture's type compiled into the host program
//! brings the resource block its build embedded (`Builtin::RESOURCE_BLOCK`, set by
//! `export_plugin!(Skills, resources)`), checked against its manifest when it is registered,
//! as a library's are. Its own test binary: the fixture's type exports the library symbol
//! every plugin crate exports, so one such type per binary.

use airlock::{Error, Host};
use airlock_abi::{Builtin, Context, InitError, Plugin};
use airlock_fixture_skills::Skills;
use airlock_tests::workspace_root;

/// A built-in that declares a resource and gives no block.
struct Unembedded;

impl Plugin for Unembedded {
    fn create(_: Context) -> Result<Self, InitError> {
        Ok(Self)
    }
}

impl Builtin for Unembedded {
    const MANIFEST: &'static str =
        r#"{"id": "unembedded", "version": "1.0.0", "resources": [{"path": "a.md"}]}"#;
}

#[test]
fn a_builtin_serves_the_resources_its_build_embedded_and_one_without_them_is_refused() {
    let host = Host::builder()
        .builtin::<Skills>()
        .builtin::<Unembedded>()
        .build()
        .expect("host");
    let report = host.load().expect("load");
    let codes: Vec<_> = report
        .plugins
        .iter()
        .map(|p| (p.id.clone(), p.reason.map(|r| r.code()), p.detail.clone()))
        .collect();
    assert_eq!(codes[0].1, None, "{report:#?}");
    assert_eq!(codes[1].1, Some("bad_manifest"), "{report:#?}");
    assert!(codes[1].2.contains("embeds none"), "{report:#?}");

    let source =
        std::fs::read(workspace_root().join("plugins/fixtures/skills/skills/summarize.md"))
            .expect("the source file");
    let skill = host
        .resource("skills", "skills/summarize.md")
        .expect("declared and embedded");
    assert_eq!(*skill.bytes, *source);
    assert_eq!(host.resources("skills").expect("loaded").len(), 2);
    assert!(matches!(
        host.resource("unembedded", "a.md"),
        Err(Error::UnknownPlugin(_))
    ));
}
