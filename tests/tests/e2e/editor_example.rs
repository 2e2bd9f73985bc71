//! The editor example (`host/examples/editor.rs`) run on the real plugin libraries: every step
//! it shows happens as it says, in order.

#[allow(dead_code)]
#[path = "../../../host/examples/editor.rs"]
mod editor;

use airlock_tests::TempPluginDir;

#[test]
fn the_editor_example_shows_a_grant_a_denial_an_approval_a_revocation_and_a_claim_conflict() {
    let dir = TempPluginDir::with(&["wordcount", "formatter", "wordfreq"]);
    let mut out = Vec::new();
    editor::run(dir.path(), &mut out).expect("the example runs");
    let out = String::from_utf8(out).expect("text");
    let expect = [
        "refused claim_conflict: plugin wordfreq claims \"stats.buffer\", which plugin wordcount",
        "loaded formatter, wordcount",
        "  editor: wordcount reads \"notes\", for the host program on behalf of ada",
        "wordcount.count for ada: ok 4",
        "dispatch stats.buffer reached wordcount after 1 attempt(s): ok 4",
        "formatter.apply for ada: capability_violation: capability service:editor.replace",
        "formatter.apply for bob: permission_denied: action:apply of formatter is not permitted \
         to the host program on behalf of bob: the policy denies it ([plugins.formatter] \
         permissions[3], line 25)",
        "formatter.shout for ada: ok \"PLUGINS BEHIND A MEMBRANE\"",
        "  approver: the host program on behalf of bob asks for formatter.shout; decided later (#1)",
        "formatter.shout for bob: pending_approval #1",
        "  editor: formatter reads \"notes\", for the host program on behalf of bob",
        "approved #1: ok \"PLUGINS BEHIND A MEMBRANE\"",
        "wordcount.count after the revocation: capability_violation",
        "audit: formatter Denied service:editor.replace (asked by the host program on behalf of ada)",
        "audit: formatter PermissionDenied action:apply (asked by the host program on behalf of bob)",
        "audit: formatter ApprovalPending action:shout",
        "audit: formatter Approved action:shout",
        "audit: wordcount Revoked service:editor.read",
        "audit: wordcount Denied service:editor.read (asked by the host program on behalf of ada)",
    ];
    let mut lines = out.lines();
    for want in expect {
        assert!(
            lines.any(|line| line.starts_with(want)),
            "missing, or out of order: {want:?} in:\n{out}"
        );
    }
}
