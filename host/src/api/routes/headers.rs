//! What crosses between the edge and a route in headers. Inbound, a plugin never sees the
//! credentials the edge authenticates with (`Authorization`, `Proxy-Authorization`, `Cookie`:
//! the listener's bearer token or the program's session), the hop-by-hop headers (and those
//! `Connection` names), nor a client's `x-request-id` (the host's id is the only one).
//! Outbound, a route cannot split or frame the response, nor set its own `x-request-id`.

use airlock_abi::manifest::is_header_name;

/// Headers of one connection, not of the request (RFC 9110 §7.6.1), and the credentials of
/// the edge.
const WITHHELD: [&str; 13] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "http2-settings",
    "x-request-id",
];

/// Headers the server frames the response with, and the host's request id: a plugin does not
/// set them.
const FRAMING: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-request-id",
];

/// The request's headers as a route sees them.
pub(super) fn visible(headers: &[(String, String)]) -> Vec<(String, String)> {
    let named_by_connection: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            !WITHHELD.iter().any(|w| name.eq_ignore_ascii_case(w))
                && !named_by_connection
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c))
        })
        .cloned()
        .collect()
}

/// A route's headers as they may be sent: names that are HTTP tokens, values with no CR, LF
/// or NUL, and none of the framing headers the server sets itself (a plugin cannot split a
/// response or frame the next one) nor `x-request-id` (the host adds its own).
pub(super) fn sanitized(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, value)| {
            is_header_name(name)
                && !FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f))
                && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: &str, v: &str) -> (String, String) {
        (n.to_owned(), v.to_owned())
    }

    #[test]
    fn a_route_cannot_split_or_frame_the_response_nor_set_the_request_id() {
        let kept = sanitized(vec![
            pair("x-ok", "fine"),
            pair("x-split", "a\r\nSet-Cookie: stolen=1"),
            pair("Content-Length", "1"),
            pair("transfer-encoding", "chunked"),
            pair("bad name", "v"),
            pair("x-nul", "a\0b"),
            pair("", "v"),
            pair("X-Request-Id", "mine"),
            pair("Set-Cookie", "session=2"),
        ]);
        assert_eq!(
            kept,
            vec![pair("x-ok", "fine"), pair("Set-Cookie", "session=2")]
        );
    }

    #[test]
    fn credentials_hop_by_hop_headers_and_a_clients_request_id_stay_at_the_edge() {
        let seen = visible(&[
            pair("Authorization", "Bearer s3cret"),
            pair("proxy-authorization", "Basic eA=="),
            pair("Cookie", "session=1"),
            pair("Connection", "keep-alive, X-Hop"),
            pair("Keep-Alive", "timeout=5"),
            pair("x-hop", "only this connection's"),
            pair("TE", "trailers"),
            pair("Upgrade", "websocket"),
            pair("X-Request-Id", "forged"),
            pair("X-Event", "push"),
            pair("Content-Type", "application/json"),
        ]);
        assert_eq!(
            seen,
            vec![
                pair("X-Event", "push"),
                pair("Content-Type", "application/json")
            ]
        );
    }
}
