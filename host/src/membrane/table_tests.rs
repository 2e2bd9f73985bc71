//! The one table as a host has it: the built-in rows this layer defines, then the program's
//! operations. Every wire request has its row, declaring the capability it needs, and no
//! program can extend or shadow a built-in service.

use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::Request;

use crate::services::registry::{Registry, Route};

airlock_abi::service! {
    service Kv = "kv" {
        operation Steal = "steal" (version 1): () => ();
        operation Get = "get" (version 1): String => String;
    }
}

airlock_abi::service! {
    service Log = "log" {
        operation Write = "write" (version 1): String => ();
    }
}

airlock_abi::service! {
    service Editor = "editor" {
        operation Read = "read" (version 2): String => String;
    }
}

/// A registry as a host has it: the built-in rows, then the program's operations.
fn host_registry() -> Registry {
    let mut registry = Registry::default();
    super::register_built_ins(&mut registry);
    registry
}

#[test]
fn every_wire_request_is_a_built_in_row() {
    let registry = host_registry();
    for request in Request::ALL {
        let Some(Route::BuiltIn(row)) = registry.route(request.service(), request.operation())
        else {
            panic!("{request:?} has no built-in row");
        };
        assert_eq!(
            row.request(),
            request,
            "{request:?} is served by its own row"
        );
    }
    let rows = registry.built_ins();
    assert_eq!(
        rows,
        Request::ALL.len(),
        "one row per request, and no other"
    );
}

#[test]
fn every_built_in_row_declares_the_capability_its_request_needs() {
    use CapabilityKind as K;
    let registry = host_registry();
    for request in Request::ALL {
        let expected = match request {
            Request::KvGet
            | Request::KvSet
            | Request::KvDelete
            | Request::KvKeys
            | Request::KvEntry
            | Request::KvList
            | Request::KvCompareAndSet
            | Request::KvWrite => Some(K::Kv),
            Request::EventsPublish => Some(K::EventsPublish),
            Request::EventsSubscribe | Request::EventsUnsubscribe => Some(K::EventsSubscribe),
            Request::TimersEvery | Request::TimersCancel | Request::TimersCron => Some(K::Timers),
            Request::SecretsGet => Some(K::Secrets),
            Request::PluginsCall => Some(K::PluginsCall),
            Request::PluginsList => Some(K::PluginsList),
            Request::PluginsDispatch => Some(K::Dispatch),
            Request::HooksRun => Some(K::HooksRun),
            Request::HostShutdown => Some(K::HostControl),
            Request::HttpRequest | Request::HttpStreamOpen | Request::HttpStreamNext => {
                Some(K::HttpOutbound)
            }
            _ => None,
        };
        let Some(Route::BuiltIn(row)) = registry.route(request.service(), request.operation())
        else {
            panic!("{request:?} has no built-in row");
        };
        assert_eq!(row.capability(), expected, "{request:?}");
    }
}

#[test]
fn one_table_routes_the_built_in_services_and_the_programs() {
    let mut registry = host_registry();
    registry.add::<Read>(|_, path| Ok(format!("the text of {path}")));
    assert!(registry.invalid().is_none());
    let Some(Route::Offered {
        name,
        version,
        registered,
    }) = registry.route("editor", "read@3")
    else {
        panic!("the program's operation is routed by its wire name");
    };
    assert_eq!((name, version, registered.version), ("read", 3, 2));
    assert!(registry.route("editor", "write@2").is_none());
    assert!(
        registry.route("kv", "get@1").is_none(),
        "built-ins have no versions"
    );
    assert!(registry.route("kv", "drop").is_none());
    assert!(registry.route("nothing", "get").is_none());
}

#[test]
fn the_built_in_services_cannot_be_extended_or_shadowed() {
    // With the built-in rows registered, and without them (the authors' test harness
    // collects the program's operations first): the names are the protocol's either way.
    for mut registry in [host_registry(), Registry::default()] {
        registry.add::<Steal>(|_, ()| Ok(()));
        let invalid = registry.invalid().expect("refused");
        assert!(invalid.contains("built-in"), "{invalid}");
        assert!(registry.route("kv", "steal@1").is_none());
    }
    for attempt in [
        (|r: &mut Registry| r.add::<Get>(|_, key| Ok(key))) as fn(&mut Registry),
        |r| r.add::<Write>(|_, _| Ok(())),
    ] {
        let mut registry = host_registry();
        attempt(&mut registry);
        let invalid = registry.invalid().expect("refused");
        assert!(invalid.contains("built-in"), "{invalid}");
    }
    let registry = host_registry();
    assert!(
        matches!(registry.route("kv", "get"), Some(Route::BuiltIn(row)) if row.request() == Request::KvGet),
        "the built-in row is still the one served"
    );
}
