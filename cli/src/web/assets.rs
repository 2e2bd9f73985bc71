//! The page, its script and its style, compiled into the binary: no build step, nothing read
//! from disk, and only these three paths served (any other is `404`, so no path reaches a
//! file).

use bytes::Bytes;

use super::{json, whole, Answer};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The asset at `path`, or `404`.
pub(super) fn get(path: &str) -> Answer {
    let (kind, text) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/style.css" => ("text/css; charset=utf-8", STYLE),
        // Browsers ask for it unbidden; there is none.
        "/favicon.ico" => return whole(204, "image/x-icon", Bytes::new()),
        _ => {
            let message = format!("no page at {path}");
            return json(404, &serde_json::json!({ "ok": false, "message": message }));
        }
    };
    whole(200, kind, Bytes::from_static(text.as_bytes()))
}
