//! Public routes: a request is served only with a valid HMAC-SHA256 signature made with the
//! operator's secret, compared in constant time, in the scheme the route declares —
//! `github` (`X-Hub-Signature-256: sha256=<hex>` of the body), `slack` (`X-Slack-Signature:
//! v0=<hex>` of `v0:<timestamp>:<body>`, the timestamp within five minutes) or `generic` (a
//! named header with hex or base64, optionally `sha256=`-prefixed, of the body — or of
//! `<timestamp>.<body>` with a timestamp header, within five minutes). A signed request is
//! accepted once: the signatures (and GitHub's delivery ids) accepted in the last ten minutes are
//! remembered, up to [`REMEMBERED`], and a repeat is refused.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_abi::manifest::{PublicRoute, SignatureScheme};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

/// How far a signed timestamp may be from the host's clock.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long an accepted signature or delivery id is remembered.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The most signatures and delivery ids remembered at once (the oldest are forgotten first).
pub const REMEMBERED: usize = 4096;

/// Why a request's signature is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Missing, malformed, wrong or stale: `401`.
    Unauthorized(String),
    /// Accepted before: `409`.
    Replayed(String),
}

/// Checks `body` and `headers` against the route's scheme and the secret's value. On success,
/// the keys that must not be seen again (empty when the scheme cannot tell a replay from a
/// second identical request: `generic` without a timestamp).
pub(super) fn verify(
    public: &PublicRoute,
    secret: &[u8],
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<String>, Refused> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .ok_or_else(|| Refused::Unauthorized(format!("the {name} header is missing")))
    };
    let (name, given, timestamp) = match public.scheme {
        SignatureScheme::Github => {
            let given = header("x-hub-signature-256")?;
            ("X-Hub-Signature-256", given.strip_prefix("sha256="), None)
        }
        SignatureScheme::Slack => {
            let given = header("x-slack-signature")?;
            let timestamp = header("x-slack-request-timestamp")?;
            (
                "X-Slack-Signature",
                given.strip_prefix("v0="),
                Some(timestamp),
            )
        }
        SignatureScheme::Generic => {
            let name = public.header.as_deref().unwrap_or_default();
            let given = header(name)?;
            let timestamp = match &public.timestamp_header {
                Some(t) => Some(header(t)?),
                None => None,
            };
            (
                name,
                Some(given.strip_prefix("sha256=").unwrap_or(given)),
                timestamp,
            )
        }
    };
    let signature = given.and_then(|g| match public.scheme {
        SignatureScheme::Generic => decode_hex(g).or_else(|| decode_base64(g)),
        _ => decode_hex(g),
    });
    let Some(signature) = signature else {
        return Err(Refused::Unauthorized(format!(
            "the {name} header does not hold a signature in the {} scheme's form",
            public.scheme.name()
        )));
    };
    if let Some(timestamp) = timestamp {
        check_timestamp(timestamp, now)?;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Err(Refused::Unauthorized(
            "the secret cannot key HMAC".to_owned(),
        ));
    };
    match (public.scheme, timestamp) {
        (SignatureScheme::Slack, Some(t)) => mac.update(format!("v0:{t}:").as_bytes()),
        (SignatureScheme::Generic, Some(t)) => mac.update(format!("{t}.").as_bytes()),
        _ => {}
    }
    mac.update(body);
    if mac.verify_slice(&signature).is_err() {
        return Err(Refused::Unauthorized(format!(
            "the {name} signature does not match the body"
        )));
    }
    let mut keys = Vec::new();
    if public.scheme == SignatureScheme::Github {
        if let Ok(delivery) = header("x-github-delivery") {
            keys.push(format!("delivery {delivery}"));
        }
    }
    if public.scheme == SignatureScheme::Github || timestamp.is_some() {
        keys.push(format!("signature {}", hex(&signature)));
    }
    Ok(keys)
}

fn check_timestamp(timestamp: &str, now: SystemTime) -> Result<(), Refused> {
    let Ok(seconds) = timestamp.parse::<u64>() else {
        return Err(Refused::Unauthorized(format!(
            "the timestamp {timestamp:?} is not a Unix time in seconds"
        )));
    };
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(seconds) > TIMESTAMP_WINDOW.as_secs() {
        return Err(Refused::Unauthorized(format!(
            "the signed timestamp is {} s from the host's clock (at most {} s): a stale or \
             replayed request",
            now.abs_diff(seconds),
            TIMESTAMP_WINDOW.as_secs()
        )));
    }
    Ok(())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| char::from(b).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|bytes| bytes.len() == 32)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signatures and delivery ids accepted lately, per plugin.
#[derive(Debug, Default)]
pub(super) struct Replays {
    seen: Mutex<Seen>,
}

/// Keys in the order they were accepted, with when, and the same keys to look up.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<(Instant, String)>,
    keys: HashSet<String>,
}

impl Replays {
    /// Remembers `keys` of `plugin`'s route, or says which was accepted before.
    pub(super) fn admit(&self, plugin: &str, keys: &[String], now: Instant) -> Result<(), Refused> {
        let mut seen = self.seen.lock();
        let Seen { order, keys: set } = &mut *seen;
        while order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > REPLAY_WINDOW)
        {
            if let Some((_, key)) = order.pop_front() {
                set.remove(&key);
            }
        }
        let keys: Vec<String> = keys.iter().map(|k| format!("{plugin} {k}")).collect();
        if let Some(key) = keys.iter().find(|k| set.contains(*k)) {
            let what = key.split(' ').nth(1).unwrap_or("signature");
            return Err(Refused::Replayed(format!(
                "this {what} was accepted in the last {} minutes: a replayed request",
                REPLAY_WINDOW.as_secs() / 60
            )));
        }
        for key in keys {
            if order.len() >= REMEMBERED {
                if let Some((_, old)) = order.pop_front() {
                    set.remove(&old);
                }
            }
            set.insert(key.clone());
            order.push_back((now, key));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(secret: &str, message: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(message);
        hex(&mac.finalize().into_bytes())
    }

    fn route(
        scheme: SignatureScheme,
        header: Option<&str>,
        timestamp: Option<&str>,
    ) -> PublicRoute {
        PublicRoute {
            scheme,
            secret: "hook".to_owned(),
            header: header.map(str::to_owned),
            timestamp_header: timestamp.map(str::to_owned),
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn github_signatures_are_checked_and_name_their_replay_keys() {
        let github = route(SignatureScheme::Github, None, None);
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = format!("sha256={}", mac("s3cret", body));
        let headers = h(&[("X-Hub-Signature-256", &good), ("X-GitHub-Delivery", "d-1")]);
        let now = SystemTime::now();
        let keys = verify(&github, b"s3cret", &headers, body, now).expect("valid");
        assert_eq!(
            keys,
            vec![
                "delivery d-1".to_owned(),
                format!("signature {}", &good[7..])
            ]
        );
        let wrong_secret = verify(&github, b"other", &headers, body, now);
        assert!(
            matches!(wrong_secret, Err(Refused::Unauthorized(m)) if m.contains("does not match"))
        );
        let tampered = verify(&github, b"s3cret", &headers, b"{}", now);
        assert!(matches!(tampered, Err(Refused::Unauthorized(_))));
        let bare = h(&[("X-Hub-Signature-256", &good[7..])]);
        let unprefixed = verify(&github, b"s3cret", &bare, body, now);
        assert!(matches!(unprefixed, Err(Refused::Unauthorized(m)) if m.contains("form")));
        let missing = verify(&github, b"s3cret", &[], body, now);
        assert!(matches!(missing, Err(Refused::Unauthorized(m)) if m.contains("missing")));
    }

    #[test]
    fn slack_and_generic_timestamps_must_be_recent() {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let body = b"token=x&text=hi";
        let slack = route(SignatureScheme::Slack, None, None);
        for (age, ok) in [(0, true), (299, true), (301, false), (3600, false)] {
            let t = (secs - age).to_string();
            let sig = format!(
                "v0={}",
                mac("k", format!("v0:{t}:token=x&text=hi").as_bytes())
            );
            let headers = h(&[
                ("X-Slack-Signature", &sig),
                ("X-Slack-Request-Timestamp", &t),
            ]);
            let verdict = verify(&slack, b"k", &headers, body, now);
            assert_eq!(verdict.is_ok(), ok, "{age} s: {verdict:?}");
        }
        let generic = route(SignatureScheme::Generic, Some("X-Sig"), Some("X-Time"));
        let t = secs.to_string();
        let raw = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"k").expect("any key");
            m.update(format!("{t}.").as_bytes());
            m.update(body);
            m.finalize().into_bytes()
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let headers = h(&[("x-sig", &b64), ("x-time", &t)]);
        assert!(verify(&generic, b"k", &headers, body, now).is_ok());
        let stale = h(&[("x-sig", &b64), ("x-time", "1000")]);
        assert!(verify(&generic, b"k", &stale, body, now).is_err());
        let plain = route(SignatureScheme::Generic, Some("X-Sig"), None);
        let headers = h(&[("X-Sig", &format!("sha256={}", mac("k", body)))]);
        assert_eq!(verify(&plain, b"k", &headers, body, now), Ok(vec![]));
    }

    #[test]
    fn a_key_is_admitted_once_per_plugin_within_the_window() {
        let replays = Replays::default();
        let start = Instant::now();
        let keys = vec!["delivery d-1".to_owned()];
        assert_eq!(replays.admit("a", &keys, start), Ok(()));
        assert!(
            matches!(replays.admit("a", &keys, start), Err(Refused::Replayed(m)) if m.contains("delivery"))
        );
        assert_eq!(replays.admit("b", &keys, start), Ok(()));
        let later = start + REPLAY_WINDOW + Duration::from_secs(1);
        assert_eq!(replays.admit("a", &keys, later), Ok(()));
        for n in 0..REMEMBERED {
            replays
                .admit("c", &[format!("k{n}")], later)
                .expect("new keys");
        }
        assert!(replays.seen.lock().order.len() <= REMEMBERED);
    }
}
